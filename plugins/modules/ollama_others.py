#!/usr/bin/python
# -*- coding: utf-8 -*-
"""macOS: find every Ollama that is not this role's launchd job, and stop it so the role's job takes over."""

from __future__ import annotations

import os
import pwd
import re
import signal
import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: ollama_others
short_description: Stop an Ollama on macOS that is not the role's own, and keep it from coming back
description:
  - >-
    Looks for every Ollama that is not the role's launchd job (O(own_label)): the Ollama app (its login
    item C(com.ollama.ollama), its bundle C(com.electron.ollama), and the C(ollama serve) it runs),
    Homebrew's service (C(homebrew.mxcl.ollama), a LaunchAgent of the account that started it or, after
    C(sudo brew services start), a LaunchDaemon), and an C(ollama serve) started by hand.
  - >-
    Reads C(lsof) for the listener on O(port), C(ps) for the processes, and C(launchctl list),
    C(launchctl print gui/<uid>/<label>) and C(launchctl print-disabled gui/<uid>) for the jobs.
  - >-
    Takes over: boots the other launchd jobs out, sends SIGTERM to the app and to every other Ollama
    server (SIGKILL to one still holding the port after O(wait) seconds), and disables the app's login
    item and Homebrew's agent (C(launchctl disable), which C(launchctl enable) or C(brew services start)
    undo), so neither holds the port again at the next login. Nothing is deleted: the app, Homebrew's
    files and every model store stay.
  - >-
    Fails, changing nothing, when the port is held by a program that is not an Ollama.
author:
  - llmfleet maintainers
