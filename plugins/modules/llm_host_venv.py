#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Whether a virtualenv llmfleet installed is still the one it installed, and the record that says so."""

from __future__ import annotations

import base64
import glob
import hashlib
import json
import os
import re
import tempfile
from typing import Any

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: llm_host_venv
short_description: Inspect a virtualenv against its install record, or write the record
description:
  - >-
    O(state=inspected) reads the virtualenv from the file system, without starting its Python: whether
    its interpreter is there, the installed version of O(package), the install record O(marker) (the
    O(spec) it was installed from and the distributions it then held), and whether each of
    O(entry_points) is executable and holds what its installer wrote.
  - >-
    It lists every problem in RV(problems): no interpreter, or one built on another interpreter than
    O(python); O(package) missing or at another version; a recorded distribution missing or at another
    version (after C(uv pip uninstall) or C(pip install x==other)); an entry point altered or not
    executable; no record, or a record of another spec. Distributions installed since are no problem.
  - >-
    O(state=recorded) writes the record after a successful install: O(spec) and the distributions the
    virtualenv now holds (C(name==version)), owned by the user the module runs as (root, in the roles),
    mode C(0644), replaced atomically; changed when it differs.
  - >-
    For the roles that install into virtualenvs (open_webui, vllm), what to install again and how to
    repair in place (RV(pins), RV(reinstall)) is decided from one module call on a run with nothing to
    do.
author:
  - llmfleet maintainers
