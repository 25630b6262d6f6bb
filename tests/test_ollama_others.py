"""plugins/modules/ollama_others.py: which Ollama on a Mac is not the role's own, and what the role stops.

No Mac here: the inputs are outputs of lsof, ps and launchctl written from their documented formats
(tests/fixtures/macos/, each file says so in its `#@` header), fed to the module's parsers and to its
decision (`plan`). What the module then runs (launchctl bootout/disable, SIGTERM) is what `plan` returns;
the module itself runs once through Ansible with those tools replaced by scripts printing the recorded outputs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from _modules import ROOT, load_module

FIXTURES = Path(__file__).parent / "fixtures" / "macos"
MODELS = "/Users/alice/.ollama/models"


@pytest.fixture(scope="module")
def others() -> ModuleType:
    return load_module("plugins/modules/ollama_others.py")


def recorded(name: str) -> str:
    """A fixture's text without its `#@` header (which says it was written, not captured)."""
    text = (FIXTURES / name).read_text()
    assert text.startswith("#@ Written from the documented format, not captured"), name
    return "".join(line for line in text.splitlines(keepends=True) if not line.startswith("#@"))


def plan(others: ModuleType, lsof: str, ps: str, jobs: str, **kwargs: Any) -> dict[str, Any]:
    """The module's decision for alice (uid 501), from the named fixtures."""
    args: dict[str, Any] = {
        "agents": {"alice": {}},
        "disabled": {"alice": set()},
        "installed_apps": {"alice": []},
        "brew_plists": set(),
        "uids": {"alice": 501},
        "homes": {"alice": "/Users/alice"},
        "models_path": MODELS,
    }
    args.update(kwargs)
    return others.plan(
        others.parse_lsof(recorded(lsof)), others.parse_ps(recorded(ps)), others.parse_launchctl_list(recorded(jobs)),
        "com.llmfleet.ollama", 11434, args["agents"], args["disabled"], args["installed_apps"], args["brew_plists"],
        args["uids"], args["homes"], args["models_path"],
    )


def test_parses_the_listeners(others: ModuleType) -> None:
    assert others.parse_lsof(recorded("lsof-app.txt")) == [
        {"command": "ollama", "pid": 905, "user": "alice", "names": ["127.0.0.1:11434"]}
    ]
    # One process listening on IPv4 and IPv6 is one listener.
    assert [(e["pid"], e["names"]) for e in others.parse_lsof(recorded("lsof-brew.txt"))] == [(1377, ["*:11434", "*:11434"])]
    assert others.parse_lsof("") == []


def test_parses_processes_and_jobs(others: ModuleType) -> None:
    processes = others.parse_ps(recorded("ps-app.txt"))
    assert processes[905] == {
        "pid": 905, "ppid": 812, "user": "alice", "command": "/Applications/Ollama.app/Contents/Resources/ollama serve"
    }
    assert others.parse_launchctl_list(recorded("launchctl-list-own.txt"))["com.llmfleet.ollama"] == 412
    assert others.parse_launchctl_list(recorded("launchctl-list-crashed.txt"))["com.llmfleet.ollama"] is None
    job = others.parse_launchctl_print(recorded("launchctl-print-app.txt"))
    assert job == {
        "state": "running", "pid": 812,
        "path": "/Applications/Ollama.app/Contents/Library/LaunchAgents/com.ollama.ollama.plist",
    }
    # Nested blocks (the environment, the arguments) are not read as the job's own keys.
    assert others.parse_launchctl_print(recorded("launchctl-print-brew.txt"))["pid"] == 1377


def test_reads_disabled_labels_in_both_wordings(others: ModuleType) -> None:
    assert others.parse_print_disabled(recorded("launchctl-print-disabled.txt")) == {"com.apple.Siri.agent"}
    assert others.parse_print_disabled(recorded("launchctl-print-disabled-old.txt")) == {
        "com.apple.Siri.agent", "com.ollama.ollama"
    }


def test_the_roles_own_server_is_left_alone(others: ModuleType) -> None:
    todo = plan(others, "lsof-own.txt", "ps-own.txt", "launchctl-list-own.txt")
    assert todo == {"found": [], "bootout": [], "kill": [], "disable": [], "blocked": []}


def test_the_app_is_quit_booted_out_and_kept_from_the_next_login(others: ModuleType) -> None:
    todo = plan(
        others, "lsof-app.txt", "ps-app.txt", "launchctl-list-crashed.txt",
        agents={"alice": {"com.ollama.ollama": others.parse_launchctl_print(recorded("launchctl-print-app.txt"))}},
        disabled={"alice": others.parse_print_disabled(recorded("launchctl-print-disabled.txt"))},
        installed_apps={"alice": ["/Applications/Ollama.app"]},
    )
    assert todo["bootout"] == ["gui/501/com.ollama.ollama"]
    # The menu-bar app, its server and its runner: the app restarts a server stopped alone.
    assert todo["kill"] == [812, 905, 930]
    assert todo["disable"] == ["gui/501/com.ollama.ollama"]
    assert todo["blocked"] == []
    text = " ".join(todo["found"])
    assert "the Ollama app's login item of alice listens on port 11434" in text
    assert "the Ollama app is installed at /Applications/Ollama.app" in text
    # The app's models are the store this role's server uses (same account, default store): kept and served.
    assert f"its models in {MODELS} are the store this role's server uses" in text


