"""The open_webui role's service files as rendered by ansible itself: launchd plist, wrapper, systemd files.

macOS cannot run here, so the plist is checked by parsing it the way launchd's tools do (plistlib),
and the wrapper by letting sh source the secrets file it reads.
"""

from __future__ import annotations

import json
import plistlib
import subprocess
from pathlib import Path

from rendering import render

ROOT = Path(__file__).resolve().parents[1]
PLIST = "Library/LaunchDaemons/com.llmfleet.open-webui.plist"
LAUNCHER = "opt/llmfleet/open-webui/bin/open-webui-launch"
UNIT = "etc/systemd/system/open-webui.service"
SETTINGS = "etc/open-webui/open-webui.env"
SECRETS = "etc/open-webui/secrets.env"


def _render(tmp_path: Path, system: str, templates: list[str], host_type: str = "linux_cpu", **extra: object) -> Path:
    return render("render_open_webui.yml", tmp_path, system=system,
                  architecture="arm64" if system == "Darwin" else "x86_64", host_type=host_type,
                  templates=templates, **extra)


def _systemd_env(path: Path) -> dict[str, str]:
    """Parse NAME="value" lines the way systemd does for the escapes the role writes."""
    env = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, quoted = line.partition("=")
            assert quoted.startswith('"') and quoted.endswith('"'), line
            value, body, i = [], quoted[1:-1], 0
            while i < len(body):
                if body[i] == "\\":
                    i += 1
                value.append(body[i])
                i += 1
            env[name] = "".join(value)
    return env


def test_systemd_files_carry_the_inventory(tmp_path: Path) -> None:
    out = _render(tmp_path, "Linux", [UNIT, SETTINGS, SECRETS],
                  open_webui_admin_email="admin@example.test", open_webui_admin_password='pa"ss$word',
                  open_webui_openai_connections=[{"url": "http://gpu:8000/v1", "key": "k1"},
                                                 {"url": "http://gpu:8001/v1"}],
                  open_webui_environment={"WEBUI_NAME": "Team AI", "ENV": None},
                  open_webui_secret_environment={"BRAVE_SEARCH_API_KEY": "brave"})
    unit = (out / "open-webui.service").read_text()
    assert ("ExecStart=/opt/llmfleet/open-webui/current/bin/open-webui serve --host 127.0.0.1 --port 8080"
            in unit)
    assert "User=open-webui" in unit and "WorkingDirectory=/var/lib/open-webui" in unit
    assert "EnvironmentFile=/etc/open-webui/open-webui.env" in unit
    assert "EnvironmentFile=/etc/open-webui/secrets.env" in unit
    assert "ProtectSystem=strict" in unit and "ReadWritePaths=/var/lib/open-webui" in unit
    assert "Restart=on-failure" in unit
    # The sandbox the README's "Service hardening" table documents (molecule checks it in force).
    for directive in ("PrivateDevices=true", "ProtectHostname=true", "ProtectProc=invisible", "RestrictNamespaces=true",
                      "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK", "SystemCallFilter=@system-service",
                      "CapabilityBoundingSet=\n", "NoNewPrivileges=true"):
        assert directive in unit, directive

    settings = _systemd_env(out / "open-webui.env")
    assert settings["DATA_DIR"] == "/var/lib/open-webui"
    assert settings["ENABLE_PERSISTENT_CONFIG"] == "false"
    assert settings["OLLAMA_BASE_URLS"] == "http://127.0.0.1:11434"
    assert settings["ENABLE_OPENAI_API"] == "true"
    assert settings["OPENAI_API_BASE_URLS"] == "http://gpu:8000/v1;http://gpu:8001/v1"
    assert settings["ENABLE_WEB_SEARCH"] == "true" and settings["WEB_SEARCH_ENGINE"] == "duckduckgo"
    assert settings["RAG_EMBEDDING_ENGINE"] == "ollama" and settings["RAG_OLLAMA_BASE_URL"] == "http://127.0.0.1:11434"
    assert settings["WEBUI_ADMIN_EMAIL"] == "admin@example.test" and settings["ENABLE_SIGNUP"] == "false"
    assert settings["WEBUI_NAME"] == "Team AI"
    # null in open_webui_environment removes a computed variable; nothing secret is in the settings.
    assert "ENV" not in settings and "WEBUI_URL" not in settings and "DATABASE_URL" not in settings
    assert "pa\"ss" not in (out / "open-webui.env").read_text() and "k1" not in (out / "open-webui.env").read_text()

    secrets = _systemd_env(out / "secrets.env")
    # Keys by position; a connection without a key gets an empty one. No generated key is rendered:
    # the server reads the file the role generated on the host.
    assert secrets == {"WEBUI_ADMIN_PASSWORD": 'pa"ss$word', "OPENAI_API_KEYS": "k1;",
                       "BRAVE_SEARCH_API_KEY": "brave"}


