"""Which Python open_webui and vllm build their virtualenvs on (llm_host's llm_host_python_choice).

The decision is a pure function of the role's range, llm_host's probe of /usr/bin/python3, the
inventory's settings and the pinned uv's download list; the last test holds that list (vars/main.yml)
against what the pinned uv itself says it can download (offline: uv carries the list).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from _modules import ROOT, load_module

py = load_module("plugins/filter/llm_host_python.py")

OPEN_WEBUI = ["3.11", "3.12"]
UV_PYTHONS = yaml.safe_load((ROOT / "roles/llm_host/vars/main.yml").read_text())["_llm_host_uv_pythons"]
MANAGED = {"version": "3.12.16", "install_dir": "/opt/llmfleet/python", "mirror": "", "uv_version": "0.13.9",
           "downloads": UV_PYTHONS["0.13.9"], "package": "open-webui 0.12.4"}


def facts(version: str = "", error: str = "", system: str = "Linux", arch: str = "amd64", **others: dict) -> dict:
    return {"system": system, "arch": arch,
            "pythons": {"/usr/bin/python3": {"version": version, "error": error}, **others}}


def test_the_system_python_in_range_is_used() -> None:
    choice = py.python_choice("", "open_webui", OPEN_WEBUI, facts("3.11"), MANAGED)
    assert choice["source"] == "system"
    assert choice["python"] == "/usr/bin/python3"
    assert (choice["install"], choice["minor"], choice["error"]) == (False, "3.11", "")
    assert "open-webui 0.12.4 supports (3.11, 3.12)" in choice["reason"]
    assert py.python_problems(choice, "open_webui", "Open WebUI", OPEN_WEBUI, facts("3.11"), "h") == []


def test_a_system_python_out_of_range_gets_a_managed_cpython() -> None:
    # Debian 13: Python 3.13, which open-webui 0.12.4 (<3.13) does not support.
    choice = py.python_choice("", "open_webui", OPEN_WEBUI, facts("3.13"), MANAGED)
    assert choice["source"] == "managed" and choice["install"] and not choice["error"]
    assert choice["key"] == "cpython-3.12.16-linux-x86_64-gnu"
    assert choice["python"] == "/opt/llmfleet/python/cpython-3.12.16-linux-x86_64-gnu/bin/python3.12"
    assert choice["minor"] == "3.12"
    assert choice["environment"] == {"UV_PYTHON_INSTALL_DIR": "/opt/llmfleet/python"}
    assert "Python 3.13, which open-webui 0.12.4 does not support" in choice["reason"]
    notice = py.python_notice(choice, "open_webui")
    assert notice.startswith("open_webui: Python /opt/llmfleet/python/cpython-3.12.16-linux-x86_64-gnu/bin/python3.12 (managed)")


def test_the_mirror_goes_into_uvs_environment() -> None:
    managed = dict(MANAGED, mirror="http://mirror.lan/python-build-standalone")
    choice = py.python_choice("", "vllm", ["3.11", "3.12", "3.13", "3.14"], facts("3.10", arch="arm64"), managed)
    assert choice["environment"] == {"UV_PYTHON_INSTALL_DIR": "/opt/llmfleet/python",
                                     "UV_PYTHON_INSTALL_MIRROR": "http://mirror.lan/python-build-standalone"}
    assert choice["key"] == "cpython-3.12.16-linux-aarch64-gnu"
    assert "llm_host_python_install_mirror" in choice["reason"]


def test_no_system_python_gets_a_managed_cpython() -> None:
    choice = py.python_choice("", "vllm", ["3.11", "3.12"], facts(error="No such file"), MANAGED)
    assert choice["source"] == "managed" and choice["install"]
    assert "no usable /usr/bin/python3 (No such file)" in choice["reason"]


@pytest.mark.parametrize("wanted", ["/opt/python3.12/bin/python3", "3.12"])
def test_an_explicit_setting_wins(wanted: str) -> None:
    probed = facts("3.13", **{"/opt/python3.12/bin/python3": {"version": "3.12", "error": ""}})
    choice = py.python_choice(wanted, "open_webui", OPEN_WEBUI, probed, MANAGED)
    assert (choice["source"], choice["python"], choice["install"], choice["minor"]) == ("inventory", wanted, False, "3.12")
    assert py.python_problems(choice, "open_webui", "Open WebUI", OPEN_WEBUI, probed, "h") == []


def test_an_explicit_setting_out_of_range_is_refused() -> None:
    probed = facts("3.11", **{"/usr/bin/python3.13": {"version": "3.13", "error": ""}})
    path = py.python_choice("/usr/bin/python3.13", "open_webui", OPEN_WEBUI, probed, MANAGED)
    [message] = py.python_problems(path, "open_webui", "Open WebUI", OPEN_WEBUI, probed, "ws1")
    assert "ws1 needs /usr/bin/python3.13 (open_webui_python) to be Python 3.11 or 3.12 (found: 3.13)" in message
    version = py.python_choice("3.10", "open_webui", OPEN_WEBUI, probed, MANAGED)
    [message] = py.python_problems(version, "open_webui", "Open WebUI", OPEN_WEBUI, probed, "ws1")
    assert "open_webui_python is 3.10; Open WebUI supports Python 3.11 or 3.12" in message


def test_macos_keeps_the_roles_own_managed_version() -> None:
    choice = py.python_choice("", "vllm", ["3.12"], {"system": "Darwin", "arch": "arm64"}, MANAGED, "3.12")
    assert (choice["source"], choice["python"], choice["install"]) == ("macos", "3.12", False)


@pytest.mark.parametrize(("version", "uv", "expected"), [
    # A managed version the role does not support either.
    ("3.13.5", "0.13.9", "llm_host_python_version is 3.13.5, which open-webui 0.12.4 does not support either"),
    # One the pinned uv cannot download (3.12's newest it knows is 3.12.16).
    ("3.12.99", "0.13.9", "uv 0.13.9 (llm_host_uv_version) cannot download CPython 3.12.99; set "
                          "llm_host_python_version to one it can, e.g. 3.12.16"),
    ("3.12", "0.13.9", "llm_host_python_version '3.12' is not a release number X.Y.Z"),
])
def test_impossible_choices_are_refused_with_a_message(version: str, uv: str, expected: str) -> None:
    managed = dict(MANAGED, version=version, uv_version=uv)
    choice = py.python_choice("", "open_webui", OPEN_WEBUI, facts("3.13"), managed)
    assert not choice["install"]
    [message] = py.python_problems(choice, "open_webui", "Open WebUI", OPEN_WEBUI, facts("3.13"), "h")
    assert message.startswith("open_webui: the system's /usr/bin/python3 is Python 3.13, which open-webui 0.12.4 "
                              "does not support (it supports 3.11, 3.12), and no other Python can be had: ")
    assert expected in message
    assert message.endswith("Or set open_webui_python to the path of a Python 3.11, 3.12; nothing was changed.")


def test_a_uv_without_a_table_is_not_second_guessed() -> None:
    managed = dict(MANAGED, version="3.12.99", uv_version="0.99.0", downloads=None)
    choice = py.python_choice("", "open_webui", OPEN_WEBUI, facts("3.13"), managed)
    assert choice["install"] and not choice["error"]


def test_the_download_table_is_the_pinned_uvs() -> None:
    pinned = yaml.safe_load((ROOT / "roles/llm_host/defaults/main.yml").read_text())
    uv = Path(sys.executable).parent / "uv"
    version = subprocess.run([str(uv), "--version"], capture_output=True, text=True, check=True).stdout.split()[1]
    assert version == pinned["llm_host_uv_version"], "the test venv's uv is not the pinned one"
    out = subprocess.run([str(uv), "python", "list", "--only-downloads", "--all-versions", "--all-platforms",
                          "--output-format", "json"], capture_output=True, text=True, check=True).stdout
    found: dict[str, list[int]] = {}
    for entry in json.loads(out):
        parts = entry["version_parts"]
        if (entry["implementation"], entry["variant"], entry["os"], entry["arch"], entry["libc"]) == (
                "cpython", "default", "linux", "x86_64", "gnu") and f"{parts['major']}.{parts['minor']}" in UV_PYTHONS[version]:
            found.setdefault(f"{parts['major']}.{parts['minor']}", []).append(parts["patch"])
    assert {minor: sorted(patches) for minor, patches in found.items()} == UV_PYTHONS[version]
    release = pinned["llm_host_python_version"]
    minor, patch = release.rsplit(".", 1)
    assert int(patch) in UV_PYTHONS[version][minor]
