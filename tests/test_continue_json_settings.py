"""continue_json_settings: keys set in VS Code's settings.json and Continue's globalContext.json, and
not one other byte changed; a file it cannot read is left alone. The module runs through real Ansible
for changed, check mode, diff, ownership and modes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from _modules import load_module

ROOT = Path(__file__).resolve().parents[1]
VSCODE = {"continue.telemetryEnabled": False}
CONTINUE = {"sharedConfig": {"allowAnonymousTelemetry": False}}


@pytest.fixture(scope="module")
def jsonmod() -> ModuleType:
    return load_module("plugins/modules/continue_json_settings.py")


# A developer's settings.json as VS Code lets people write it: comments, a trailing comma, URLs.
SETTINGS = """{
    // Fonts
    "editor.fontSize": 14,
    /* the theme */ "workbench.colorTheme": "Solarized Dark",
    "http.proxy": "http://proxy.lan:3128/*not a comment*/",
    "files.exclude": {"**/.git": true},
}
"""


def test_adds_the_key_after_the_last_and_keeps_every_other_byte(jsonmod: ModuleType) -> None:
    assert jsonmod.update(SETTINGS, VSCODE) == SETTINGS.replace(
        '    "files.exclude": {"**/.git": true},\n',
        '    "files.exclude": {"**/.git": true},\n    "continue.telemetryEnabled": false,\n')


def test_a_key_already_set_leaves_the_text_as_it_is(jsonmod: ModuleType) -> None:
    text = '{\n\t"continue.telemetryEnabled": false, // mine\n\t"a": [1, 2]\n}'
    assert jsonmod.update(text, VSCODE) == text


def test_a_different_value_is_replaced_in_place(jsonmod: ModuleType) -> None:
    text = '{\r\n  "continue.telemetryEnabled": true, // was on\r\n  "z": 0\r\n}\r\n'
    assert jsonmod.update(text, VSCODE) == text.replace("true", "false")
    # By JSON value: 0 is not false.
    assert jsonmod.update('{"continue.telemetryEnabled": 0}', VSCODE) == '{"continue.telemetryEnabled": false}'


def test_the_last_of_duplicate_keys_is_the_one_read_and_edited(jsonmod: ModuleType) -> None:
    text = '{\n    "continue.telemetryEnabled": false,\n    "continue.telemetryEnabled": true\n}'
    assert jsonmod.update(text, VSCODE) == '{\n    "continue.telemetryEnabled": false,\n    "continue.telemetryEnabled": false\n}'


def test_a_missing_key_goes_on_a_new_line_even_after_a_line_comment(jsonmod: ModuleType) -> None:
    assert jsonmod.update('{\n\t"a": 1 // note\n}', VSCODE) == '{\n\t"a": 1, // note\n\t"continue.telemetryEnabled": false\n}'
    assert jsonmod.update('{"a": 1}', VSCODE) == '{"a": 1, "continue.telemetryEnabled": false}'


def test_empty_and_comment_only_files_get_a_document(jsonmod: ModuleType) -> None:
    expected = '{\n    "continue.telemetryEnabled": false\n}\n'
    assert jsonmod.update("", VSCODE) == expected
    assert jsonmod.update("{}", VSCODE) == expected.rstrip("\n")  # no newline added where there was none
    assert jsonmod.update("{\n}\n", VSCODE) == expected
    assert jsonmod.update("// settings\n", VSCODE) == "// settings\n" + expected
    assert jsonmod.update("\ufeff", VSCODE) == "\ufeff" + expected


def test_nested_settings_merge_into_continues_global_context(jsonmod: ModuleType) -> None:
    # Continue writes globalContext.json with JSON.stringify(..., null, 2).
    context = {"selectedModelsByProfileId": {"local": {"chat": "Qwen"}},
               "sharedConfig": {"useAutocompleteCache": True}, "hasAlreadyCreatedAPromptFile": True}
    text = json.dumps(context, indent=2)
    merged = jsonmod.update(text, CONTINUE)
    expected = json.loads(text)
    expected["sharedConfig"]["allowAnonymousTelemetry"] = False
    assert merged == json.dumps(expected, indent=2)

    without = json.dumps({"indexingPaused": False}, indent=2)
    assert jsonmod.update(without, CONTINUE) == json.dumps(
        {"indexingPaused": False, "sharedConfig": {"allowAnonymousTelemetry": False}}, indent=2)
    assert jsonmod.update('{\n  "sharedConfig": null\n}', CONTINUE) == json.dumps(
        {"sharedConfig": {"allowAnonymousTelemetry": False}}, indent=2)
    assert jsonmod.update("", CONTINUE, indent=2) == json.dumps(
        {"sharedConfig": {"allowAnonymousTelemetry": False}}, indent=2) + "\n"


@pytest.mark.parametrize("text, error", [
    ('{\n  "a": 1\n', "expected ',' or '}' at line 3, column 1"),
    ('{"a" 1}', "expected ':' at line 1, column 6"),
    ("[1, 2]", "the top level is not an object"),
    ('{"a": 1} {"b": 2}', "unexpected text after the end at line 1, column 10"),
    ("{'a': 1}", "expected a key in double quotes at line 1, column 2"),
    ('{"a": 1 /* open', "unterminated comment at line 1, column 9"),
])
def test_what_is_not_json_with_comments_is_refused_with_its_place(jsonmod: ModuleType, text: str, error: str) -> None:
    with pytest.raises(jsonmod.JsoncError, match="^" + error.replace("(", r"\(") + "$"):
        jsonmod.update(text, VSCODE)


# Through Ansible, as the role runs it.

def _run(path: Path, settings: dict[str, Any], *flags: str, **extra: Any) -> dict[str, Any]:
    bindir = Path(sys.executable).parent
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
           "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
           "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    run = subprocess.run(
        [str(bindir / "ansible-playbook"), "-i", "localhost,", str(ROOT / "tests/playbooks/continue_json_settings.yml"),
         "-e", json.dumps({"path": str(path), "settings": settings, **extra}), *flags],
        cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    return json.loads(run.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]


def _mode(path: Path) -> str:
    return oct(stat.S_IMODE(path.stat().st_mode))


def test_creates_the_file_and_its_directories_privately_and_says_so_in_check_mode(tmp_path: Path) -> None:
    target = tmp_path / "home/.continue/index/globalContext.json"
    (tmp_path / "home").mkdir()

    dry = _run(target, CONTINUE, "--check", "--diff", indent=2)
    assert dry["changed"] is True and dry["created"] is True
    assert dry["diff"]["before"] == "" and '"allowAnonymousTelemetry": false' in dry["diff"]["after"]
    assert not (tmp_path / "home/.continue").exists()

    first = _run(target, CONTINUE, indent=2)
    assert first["changed"] is True
    assert json.loads(target.read_text()) == {"sharedConfig": {"allowAnonymousTelemetry": False}}
    assert _mode(target) == "0o600"
    assert _mode(target.parent) == "0o700" and _mode(target.parent.parent) == "0o700"

    again = _run(target, CONTINUE, "--diff", indent=2)
    assert again["changed"] is False and "diff" not in again


def test_edits_keep_the_files_mode_and_diff_shows_the_change(jsonmod: ModuleType, tmp_path: Path) -> None:
    target = tmp_path / "settings.json"
    target.write_text(SETTINGS)
    target.chmod(0o644)
    edited = jsonmod.update(SETTINGS, VSCODE)

    dry = _run(target, VSCODE, "--check", "--diff")
    assert dry["changed"] is True and target.read_text() == SETTINGS
    assert dry["diff"]["before"] == SETTINGS and dry["diff"]["after"] == edited

    assert _run(target, VSCODE)["changed"] is True
    assert target.read_text() == edited and _mode(target) == "0o644"
    assert _run(target, VSCODE)["changed"] is False


def test_a_file_it_cannot_read_is_left_alone_with_a_warning(tmp_path: Path) -> None:
    target = tmp_path / "settings.json"
    broken = '{\n    "editor.fontSize": 14\n    "oops": true\n}\n'
    target.write_text(broken)
    result = _run(target, VSCODE)
    assert result["changed"] is False and target.read_text() == broken
    assert result["left_alone"] == "it is not JSON (with comments) that can be edited safely (expected ',' or '}' at line 3, column 5)"
    assert any(str(target) in warning and "continue.telemetryEnabled" in warning for warning in result["warnings"])

    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes('{"name": "Andr\u00e9"}'.encode("latin-1"))
    assert "(not UTF-8" in _run(latin1, VSCODE)["left_alone"]


def test_whether_it_may_write_is_asked_of_the_nearest_existing_directory(
        jsonmod: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The role runs the module as the developer: a place they may not write is left alone.
    (tmp_path / "read-only").mkdir()
    asked: list[str] = []

    def access(path: str, mode: int) -> bool:
        asked.append(path)
        return path != str(tmp_path / "read-only")

    monkeypatch.setattr(jsonmod.os, "access", access)
    assert jsonmod._can_replace(str(tmp_path / "read-only/Code/User/settings.json")) is False
    assert asked == [str(tmp_path / "read-only")]
    assert jsonmod._can_replace(str(tmp_path / "settings.json")) is True


def test_a_symlink_is_followed_and_stays_a_link(tmp_path: Path) -> None:
    dotfiles = tmp_path / "dotfiles/vscode-settings.json"
    dotfiles.parent.mkdir()
    dotfiles.write_text('{\n    "a": 1\n}\n')
    link = tmp_path / "settings.json"
    link.symlink_to(dotfiles)
    result = _run(link, VSCODE)
    assert result["changed"] is True and result["path"] == str(dotfiles)
    assert link.is_symlink() and json.loads(dotfiles.read_text()) == {"a": 1, "continue.telemetryEnabled": False}


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give files to another account")
def test_owner_and_group_go_to_the_developer_and_a_wrong_owner_is_a_change(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    target = tmp_path / "Code/User/settings.json"
    assert _run(target, VSCODE, owner="nobody", group="65534")["changed"] is True
    for path in (target, target.parent, target.parent.parent):
        assert (path.stat().st_uid, path.stat().st_gid) == (65534, 65534), path
    assert _run(target, VSCODE, owner="nobody", group="65534")["changed"] is False
    os.chown(target, 0, 0)
    assert _run(target, VSCODE, "--check", owner="nobody", group="65534")["changed"] is True
    assert target.stat().st_uid == 0
    assert _run(target, VSCODE, owner="nobody", group="65534")["changed"] is True
    assert target.stat().st_uid == 65534


def test_what_is_in_the_way_is_moved_aside_never_deleted(tmp_path: Path) -> None:
    # A directory where settings.json goes (in check mode only reported), then a file where one of
    # the directories up to globalContext.json goes.
    target = tmp_path / "settings.json"
    target.mkdir()
    (target / "mine").write_text("keep me")
    dry = _run(target, VSCODE, "--check")
    assert dry["changed"] is True and dry["created"] is True and list(dry["moved"]) == [str(target)]
    assert target.is_dir()

    result = _run(target, VSCODE)
    assert result["changed"] is True and json.loads(target.read_text()) == VSCODE
    moved = Path(result["moved"][str(target)])
    assert moved.name.startswith("settings.json.") and moved.name.endswith("~")
    assert (moved / "mine").read_text() == "keep me"
    assert f"{target} was not a file: moved to {moved}" in result["warnings"]
    assert _run(target, VSCODE)["changed"] is False

    index = tmp_path / ".continue/index"
    index.parent.mkdir()
    index.write_text("not a directory")
    context = index / "globalContext.json"
    result = _run(context, CONTINUE, indent=2)
    assert result["changed"] is True and json.loads(context.read_text()) == CONTINUE
    assert Path(result["moved"][str(index)]).read_text() == "not a directory"


def test_a_link_to_a_directory_is_moved_not_its_target(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = tmp_path / "settings.json"
    link.symlink_to(elsewhere)
    result = _run(link, VSCODE)
    assert result["changed"] is True and link.is_file() and not link.is_symlink()
    assert Path(result["moved"][str(link)]).is_symlink() and elsewhere.is_dir() and list(elsewhere.iterdir()) == []
