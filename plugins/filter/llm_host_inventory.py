"""The inventory's variables as a user wrote them, checked against every role's argument specs.

playbooks/preflight.yml runs this first on every host (roles/llm_host/tasks/preflight.yml), before any
role reads a setting, so a mistake is reported under the name the user wrote and not under a variable a
role derives from it:

- a variable with a role's prefix (ollama_, open_webui_, vllm_, continue_, llm_host_, llm_firewall_,
  llm_proxy_)
  that no role declares, or a near miss of a declared name (edit distance 2 or less, e.g. olama_models),
  with the nearest declared name; llm_host_own_variables lists a team's own names (shell patterns);
- a value of the wrong type, with its path (vllm_models[0].port): a string where a list or a mapping is
  expected (a role would read it character by character), a quoted number or boolean (the roles compare
  and test them as numbers and booleans; a string "false" is true in a `when:`), a value outside the
  spec's choices, an unknown key of a mapping whose keys the spec lists.

A secret's value (a password, token, key or environment value) is never part of a message. The specs
are read from the collection's roles (roles/*/meta/argument_specs.yml), each entry point's options.
Across the inventory (fleet_problems): two inventory names for one machine, and two exposed hosts at
one advertised address.

Unit-tested in tests/test_llm_host_inventory.py; the bad-inventory cases are in
tests/test_bad_inventories.py.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import json
import os
import re
from collections.abc import Mapping
from typing import Any

import yaml

from ansible_collections.llmfleet.llmfleet.plugins.module_utils.collection import LOADER, ROLES_DIR

PREFIXES = ("ollama_", "open_webui_", "vllm_", "continue_", "llm_host_", "llm_firewall_", "llm_proxy_")
# Set by the roles themselves (set_fact), not by the inventory: what llm_host detected and the team
# server's URLs, what llm_host's paths entry point moved aside (tests/test_llm_host_inventory.py
# finds every such name in the roles and playbooks).
ROLE_FACTS = frozenset({"llm_host_facts", "llm_host_team", "llm_host_paths_moved"})
# Ansible's own names, never near misses of ours.
_ANSIBLE = re.compile(r"^(ansible_|inventory_|group_names$|groups$|playbook_dir$|omit$|role_|play_hosts$)")
# Near misses are looked for in names at least this long (short names are too close to everything).
_NEAR_MIN_LENGTH = 6
_NEAR_DISTANCE = 2
# The YAML words Ansible reads as booleans.
_BOOL_WORDS = frozenset({"yes", "no", "true", "false", "on", "off", "y", "n"})
_SECRET = re.compile(r"(password|passphrase|token|secret|(^|_)keys?)$", re.IGNORECASE)


@functools.lru_cache(maxsize=4)
def declared_options(roles_dir: str = ROLES_DIR) -> dict[str, dict[str, Any]]:
    """Every option of every entry point of the roles in `roles_dir` (the first spec seen wins)."""
    options: dict[str, dict[str, Any]] = {}
    for role in sorted(os.listdir(roles_dir)):
        path = os.path.join(roles_dir, role, "meta", "argument_specs.yml")
        if not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8") as handle:
            specs = (yaml.load(handle, Loader=LOADER) or {}).get("argument_specs") or {}
        for entry in ("main", *sorted(set(specs) - {"main"})):
            for name, spec in ((specs.get(entry) or {}).get("options") or {}).items():
                options.setdefault(name, spec or {})
    return options


def distance(a: str, b: str, limit: int = _NEAR_DISTANCE) -> int:
    """Levenshtein distance of a and b, or limit + 1 as soon as it exceeds limit."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        if min(current) > limit:
            return limit + 1
        previous = current
    return previous[-1]


def nearest(name: str, candidates: Any, limit: int, similar: bool = False) -> str | None:
    """The candidate closest to name within limit edits (ties: the first in sorted order).

    With `similar`, a name further off than that still gets the most similar candidate when one shares
    most of its letters (max_len -> max_model_len).
    """
    best, best_distance = None, limit + 1
    for candidate in sorted(candidates):
        d = distance(name, candidate, limit)
        if d < best_distance:
            best, best_distance = candidate, d
    if best is None and similar:
        close = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.6)
        best = close[0] if close else None
    return best


def _suggestion(name: str, declared: Mapping[str, Any]) -> str:
    # A longer limit for names with a prefix: the prefix already says which role is meant.
    same_role = [d for d in declared if d.startswith(tuple(p for p in PREFIXES if name.startswith(p)))]
    guess = nearest(name, same_role or declared, _NEAR_DISTANCE, similar=True)
    return f"; did you mean {guess}?" if guess else ""


def _secret(path: str) -> bool:
    parts = re.split(r"[.\[\]]+", path)
    return any(_SECRET.search(part) for part in parts if part) or "environment" in path