options:
  port:
    description:
      - The port the role's Ollama listens on.
    type: int
    required: true
  own_label:
    description:
      - The label of the role's launchd job (in the system domain).
    type: str
    required: true
  users:
    description:
      - >-
        Accounts whose login items to look at, besides the owners of the Ollama processes found.
    type: list
    elements: str
    default: []
  models_path:
    description:
      - The role's model store, to say in the report where another server's models are.
    type: str
    default: ""
  apps:
    description:
      - Where the Ollama app may be installed (C(~) is each account's home).
    type: list
    elements: str
    default: [/Applications/Ollama.app, ~/Applications/Ollama.app]
  wait:
    description:
      - Seconds to wait for a stopped server to free the port.
    type: int
    default: 15
attributes:
  check_mode:
    description: Reports what it would stop (changed) and changes nothing.
    support: full
  diff_mode:
    description: Shows the other Ollamas found and what the run does about them.
    support: full
extends_documentation_fragment:
  - llmfleet.llmfleet.attributes.macos
notes:
  - >-
    Not run in CI, which has no macOS: its parsing and decisions are unit-tested with outputs written
    from the tools' documented formats (tests/fixtures/macos/).
"""

EXAMPLES = r"""
- name: Stop any other Ollama, so the role's launchd job gets the port
  llmfleet.llmfleet.ollama_others:
    port: 11434
    own_label: com.llmfleet.ollama
    users: [alice]
    models_path: /Users/alice/.ollama/models
    apps: [/Applications/Ollama.app, ~/Applications/Ollama.app]
  register: __ollama_others
"""

RETURN = r"""
found:
  description: What was found, one sentence each (empty when only the role's own server runs).
  type: list
  elements: str
  returned: always
actions:
  description: What was (in check mode, would be) done, as the commands it runs.
  type: list
  elements: str
  returned: always
  sample: [launchctl bootout gui/501/com.ollama.ollama, kill -TERM 812, launchctl disable gui/501/com.ollama.ollama]
taking_over:
  description: Whether another Ollama was (would be) stopped, not only kept from starting at the next login.
  type: bool
  returned: always
"""

# The options as AnsibleModule takes them; DOCUMENTATION's options say the same (tests/test_module_docs.py).
ARGUMENT_SPEC = {
    "port": {"type": "int", "required": True},
    "own_label": {"type": "str", "required": True},
    "users": {"type": "list", "elements": "str", "default": []},
    "models_path": {"type": "str", "default": ""},
    "apps": {"type": "list", "elements": "str", "default": ["/Applications/Ollama.app", "~/Applications/Ollama.app"]},
    "wait": {"type": "int", "default": 15},
}

# launchd labels of the other Ollamas: the app's login item and Homebrew's service.
APP_LABEL = "com.ollama.ollama"
BREW_LABEL = "homebrew.mxcl.ollama"
APP_MARK = "/Ollama.app/Contents/"


def parse_lsof(text: str) -> list[dict[str, Any]]:
    """`lsof -nP -iTCP:<port> -sTCP:LISTEN`: one entry per listening process (command, pid, user)."""
    seen: dict[int, dict[str, Any]] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 9 or fields[0] == "COMMAND" or not fields[1].isdigit():
            continue
        pid = int(fields[1])
        seen.setdefault(pid, {"command": fields[0], "pid": pid, "user": fields[2], "names": []})
        seen[pid]["names"].append(fields[8])
    return list(seen.values())


def parse_ps(text: str) -> dict[int, dict[str, Any]]:
    """`ps -axo pid=,ppid=,user=,command=`: pid -> {ppid, user, command}."""
    processes = {}
    for line in text.splitlines():
        fields = line.split(None, 3)
        if len(fields) == 4 and fields[0].isdigit() and fields[1].isdigit():
            processes[int(fields[0])] = {"pid": int(fields[0]), "ppid": int(fields[1]), "user": fields[2], "command": fields[3]}
    return processes


def parse_launchctl_list(text: str) -> dict[str, int | None]:
    """`launchctl list` ("PID<tab>Status<tab>Label", "-" for no process): label -> pid or None."""
    jobs: dict[str, int | None] = {}
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) == 3 and fields[0] != "PID":
            jobs[fields[2].strip()] = int(fields[0]) if fields[0].strip().isdigit() else None
    return jobs


def parse_launchctl_print(text: str) -> dict[str, Any]:
    """`launchctl print <domain>/<label>`: its top-level state, pid and plist path."""
    job: dict[str, Any] = {"state": "", "pid": None, "path": ""}
    for line in text.splitlines():
        # Top-level keys are indented by one tab; nested blocks (environment ...) by more.
        match = re.match(r"^\t(state|pid|path) = (.*)$", line)
        if match:
            key, value = match.groups()
            job[key] = int(value) if key == "pid" and value.strip().isdigit() else value.strip()
    return job


def parse_print_disabled(text: str) -> set[str]:
    """`launchctl print-disabled <domain>`: the labels disabled there (`=> disabled`, `=> true` before macOS 13)."""
    return set(re.findall(r'^\s*"([^"]+)" => (?:disabled|true)\s*$', text, re.MULTILINE))


def is_ollama(command: str) -> bool:
    """Whether a process is an Ollama server or the app: `.../ollama serve`, or inside an Ollama.app."""
    if APP_MARK in command:
        return True
    words = command.split()
    return bool(words) and os.path.basename(words[0]) == "ollama" and "serve" in words[1:]


def ancestors(pid: int, processes: dict[int, dict[str, Any]]) -> list[int]:
    """The process and its parents up to launchd (pid 1)."""
    chain = []
    while pid in processes and pid not in chain and pid > 1:
        chain.append(pid)
        pid = processes[pid]["ppid"]
    return chain


def plan(
    listeners: list[dict[str, Any]],
    processes: dict[int, dict[str, Any]],
    system_jobs: dict[str, int | None],
    own_label: str,
    port: int,
    agents: dict[str, dict[str, dict[str, Any]]],
    disabled: dict[str, set[str]],
    installed_apps: dict[str, list[str]],
    brew_plists: set[str],
    uids: dict[str, int],
    homes: dict[str, str],
    models_path: str,
) -> dict[str, Any]:
    """What to stop, from what the host showed.

    agents: user -> label -> `launchctl print gui/<uid>/<label>` of the loaded ones; disabled: user ->
    labels disabled in its gui domain (no entry when unreadable); installed_apps: user -> app bundles
    found for it; brew_plists: users with Homebrew's agent in ~/Library/LaunchAgents. Returns found (sentences), bootout (domain targets), kill (pids), disable (domain
    targets) and blocked (sentences: a program that is not an Ollama holds the port).
    """
    own_pid = system_jobs.get(own_label)
    found: list[str] = []
    bootout: list[str] = []
    kill: list[int] = []
    disable: list[str] = []
    blocked: list[str] = []
    # Processes that belong to a foreign launchd job, to name them once.
    job_pids: dict[int, str] = {}

    # Homebrew's service started with sudo: a LaunchDaemon in the system domain.
    if BREW_LABEL in system_jobs:
        bootout.append(f"system/{BREW_LABEL}")
        if system_jobs[BREW_LABEL]:
            job_pids[system_jobs[BREW_LABEL]] = "Homebrew's ollama service (system domain)"
        found.append(f"Homebrew's ollama service is loaded as a LaunchDaemon ({BREW_LABEL}, `sudo brew services start`)")

    for user in sorted(agents):
        for label, job in sorted(agents[user].items()):
            what = "the Ollama app's login item" if label == APP_LABEL else "Homebrew's ollama service"
            bootout.append(f"gui/{uids[user]}/{label}")
            if job.get("pid"):
                job_pids[job["pid"]] = f"{what} of {user}"
            found.append(f"{what} ({label}) is loaded for {user}" + (f", pid {job['pid']}" if job.get("pid") else ""))

    # Login items that would start another Ollama at the next login: the app's when it is installed
    # or loaded, Homebrew's when loaded or its plist is in the account's LaunchAgents.
    for user in sorted(uids):
        if user not in disabled:
            continue
        labels = set(agents.get(user, {}))
        if installed_apps.get(user):
            labels.add(APP_LABEL)
        if user in brew_plists:
            labels.add(BREW_LABEL)
        for label in sorted(labels - disabled[user]):
            disable.append(f"gui/{uids[user]}/{label}")
        for app in installed_apps.get(user, []):
            found.append(f"the Ollama app is installed at {app}")

    own = set()
    if own_pid:
        own = {pid for pid in processes if own_pid in ancestors(pid, processes)} | {own_pid}

    # The app's processes (its menu-bar process, the server and runners it starts), wherever they
    # listen: the app restarts a server of its own that is stopped alone.
    for pid, process in sorted(processes.items()):
        if pid in own or APP_MARK not in process["command"]:
            continue
        kill.append(pid)
        if "/Contents/MacOS/" in process["command"]:
            found.append(f"the Ollama app runs as {process['user']} (pid {pid})")

    for listener in listeners:
        pid = listener["pid"]
        if pid in own:
            continue
        process = processes.get(pid, {"command": listener["command"], "user": listener["user"], "ppid": 0})
        if not is_ollama(process["command"]) and not any(
            is_ollama(processes[p]["command"]) for p in ancestors(pid, processes)[1:]
        ):
            blocked.append(
                f"port {port} is held by {process['command']!r} (pid {pid}, user {process['user']}), which is not an Ollama"
            )
            continue
        chain = ancestors(pid, processes)
        owner = next((job_pids[p] for p in chain if p in job_pids), "")
        if not owner:
            owner = "the Ollama app" if any(APP_MARK in processes[p]["command"] for p in chain) else "an Ollama started by hand"
        found.append(f"{owner} listens on port {port} ({process['command']}, pid {pid}, user {process['user']})")
        if pid not in kill:
            kill.append(pid)
        # Its models: the account's default store, unless it is the role's own.
        store = os.path.join(homes.get(process["user"], "/Users/" + process["user"]), ".ollama/models")
        if models_path and store != models_path:
            found.append(
                f"its models (by default in {store}) stay there; this role's server uses {models_path} "
                f"(set ollama_models_dir: {store} to serve them)"
            )
        elif models_path:
            found.append(f"its models in {store} are the store this role's server uses")

    return {
        "found": found,
        "bootout": list(dict.fromkeys(bootout)),
        "kill": kill,
        "disable": list(dict.fromkeys(disable)),
        "blocked": blocked,
    }


def _run(module: AnsibleModule, argv: list[str]) -> tuple[int, str]:
    rc, out, _err = module.run_command(argv)
    return rc, out


def _look(module: AnsibleModule) -> dict[str, Any]:
    port = module.params["port"]
    _rc, lsof = _run(module, ["lsof", "-nP", f"-iTCP:{port}", "-sTCP:LISTEN"])
    _rc, ps = _run(module, ["ps", "-axo", "pid=,ppid=,user=,command="])
    _rc, jobs = _run(module, ["launchctl", "list"])
    listeners = parse_lsof(lsof)
    processes = parse_ps(ps)
    users = set(module.params["users"])
    users |= {processes[p["pid"]]["user"] for p in listeners if p["pid"] in processes and is_ollama(processes[p["pid"]]["command"])}
    users |= {p["user"] for p in processes.values() if APP_MARK in p["command"]}
    uids, homes, agents, disabled, installed, brew_plists = {}, {}, {}, {}, {}, set()
    for user in sorted(users):
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            continue
        if entry.pw_uid == 0:
            continue
        uids[user], homes[user] = entry.pw_uid, entry.pw_dir
        agents[user] = {}
        for label in (APP_LABEL, BREW_LABEL):
            rc, out = _run(module, ["launchctl", "print", f"gui/{entry.pw_uid}/{label}"])
            if rc == 0:
                agents[user][label] = parse_launchctl_print(out)
        rc, out = _run(module, ["launchctl", "print-disabled", f"gui/{entry.pw_uid}"])
        if rc == 0:
            disabled[user] = parse_print_disabled(out)
        installed[user] = [
            path for path in (os.path.expanduser(a.replace("~", entry.pw_dir, 1)) for a in module.params["apps"])
            if os.path.isdir(path)
        ]
        if os.path.exists(os.path.join(entry.pw_dir, "Library/LaunchAgents", BREW_LABEL + ".plist")):
            brew_plists.add(user)
    return plan(listeners, processes, parse_launchctl_list(jobs), module.params["own_label"], port,
                agents, disabled, installed, brew_plists, uids, homes, module.params["models_path"])


def _foreign_listeners(module: AnsibleModule, pids: list[int]) -> list[int]:
    _rc, lsof = _run(module, ["lsof", "-nP", f"-iTCP:{module.params['port']}", "-sTCP:LISTEN"])
    return [entry["pid"] for entry in parse_lsof(lsof) if entry["pid"] in pids]


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        supports_check_mode=True,
    )
    todo = _look(module)
    actions = (
        [f"launchctl bootout {target}" for target in todo["bootout"]]
        + [f"kill -TERM {pid}" for pid in todo["kill"]]
        + [f"launchctl disable {target}" for target in todo["disable"]]
    )
    result: dict[str, Any] = {
        "changed": bool(actions), "found": todo["found"], "actions": actions,
        "taking_over": bool(todo["kill"] or todo["bootout"]),
    }
    if actions and module._diff:
        # What `invoke drift` (a check run with --diff) shows for this task.
        result["diff"] = {
            "before_header": "other Ollamas", "before": "".join(f"{line}\n" for line in todo["found"]),
            "after_header": "what the run does", "after": "".join(f"{line}\n" for line in actions),
        }
    if todo["blocked"]:
        module.fail_json(
            msg="; ".join(todo["blocked"])
            + f". Stop it or give Ollama another port (ollama_port); nothing was changed.",
            **result,
        )
    if module.check_mode or not actions:
        module.exit_json(**result)

    for target in todo["bootout"]:
        # A job that has already gone (it exited, another run) is no failure.
        _run(module, ["launchctl", "bootout", target])
    for pid in todo["kill"]:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for target in todo["disable"]:
        rc, out = _run(module, ["launchctl", "disable", target])
        if rc != 0:
            module.warn(f"could not disable {target} (launchctl: {out.strip()}): it may start again at the next login")
    deadline = time.monotonic() + module.params["wait"]
    left = _foreign_listeners(module, todo["kill"])
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = _foreign_listeners(module, todo["kill"])
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    time.sleep(1 if left else 0)
    left = _foreign_listeners(module, todo["kill"])
    if left:
        module.fail_json(msg=f"the other Ollama (pid {', '.join(map(str, left))}) still holds port {module.params['port']}", **result)
    module.warn(
        (f"took port {module.params['port']} over from another Ollama: " if result["taking_over"]
         else "kept another Ollama from starting at the next login: ")
        + "; ".join(todo["found"]) + " (done: " + "; ".join(actions) + ")"
    )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
