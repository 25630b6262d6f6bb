"""Which Python a role's virtualenv is built on (open_webui, vllm): one decision, one home.

llm_host runs first on every host, so this filter is loaded for the roles after it. The rule
(README of llm_host, "Python"):

- an interpreter the inventory names (`<role>_python`: a path, or a version uv finds already
  installed) is used as given;
- otherwise, on Linux, the system's /usr/bin/python3 when its version is one the pinned release
  supports (the role's list, taken from the package's Requires-Python: tests/test_python_ranges.py);
- otherwise a uv-managed CPython of llm_host_python_version, which llm_host installs (tasks_from
  python) root-owned and world-readable under llm_host_prefix, from llm_host_python_install_mirror
  when the inventory names one. The virtualenv is then made from its absolute path, so uv never
  downloads anything while making it.

macOS keeps the role's own default (a uv-managed version uv installs under the role's install root
when it makes the virtualenv): its /usr/bin/python3 is never used.

Unit-tested in tests/test_llm_host_python.py.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_RELEASE = re.compile(r"([0-9]+)\.([0-9]+)\.([0-9]+)")
_MINOR = re.compile(r"^([0-9]+\.[0-9]+)")
# python-build-standalone's platform part of uv's key and directory names, by llm_host_facts' arch.
_LINUX_PLATFORMS = {"amd64": "linux-x86_64-gnu", "arm64": "linux-aarch64-gnu"}


def _ranges(supported: list[str]) -> str:
    return ", ".join(supported)


def python_choice(wanted: Any, role: str, supported: list[str], facts: Mapping[str, Any],
                  managed: Mapping[str, Any], darwin_default: str = "") -> dict[str, Any]:
    """The interpreter for `role`'s virtualenv, and why.

    wanted: the role's `<role>_python` ("" lets this decide). supported: the major.minor versions the
    pinned release supports. facts: llm_host_facts (system, arch, pythons: path -> {version, error}).
    managed: {system_python (llm_host_system_python, default /usr/bin/python3), version
    (llm_host_python_version), install_dir, mirror, uv_version, downloads: the
    versions the pinned uv can download by minor ({"3.12": [0, 1, ...]}, or None when the role has no
    table for that uv), package (what the role installs, for the messages)}.

    Returns {source: inventory|system|managed|macos, python: what `uv venv --python` gets, version,
    minor (its major.minor, as the virtualenv's pyvenv.cfg has it; "" when unknown), install (llm_host
    must install it first), install_dir, key (uv's name of the managed build),
    environment (for `uv python install`), reason, error ("" when it can be done)}.
    """
    variable = f"{role}_python"
    package = managed.get("package") or role
    choice: dict[str, Any] = {"source": "", "python": "", "version": "", "minor": "", "install": False,
                              "install_dir": managed.get("install_dir", ""), "key": "", "environment": {},
                              "reason": "", "error": ""}
    system = facts.get("system", "")
    if wanted:
        probed = (facts.get("pythons") or {}).get(str(wanted)) or {}
        version = str(probed.get("version") or (_MINOR.match(str(wanted)) or [None, ""])[1])
        choice.update(source="inventory", python=str(wanted), version=version, minor=version,
                      reason=f"{variable} is set to {wanted}")
        return choice
    if system == "Darwin":
        choice.update(source="macos", python=darwin_default, version=darwin_default, minor=darwin_default,
                      reason=f"macOS: a uv-managed CPython {darwin_default} (the system's is not used)")
        return choice

    system_path = str(managed.get("system_python") or "/usr/bin/python3")
    probed = (facts.get("pythons") or {}).get(system_path) or {}
    found = str(probed.get("version") or "")
    if found and found in supported:
        choice.update(source="system", python=system_path, version=found, minor=found,
                      reason=f"the system's {system_path} is Python {found}, which {package} supports "
                             f"({_ranges(supported)})")
        return choice

    why = (f"the system's {system_path} is Python {found}, which {package} does not support "
           f"(it supports {_ranges(supported)})" if found
           else f"the system has no usable {system_path} ({probed.get('error') or 'not found'})")
    version = str(managed.get("version", ""))
    release = _RELEASE.fullmatch(version)
    platform = _LINUX_PLATFORMS.get(str(facts.get("arch", "")))
    downloads = managed.get("downloads") if isinstance(managed.get("downloads"), Mapping) else None
    uv_version = managed.get("uv_version", "")
    problem = ""
    if not release:
        problem = (f"llm_host_python_version {version!r} is not a release number X.Y.Z; set it to one "
                   f"{package} supports ({_ranges(supported)}), e.g. 3.12.16")
    elif f"{release[1]}.{release[2]}" not in supported:
        problem = (f"llm_host_python_version is {version}, which {package} does not support either (it supports "
                   f"{_ranges(supported)}); set llm_host_python_version to such a release")
    elif platform is None:
        problem = f"uv has no CPython build for this architecture ({facts.get('arch')})"
    elif downloads is not None and int(release[3]) not in (downloads.get(f"{release[1]}.{release[2]}") or []):
        newest = (downloads.get(f"{release[1]}.{release[2]}") or [])
        hint = f"{release[1]}.{release[2]}.{max(newest)}" if newest else "another version"
        problem = (f"uv {uv_version} (llm_host_uv_version) cannot download CPython {version}; set "
                   f"llm_host_python_version to one it can, e.g. {hint}")
    if problem:
        choice.update(source="managed", version=version, reason=why,
                      error=(f"{role}: {why}, and no other Python can be had: {problem}. Or set {variable} to the "
                             f"path of a Python {_ranges(supported)}; nothing was changed."))
        return choice

    key = f"cpython-{version}-{platform}"
    install_dir = str(managed.get("install_dir", ""))
    environment = {"UV_PYTHON_INSTALL_DIR": install_dir}
    mirror = str(managed.get("mirror") or "")
    if mirror:
        environment["UV_PYTHON_INSTALL_MIRROR"] = mirror
    source = f"{mirror} (llm_host_python_install_mirror)" if mirror else "uv's default source"
    choice.update(source="managed", version=version, minor=f"{release[1]}.{release[2]}", install=True, key=key,
                  environment=environment,
                  python=f"{install_dir}/{key}/bin/python{release[1]}.{release[2]}",
                  reason=f"{why}: a uv-managed CPython {version} (llm_host_python_version) in {install_dir}, from {source}")
    return choice


def python_problems(choice: Mapping[str, Any], role: str, name: str, supported: list[str], facts: Mapping[str, Any],
                    host: str) -> list[str]:
    """Why the interpreter `python_choice` gave cannot be used, one message each (empty: it can).

    An interpreter the inventory names must be a supported version: a version by its number, a path
    by what llm_host's probe read from it (llm_host_facts.pythons, Linux).
    """
    if choice.get("error"):
        return [str(choice["error"])]
    if choice.get("source") != "inventory":
        return []
    variable = f"{role}_python"
    wanted = str(choice.get("python", ""))
    if not wanted.startswith("/"):
        if choice.get("version") and choice["version"] not in supported:
            return [f"{role}: {variable} is {wanted}; {name} supports Python {' or '.join(supported)}. Set {variable} "
                    "to one of those (or the path of such an interpreter), or leave it empty to let llmfleet choose "
                    "(the system Python when it is one of those, else a uv-managed CPython)."]
        return []
    if facts.get("system") != "Linux":
        return []
    probed = (facts.get("pythons") or {}).get(wanted)
    if probed is None:
        return []
    if probed.get("version") in supported:
        return []
    found = probed.get("version") or probed.get("error") or "no version"
    return [f"{role}: {host} needs {wanted} ({variable}) to be Python {' or '.join(supported)} (found: {found}). "
            f"Set {variable} to the path of such an interpreter, or leave it empty to let llmfleet choose; "
            "nothing was changed."]


def python_notice(choice: Mapping[str, Any], role: str) -> str:
    """The preflight's line saying which Python the role's virtualenv is built on, and why."""
    return f"{role}: Python {choice.get('python')} ({choice.get('source')}): {choice.get('reason')}."


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"llm_host_python_choice": python_choice, "llm_host_python_problems": python_problems,
                "llm_host_python_notice": python_notice}
