#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Move aside the systemd drop-ins that override what an llmfleet unit sets; keep the ones that add to it."""

from __future__ import annotations

import os
import time

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: llm_host_dropins
short_description: Move aside systemd drop-ins that override an llmfleet unit's settings
description:
  - A drop-in of one of C(units) that sets, in its [Service] section, a key that C(unit_file)'s
    [Service] section sets (C(ExecStart=), C(User=), C(EnvironmentFile=), a sandbox line...) is
    renamed to C(<name>.conf.llmfleet-disabled), which systemd ignores; it is never deleted. A
    drop-in that only adds other settings (C(Environment=HTTPS_PROXY=...), C(Nice=), C(MemoryMax=))
    stays, as does a key listed in C(keep). C(UnsetEnvironment=) counts as a line of
    C(EnvironmentFile=): it removes what the unit's settings file sets.
  - Looked at are the admin's drop-in directories of each unit and, for a template instance
    (C(vllm@a.service)), of its template (C(vllm@.service)), under /etc/systemd/system and
    /run/systemd/system. A drop-in in C(loaded) elsewhere (vendor directories under /usr or /lib, or
    one that applies to other units too, such as C(service.d/)) is never moved; one that overrides
    gives a warning.
  - After moving, systemd is told to reload its units (C(systemctl daemon-reload)); restarting the
    service is the caller's (a handler). Supports check mode: it reports what it would move.
options:
  units:
    description: The units whose drop-ins are looked at, with their suffix (C(ollama.service)).
    type: list
    elements: str
    required: true
  unit_file:
    description: llmfleet's unit file for them; the keys of its [Service] sections are the ones a drop-in may not set.
    type: path
    required: true
  keep:
    description: "[Service] keys a drop-in may set although the unit sets them (documented customisations)."
    type: list
    elements: str
    default: []
  loaded:
    description: Drop-in paths systemd reports for the units (C(systemctl show -p DropInPaths)), for the warnings.
    type: list
    elements: str
    default: []
author: llmfleet
"""

RETURN = r"""
moved: {description: "one dict per drop-in moved aside: path, to, keys (the overriding keys)", type: list, returned: always}
kept: {description: drop-ins of the units that only add settings, type: list, returned: always}
"""

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
        argument_spec={
            "units": {"type": "list", "elements": "str", "required": True},
            "unit_file": {"type": "path", "required": True},
            "keep": {"type": "list", "elements": "str", "default": []},
            "loaded": {"type": "list", "elements": "str", "default": []},
        },
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
