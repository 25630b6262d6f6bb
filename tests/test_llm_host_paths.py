"""llm_host_paths: one look at a role's paths; what stands where the role puts a file, a directory or a
link is moved aside (never deleted), in check mode only reported. Through real Ansible for changed,
check mode, diff and warnings; the rules themselves on the module's functions."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from _modules import load_module

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def paths_module() -> ModuleType:
    return load_module("plugins/modules/llm_host_paths.py")


def _run(paths: list[dict[str, Any]], *flags: str) -> dict[str, Any]:
    bindir = Path(sys.executable).parent
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
           "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
           "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    run = subprocess.run(
        [str(bindir / "ansible-playbook"), "-i", "localhost,", str(ROOT / "tests/playbooks/llm_host_paths.yml"),
         "-e", json.dumps({"paths": paths}), *flags],
        cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    return json.loads(run.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]


def _in_the_way(tmp_path: Path) -> dict[str, Path]:
    """A directory where a file goes, a file where a directory goes, and a file where a link goes."""
    made = {"file": tmp_path / "etc/ollama.env", "directory": tmp_path / "data", "link": tmp_path / "bin/ollama"}
    made["file"].mkdir(parents=True)
    (made["file"] / "notes").write_text("mine")
    made["directory"].write_text("a file")
    made["link"].parent.mkdir()
    made["link"].write_text("#!/bin/sh\n")
    return made


def test_what_is_in_the_way_is_reported_in_check_mode_and_moved_aside_by_a_real_run(tmp_path: Path) -> None:
    made = _in_the_way(tmp_path)
    wanted = [{"path": str(path), "type": kind} for kind, path in made.items()]

    dry = _run(wanted, "--check", "--diff")
    assert dry["changed"] is True and sorted(dry["moved"]) == sorted(str(p) for p in made.values())
    assert made["file"].is_dir() and made["directory"].is_file() and made["link"].is_file()
    assert "moved to" in dry["diff"]["after"] and len(dry["warnings"]) == 3

    real = _run(wanted)
    assert real["changed"] is True
    for kind, path in made.items():
        assert not path.exists() and real["paths"][str(path)] == {"exists": False}
        destination = Path(real["moved"][str(path)])
        assert destination.parent == path.parent and destination.name.startswith(path.name + ".")
        assert destination.name.endswith("~")
    assert (Path(real["moved"][str(made["file"])]) / "notes").read_text() == "mine"

    again = _run(wanted)
    assert again["changed"] is False and again["moved"] == {}


def test_what_fits_stays(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x")
    (tmp_path / "target").write_text("y")
    (tmp_path / "file-link").symlink_to(tmp_path / "target")  # template replaces it, the target stays
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "relocated").symlink_to(tmp_path / "dir")  # a data directory moved elsewhere by its owner
    (tmp_path / "link").symlink_to(tmp_path / "somewhere-else")  # the link task retargets it
    wanted = [{"path": str(tmp_path / "dir"), "type": "directory"},
              {"path": str(tmp_path / "file"), "type": "file"},
              {"path": str(tmp_path / "file-link"), "type": "file"},
              {"path": str(tmp_path / "dangling"), "type": "file"},
              {"path": str(tmp_path / "relocated"), "type": "directory"},
              {"path": str(tmp_path / "link"), "type": "link"},
              {"path": str(tmp_path / "absent"), "type": "link"}]
    result = _run(wanted)
    assert result["changed"] is False and result["moved"] == {}
    assert result["paths"][str(tmp_path / "relocated")]["points_to"] == "directory"
    assert result["paths"][str(tmp_path / "link")]["target"] == str(tmp_path / "somewhere-else")


def test_below_a_path_that_moves_is_absent_and_check_mode_never_fails_on_it(tmp_path: Path) -> None:
    (tmp_path / "etc").write_text("a file where the configuration directory goes")
    wanted = [{"path": str(tmp_path / "etc"), "type": "directory"},
              {"path": str(tmp_path / "etc/ollama.env"), "type": "file"}]
    dry = _run(wanted, "--check")
    assert list(dry["moved"]) == [str(tmp_path / "etc")]
    assert dry["paths"][str(tmp_path / "etc/ollama.env")] == {"exists": False}
    assert dry["affected"] == [str(tmp_path / "etc"), str(tmp_path / "etc/ollama.env")]


def test_checksum_content_and_attributes_to_compare(tmp_path: Path) -> None:
    binary = tmp_path / "bin/ollama"
    binary.parent.mkdir()
    binary.write_bytes(b"#!/bin/sh\necho ollama\n")
    binary.chmod(0o644)  # chmod -x
    record = tmp_path / ".llmfleet-bin.sha256"
    record.write_text(hashlib.sha256(binary.read_bytes()).hexdigest() + "\n")
    me = os.getuid()
    result = _run([{"path": str(binary.parent), "mode": "0755"},
                   {"path": str(binary), "mode": "0755", "owner": me, "checksum": True},
                   {"path": str(record), "read": True},
                   {"path": str(tmp_path / "missing"), "mode": "0755"}])
    assert result["differs"] == [str(binary)]
    found = result["paths"][str(binary)]
    assert found["type"] == "file" and found["mode"] == "0644" and found["uid"] == me
    assert found["checksum"] == result["paths"][str(record)]["content"].strip()


def test_the_rules(paths_module: ModuleType) -> None:
    way = paths_module.in_the_way
    directory = {"exists": True, "type": "directory"}
    regular = {"exists": True, "type": "file"}
    link_to_dir = {"exists": True, "type": "link", "target": "/x", "points_to": "directory"}
    link_to_file = {"exists": True, "type": "link", "target": "/x", "points_to": "file"}
    dangling = {"exists": True, "type": "link", "target": "/x", "points_to": "absent"}
    fifo = {"exists": True, "type": "other"}
    assert [way(i, "file") for i in (directory, regular, link_to_dir, link_to_file, dangling, fifo)] == [
        True, False, True, False, False, True]
    assert [way(i, "directory") for i in (directory, regular, link_to_dir, link_to_file, dangling, fifo)] == [
        False, True, False, True, True, True]
    assert [way(i, "link") for i in (directory, regular, link_to_dir, link_to_file, dangling, fifo)] == [
        True, True, False, False, False, True]
    assert way({"exists": False}, "file") is False and way(directory, None) is False