def _shown(path: str, value: Any) -> str:
    if _secret(path):
        return "(value not shown)"
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _describe(path: str, value: Any) -> str:
    """What the value is, for a message: "the string 'qwen3'", "empty (null)", "a number (value not shown)"."""
    if value is None:
        return "empty (null)"
    kind = ("a boolean" if isinstance(value, bool) else "a number" if isinstance(value, (int, float))
            else "the string" if isinstance(value, str) else "a mapping" if isinstance(value, Mapping)
            else "a list" if isinstance(value, (list, tuple)) else f"a {type(value).__name__}")
    if kind == "the string" and _secret(path):
        return "a string (value not shown)"
    if kind in ("a mapping", "a list") or _secret(path):
        return kind
    return f"{kind} {_shown(path, value)}" if kind == "the string" else f"{kind} ({_shown(path, value)})"


def _is_number_string(value: str) -> bool:
    return re.fullmatch(r"\s*[-+]?(\d+(\.\d*)?|\.\d+)\s*", value) is not None


def check_value(path: str, value: Any, spec: Mapping[str, Any]) -> list[str]:
    """Problems of one value against its spec (type, elements, choices, sub-options), each with the path."""
    kind = spec.get("type", "str")
    problems: list[str] = []
    shown = _shown(path, value)
    what = _describe(path, value)
    # How the fix reads: "port: 8000" for a key, the bare value for a list's element.
    key = None if path.endswith("]") else path.rsplit(".", 1)[-1]
    if kind == "list":
        if not isinstance(value, (list, tuple)):
            example = (f"[{value}]" if isinstance(value, str) and not _secret(path) and value
                       else "[]" if value is None else "[...]")
            why = ": a role would read it character by character" if isinstance(value, str) else ""
            return [f"{path} must be a list, and it is {what}{why}. Write it as a YAML list, e.g. "
                    f"{_fix(key, example)}."]
        element = {"type": spec.get("elements", "raw"), "options": spec.get("options")}
        for index, item in enumerate(value):
            problems += check_value(f"{path}[{index}]", item, element)
        return problems
    if kind == "dict":
        if not isinstance(value, Mapping):
            return [f"{path} must be a mapping (key: value lines), and it is {what}."]
        return problems + _check_options(path, value, spec.get("options"))
    if kind == "bool":
        if isinstance(value, bool):
            return []
        if isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
            word = "true" if value.strip().lower() in ("yes", "true", "on", "y") else "false"
            return [f"{path} is the string {shown}, not a boolean: the roles test it as true or false, and "
                    f"any non-empty string counts as true. Write {_fix(key, word)} without quotes{_json(path, word)}."]
        return [f"{path} must be true or false, and it is {what}."]
    if kind in ("int", "float"):
        wanted = "a whole number" if kind == "int" else "a number"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            if isinstance(value, str) and _is_number_string(value):
                return [f"{path} is the string {shown}, not a number: the roles compare and compute with it as "
                        f"a number. Write {_fix(key, value.strip())} without quotes{_json(path, value.strip())}."]
            return [f"{path} must be {wanted}, and it is {what}."]
        if kind == "int" and isinstance(value, float) and not value.is_integer():
            return [f"{path} must be a whole number, and it is {shown}."]
    elif kind in ("str", "path"):
        if not isinstance(value, str):
            return [f"{path} must be a string, and it is {what}. Put it in quotes."]
    choices = spec.get("choices")
    if choices and value not in choices:
        return [f"{path} is {shown}; it must be one of: {', '.join(str(c) for c in choices)}."]
    return problems


def _fix(key: str | None, value: str) -> str:
    return f"{key}: {value}" if key else value


def _json(path: str, value: str) -> str:
    """How to pass a top-level variable with -e (-e name=value always gives a string)."""
    return f"; with -e, pass JSON: -e '{{\"{path}\": {value}}}'" if re.fullmatch(r"\w+", path) else ""


def _check_options(path: str, value: Mapping[str, Any], options: Mapping[str, Any] | None) -> list[str]:
    if not options:
        return []
    problems = []
    for key in sorted(value, key=str):
        if key not in options:
            guess = nearest(str(key), options, _NEAR_DISTANCE, similar=True)
            hint = f"did you mean {guess}?" if guess else f"its keys are {', '.join(sorted(options))}."
            problems.append(f"{path}.{key} is not a key of {path}: {hint}")
            continue
        problems += check_value(f"{path}.{key}", value[key], options[key] or {})
    for key, spec in options.items():
        if (spec or {}).get("required") and key not in value:
            problems.append(f"{path} lacks {key}, which is required.")
    return problems


def _waits_for_role_facts(error: Exception) -> bool:
    """Whether reading a value failed only because it names what a role publishes later in the run
    (`apiBase: "{{ llm_host_team.ollama_url }}"` in continue_models): the role that reads it checks it then."""
    text = str(error)
    return any(f"'{fact}' is undefined" in text for fact in ROLE_FACTS)


