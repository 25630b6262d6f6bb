#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Move aside the systemd drop-ins that override what an llmfleet unit sets; keep the ones that add to it."""

from __future__ import annotations

import os
import time

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: llm_host_dropins
short_description: Move aside the systemd drop-ins that override an llmfleet unit's settings
description:
  - >-
    A drop-in of one of O(units) that sets, in its [Service] section, a key that the [Service] section of
    O(unit_file) sets (C(ExecStart=), C(User=), C(EnvironmentFile=), a sandboxing setting...) is renamed
    to C(<name>.conf.llmfleet-disabled), which systemd ignores; it is never deleted. A drop-in that only
    adds other settings (C(Environment=HTTPS_PROXY=...), C(Nice=), C(MemoryMax=)) stays, as does one
    whose keys are all in O(keep). C(UnsetEnvironment=) counts as an C(EnvironmentFile=) line, since it
    removes what the unit's environment file sets.
  - >-
    It looks at the administrator's drop-in directories of each unit and, for a template instance
    (C(vllm@a.service)), of its template (C(vllm@.service)), under C(/etc/systemd/system) and
    C(/run/systemd/system). A drop-in of O(loaded) found elsewhere (a vendor directory under C(/usr) or
    C(/lib), or one that applies to other units too, such as C(service.d/)) is never moved; one that
    overrides gives a warning.
  - >-
    After moving, it has systemd reload its units (C(systemctl daemon-reload)); restarting the service is
    the caller's job (a handler).
author:
  - llmfleet maintainers
options:
  units:
    description:
      - The units whose drop-ins are looked at, with their suffix (C(ollama.service)).
    type: list
    elements: str
    required: true
  unit_file:
    description:
      - >-
        llmfleet's unit file for O(units); the keys of its [Service] sections are those a drop-in may not
        set.
    type: path
    required: true
  keep:
    description:
      - >-
        [Service] keys a drop-in may set although the unit sets them (the documented customisations).
    type: list
    elements: str
    default: []
  loaded:
    description:
      - >-
        The drop-in paths systemd reports for the units (C(systemctl show -p DropInPaths)); those not in
        the administrator's directories are only warned about.
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    description: Reports what it would move, moves nothing.
    support: full
  diff_mode:
    description: Lists the drop-ins in effect before and where they were moved.
    support: full
  platform:
    description: Linux hosts with systemd.
    support: full
    platforms: linux
"""

EXAMPLES = r"""
- name: Move aside the drop-ins that override ollama.service's settings
  llmfleet.llmfleet.llm_host_dropins:
    units: [ollama.service]
    unit_file: /etc/systemd/system/ollama.service
    keep: [LimitNOFILE]
  notify: Restart ollama

- name: Look at a vLLM instance and its template, warning about vendor drop-ins systemd loads
  llmfleet.llmfleet.llm_host_dropins:
    units: [vllm@coder.service]
    unit_file: /etc/systemd/system/vllm@.service
    loaded: [/usr/lib/systemd/system/service.d/10-timeout-abort.conf]
"""

RETURN = r"""
moved:
  description: >-
    One mapping per drop-in moved aside (in check mode, that would be): C(path), C(to) and C(keys) (the
    keys it overrode).
  type: list
  elements: dict
  returned: always
  sample: [{path: /etc/systemd/system/ollama.service.d/override.conf,
            to: /etc/systemd/system/ollama.service.d/override.conf.llmfleet-disabled, keys: [ExecStart]}]
kept:
  description: The drop-ins of the units that only add settings, which stay.
  type: list
  elements: str
  returned: always
  sample: [/etc/systemd/system/ollama.service.d/proxy.conf]
