"""The ollama role's service files as rendered by ansible itself: launchd plist and systemd files.

macOS cannot run here, so the plist is checked by parsing it the way launchd's tools do (plistlib).
"""

from __future__ import annotations

import plistlib
from pathlib import Path

from rendering import render

PLIST = "Library/LaunchDaemons/com.llmfleet.ollama.plist"


def _render(tmp_path: Path, system: str, templates: list[str], **extra: object) -> Path:
    return render("render_role.yml", tmp_path, role="ollama", system=system,
                  architecture="arm64" if system == "Darwin" else "x86_64", templates=templates, **extra)


def test_launchd_plist_carries_the_environment(tmp_path: Path) -> None:
    out = _render(tmp_path, "Darwin", [PLIST], ansible_user="alice",
                  ollama_environment={"OLLAMA_KEEP_ALIVE": "30m", "OLLAMA_ORIGINS": "app://<x>&\"y\""})
    plist = plistlib.loads((out / "com.llmfleet.ollama.plist").read_bytes())
    assert plist["Label"] == "com.llmfleet.ollama"
    assert plist["ProgramArguments"] == ["/opt/homebrew/opt/ollama/bin/ollama", "serve"]
    assert plist["UserName"] == "alice"
    assert plist["RunAtLoad"] is True and plist["KeepAlive"] is True
    assert plist["EnvironmentVariables"] == {
        "HOME": "/Users/alice",
        "OLLAMA_HOST": "127.0.0.1:11434",
        "OLLAMA_MODELS": "/Users/alice/.ollama/models",
        "OLLAMA_KEEP_ALIVE": "30m",
        "OLLAMA_ORIGINS": "app://<x>&\"y\"",
        "OLLAMA_NO_CLOUD": "1",
    }
    assert plist["StandardErrorPath"] == "/opt/homebrew/var/log/ollama.log"
    assert plist["Umask"] == 0o027


def test_launchd_plist_follows_host_and_models_settings(tmp_path: Path) -> None:
    out = _render(tmp_path, "Darwin", [PLIST], ansible_user="bob", ollama_host="0.0.0.0", ollama_port=11500,
                  ollama_models_dir="/Volumes/Models/ollama")
    env = plistlib.loads((out / "com.llmfleet.ollama.plist").read_bytes())["EnvironmentVariables"]
    assert env["OLLAMA_HOST"] == "0.0.0.0:11500"
    assert env["OLLAMA_MODELS"] == "/Volumes/Models/ollama"


def test_systemd_files_for_linux(tmp_path: Path) -> None:
    out = _render(tmp_path, "Linux", ["etc/systemd/system/ollama.service", "etc/ollama/ollama.env"],
                  ollama_environment={"OLLAMA_ORIGINS": 'say "hi" \\ back $HOME', "OLLAMA_HOST": "0.0.0.0:11434"})
    unit = (out / "ollama.service").read_text()
    assert "ExecStart=/opt/llmfleet/ollama/current/bin/ollama serve" in unit
    assert "User=ollama" in unit and "EnvironmentFile=/etc/ollama/ollama.env" in unit
    assert "ReadWritePaths=/usr/share/ollama /usr/share/ollama/.ollama/models" in unit
    directives = [line for line in unit.splitlines() if line and not line.startswith(("#", "["))]
    for hardening in ["NoNewPrivileges=true", "CapabilityBoundingSet=", "ProtectSystem=strict", "PrivateTmp=true",
                      "ProtectKernelTunables=true", "ProtectKernelModules=true", "ProtectControlGroups=true",
                      "RestrictSUIDSGID=true", "SystemCallArchitectures=native", "UMask=0027"]:
        assert hardening in directives
    # GPU device nodes (/dev/nvidia*, /dev/kfd, /dev/dri) and /proc/driver stay reachable.
    for closed in ["PrivateDevices", "DevicePolicy", "DeviceAllow", "ProtectClock", "ProcSubset", "PrivateUsers",
                   "MemoryDenyWriteExecute"]:
        assert not [line for line in directives if line.startswith(closed + "=")]
    env = (out / "ollama.env").read_text().splitlines()
    # The inventory's OLLAMA_HOST wins over the computed one; quotes, backslashes and $ are escaped
    # (the collection's env_file rule, tests/test_env_file.py).
    assert 'OLLAMA_HOST="0.0.0.0:11434"' in env
    assert 'OLLAMA_MODELS="/usr/share/ollama/.ollama/models"' in env
    assert 'OLLAMA_ORIGINS="say \\"hi\\" \\\\ back \\$HOME"' in env


def test_ollama_cloud_is_off_unless_llm_host_telemetry(tmp_path: Path) -> None:
    # Off, the server does not fetch ollama.com's cloud model list or model recommendations.
    def env(name: str, **extra: object) -> list[str]:
        (tmp_path / name).mkdir()
        return (_render(tmp_path / name, "Linux", ["etc/ollama/ollama.env"], **extra) / "ollama.env").read_text().splitlines()

    assert 'OLLAMA_NO_CLOUD="1"' in env("default")
    assert not [line for line in env("on", llm_host_telemetry=True) if line.startswith("OLLAMA_NO_CLOUD=")]
    # The inventory can turn cloud models back on alone.
    assert 'OLLAMA_NO_CLOUD="0"' in env("cloud", ollama_environment={"OLLAMA_NO_CLOUD": "0"})
