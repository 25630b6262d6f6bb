"""A run that ansible-playbook stops on an error of its own (or that targets no host) shows ansible's
error lines with the file and line it gave, in the summary and in summary.json.

The first tests read outputs recorded from ansible-core 2.19.14 (and one from before 2.19, the
`ERROR!` format); the others run the real ansible-runner on small broken playbooks and inventories
written to tmp_path (in tests/playbooks they would fail the project's lint).
"""

from __future__ import annotations

import io
import json
import sys
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.parsing.vault import VaultLib, VaultSecret
from rich.console import Console

from llmfleet.report import ExitCode, HostStats, RunResult, ansible_messages, render_summary
from llmfleet.runner import RunRequest, run_playbook

LOCAL_HOST = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}

# Recorded: a playbook using a module of a collection that is not installed.
UNRESOLVED_MODULE = """\
[WARNING]: Error loading plugin 'nosuch.collection.module': No module named 'ansible_collections.nosuch'
[ERROR]: couldn't resolve module/action 'nosuch.collection.module'. This often indicates a misspelling, \
missing collection, or incorrect module path.
Origin: /srv/fleet/site.yml:8:7

6     - name: Ping first
7       ansible.builtin.ping:
8     - name: Use a module that does not exist
        ^ column 7

"""

# Recorded: an INI inventory that does not parse, so no host is targeted.
UNPARSABLE_INVENTORY = """\
[WARNING]: Failed to parse inventory with 'ini' plugin: Failed to parse inventory: not enough values to unpack \
(expected 3, got 2)

Failed to parse inventory with 'ini' plugin.

<<< caused by >>>

Failed to parse inventory: not enough values to unpack (expected 3, got 2)
Origin: /srv/fleet/inventory/hosts.ini

[WARNING]: Unable to parse /srv/fleet/inventory/hosts.ini as an inventory source
[WARNING]: Unable to parse /srv/fleet/inventory as an inventory source
[WARNING]: No inventory was parsed, only implicit localhost is available
[WARNING]: provided hosts list is empty, only localhost is available. Note that the implicit localhost does \
not match 'all'
"""

# Before ansible-core 2.19: `ERROR!`, and the origin in a sentence.
LEGACY_ERROR = """\
ERROR! couldn't resolve module/action 'community.general.launchd'. This often indicates a misspelling, \
missing collection, or incorrect module path.

The error appears to be in '/srv/fleet/roles/ollama/handlers/main.yml': line 11, column 3, but may
be elsewhere in the file depending on the exact syntax problem.

The offending line appears to be:


- name: Restart ollama on launchd
  ^ here
"""


def test_error_block_keeps_message_origin_and_excerpt() -> None:
    assert ansible_messages(UNRESOLVED_MODULE) == [
        "[WARNING]: Error loading plugin 'nosuch.collection.module': No module named 'ansible_collections.nosuch'",
        "[ERROR]: couldn't resolve module/action 'nosuch.collection.module'. This often indicates a misspelling, "
        "missing collection, or incorrect module path.",
        "Origin: /srv/fleet/site.yml:8:7",
        "",
        "6     - name: Ping first",
        "7       ansible.builtin.ping:",
        "8     - name: Use a module that does not exist",
        "        ^ column 7",
    ]


def test_inventory_warnings_are_kept_and_deprecations_left_out() -> None:
    deprecation = "[DEPRECATION WARNING]: Some option is deprecated. This feature will be removed in 2.23.\n"
    # Runner's events end lines with \r\n (ansible runs under a pty).
    lines = ansible_messages(deprecation + UNPARSABLE_INVENTORY.replace("\n", "\r\n"))

    assert not any("DEPRECATION" in line for line in lines)
    assert lines[0].startswith("[WARNING]: Failed to parse inventory with 'ini' plugin")
    assert "Origin: /srv/fleet/inventory/hosts.ini" in lines
    # A blank line after the multi-line block, as ansible prints it; none between one-line warnings.
    assert lines[lines.index("Origin: /srv/fleet/inventory/hosts.ini") + 1] == ""
    assert lines[-4:] == UNPARSABLE_INVENTORY.splitlines()[-4:]
    assert not any(line.endswith("\r") for line in lines)


