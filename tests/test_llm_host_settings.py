"""The settings checks the roles' preflights share (llm_host's plugins/filter/llm_host_settings.py), and
the maps of what each role writes into its service's environment."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from _modules import load_module

ROOT = Path(__file__).resolve().parents[1]
hs = load_module("plugins/filter/llm_host_settings.py")


@pytest.mark.parametrize("name", ["team-gpu.lan", "team-gpu", "gpu_01.lan.", "10.0.0.5", "fd00::5", "localhost"])
def test_host_names_and_addresses_pass(name: str) -> None:
    assert hs.is_host_name(name)


@pytest.mark.parametrize("name", ["http://team-gpu.lan", "team-gpu.lan:8000", "team-gpu.lan/", "team gpu",
                                  "team-gpu.lan\n", "-team", "", None, 5, "[fd00::5]"])
def test_a_scheme_port_path_or_anything_around_is_not_a_host_name(name: object) -> None:
    assert not hs.is_host_name(name)


@pytest.mark.parametrize("url", ["http://team-gpu.lan:8080", "https://mirror.internal/ollama/releases",
                                 "http://127.0.0.1:11434", "http://[fd00::5]:8000/v1", "https://a"])
def test_urls_pass(url: str) -> None:
    assert hs.is_url(url)


@pytest.mark.parametrize("url", ["team-gpu.lan:8080", "ftp://x", "http://", "http://:8080", "http://x:0",
                                 "http://x:99999", "http://x/\n", "http://x y", "http://x\n", " http://x", 8080])
def test_not_urls(url: object) -> None:
    assert not hs.is_url(url)


def test_accounts_are_named_with_their_value() -> None:
    assert hs.account_errors({"ollama_user": "ollama", "ollama_group": "ai.team"}) == []
    errors = hs.account_errors({"ollama_user": "ollama\n", "ollama_group": "ollama users", "x": 1000, "y": "a" * 33})
    assert [e.split(" ")[0] for e in errors] == ["ollama_user", "ollama_group", "x", "y"]
    assert errors[0] == ("ollama_user 'ollama\\n' is not an account name: use 1-32 letters, digits, '_', '.' or '-', "
                         "starting with a letter or '_'")


def test_an_environment_key_a_role_sets_names_its_variable_never_the_value() -> None:
    clashes = hs.environment_clashes("open_webui_secret_environment", {"WEBUI_SECRET_KEY": "s3cret", "X": "1"},
                                     {"WEBUI_SECRET_KEY": "open_webui_secret_key"})
    assert clashes == ["WEBUI_SECRET_KEY is set by open_webui_secret_key; remove it from open_webui_secret_environment"]
    assert hs.environment_clashes("x", "not a mapping", {"A": "a"}) == []


def _vars(role: str) -> dict:
    return yaml.safe_load((ROOT / f"roles/{role}/vars/main.yml").read_text())


def test_every_key_ollama_writes_from_its_variables_has_an_owner() -> None:
    data = _vars("ollama")
    assert set(data["_ollama_base_environment"]) == set(data["_ollama_environment_owners"])


def test_every_key_open_webui_writes_from_its_variables_has_an_owner() -> None:
    data = _vars("open_webui")
    owners = data["_open_webui_environment_owners"]
    written = set(data["_open_webui_base_environment"]) | set(data["_open_webui_secret_base_environment"])
    assert written <= set(owners), written - set(owners)
    # The rest are the command line's (serve ignores HOST and PORT in the environment).
    unit = (ROOT / "roles/open_webui/templates/etc/systemd/system/open-webui.service.j2").read_text()
    assert set(owners) - written == {"HOST", "PORT"} and re.search(r"--host .*--port", unit)
    # Telemetry switches stay the inventory's to turn back on.
    assert not set(data["_open_webui_telemetry_off"]) & set(owners)


def _llm_host_var(name: str, **extra: object) -> object:
    """A variable of llm_host's vars/main.yml as Ansible renders it, with its defaults and `extra`."""
    import json
    import os
    import subprocess
    import sys

    bindir = Path(sys.executable).parent
    done = subprocess.run(
        [str(bindir / "ansible"), "localhost", "-i", "localhost,", "-c", "local", "-m", "ansible.builtin.debug",
         "-a", f"var={name}", "-e", f"@{ROOT}/roles/llm_host/defaults/main.yml",
         "-e", f"@{ROOT}/roles/llm_host/vars/main.yml", "-e", json.dumps(extra)],
        cwd=ROOT, env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
                       "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json"},
        capture_output=True, text=True, check=True)
    return json.loads(done.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"][name]


def test_the_python_index_takes_over_every_install_and_trusts_only_a_plain_http_host() -> None:
    assert _llm_host_var("_llm_host_python_index_environment") == {}
    common = {"PIP_CONFIG_FILE": "/dev/null", "UV_NO_CONFIG": "1", "UV_SYSTEM_CERTS": "true"}
    url = "http://mirror.lan:8765/python/simple"
    assert _llm_host_var("_llm_host_python_index_environment", llm_host_python_index_url=url) == {
        **common, "PIP_INDEX_URL": url, "UV_DEFAULT_INDEX": url, "PIP_TRUSTED_HOST": "mirror.lan"}
    url = "https://mirror.lan/python/simple"
    assert _llm_host_var("_llm_host_python_index_environment", llm_host_python_index_url=url) == {
        **common, "PIP_INDEX_URL": url, "UV_DEFAULT_INDEX": url}


def test_the_apt_repository_gets_an_apt_configuration_of_its_own() -> None:
    assert _llm_host_var("_llm_host_apt_environment") == {}
    assert _llm_host_var("_llm_host_apt_environment", llm_host_apt_repository="deb http://m/debian bookworm main") == {
        "APT_CONFIG": "/etc/llmfleet/apt/apt.conf"}