"""

# The options as AnsibleModule takes them; DOCUMENTATION's options say the same (tests/test_module_docs.py).
ARGUMENT_SPEC = {
    "units": {"type": "list", "elements": "str", "required": True},
    "unit_file": {"type": "path", "required": True},
    "keep": {"type": "list", "elements": "str", "default": []},
    "loaded": {"type": "list", "elements": "str", "default": []},
}

ADMIN_ROOTS = ("/etc/systemd/system", "/run/systemd/system")
# Drop-in keys that override another key of the unit: UnsetEnvironment= removes variables the
# unit's EnvironmentFile= sets (a drop-in's Environment= cannot: EnvironmentFile= wins over it).
OVERRIDES = {"UnsetEnvironment": "EnvironmentFile"}
SUFFIX = ".llmfleet-disabled"


def service_keys(text: str) -> set[str]:
    """The keys set in the [Service] sections of a unit file or drop-in (an empty assignment counts)."""
    keys: set[str] = set()
    section = None
    continued = False
    for raw in text.splitlines():
        line = raw.strip()
        if continued:
            continued = line.endswith("\\")
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            continue
        continued = line.endswith("\\")
        if section == "Service" and "=" in line:
            keys.add(line.split("=", 1)[0].strip())
    return keys


def template_of(unit: str) -> str | None:
    """vllm@a.service -> vllm@.service; None for a unit that is not an instance."""
    name, sep, rest = unit.partition("@")
    instance, dot, suffix = rest.rpartition(".")
    if not sep or not instance or not dot:
        return None
    return f"{name}@.{suffix}"


def own_dropins(units: list[str]) -> list[str]:
    """The *.conf files in the admin's drop-in directories of the units and their templates."""
    names = []
    for unit in units:
        for name in (template_of(unit), unit):
            if name and name not in names:
                names.append(name)
    found = []
    for root in ADMIN_ROOTS:
        for name in names:
            directory = os.path.join(root, name + ".d")
            try:
                entries = sorted(os.listdir(directory))
            except OSError:
                continue
            found.extend(os.path.join(directory, entry) for entry in entries if entry.endswith(".conf"))
    return found


def read(path: str) -> str:
    """A drop-in's text (through a symlink; /dev/null and unreadable files read as empty)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


def aside(path: str) -> str:
    """The name a drop-in is moved to: <name>.conf.llmfleet-disabled, dated when that is taken."""
    target = path + SUFFIX
    if os.path.lexists(target):
        target = f"{target}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    return target


def overriding_keys(dropin_text: str, ours: set[str]) -> list[str]:
    """The drop-in's [Service] keys that override one of ours."""
    return sorted(key for key in service_keys(dropin_text) if OVERRIDES.get(key, key) in ours)


def plan(
    units: list[str], unit_file_text: str, keep: list[str], loaded: list[str]
) -> tuple[list[dict], list[str], list[str]]:
    """What to move (path, to, keys), what stays, and the warnings for drop-ins that are not ours to move."""
    ours = service_keys(unit_file_text) - set(keep)
    moves, kept, warnings = [], [], []
    own = own_dropins(units)
    for path in own:
        overriding = overriding_keys(read(path), ours)
        if overriding:
            moves.append({"path": path, "to": aside(path), "keys": overriding})
        else:
            kept.append(path)
    for path in loaded:
        if path in own:
            continue
        overriding = overriding_keys(read(path), ours)
        if overriding:
            warnings.append(
                f"{path} overrides {', '.join(k + '=' for k in overriding)} of {', '.join(units)}; it is not moved "
                "(a vendor drop-in, or one that applies to other units too): remove it or move those settings out")
    return moves, kept, warnings


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        supports_check_mode=True,
    )
    params = module.params
    moves, kept, warnings = plan(params["units"], read(params["unit_file"]), params["keep"], params["loaded"])
    for warning in warnings:
        module.warn(warning)
    if not module.check_mode:
        for done, move in enumerate(moves):
            try:
                os.rename(move["path"], move["to"])
            except OSError as err:
                module.fail_json(msg=f"could not move {move['path']} aside to {move['to']}: {err}",
                                 changed=done > 0, moved=moves[:done])
        if moves:
            # systemd forgets the moved drop-ins at once, so a start later in the run goes without them.
            module.run_command(["systemctl", "daemon-reload"], check_rc=True)
    module.exit_json(
        changed=bool(moves),
        moved=moves,
        kept=kept,
        msg="; ".join(f"moved {m['path']} to {m['to']} (it set {', '.join(m['keys'])})" for m in moves),
        diff={
            "before": "".join(m["path"] + "\n" for m in moves),
            "after": "".join(m["to"] + "\n" for m in moves),
            "before_header": "drop-ins in effect",
            "after_header": "moved aside",
        },
    )


if __name__ == "__main__":
    main()