def test_text_before_the_first_message_is_ignored() -> None:
    verbose = "ansible-playbook [core 2.19.14]\n  config file = /srv/fleet/ansible.cfg\nUsing /srv/fleet/ansible.cfg\n"
    assert ansible_messages(verbose + UNRESOLVED_MODULE) == ansible_messages(UNRESOLVED_MODULE)
    assert ansible_messages(verbose) == []


def test_legacy_error_format() -> None:
    lines = ansible_messages(LEGACY_ERROR)

    assert lines[0].startswith("ERROR! couldn't resolve module/action 'community.general.launchd'")
    assert "The error appears to be in '/srv/fleet/roles/ollama/handlers/main.yml': line 11, column 3, but may" in lines
    assert lines[-2:] == ["- name: Restart ollama on launchd", "  ^ here"]
    assert all(a or b for a, b in zip(lines, lines[1:], strict=False)), "runs of blank lines are collapsed"


def test_errors_come_first_within_the_cap() -> None:
    warnings = "".join(f"[WARNING]: noise {i}\n" for i in range(30))
    traceback = "".join(f"  File \"/x.py\", line {i}, in f\n" for i in range(100))
    output = warnings + f"[ERROR]: Unexpected Exception: boom\n{traceback}" + "[WARNING]: after\n"
    lines = ansible_messages(output, limit=12)

    assert lines[0] == "[ERROR]: Unexpected Exception: boom"
    assert len(lines) == 13
    assert lines[-1] == f"... {30 + 101 + 1 - 12} more line(s) in the run folder's stdout"
    # With room left over, warnings fill it in ansible's order.
    lines = ansible_messages("[WARNING]: noise 0\n[WARNING]: noise 1\n[WARNING]: noise 2\n[ERROR]: boom\n", limit=3)
    assert lines == ["[WARNING]: noise 0", "[WARNING]: noise 1", "[ERROR]: boom", "... 1 more line(s) in the run folder's stdout"]


def test_excerpt_of_an_encrypted_origin_is_dropped() -> None:
    """Ansible 2.19 itself shows no source for a vaulted file; should an excerpt appear, it goes."""
    output = """\
[ERROR]: YAML parsing failed: While parsing a flow sequence did not find expected ',' or ']'.
Origin: /srv/fleet/group_vars/all/vault.yml:3:4

1 vault_api_token: decrypted-plaintext
2 other: [unclosed
     ^ column 4

<<< caused by >>>

Something else.
Origin: /srv/fleet/site.yml:2:3

1 ---
2 - name: Plain
    ^ column 3
"""
    hidden = {"/srv/fleet/group_vars/all/vault.yml", "/srv/fleet/vault.yml"}
    lines = ansible_messages(output, hides_source=hidden.__contains__)

    text = "\n".join(lines)
    assert "decrypted-plaintext" not in text and "unclosed" not in text
    assert "Origin: /srv/fleet/group_vars/all/vault.yml:3:4" in lines
    assert "(source not shown: content encrypted)" in lines
    # Another origin in the same block keeps its excerpt.
    assert "2 - name: Plain" in lines and "    ^ column 3" in lines

    legacy = LEGACY_ERROR.replace("/srv/fleet/roles/ollama/handlers/main.yml", "/srv/fleet/vault.yml")
    lines = ansible_messages(legacy, hides_source=hidden.__contains__)
    assert "- name: Restart ollama on launchd" not in lines and "(source not shown: content encrypted)" in lines
    assert lines[-1] == "(source not shown: content encrypted)"


def test_secret_values_are_masked() -> None:
    output = (
        "[WARNING]: Could not match supplied host pattern, ignoring: tok-123\n"
        '[ERROR]: bad value "pa\\"ss\\nword" in \'pa"ss\\nword\'\n'
        "Origin: /srv/fleet/site.yml:3:10\n\n3   key: -----BEGIN KEY-----\n4   abcdefghijkl\n"
    )
    lines = ansible_messages(output, secrets=["tok-123", 'pa"ss\nword', "-----BEGIN KEY-----\nabcdefghijkl\n}"])

    text = "\n".join(lines)
    for fragment in ("tok-123", 'pa"ss', "pa\\\"ss", "BEGIN KEY", "abcdefghijkl"):
        assert fragment not in text
    assert "[WARNING]: Could not match supplied host pattern, ignoring: ********" in lines
    assert "[ERROR]: bad value \"********\" in '********'" in lines
    assert "3   key: ********" in lines and "4   ********" in lines


