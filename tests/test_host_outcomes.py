"""What the summary says happened to each host: failed, unreachable, not run, interrupted, changed,
ok, and the notices roles give. Runs real ansible-runner on plays shaped like site.yml's."""

from __future__ import annotations

import io
import json
import re
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml
from rich.console import Console

from llmfleet.progress import PlainReporter
from llmfleet.report import ExitCode, HostOutcome, HostStats, RunResult, host_outcomes, render_summary
from llmfleet.runner import RunRequest, run_playbook

ROOT = Path(__file__).resolve().parent.parent
LOCAL = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
# Refused at once: nothing listens on port 1.
DEAD = {
    "ansible_connection": "ssh",
    "ansible_host": "127.0.0.1",
    "ansible_port": 1,
    "ansible_ssh_common_args": "-o ConnectTimeout=3 -o ControlMaster=no",
}
FLEET = "servers:laptops"

PREFLIGHT = {
    "name": "Preflight",
    "hosts": FLEET,
    "gather_facts": False,
    "tasks": [{"name": "Note that this host passed the preflight",
               "ansible.builtin.set_fact": {"_llmfleet_preflight_passed": True}}],
}


def kind_play(name: str, group: str, tasks: list[dict[str, Any]], *, isolated: bool) -> dict[str, Any]:
    """A kind's play as playbooks/locked_play.yml makes it for laptop.yml (`isolated`), or with only its own hosts."""
    leave = [{"name": f"Leave this play unless this host is in {group}", "ansible.builtin.meta": "end_host",
              "when": f"'{group}' not in group_names"}]
    return {"name": name, "hosts": FLEET if isolated else group, "gather_facts": False,
            "tasks": (leave if isolated else []) + tasks}


SERVER_TASKS = [{"name": "Install the server", "ansible.builtin.fail": {"msg": "the server broke"},
                 "when": "inventory_hostname == 'server'"}]
LAPTOP_TASKS = [{"name": "Configure the laptop", "ansible.builtin.command": "true", "changed_when": True}]


def write(tmp_path: Path, plays: list[dict[str, Any]], hosts: dict[str, dict[str, Any]]) -> tuple[Path, Path]:
    playbook = tmp_path / "site.yml"
    playbook.write_text(yaml.safe_dump(plays, sort_keys=False))
    inventory = tmp_path / "inventory" / "hosts.yml"
    inventory.parent.mkdir(parents=True, exist_ok=True)
    servers = {h: v for h, v in hosts.items() if h.startswith("server")}
    laptops = {h: v for h, v in hosts.items() if h.startswith("laptop")}
    inventory.write_text(yaml.safe_dump({"all": {"children": {"servers": {"hosts": servers},
                                                               "laptops": {"hosts": laptops}}}}))
    return playbook, inventory.parent


def run(playbook: Path, inventory: Path, project_dir: Path, runs_dir: Path) -> tuple[RunResult, str, str]:
    buffer, live = io.StringIO(), io.StringIO()
    result = run_playbook(RunRequest(playbook=playbook, inventory=inventory), project_dir=project_dir,
                          runs_dir=runs_dir, reporter=PlainReporter(Console(file=live, width=300)))
    render_summary(result, Console(file=buffer, force_terminal=False, width=300))
    return result, buffer.getvalue(), live.getvalue()


def test_a_failed_server_does_not_stop_the_laptops_play(tmp_path: Path, project_dir: Path, runs_dir: Path) -> None:
    plays = [PREFLIGHT, kind_play("Team server", "servers", SERVER_TASKS, isolated=True),
             kind_play("Developer laptop", "laptops", LAPTOP_TASKS, isolated=True)]
    result, text, _ = run(*write(tmp_path, plays, {"server": LOCAL, "laptop1": LOCAL, "laptop2": LOCAL}),
                          project_dir, runs_dir)

    assert result.exit_code == ExitCode.FAILED
    assert result.outcome("server") == HostOutcome("failed")
    assert result.outcome("laptop1") == result.outcome("laptop2") == HostOutcome("changed")
    assert "Exit code 1: failed on server" in text
    summary = json.loads((result.artifact_dir / "summary.json").read_text())
    assert summary["hosts"]["laptop1"]["state"] == "changed" and summary["hosts"]["server"]["state"] == "failed"