def test_an_installed_app_that_does_not_run_only_loses_its_login_item(others: ModuleType) -> None:
    todo = plan(
        others, "lsof-own.txt", "ps-own.txt", "launchctl-list-own.txt",
        disabled={"alice": set()}, installed_apps={"alice": ["/Applications/Ollama.app"]},
    )
    assert (todo["bootout"], todo["kill"], todo["disable"]) == ([], [], ["gui/501/com.ollama.ollama"])


def test_a_login_item_already_disabled_is_not_disabled_again(others: ModuleType) -> None:
    todo = plan(
        others, "lsof-own.txt", "ps-own.txt", "launchctl-list-own.txt",
        disabled={"alice": others.parse_print_disabled(recorded("launchctl-print-disabled-old.txt"))},
        installed_apps={"alice": ["/Applications/Ollama.app"]},
    )
    assert todo["disable"] == [] and todo["kill"] == [] and todo["bootout"] == []


def test_an_unreadable_disabled_list_disables_nothing(others: ModuleType) -> None:
    todo = plan(others, "lsof-own.txt", "ps-own.txt", "launchctl-list-own.txt",
                disabled={}, installed_apps={"alice": ["/Applications/Ollama.app"]})
    assert todo["disable"] == []


def test_homebrews_service_is_booted_out_and_disabled(others: ModuleType) -> None:
    todo = plan(
        others, "lsof-brew.txt", "ps-brew.txt", "launchctl-list-crashed.txt",
        agents={"alice": {"homebrew.mxcl.ollama": others.parse_launchctl_print(recorded("launchctl-print-brew.txt"))}},
        brew_plists={"alice"},
    )
    assert todo["bootout"] == ["gui/501/homebrew.mxcl.ollama"]
    assert todo["kill"] == [1377]
    assert todo["disable"] == ["gui/501/homebrew.mxcl.ollama"]
    assert "Homebrew's ollama service of alice listens on port 11434" in " ".join(todo["found"])


def test_homebrews_service_started_with_sudo_is_booted_out_of_the_system_domain(others: ModuleType) -> None:
    todo = plan(others, "lsof-brew.txt", "ps-brew.txt", "launchctl-list-brew-system.txt")
    assert todo["bootout"] == ["system/homebrew.mxcl.ollama"]
    assert todo["kill"] == [1377]
    assert "Homebrew's ollama service (system domain) listens" in " ".join(todo["found"])


def test_a_server_started_by_hand_is_stopped_and_its_models_named(others: ModuleType) -> None:
    todo = plan(others, "lsof-hand.txt", "ps-hand.txt", "launchctl-list-crashed.txt",
                models_path="/Volumes/models/ollama")
    assert todo["kill"] == [2210] and todo["bootout"] == [] and todo["disable"] == []
    text = " ".join(todo["found"])
    assert "an Ollama started by hand listens on port 11434 (ollama serve, pid 2210, user alice)" in text
    # Another store: the models stay where they are, and the message says how to serve them.
    assert "its models (by default in /Users/alice/.ollama/models) stay there" in text
    assert "set ollama_models_dir: /Users/alice/.ollama/models to serve them" in text


def test_a_program_that_is_not_an_ollama_is_never_stopped(others: ModuleType) -> None:
    todo = plan(others, "lsof-other.txt", "ps-other.txt", "launchctl-list-crashed.txt")
    assert todo["kill"] == [] and todo["bootout"] == []
    assert len(todo["blocked"]) == 1
    assert "port 11434 is held by" in todo["blocked"][0]
    assert "(pid 3011, user alice), which is not an Ollama" in todo["blocked"][0]


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("/opt/homebrew/opt/ollama/bin/ollama serve", True),
        ("ollama serve", True),
        ("/Applications/Ollama.app/Contents/MacOS/Ollama hidden", True),
        ("/usr/local/bin/ollama list", False),
        ("/usr/bin/python3 -m http.server 11434", False),
        ("/opt/ollama-proxy/bin/nginx", False),
    ],
)
def test_tells_an_ollama_server_from_other_programs(others: ModuleType, command: str, expected: bool) -> None:
    assert others.is_ollama(command) is expected