def _result(**overrides: object) -> RunResult:
    fields: dict[str, object] = {
        "status": "failed",
        "rc": 4,
        "hosts": {},
        "failures": [],
        "changes": [],
        "artifact_dir": Path("/runs/20250101T000000Z-site-0123abcd"),
        "started": datetime(2025, 1, 1, tzinfo=UTC),
        "finished": datetime(2025, 1, 1, 0, 1, tzinfo=UTC),
        "errors": tuple(ansible_messages(UNRESOLVED_MODULE)),
    }
    return RunResult(**{**fields, **overrides})  # type: ignore[arg-type]


def test_summary_prints_ansibles_error_before_the_exit_line() -> None:
    result = _result()
    console, buffer = plain_console()
    render_summary(result, console)

    text = buffer.getvalue()
    assert "\x1b[" not in text
    said, folder, exit_line = (text.index(s) for s in ("ansible-playbook said:", "Run folder:", "Exit code 1:"))
    assert said < folder < exit_line
    block = "\n".join(f"  {line}" if line else "" for line in result.errors)
    assert block in text, text
    assert text.rstrip().endswith(
        "Exit code 1: ansible-playbook stopped with rc 4: couldn't resolve module/action 'nosuch.collection.module'. "
        "This often indicates a misspelling, missing collection, or incorrect module path."
    )
    assert result.to_dict()["errors"] == list(result.errors)

    terminal = io.StringIO()
    render_summary(result, Console(file=terminal, force_terminal=True, width=100))
    assert "Origin: /srv/fleet/site.yml:8:7" in terminal.getvalue()


def test_without_error_lines_the_exit_line_points_at_stdout() -> None:
    assert _result(errors=()).exit_reason == "ansible-playbook stopped with rc 4; see stdout in the run folder"
    warning_only = _result(errors=("[WARNING]: something",))
    assert warning_only.exit_reason == "ansible-playbook stopped with rc 4; see stdout in the run folder"


@pytest.mark.parametrize(
    ("overrides", "needed"),
    [
        ({}, True),  # ansible-playbook stopped on its own
        ({"status": "successful", "rc": 0}, True),  # no host targeted
        ({"status": "successful", "rc": 0, "hosts": {"a": HostStats(ok=1)}}, False),
        ({"status": "failed", "rc": 2, "hosts": {"a": HostStats(failed=1)}}, False),
        ({"status": "canceled", "rc": 254}, False),
        ({"status": "timeout", "rc": 254}, False),
    ],
)
def test_ansible_messages_are_kept_only_when_no_host_result_explains_the_exit(
    overrides: dict[str, object], needed: bool
) -> None:
    assert _result(**overrides).needs_ansible_messages is needed


def plain_console() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=False, width=200), buffer


# Real runs. Each case writes its files, runs, and checks what the user reads: ansible's message
# and where it is, the exit code 1, and summary.json keeping the same lines.

PLAY = "- name: Play\n  hosts: all\n  gather_facts: false\n  tasks:\n"


@dataclass(frozen=True)
class Broken:
    """A run that ansible-playbook cannot do: files to write under tmp_path, and what must be shown
    (`{dir}` is tmp_path)."""

    files: dict[str, str]
    expect: tuple[str, ...]
    playbook: str = "site.yml"
    inventory: str = "inventory"
    options: dict[str, Any] = field(default_factory=dict)