def inventory_problems(host_vars: Mapping[str, Any], own: Any = (), roles_dir: str = ROLES_DIR) -> list[str]:
    """Each problem of the host's variables (see the module's docstring), one message per rule that fails.

    `host_vars` is `hostvars[inventory_hostname]`: what the inventory, group_vars, host_vars and -e
    give the host (role defaults are not in it). `own` is llm_host_own_variables.
    """
    declared = declared_options(roles_dir)
    patterns = [p for p in own if isinstance(p, str)] if isinstance(own, (list, tuple)) else []
    problems: list[str] = []
    for name in sorted(host_vars.keys()):
        if name.startswith("_") or name in ROLE_FACTS or any(fnmatch.fnmatchcase(name, p) for p in patterns):
            continue
        if name in declared:
            # Ansible renders a list or mapping element by element as the check reads it, so an
            # error may come from inside the value too.
            try:
                value = host_vars[name]
                found = check_value(name, value, declared[name])
            except Exception as error:  # an undefined variable in its template, a vault it cannot open
                if _waits_for_role_facts(error):
                    continue
                problems.append(f"{name} cannot be read: {str(error).splitlines()[0][:200]}")
                continue
            problems += found
        elif name.startswith(PREFIXES):
            problems.append(f"{name} is not a setting of any llmfleet role{_suggestion(name, declared)} "
                            "(a variable of the team's own with this prefix goes in llm_host_own_variables).")
        elif len(name) >= _NEAR_MIN_LENGTH and not _ANSIBLE.match(name):
            guess = nearest(name, declared, _NEAR_DISTANCE)
            if guess:
                problems.append(f"{name} looks like a misspelling of {guess}, which it does not set; rename it "
                                "(or list it in llm_host_own_variables if it is the team's own).")
    return problems


# Connections whose target is ansible_host (else the inventory name) and ansible_port; an SSH-like one
# without a port reaches 22.
_SSH_LIKE = frozenset({"", "ssh", "ansible.builtin.ssh", "paramiko", "paramiko_ssh", "ansible.builtin.paramiko_ssh",
                       "smart", "community.general.mitogen_ssh", "mitogen_ssh"})


def _name(value: Any) -> str:
    """A host name as DNS compares it: case-insensitive, the final dot of a fully qualified name dropped."""
    return str(value).strip().lower().rstrip(".")


def _read(host_vars: Any, key: str, default: Any = None) -> Any:
    try:
        value = host_vars.get(key, default) if hasattr(host_vars, "get") else default
    except Exception:  # a template this check cannot render: the host's own checks name it
        return default
    return default if value is None else value


def _target(name: str, host_vars: Any) -> tuple[str, str]:
    """(address, port) the controller reaches `name` at: ansible_host (else the name) and the port."""
    connection = str(_read(host_vars, "ansible_connection", "") or "")
    port = _read(host_vars, "ansible_port", _read(host_vars, "ansible_ssh_port", ""))
    if port in ("", None) and connection in _SSH_LIKE:
        port = 22
    return _name(_read(host_vars, "ansible_host", "") or name), str(port)


def _exposed(host_vars: Any) -> bool:
    value = _read(host_vars, "llm_host_expose", False)
    return value is True or str(value).strip().lower() in {"true", "yes", "on", "1"}


def fleet_problems(hostvars: Mapping[str, Any], hosts: Any) -> dict[str, list[str]]:
    """What hosts of the inventory share that no two hosts may share: {host: [message, ...]}, hosts
    without a collision left out.

    `hosts` are the inventory's llmfleet hosts (the groups the playbooks run on), `hostvars` Ansible's.
    - One machine under two inventory names: the same ansible_host (else name) and port, compared as DNS
      does (case, a final dot). Each run would give it the other host's settings in turn; it never
      converges. Names that differ but resolve to one address are not seen (no DNS lookups here).
    - Two exposed hosts at one advertised address (llm_host_advertised_name, else ansible_host, else the
      name): the team's clients reach one of them under either name.
    Each host of a pair reports the other. Computed once per run for the whole inventory (a run_once
    task): each host's variables are read once, where a check per host reading every other host's would
    cost the controller hosts² variable lookups.
    """
    names = [h for h in dict.fromkeys(hosts or []) if isinstance(h, str)]
    machines: dict[tuple[str, str], list[str]] = {}
    addresses: dict[str, list[str]] = {}
    for name in names:
        host_vars = hostvars[name]
        machines.setdefault(_target(name, host_vars), []).append(name)
        if _exposed(host_vars):
            address = _name(_read(host_vars, "llm_host_advertised_name", "") or _read(host_vars, "ansible_host", "")
                            or name)
            addresses.setdefault(address, []).append(name)
    found: dict[str, list[str]] = {}
    for (address, port), group in machines.items():
        for me in group if len(group) > 1 else []:
            found.setdefault(me, []).append(
                f"{me} and {', '.join(h for h in group if h != me)} are one machine "
                f"({address}{f', port {port}' if port else ''}): under two inventory names it gets each host's "
                "settings in turn and never converges. Keep one of them in the inventory, or give each its own "
                "ansible_host.")
    machine_of = {name: group for group in machines.values() for name in group}
    for address, group in addresses.items():
        for me in group:
            rivals = [h for h in group if h != me and h not in machine_of[me]]
            if rivals:
                found.setdefault(me, []).append(
                    f"{me} and {', '.join(rivals)} are exposed at one address, {address}: the team's clients would "
                    "reach one of them under either name. Give each its own llm_host_advertised_name (the name its "
                    "clients use).")
    return found


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"llm_host_inventory_problems": inventory_problems, "llm_host_fleet_problems": fleet_problems}