def test_an_unreachable_server_does_not_stop_the_laptops_play(
    tmp_path: Path, project_dir: Path, runs_dir: Path
) -> None:
    """Unreachable hosts skip rescue blocks, so only the fleet-wide play keeps the playbook going."""
    plays = [{**PREFLIGHT, "hosts": "laptops"}, kind_play("Team server", "servers", [
        {"name": "Ping", "ansible.builtin.ping": None}], isolated=True),
        kind_play("Developer laptop", "laptops", LAPTOP_TASKS, isolated=True)]
    result, _, _ = run(*write(tmp_path, plays, {"server": DEAD, "laptop1": LOCAL}), project_dir, runs_dir)

    assert result.outcome("server") == HostOutcome("unreachable")
    assert result.outcome("laptop1") == HostOutcome("changed")
    assert result.exit_code == ExitCode.UNREACHABLE


def test_hosts_whose_play_never_ran_are_not_run_with_the_reason(
    tmp_path: Path, project_dir: Path, runs_dir: Path
) -> None:
    """Plays with only their own kind's hosts: Ansible ends the playbook when the only server fails."""
    plays = [PREFLIGHT, kind_play("Team server", "servers", SERVER_TASKS, isolated=False),
             kind_play("Developer laptop", "laptops", LAPTOP_TASKS, isolated=False)]
    result, text, _ = run(*write(tmp_path, plays, {"server": LOCAL, "laptop1": LOCAL}), project_dir, runs_dir)

    assert result.hosts["laptop1"].ok == 1 and result.hosts["laptop1"].failed == 0  # the preflight's result
    outcome = result.outcome("laptop1")
    assert outcome.state == "not run" and "ended the run before its play" in outcome.reason
    assert result.exit_code == ExitCode.FAILED
    assert result.exit_reason == "failed on server; not run: laptop1"
    assert "laptop1 not run: ansible-playbook ended the run before its play" in text
    summary = json.loads((result.artifact_dir / "summary.json").read_text())
    assert summary["hosts"]["laptop1"]["state"] == "not run"
    assert "every host of an earlier play" in summary["hosts"]["laptop1"]["reason"]


def test_role_notices_reach_the_live_output_the_summary_and_summary_json(
    tmp_path: Path, project_dir: Path, runs_dir: Path
) -> None:
    library = tmp_path / "library"
    library.mkdir()
    (library / "warner.py").write_text(
        "from ansible.module_utils.basic import AnsibleModule\n"
        "module = AnsibleModule(argument_spec={})\n"
        "module.warn('the settings file is not JSON: left alone')\n"
        "module.exit_json(changed=False)\n"
    )
    tasks = [
        {"name": "Warn", "warner": None},
        {"name": "Report shadowed files", "ansible.builtin.debug": {"msg": ["a.json is ignored", "b.json is ignored"]}},
        {"name": "Report a skipped model", "ansible.builtin.debug": {"msg": "skipped {{ item }}"},
         "loop": ["big", "small"], "when": "item == 'big'"},
        # A check-mode report is a change, not a notice; a hidden message is no notice either.
        {"name": "Report the install a real run would do", "ansible.builtin.debug": {"msg": "would install"},
         "changed_when": True},
        {"name": "Hidden", "ansible.builtin.debug": {"msg": "secret-value-1234"}, "no_log": True},
    ]
    plays = [PREFLIGHT, kind_play("Developer laptop", "laptops", tasks, isolated=True)]
    playbook, inventory = write(tmp_path, plays, {"laptop1": LOCAL})
    result, text, live = run(playbook, inventory, project_dir, runs_dir)

    assert result.exit_code == ExitCode.OK
    expected = [("Warn", "the settings file is not JSON: left alone"),
                ("Report shadowed files", "a.json is ignored"), ("Report shadowed files", "b.json is ignored"),
                ("Report a skipped model", "skipped big")]
    assert [(n.task, n.message) for n in result.notices] == expected
    summary = json.loads((result.artifact_dir / "summary.json").read_text())
    assert summary["hosts"]["laptop1"]["notices"] == [{"task": t, "message": m} for t, m in expected]
    notices = text[text.index("Notices:"):]
    for task, message in expected:
        assert f"laptop1  {task}: {message}" in notices
        assert message in live
    assert "would install" not in notices and "secret-value-1234" not in text + live