def test_no_connections_means_openai_off_and_nothing_secret(tmp_path: Path) -> None:
    out = _render(tmp_path, "Linux", [SETTINGS, SECRETS], open_webui_ollama_base_urls=[])
    settings = _systemd_env(out / "open-webui.env")
    assert settings["ENABLE_OPENAI_API"] == "false" and "OPENAI_API_BASE_URLS" not in settings
    assert settings["ENABLE_OLLAMA_API"] == "false" and "OLLAMA_BASE_URLS" not in settings
    assert "RAG_OLLAMA_BASE_URL" not in settings
    assert _systemd_env(out / "secrets.env") == {}


def test_vault_secret_key_and_database_go_to_the_secrets_file(tmp_path: Path) -> None:
    out = _render(tmp_path, "Linux", [SETTINGS, SECRETS], open_webui_secret_key="from-vault",
                  open_webui_database_url="postgresql://u:p@db/openwebui", open_webui_persistent_config=True,
                  open_webui_host="0.0.0.0", open_webui_url="https://ai.example.test")
    assert _systemd_env(out / "secrets.env") == {"WEBUI_SECRET_KEY": "from-vault",
                                                  "DATABASE_URL": "postgresql://u:p@db/openwebui"}
    settings = _systemd_env(out / "open-webui.env")
    assert settings["ENABLE_PERSISTENT_CONFIG"] == "true" and settings["WEBUI_URL"] == "https://ai.example.test"


def test_torch_backend_follows_the_host_type(tmp_path: Path) -> None:
    def spec(host_type: str, **extra: object) -> dict:
        (tmp_path / host_type).mkdir()
        out = _render(tmp_path / host_type, "Linux", [], host_type=host_type, **extra)
        return json.loads((out / "install-spec.json").read_text())

    assert spec("linux_cpu")["torch_backend"] == "cpu"
    assert spec("linux_cuda")["torch_backend"] == "auto"
    assert spec("linux_rocm", open_webui_torch_backend="rocm6.4",
                open_webui_pip_constraints=["numpy<3"]) == {
        "version": "0.12.4", "torch_backend": "rocm6.4", "constraints": ["numpy<3"], "uv_extra_args": []}