options:
  path:
    description:
      - The virtualenv.
    type: path
    required: true
  spec:
    description:
      - >-
        What the virtualenv must have been installed from, compared key by key with the record's.
    type: dict
    required: true
  package:
    description:
      - The distribution the virtualenv is for (C(open-webui), C(vllm)).
    type: str
    required: true
  version:
    description:
      - The version O(package) must have. When unset, any version it was installed at.
    type: str
  entry_points:
    description:
      - >-
        Scripts in the virtualenv's C(bin) that must be executable and as the installer of O(package)
        wrote them.
    type: list
    elements: str
    default: []
  marker:
    description:
      - The record's file name, in the virtualenv.
    type: str
    default: .llmfleet-install.json
  link:
    description:
      - A link (the running version's C(current)) whose target to report as RV(link_target).
    type: path
  python:
    description:
      - >-
        The interpreter the virtualenv must be built on (what C(uv venv --python) got; the virtualenv's
        C(bin/python) links to it). A virtualenv built on another interpreter, or on another version than
        O(python_version) by its C(pyvenv.cfg) (the system's Python upgraded, or the role now choosing a
        uv-managed one), is not usable: it is to be made again. When unset, not compared.
    type: str
  python_version:
    description:
      - The major.minor version O(python) must have. When unset or empty, not compared.
    type: str
  state:
    description:
      - V(inspected) reads the virtualenv, V(recorded) writes its record.
    type: str
    choices: [inspected, recorded]
    default: inspected
attributes:
  check_mode:
    description: >-
      O(state=inspected) runs as in a real run (it only reads); O(state=recorded) reports whether the
      record would change and writes nothing.
    support: full
  diff_mode:
    description: O(state=recorded) shows the record before and after.
    support: full
extends_documentation_fragment:
  - llmfleet.llmfleet.attributes.posix
"""

EXAMPLES = r"""
- name: Inspect the virtualenv of open-webui 0.12.4
  llmfleet.llmfleet.llm_host_venv:
    path: /opt/llmfleet/open-webui/0.12.4
    package: open-webui
    version: 0.12.4
    spec: {version: 0.12.4, torch_backend: cpu}
    entry_points: [open-webui]
    link: /opt/llmfleet/open-webui/current
    python: /usr/bin/python3.11
    python_version: "3.11"
  register: __open_webui_venv_state

- name: Record what it was installed from, and what it holds
  llmfleet.llmfleet.llm_host_venv:
    path: /opt/llmfleet/open-webui/0.12.4
    package: open-webui
    spec: {version: 0.12.4, torch_backend: cpu}
    state: recorded
"""

RETURN = r"""
problems:
  description: Why the virtualenv is not the one the record says was installed; empty when it is.
  type: list
  elements: str
  returned: when state=inspected
  sample: ["open-webui is 0.12.3, not 0.12.4", "bin/open-webui differs from what was installed"]
install_needed:
  description: Whether O(package) must be installed (again) into it, that is RV(problems) is not empty.
  type: bool
  returned: when state=inspected
usable:
  description: >-
    Whether its interpreter is there and O(package) is installed at O(version) (it may still need
    repairing).
  type: bool
  returned: when state=inspected
record_needed:
  description: >-
    Whether there are no problems but the record holds no list of distributions (an older llmfleet wrote
    it).
  type: bool
  returned: when state=inspected
version:
  description: The installed version of O(package), or null.
  type: str
  returned: when state=inspected
  sample: 0.12.4
pins:
  description:
    - >-
      The recorded distributions as C(name==version), when the record is of this O(spec): constraints
      that make an install restore what drifted. Empty otherwise.
  type: list
  elements: str
  returned: when state=inspected
  sample: [open-webui==0.12.4, fastapi==0.115.12]
reinstall:
  description: >-
    The distributions whose files must be written again (an entry point of O(package) altered or not
    executable).
  type: list
  elements: str
  returned: when state=inspected
link_target:
  description: Where O(link) points, or V(none).
  type: str
  returned: when state=inspected and link is set
  sample: /opt/llmfleet/open-webui/0.12.4
path:
  description: The record file.
  type: str
  returned: when state=recorded
  sample: /opt/llmfleet/open-webui/0.12.4/.llmfleet-install.json
"""

# The options as AnsibleModule takes them; DOCUMENTATION's options say the same (tests/test_module_docs.py).
ARGUMENT_SPEC = {
    "path": {"type": "path", "required": True},
    "spec": {"type": "dict", "required": True},
    "package": {"type": "str", "required": True},
    "version": {"type": "str"},
    "entry_points": {"type": "list", "elements": "str", "default": []},
    "marker": {"type": "str", "default": ".llmfleet-install.json"},
    "link": {"type": "path"},
    "python": {"type": "str"},
    "python_version": {"type": "str"},
    "state": {"type": "str", "choices": ["inspected", "recorded"], "default": "inspected"},
}

DIST_INFO = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)\.dist-info$")


def normalise(name: str) -> str:
    """A distribution name as it is compared (PEP 503), with the underscores of dist-info names."""
    return re.sub(r"[-_.]+", "_", name).lower()


def site_packages(venv: str) -> list[str]:
    return sorted(glob.glob(os.path.join(venv, "lib", "python*", "site-packages")))


def distributions(venv: str) -> dict[str, tuple[str, str]]:
    """normalised name -> (version, dist-info directory) of what the virtualenv holds."""
    found = {}
    for directory in site_packages(venv):
        for entry in os.listdir(directory):
            match = DIST_INFO.match(entry)
            if match:
                found[normalise(match["name"])] = (match["version"], os.path.join(directory, entry))
    return found


def _recorded_hash(record_file: str, script: str) -> str | None:
    """The urlsafe-base64 sha256 the installer wrote in RECORD for bin/<script>, or None."""
    try:
        with open(record_file, encoding="utf-8") as handle:
            for line in handle:
                path, _, rest = line.rstrip("\n").partition(",")
                if path.replace("\\", "/").endswith("/bin/" + script) and rest.startswith("sha256="):
                    return rest.split(",", 1)[0][len("sha256="):]
    except OSError:
        return None
    return None


def _file_hash(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()


def read_marker(path: str) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as handle:
            marker = json.load(handle)
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def built_on(venv: str) -> tuple[str, str]:
    """The interpreter bin/python links to, and the major.minor version pyvenv.cfg records."""
    try:
        target = os.readlink(os.path.join(venv, "bin", "python"))
    except OSError:
        target = ""
    version = ""
    try:
        with open(os.path.join(venv, "pyvenv.cfg"), encoding="utf-8") as handle:
            for line in handle:
                key, _, value = line.partition("=")
                if key.strip() in ("version_info", "version"):
                    version = ".".join(value.strip().split(".")[:2])
    except OSError:
        pass
    return target, version


def inspect(venv: str, spec: dict[str, Any], package: str, version: str | None, entry_points: list[str],
            marker_name: str, wanted_python: str | None = None, wanted_version: str | None = None) -> dict[str, Any]:
    problems: list[str] = []
    python = os.path.join(venv, "bin", "python")
    python_ok = os.path.isfile(python) and os.access(python, os.X_OK)
    if not os.path.isdir(venv):
        problems.append(f"{venv} is missing")
    elif not python_ok:
        problems.append(f"its Python is missing or cannot run ({python} -> {os.path.realpath(python)})")
    elif wanted_python:
        target, found = built_on(venv)
        if target != wanted_python or (wanted_version and found != wanted_version):
            problems.append(f"it is built on {target or '?'} (Python {found or '?'}), not on {wanted_python}"
                            + (f" (Python {wanted_version})" if wanted_version else ""))
            python_ok = False
    held = distributions(venv) if os.path.isdir(venv) else {}
    installed = held.get(normalise(package))
    installed_version = installed[0] if installed else None
    if os.path.isdir(venv) and installed is None:
        problems.append(f"{package} is not installed")
    elif installed is not None and version is not None and installed_version != version:
        problems.append(f"{package} is {installed_version}, not {version}")

    marker = read_marker(os.path.join(venv, marker_name))
    recorded = {key: value for key, value in (marker or {}).items() if key != "dists"}
    same_spec = marker is not None and recorded == spec
    if os.path.isdir(venv) and marker is None:
        problems.append("no record of a finished install")
    elif marker is not None and not same_spec:
        changed = sorted(key for key in set(recorded) | set(spec) if recorded.get(key) != spec.get(key))
        problems.append(f"installed with other settings ({', '.join(changed)})")

    dists = (marker or {}).get("dists")
    pins: list[str] = []
    if same_spec and isinstance(dists, list):
        pins = [str(pin) for pin in dists]
        for pin in pins:
            name, _, pinned = pin.partition("==")
            now = held.get(normalise(name))
            if now is None:
                problems.append(f"{name} {pinned} is missing")
            elif now[0] != pinned:
                problems.append(f"{name} is {now[0]}, was installed as {pinned}")

    reinstall: list[str] = []
    for script in entry_points if os.path.isdir(venv) else []:
        path = os.path.join(venv, "bin", script)
        wanted = _recorded_hash(os.path.join(installed[1], "RECORD"), script) if installed else None
        if not os.path.isfile(path):
            problem = f"bin/{script} is missing"
        elif not os.access(path, os.X_OK):
            problem = f"bin/{script} is not executable"
        elif wanted is not None and _file_hash(path) != wanted:
            problem = f"bin/{script} differs from what was installed"
        else:
            continue
        problems.append(problem)
        if installed is not None and package not in reinstall:
            reinstall.append(package)

    return {
        "problems": problems,
        "install_needed": bool(problems),
        "usable": python_ok and installed is not None and (version is None or installed_version == version),
        "record_needed": not problems and same_spec and not isinstance(dists, list),
        "version": installed_version,
        "pins": pins,
        "reinstall": reinstall,
    }


def record(module: AnsibleModule, venv: str, spec: dict[str, Any], marker_name: str) -> None:
    held = distributions(venv)
    content = json.dumps(dict(spec, dists=sorted(f"{name}=={version}" for name, (version, _) in held.items())),
                         indent=4, sort_keys=True) + "\n"
    path = os.path.join(venv, marker_name)
    try:
        with open(path, encoding="utf-8") as handle:
            current = handle.read()
    except OSError:
        current = None
    result: dict[str, Any] = {"changed": current != content, "path": path}
    if result["changed"] and module._diff:
        result["diff"] = {"before": current or "", "after": content, "before_header": path, "after_header": path}
    if result["changed"] and not module.check_mode:
        handle, temporary = tempfile.mkstemp(dir=venv, prefix=".llmfleet-")
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(content)
        os.chmod(temporary, 0o644)
        os.rename(temporary, path)
    module.exit_json(**result)


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        supports_check_mode=True,
    )
    params = module.params
    # The spec as JSON sees it, so that it compares equal to the record read back.
    spec = json.loads(json.dumps(params["spec"]))
    if params["state"] == "recorded":
        if not os.path.isdir(params["path"]):
            if module.check_mode:
                module.exit_json(changed=True, path=os.path.join(params["path"], params["marker"]))
            module.fail_json(msg=f"{params['path']} is missing: nothing to record")
        record(module, params["path"], spec, params["marker"])
    result = inspect(params["path"], spec, params["package"], params["version"], params["entry_points"],
                     params["marker"], params["python"], params["python_version"])
    if params["link"]:
        result["link_target"] = os.readlink(params["link"]) if os.path.islink(params["link"]) else "none"
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
