"""llm_host_dropins: which drop-ins override an llmfleet unit (moved aside) and which only add to it (kept)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
from _modules import load_module

UNIT = """\
# Ansible managed
[Unit]
Description=Ollama LLM server
After=network-online.target

[Service]
Type=exec
User=ollama
EnvironmentFile=/etc/ollama/ollama.env
ExecStart=/opt/llmfleet/ollama/current/bin/ollama serve
PrivateDevices=true
ReadWritePaths=/var/lib/ollama \\
  /srv/models

[Install]
WantedBy=multi-user.target
"""


@pytest.fixture()
def mod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    module = load_module("plugins/modules/llm_host_dropins.py")
    monkeypatch.setattr(module, "ADMIN_ROOTS", (str(tmp_path / "etc"), str(tmp_path / "run")))
    return module


def _dropin(tmp_path: Path, root: str, unit: str, name: str, text: str) -> Path:
    path = tmp_path / root / f"{unit}.d" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_service_keys_reads_the_service_sections_only(mod: ModuleType) -> None:
    # A continued line's tail is not a key; [Unit] and [Install] keys are not [Service] keys.
    assert mod.service_keys(UNIT) == {"Type", "User", "EnvironmentFile", "ExecStart", "PrivateDevices", "ReadWritePaths"}
    assert mod.service_keys("[Service]\n# ExecStart=/x\n; User=root\nExecStart=\n") == {"ExecStart"}
    assert mod.service_keys("") == set()


def test_template_of_an_instance(mod: ModuleType) -> None:
    assert mod.template_of("vllm@coder.service") == "vllm@.service"
    assert mod.template_of("ollama.service") is None
    assert mod.template_of("vllm@.service") is None


def test_overriding_dropins_move_and_additions_stay(mod: ModuleType, tmp_path: Path) -> None:
    moved = _dropin(tmp_path, "etc", "ollama.service", "override.conf", "[Service]\nExecStart=\nExecStart=/usr/local/bin/ollama serve\n")
    runtime = _dropin(tmp_path, "run", "ollama.service", "sandbox.conf", "[Service]\nReadWritePaths=/data\n")
    unset = _dropin(tmp_path, "etc", "ollama.service", "unset.conf", "[Service]\nUnsetEnvironment=OLLAMA_HOST\n")
    kept = _dropin(tmp_path, "etc", "ollama.service", "proxy.conf", "[Service]\nEnvironment=HTTPS_PROXY=http://proxy:3128\nNice=5\n")
    unit_only = _dropin(tmp_path, "etc", "ollama.service", "after.conf", "[Unit]\nAfter=remote-fs.target\n")
    ignored = _dropin(tmp_path, "etc", "ollama.service", "notes.txt", "[Service]\nUser=root\n")
    moves, keep, warnings = mod.plan(["ollama.service"], UNIT, [], [])
    assert [(m["path"], m["to"], m["keys"]) for m in moves] == [
        (str(moved), f"{moved}.llmfleet-disabled", ["ExecStart"]),
        (str(unset), f"{unset}.llmfleet-disabled", ["UnsetEnvironment"]),
        (str(runtime), f"{runtime}.llmfleet-disabled", ["ReadWritePaths"]),
    ]
    assert keep == [str(unit_only), str(kept)]
    assert warnings == []
    assert str(ignored) not in keep


def test_keep_lists_the_documented_customisations(mod: ModuleType, tmp_path: Path) -> None:
    gpu = _dropin(tmp_path, "etc", "open-webui.service", "gpu.conf", "[Service]\nPrivateDevices=false\n")
    moves, keep, _ = mod.plan(["open-webui.service"], UNIT, ["PrivateDevices"], [])
    assert moves == [] and keep == [str(gpu)]


def test_template_dropins_count_for_their_instances(mod: ModuleType, tmp_path: Path) -> None:
    template = _dropin(tmp_path, "etc", "vllm@.service", "user.conf", "[Service]\nUser=root\n")
    instance = _dropin(tmp_path, "etc", "vllm@coder.service", "nice.conf", "[Service]\nNice=10\n")
    moves, keep, _ = mod.plan(["vllm@coder.service", "vllm@chat.service"], UNIT, [], [])
    assert [m["path"] for m in moves] == [str(template)]
    assert keep == [str(instance)]


def test_a_dropin_masked_with_dev_null_only_adds_nothing(mod: ModuleType, tmp_path: Path) -> None:
    link = tmp_path / "etc" / "ollama.service.d" / "empty.conf"
    link.parent.mkdir(parents=True)
    link.symlink_to("/dev/null")
    moves, keep, _ = mod.plan(["ollama.service"], UNIT, [], [])
    assert moves == [] and keep == [str(link)]


def test_a_second_move_does_not_overwrite_the_first(mod: ModuleType, tmp_path: Path) -> None:
    path = _dropin(tmp_path, "etc", "ollama.service", "override.conf", "[Service]\nUser=root\n")
    Path(f"{path}.llmfleet-disabled").write_text("[Service]\nUser=nobody\n")
    (move,), _, _ = mod.plan(["ollama.service"], UNIT, [], [])
    assert move["to"].startswith(f"{path}.llmfleet-disabled-") and move["to"].endswith("Z")


def test_shared_and_vendor_dropins_are_only_warned_about(mod: ModuleType, tmp_path: Path) -> None:
    shared = tmp_path / "etc" / "service.d" / "all.conf"
    shared.parent.mkdir(parents=True)
    shared.write_text("[Service]\nUser=root\nNice=1\n")
    vendor = tmp_path / "usr" / "ollama.service.d" / "nice.conf"
    vendor.parent.mkdir(parents=True)
    vendor.write_text("[Service]\nNice=1\n")
    moves, keep, warnings = mod.plan(["ollama.service"], UNIT, [], [str(shared), str(vendor)])
    assert moves == [] and keep == []
    assert len(warnings) == 1 and warnings[0].startswith(f"{shared} overrides User= of ollama.service")