CASES = {
    "yaml-syntax": Broken(
        {"site.yml": "---\n" + PLAY + "    - name: Ping\n      ansible.builtin.ping:\n     bad: indentation\n"},
        ("[ERROR]: YAML parsing failed: While parsing a block collection did not find expected '-' indicator.",
         "Origin: {dir}/site.yml:8:6", "8      bad: indentation", "^ column 6"),
    ),
    "jinja-parse": Broken(
        {"site.yml": '---\n- name: Play\n  hosts: "{{ target | }}"\n  gather_facts: false\n'},
        ("[ERROR]: Error processing keyword 'hosts': Syntax error in template: expected token 'name', "
         "got 'end of print statement'", "Origin: {dir}/site.yml:3:10", "^ column 10"),
    ),
    "unresolved-module": Broken(
        {"site.yml": "---\n" + PLAY + "    - name: Ping\n      ansible.builtin.ping:\n"
                     "    - name: Made-up module\n      nosuch.collection.module:\n"},
        ("[WARNING]: Error loading plugin 'nosuch.collection.module'",
         "[ERROR]: couldn't resolve module/action 'nosuch.collection.module'",
         "Origin: {dir}/site.yml:8:7", "8     - name: Made-up module"),
    ),
    "wrong-vault-password": Broken(
        {"site.yml": "---\n- name: Play\n  hosts: all\n  gather_facts: false\n  vars_files:\n    - vaulted.yml\n",
         "wrong-password": "not-the-password\n"},
        ("[ERROR]: Invalid vars_files file '{dir}/vaulted.yml': Decryption failed "
         "(no vault secrets were found that could decrypt).", "Origin: {dir}/vaulted.yml"),
        options={"vault_password_file": "wrong-password"},
    ),
    "unparsable-inventory": Broken(
        {"site.yml": "---\n" + PLAY + "    - name: Ping\n      ansible.builtin.ping:\n",
         "inventory/hosts.yml": "all:\n  hosts:\n    localhost:\n      ansible_connection: local\n     bad: [x\n"},
        ("[WARNING]: Failed to parse inventory with 'auto' plugin: YAML parsing failed",
         "Origin: {dir}/inventory/hosts.yml:5:6", "5      bad: [x",
         "[WARNING]: Unable to parse {dir}/inventory as an inventory source"),
    ),
    "missing-role": Broken(
        {"site.yml": "---\n- name: Play\n  hosts: all\n  gather_facts: false\n  roles:\n    - no_such_role\n"},
        ("[ERROR]: the role 'no_such_role' was not found in", "Origin: {dir}/site.yml:6:7"),
    ),
    "limit-matches-nothing": Broken(
        {"site.yml": "---\n" + PLAY + "    - name: Ping\n      ansible.builtin.ping:\n"},
        ("[WARNING]: Could not match supplied host pattern, ignoring: nosuchhost",
         "[ERROR]: Specified inventory, host pattern and/or --limit leaves us with no hosts to target."),
        options={"limit": "nosuchhost"},
    ),
}