class FakeModule:
    """What `_look` needs of AnsibleModule: its parameters and run_command answering from fixtures."""

    def __init__(self, answers: dict[str, tuple[int, str]]) -> None:
        self.params = {"port": 11434, "own_label": "com.llmfleet.ollama", "users": ["alice"],
                       "models_path": MODELS, "apps": ["/Applications/Ollama.app", "~/Applications/Ollama.app"], "wait": 1}
        self.answers = answers
        self.commands: list[str] = []

    def run_command(self, argv: list[str]) -> tuple[int, str, str]:
        command = " ".join(argv)
        self.commands.append(command)
        rc, name = self.answers.get(command, (1, ""))
        return rc, recorded(name) if name else "", ""


def test_the_look_reads_each_source_once_for_the_accounts_found(others: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """`_look` glue: the app found for alice (uid 501) through lsof, ps and launchctl, with her app installed."""

    class Entry:
        pw_uid, pw_dir = 501, "/Users/alice"

    def getpwnam(user: str) -> type[Entry]:
        if user != "alice":
            raise KeyError(user)
        return Entry

    monkeypatch.setattr(others.pwd, "getpwnam", getpwnam)
    monkeypatch.setattr(others.os.path, "isdir", lambda path: path == "/Applications/Ollama.app")
    monkeypatch.setattr(others.os.path, "exists", lambda path: False)
    module = FakeModule({
        "lsof -nP -iTCP:11434 -sTCP:LISTEN": (0, "lsof-app.txt"),
        "ps -axo pid=,ppid=,user=,command=": (0, "ps-app.txt"),
        "launchctl list": (0, "launchctl-list-crashed.txt"),
        "launchctl print gui/501/com.ollama.ollama": (0, "launchctl-print-app.txt"),
        "launchctl print gui/501/homebrew.mxcl.ollama": (113, "launchctl-print-missing.txt"),
        "launchctl print-disabled gui/501": (0, "launchctl-print-disabled.txt"),
    })
    todo = others._look(module)
    assert todo["bootout"] == ["gui/501/com.ollama.ollama"]
    assert todo["kill"] == [812, 905, 930]
    assert todo["disable"] == ["gui/501/com.ollama.ollama"]
    # Each command once: a converged Mac pays six quick commands for this task.
    assert len(module.commands) == len(set(module.commands)) == 6


def _shifted(name: str, columns: int) -> str:
    """A fixture with its first `columns` pid columns moved above Linux's pid_max: nothing here can be signalled."""
    def shift(line: str) -> str:
        fields = line.split(" ")
        seen = 0
        for i, field in enumerate(fields):
            if field.isdigit():
                fields[i] = str(int(field) + 5_000_000)
                seen += 1
                if seen == columns:
                    break
        return " ".join(fields)
    return "".join(shift(line) + "\n" for line in recorded(name).splitlines())


def test_the_module_reports_in_check_mode_and_fails_when_the_port_stays_taken(tmp_path: Path) -> None:
    """The module itself through Ansible (ad-hoc, local), with lsof, ps and launchctl replaced by scripts that
    print the recorded outputs (pids moved out of reach): a check run reports what it would do and changes
    nothing; a real run whose server does not go away (the recorded lsof still shows it) fails naming it."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    # lsof: the app's server (pid in column 2); ps: pid and ppid; launchctl list: the role's job not running.
    outputs = {"lsof": _shifted("lsof-app.txt", 1), "ps": _shifted("ps-app.txt", 2),
               "launchctl": recorded("launchctl-list-crashed.txt")}
    for tool, text in outputs.items():
        (tmp_path / f"{tool}.out").write_text(text)
        script = bindir / tool
        script.write_text(f"#!/bin/sh\ncat {tmp_path / (tool + '.out')}\n")
        script.chmod(0o755)
    venv_bin = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
           "ANSIBLE_COLLECTIONS_PATH": str(ROOT / "playbooks" / "collections"), "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
           "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", "ANSIBLE_STRATEGY": "linear", "ANSIBLE_CONFIG": str(tmp_path / "ansible.cfg")}
    (tmp_path / "ansible.cfg").write_text("[defaults]\n")
    args = json.dumps({"port": 11434, "own_label": "com.llmfleet.ollama", "users": [], "models_path": MODELS, "wait": 1})

    def run(*extra: str) -> dict[str, Any]:
        done = subprocess.run(
            [str(venv_bin / "ansible"), "localhost", "-c", "local", "-m", "llmfleet.llmfleet.ollama_others", "-a", args, *extra],
            env=env, capture_output=True, text=True, cwd=tmp_path,
        )
        return json.loads(done.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]

    check = run("--check", "--diff")
    assert check["changed"] is True and check["taking_over"] is True
    assert check["actions"] == ["kill -TERM 5000812", "kill -TERM 5000905", "kill -TERM 5000930"]
    assert "kill -TERM 5000905" in check["diff"]["after"]
    assert "listens on port 11434" in check["diff"]["before"]

    real = run()
    assert real.get("failed") is True
    assert real["msg"] == "the other Ollama (pid 5000905) still holds port 11434"