def test_launchd_plist_has_settings_but_no_secrets(tmp_path: Path) -> None:
    out = _render(tmp_path, "Darwin", [PLIST, LAUNCHER, SECRETS], host_type="macos_arm64", ansible_user="alice",
                  open_webui_admin_email="alice@example.test", open_webui_admin_password="it's <secret> & \"q\" $x",
                  open_webui_environment={"WEBUI_NAME": "A & <B>"})
    plist = plistlib.loads((out / "com.llmfleet.open-webui.plist").read_bytes())
    assert plist["Label"] == "com.llmfleet.open-webui"
    assert plist["ProgramArguments"] == ["/bin/sh", "/opt/llmfleet/open-webui/bin/open-webui-launch"]
    assert plist["UserName"] == "alice"
    assert plist["WorkingDirectory"] == "/Users/alice/.open-webui"
    assert plist["RunAtLoad"] is True
    env = plist["EnvironmentVariables"]
    assert env["HOME"] == "/Users/alice" and env["DATA_DIR"] == "/Users/alice/.open-webui"
    assert env["WEBUI_NAME"] == "A & <B>" and env["WEBUI_ADMIN_EMAIL"] == "alice@example.test"
    assert env["ENABLE_OPENAI_API"] == "false"
    assert "WEBUI_URL" not in env
    # /Library/LaunchDaemons is world-readable: the password is only in the 0600 secrets file.
    assert not any("secret" in str(value) for value in env.values())
    assert "WEBUI_ADMIN_PASSWORD" not in env

    launcher = (out / "open-webui-launch").read_text()
    assert "exec /opt/llmfleet/open-webui/current/bin/open-webui serve --host 127.0.0.1 --port 8080" in launcher
    # sh sources the secrets file exactly: quotes, $ and & survive.
    printed = subprocess.run(["sh", "-c", 'set -a; . "$1"; printf %s "$WEBUI_ADMIN_PASSWORD"', "sh",
                              str(out / "secrets.env")], capture_output=True, text=True, check=True).stdout
    assert printed == "it's <secret> & \"q\" $x"


def test_launcher_is_valid_sh(tmp_path: Path) -> None:
    out = _render(tmp_path, "Darwin", [LAUNCHER], host_type="macos_arm64", ansible_user="bob",
                  open_webui_data_dir="/Volumes/Data/open webui")
    launcher = out / "open-webui-launch"
    subprocess.run(["sh", "-n", str(launcher)], check=True)
    assert "cd '/Volumes/Data/open webui'" in launcher.read_text()


# What Open WebUI 0.12's own Docker image sets, the Hugging Face client's switch and the update check.
TELEMETRY_OFF = {"SCARF_NO_ANALYTICS": "true", "DO_NOT_TRACK": "true", "ANONYMIZED_TELEMETRY": "false",
                 "HF_HUB_DISABLE_TELEMETRY": "1", "ENABLE_VERSION_UPDATE_CHECK": "false"}


def test_nothing_phones_home_unless_llm_host_telemetry(tmp_path: Path) -> None:
    def settings(name: str, system: str = "Linux", **extra: object) -> dict[str, str]:
        (tmp_path / name).mkdir()
        if system == "Darwin":
            out = _render(tmp_path / name, system, [PLIST], host_type="macos_arm64", ansible_user="alice", **extra)
            return plistlib.loads((out / "com.llmfleet.open-webui.plist").read_bytes())["EnvironmentVariables"]
        return _systemd_env(_render(tmp_path / name, system, [SETTINGS], **extra) / "open-webui.env")

    off = settings("default")
    assert {name: off.get(name) for name in TELEMETRY_OFF} == TELEMETRY_OFF
    # Not offline mode: it would also stop the embedding model downloads RAG needs.
    assert off["OFFLINE_MODE"] == "false"
    darwin = settings("darwin", "Darwin")
    assert {name: darwin.get(name) for name in TELEMETRY_OFF} == TELEMETRY_OFF

    # The switch leaves them unset (Open WebUI's defaults), it does not write them "on".
    assert not set(TELEMETRY_OFF) & set(settings("on", llm_host_telemetry=True))
    # open_webui_environment still decides one variable at a time: a value wins, null unsets.
    mixed = settings("mixed", open_webui_environment={"ENABLE_VERSION_UPDATE_CHECK": "true", "DO_NOT_TRACK": None})
    assert mixed["ENABLE_VERSION_UPDATE_CHECK"] == "true" and "DO_NOT_TRACK" not in mixed
    assert mixed["ANONYMIZED_TELEMETRY"] == "false"