@pytest.mark.parametrize(
    ("status", "planned", "worked", "interrupted", "expected"),
    [
        ("successful", ["a"], ["a"], [], HostOutcome("changed")),
        ("canceled", ["a"], [], [], HostOutcome("not run", "the run was canceled before its play started")),
        ("timeout", ["a"], ["a"], ["a"], HostOutcome("interrupted", "the run timed out while its play ran")),
        ("canceled", ["a"], ["a"], [], HostOutcome("changed")),  # its play had ended before the cancel
        ("successful", ["a"], [], [], HostOutcome("not run", (
            "ansible-playbook ended the run before its play: every host of an earlier play had failed or was "
            "unreachable"))),
        ("successful", [], [], [], HostOutcome("changed")),  # a playbook with no preflight: counts alone
    ],
)
def test_host_states(
    status: str, planned: list[str], worked: list[str], interrupted: list[str], expected: HostOutcome
) -> None:
    hosts = {"a": HostStats(ok=3, changed=1), "b": HostStats(ok=1, failed=1), "c": HostStats(unreachable=1)}
    outcomes = host_outcomes(hosts, planned=planned, worked=worked, interrupted=interrupted, status=status)
    assert outcomes["a"] == expected
    assert outcomes["b"] == HostOutcome("failed") and outcomes["c"] == HostOutcome("unreachable")


def test_a_host_not_run_is_never_ok_in_the_exit_code() -> None:
    """Nothing failed, yet a host that passed the preflight was not converged: exit 1, not 0."""
    hosts = {"a": HostStats(ok=1)}
    result = RunResult(
        status="successful", rc=0, hosts=hosts, failures=[], changes=[], artifact_dir=Path("/runs/x"),
        started=datetime(2026, 1, 1), finished=datetime(2026, 1, 1),
        outcomes=host_outcomes(hosts, planned=["a"], worked=[]),
    )
    assert result.exit_code == ExitCode.FAILED and result.exit_reason == "not run: a"
    assert result.outcome("a").reason == "no play of this run converged it (does its kind's play match it?)"


def _pattern(text: str, **variables: Any) -> str:
    """A play's host pattern as Ansible templates it (plain Jinja: the expressions use no filter of Ansible's)."""
    return jinja2.Environment().from_string(text).render(**variables).strip()


def test_each_kind_play_of_site_yml_takes_the_whole_fleet_and_lets_other_kinds_leave() -> None:
    """The shape the first test proves: every kind's play lists the fleet, and the lock frame's first
    task ends the play for hosts of other kinds."""
    site = yaml.safe_load((ROOT / "playbooks" / "site.yml").read_text())
    preflight = yaml.safe_load((ROOT / "playbooks" / "preflight.yml").read_text())[0]
    # The preflight's hosts: with a kind of its own (the mirrors', first), the whole fleet with the
    # mirrors, the other kinds leaving at its first task, or no host when the inventory has no mirror;
    # without, the service kinds' hosts.
    mirrors, none = {"llm_mirrors": ["m"], "gpu_servers": ["s"]}, {"gpu_servers": ["s"]}
    fleet = _pattern(preflight["hosts"], groups=mirrors)
    assert fleet == "gpu_servers:dev_laptops:workstations" == _pattern(preflight["hosts"], groups=none)
    with_mirrors = _pattern(preflight["hosts"], groups=mirrors, _llmfleet_preflight_kind="llm_mirrors")
    assert with_mirrors == "llm_mirrors:" + fleet
    assert _pattern(preflight["hosts"], groups=none, _llmfleet_preflight_kind="llm_mirrors") == "llm_mirrors"
    leave = preflight["tasks"][0]
    assert leave["ansible.builtin.meta"] == "end_host" and "_llmfleet_preflight_kind not in group_names" in leave["when"]
    imports = [entry["ansible.builtin.import_playbook"] for entry in site]
    assert imports == ["mirror.yml", "preflight.yml", "team_server.yml", "laptop.yml", "workstation.yml"]
    [frame] = yaml.safe_load((ROOT / "playbooks" / "locked_play.yml").read_text())
    first = frame["tasks"][0]
    assert first["ansible.builtin.meta"] == "end_host" and "_llmfleet_kind not in group_names" in first["when"]
    for name, hosts in [("mirror.yml", with_mirrors), ("team_server.yml", fleet), ("laptop.yml", fleet),
                        ("workstation.yml", fleet)]:
        play = yaml.safe_load((ROOT / "playbooks" / name).read_text())[-1]
        assert play["ansible.builtin.import_playbook"] == "locked_play.yml", name
        assert _pattern(play["vars"]["_llmfleet_hosts"], groups=mirrors) == hosts, name
        assert play["vars"]["_llmfleet_kind"] in hosts.split(":"), name
        # No mirror in the inventory: the mirrors' play matches no host (a converged host pays nothing).
        assert _pattern(play["vars"]["_llmfleet_hosts"], groups=none) == (hosts if name != "mirror.yml" else "llm_mirrors")