def write_case(case: Broken, root: Path) -> RunRequest:
    for name, text in case.files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    if not (root / case.inventory / "hosts.yml").exists():
        (root / case.inventory).mkdir(exist_ok=True)
        (root / case.inventory / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": {"localhost": LOCAL_HOST}}}))
    vault = VaultLib([("default", VaultSecret(b"the-password"))])
    (root / "vaulted.yml").write_bytes(vault.encrypt("vaulted_value: plaintext-from-the-vault\n"))
    options = dict(case.options)
    if "vault_password_file" in options:
        options["vault_password_file"] = root / options["vault_password_file"]
    return RunRequest(playbook=root / case.playbook, inventory=root / case.inventory, **options)


def run_and_render(request: RunRequest, project_dir: Path, runs_dir: Path) -> tuple[RunResult, str]:
    result = run_playbook(request, project_dir=project_dir, runs_dir=runs_dir)
    console, buffer = plain_console()
    render_summary(result, console)
    return result, buffer.getvalue()


@pytest.mark.parametrize("name", CASES)
def test_a_stop_before_any_host_result_shows_ansibles_error(
    name: str, tmp_path: Path, project_dir: Path, runs_dir: Path
) -> None:
    case = CASES[name]
    root = (tmp_path / "case").resolve()
    root.mkdir()
    result, text = run_and_render(write_case(case, root), project_dir, runs_dir)

    assert result.exit_code == ExitCode.FAILED
    assert not any(stats.ok or stats.failed for stats in result.hosts.values())
    exit_line = text.index("Exit code 1: ")
    for expected in case.expect:
        expected = expected.format(dir=root)
        assert expected in text[:exit_line], f"{expected!r} not shown before the exit line:\n{text}"
        assert any(expected in line for line in result.errors)
    assert "see stdout in the run folder" not in text
    assert "plaintext-from-the-vault" not in text
    summary = json.loads((result.artifact_dir / "summary.json").read_text())
    assert summary["errors"] == list(result.errors) and summary["exit_code"] == 1


def test_an_error_in_a_vaulted_vars_file_shows_no_decrypted_content(
    tmp_path: Path, project_dir: Path, runs_dir: Path
) -> None:
    case = Broken(
        {"site.yml": "---\n- name: Play\n  hosts: all\n  gather_facts: false\n  vars_files:\n    - bad-vault.yml\n",
         "password": "the-password\n"},
        (), options={"vault_password_file": "password"},
    )
    root = (tmp_path / "case").resolve()
    root.mkdir()
    request = write_case(case, root)
    vault = VaultLib([("default", VaultSecret(b"the-password"))])
    (root / "bad-vault.yml").write_bytes(vault.encrypt("vault_token: decrypted-plaintext\nbroken: [unclosed\n"))
    result, text = run_and_render(request, project_dir, runs_dir)

    assert result.exit_code == ExitCode.FAILED
    assert "YAML parsing failed: While parsing a flow sequence did not find expected ',' or ']'." in text
    assert f"Origin: {root}/bad-vault.yml:3:1" in text
    assert "(source not shown: content encrypted)" in text  # ansible's own words
    summary = (result.artifact_dir / "summary.json").read_text()
    for secret_text in ("decrypted-plaintext", "unclosed", "vault_token"):
        assert secret_text not in text and secret_text not in summary


def test_a_stop_after_host_results_shows_the_error_not_the_task_output(
    tmp_path: Path, project_dir: Path, runs_dir: Path
) -> None:
    """At -vvv, an inventory warning, a play's results with connection chatter, then a stop: the
    warning and the error are shown, no task output and no chatter."""
    # Its excerpt (the two lines above the error) does not reach the first play's task.
    second = '- name: Second play\n  gather_facts: false\n  hosts: "{{ undefined_group }}"\n'
    case = Broken(
        {"site.yml": "---\n" + PLAY + "    - name: Ping\n      ansible.builtin.ping:\n"
                     "    - name: Print\n      ansible.builtin.debug:\n"
                     "        msg: \"[ERROR]: not ansible's\"\n" + second,
         "inventory/broken.ini": "[all\nlocalhost ansible_connection=local\n: : :\n"},
        (), options={"verbosity": 3},
    )
    root = (tmp_path / "case").resolve()
    root.mkdir()
    result, text = run_and_render(write_case(case, root), project_dir, runs_dir)

    assert result.exit_code == ExitCode.FAILED and result.hosts["localhost"].ok == 2
    assert f"[WARNING]: Unable to parse {root}/inventory/broken.ini as an inventory source" in result.errors
    error = result.errors.index("[ERROR]: Error processing keyword 'hosts': 'undefined_group' is undefined")
    assert result.errors[error + 1] == f"Origin: {root}/site.yml:13:10"
    assert result.errors[-1].endswith("^ column 10")
    said = text[text.index("ansible-playbook said:"):]
    for chatter in ("not ansible's", "ESTABLISH LOCAL CONNECTION", "ok: [localhost]", "Skipping callback"):
        assert chatter not in said
    # The debug task's message is the play's notice, listed as such and not as ansible's.
    assert "localhost  Print: [ERROR]: not ansible's" in text[:text.index("ansible-playbook said:")]


def test_a_block_ends_with_its_stretch_of_output() -> None:
    """The driver passes ansible's output in stretches between other events: -vvv chatter after a
    warning is not part of it."""
    lines = ansible_messages("[WARNING]: first\n", "<localhost> EXEC /bin/sh -c 'echo ~'\n", "[ERROR]: stop\nOrigin: x")
    assert lines == ["[WARNING]: first", "[ERROR]: stop", "Origin: x"]


def test_secret_extravars_are_masked_in_ansibles_messages(
    tmp_path: Path, project_dir: Path, runs_dir: Path
) -> None:
    secret = f"s3cret-{uuid.uuid4().hex}"
    # A host pattern taken from a secret: ansible names the pattern that matched nothing.
    case = Broken({"site.yml": '---\n- name: Play\n  hosts: "{{ api_token }}"\n  gather_facts: false\n'}, ())
    root = (tmp_path / "case").resolve()
    root.mkdir()
    request = write_case(case, root)
    request = RunRequest(playbook=request.playbook, inventory=request.inventory, secret_extravars={"api_token": secret})
    result, text = run_and_render(request, project_dir, runs_dir)

    assert result.exit_code == ExitCode.FAILED and result.exit_reason.startswith("no host was targeted")
    assert "[WARNING]: Could not match supplied host pattern, ignoring: ********" in text
    assert secret not in text
    assert secret not in (result.artifact_dir / "summary.json").read_text()
