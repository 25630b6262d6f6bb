"""Pull mode's run driver (src/llmfleet/pull.py): the fetch from a real git repository, and pull runs
through the real run driver (ansible-runner) on a small repository of the same layout as the team's:
ansible.cfg, playbooks/pull.yml and an inventory.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from llmfleet.pull import PullError, PullSettings, current_commit, fetch, last_run, prune, pull, remove_old_tools, \
    remove_tools, send_report
from llmfleet.report import ExitCode

# A pull run's playbook that stands in for the preflight and the kind's playbook: it fails when the
# inventory says so (a "bad commit"), else writes the inventory's value into a file, reporting a change
# only when the file changes.
PLAYBOOK = """\
- name: Stand-in for the preflight
  hosts: all
  gather_facts: false
  tasks:
    - name: Check the inventory
      ansible.builtin.fail:
        msg: "bad setting: {{ bad }}"
      when: bad is defined
- name: Stand-in for {{ llmfleet_pull_playbook }}
  hosts: all
  gather_facts: false
  tasks:
    - name: Write the value
      ansible.builtin.copy:
        content: "{{ value }}\\n"
        dest: "{{ target }}"
        mode: "0644"
"""


def git(*args: str, cwd: Path) -> str:
    done = subprocess.run(["git", "-c", "user.name=T", "-c", "user.email=t@example.invalid", *args], cwd=cwd,
                          check=True, capture_output=True, text=True)
    return done.stdout.strip()


class TeamRepo:
    """A work tree that commits and pushes to a bare repository, as a team does to its git server."""

    def __init__(self, root: Path, target: Path) -> None:
        self.work, self.bare, self.target = root / "work", root / "team.git", target
        self.work.mkdir()
        git("init", "--quiet", "--initial-branch=main", cwd=self.work)
        (self.work / "ansible.cfg").write_text("[defaults]\nretry_files_enabled = false\n")
        (self.work / "playbooks").mkdir()
        (self.work / "playbooks/pull.yml").write_text(PLAYBOOK)
        self.set_vars(value="one")
        git("add", "-A", cwd=self.work)
        git("commit", "--quiet", "-m", "first", cwd=self.work)
        git("clone", "--quiet", "--bare", str(self.work), str(self.bare), cwd=root)
        git("remote", "add", "origin", str(self.bare), cwd=self.work)

    def set_vars(self, **values: str) -> None:
        hosts = {"laptop": {"ansible_python_interpreter": sys.executable, "target": str(self.target), **values}}
        (self.work / "inventory").mkdir(exist_ok=True)
        (self.work / "inventory/hosts.yml").write_text(json.dumps({"all": {"hosts": hosts}}))

    def push(self, message: str, **values: str) -> str:
        self.set_vars(**values)
        git("commit", "--quiet", "-am", message, cwd=self.work)
        git("push", "--quiet", "origin", "main", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)


@pytest.fixture()
def team(tmp_path: Path) -> TeamRepo:
    (tmp_path / "laptop").mkdir()
    return TeamRepo(tmp_path, tmp_path / "laptop/value.txt")


def settings_for(team: TeamRepo, tmp_path: Path, **changes: object) -> PullSettings:
    base: dict[str, object] = {
        "repo": f"file://{team.bare}", "version": "main", "inventory": "inventory/hosts.yml", "playbook": "laptop.yml",
        "host": "laptop", "checkout": tmp_path / "state/checkout", "runs_dir": tmp_path / "state/runs", "keep": 3,
    }
    return PullSettings(**{**base, **changes})  # type: ignore[arg-type]


def test_fetch_follows_the_branch_and_discards_local_edits(team: TeamRepo, tmp_path: Path) -> None:
    settings = settings_for(team, tmp_path)
    first = fetch(settings)
    assert first == git("rev-parse", "main", cwd=team.bare)
    (settings.checkout / "playbooks/pull.yml").write_text("edited on the host")
    (settings.checkout / "stray.txt").write_text("left by someone")
    second = team.push("second", value="two")
    assert fetch(settings) == second != first
    assert (settings.checkout / "playbooks/pull.yml").read_text() == PLAYBOOK
    assert not (settings.checkout / "stray.txt").exists()
    assert '"value": "two"' in (settings.checkout / "inventory/hosts.yml").read_text()


def test_fetch_takes_a_tag(team: TeamRepo, tmp_path: Path) -> None:
    tagged = git("rev-parse", "HEAD", cwd=team.work)
    git("tag", "v1", cwd=team.work)
    git("push", "--quiet", "origin", "v1", cwd=team.work)
    team.push("after the tag", value="two")
    assert fetch(settings_for(team, tmp_path, version="v1")) == tagged


def test_a_fetch_that_fails_says_why(team: TeamRepo, tmp_path: Path) -> None:
    with pytest.raises(PullError, match=r"git fetch failed .*nosuch"):
        fetch(settings_for(team, tmp_path, version="nosuch"))
    with pytest.raises(PullError, match="git fetch failed"):
        fetch(settings_for(team, tmp_path, repo=f"file://{tmp_path}/missing.git"))


def test_a_pull_run_converges_and_keeps_a_summary_of_the_push_shape(team: TeamRepo, tmp_path: Path) -> None:
    settings = settings_for(team, tmp_path)
    code, folder = pull(settings)
    summary = json.loads((folder / "summary.json").read_text())
    assert code == ExitCode.OK and team.target.read_text() == "one\n"
    # The push run's keys (runner.run_playbook writes them) and the pull record.
    assert {"request", "ansible_core", "status", "exit_code", "hosts", "failures", "changes", "errors"} <= set(summary)
    assert summary["hosts"]["laptop"]["state"] == "changed"
    assert summary["request"]["limit"] == "laptop"
    assert summary["request"]["extravars"] == {"ansible_connection": "local", "llmfleet_pull_playbook": "laptop.yml",
                                               "llmfleet_pull_run": True}
    assert summary["pull"] == {"repo": settings.repo, "version": "main", "commit": git("rev-parse", "main", cwd=team.bare),
                               "fetch_error": None, "host": "laptop", "playbook": "laptop.yml"}
    # Ansible's own files: the run's artifacts are there, as a push run's.
    assert (folder / "stdout").is_file() and (folder / "job_events").is_dir()

    code, folder = pull(settings)
    assert code == ExitCode.OK
    assert json.loads((folder / "summary.json").read_text())["hosts"]["laptop"]["state"] == "ok"


def test_a_bad_commit_changes_nothing_and_is_kept_as_failed(team: TeamRepo, tmp_path: Path) -> None:
    settings = settings_for(team, tmp_path)
    pull(settings)
    bad = team.push("bad", value="three", bad="typo")
    code, folder = pull(settings)
    summary = json.loads((folder / "summary.json").read_text())
    assert code == ExitCode.FAILED
    assert team.target.read_text() == "one\n"
    assert summary["pull"]["commit"] == bad
    assert summary["hosts"]["laptop"]["state"] == "failed"
    assert [f["message"] for f in summary["failures"]] == ["bad setting: typo"]
    assert last_run(settings.runs_dir) == summary


def test_offline_it_converges_the_checkout_it_has_and_says_so(team: TeamRepo, tmp_path: Path) -> None:
    settings = settings_for(team, tmp_path)
    pull(settings)
    commit = current_commit(settings.checkout)
    team.target.write_text("drifted\n")
    offline = settings_for(team, tmp_path, repo=f"file://{tmp_path}/unreachable.git")
    code, folder = pull(offline)
    record = json.loads((folder / "summary.json").read_text())["pull"]
    assert code == ExitCode.OK and team.target.read_text() == "one\n"
    assert record["commit"] == commit and "git fetch failed" in record["fetch_error"]


def test_without_any_checkout_a_failed_fetch_is_recorded(team: TeamRepo, tmp_path: Path) -> None:
    settings = settings_for(team, tmp_path, repo=f"file://{tmp_path}/unreachable.git")
    code, folder = pull(settings)
    summary = json.loads((folder / "summary.json").read_text())
    assert code == ExitCode.FAILED and summary["exit_code"] == 1
    assert summary["hosts"]["laptop"]["state"] == "failed"
    assert summary["pull"]["commit"] == "" and "unreachable.git" in summary["errors"][0]


def test_a_commit_without_the_inventory_is_recorded_as_failed(team: TeamRepo, tmp_path: Path) -> None:
    code, folder = pull(settings_for(team, tmp_path, inventory="inventory/nosuch"))
    summary = json.loads((folder / "summary.json").read_text())
    assert code == ExitCode.FAILED and "inventory not found" in summary["errors"][0]


def test_only_the_last_runs_are_kept(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    names = [f"20261205T10{m:02d}00Z-pull-x" for m in range(5)]
    for name in names:
        (runs / name).mkdir(parents=True)
        (runs / name / "summary.json").write_text(json.dumps({"n": name}))
    (runs / "not-a-run").mkdir()
    gone = prune(runs, 2)
    assert [p.name for p in gone] == names[:3]
    assert sorted(p.name for p in runs.iterdir()) == sorted([*names[3:], "not-a-run"])
    assert last_run(runs) == {"n": names[-1]}
    assert last_run(tmp_path / "none") is None


def test_older_virtualenvs_and_run_drivers_go_the_running_ones_stay(tmp_path: Path) -> None:
    tools = tmp_path / "pull"
    for name in ("venv-new", "venv-old", "venv-running", "lib-new", "lib-old", "lib-running"):
        (tools / name).mkdir(parents=True)
    settings = PullSettings(repo="file:///x", version="main", inventory="i", playbook="laptop.yml", host="h",
                            checkout=tmp_path / "checkout", runs_dir=tmp_path / "runs", keep=1,
                            venv=tools / "venv-new", lib=tools / "lib-new")
    gone = remove_old_tools(settings, [tools / "venv-running", tools / "lib-running"])
    assert [p.name for p in gone] == ["lib-old", "venv-old"]
    assert sorted(p.name for p in tools.iterdir()) == ["lib-new", "lib-running", "venv-new", "venv-running"]
    # The tools go only when they are the settings' own directory.
    (tmp_path / "checkout").mkdir()
    assert not remove_tools(settings, tmp_path) and tools.exists()
    assert remove_tools(settings, tools) and not tools.exists() and not (tmp_path / "checkout").exists()


class ReportEndpoint(BaseHTTPRequestHandler):
    """A stand-in for the team server's report endpoint: keeps each PUT (path, bearer, body); 403 for a wrong key."""

    received: list[tuple[str, str, dict]] = []
    key = "report-key-0123456789"

    def do_PUT(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        bearer = self.headers.get("Authorization", "")
        self.received.append((self.path, bearer, body))
        self.send_response(204 if bearer == f"Bearer {self.key}" else 403)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def endpoint() -> Iterator[str]:
    ReportEndpoint.received = []
    server = HTTPServer(("127.0.0.1", 0), ReportEndpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/llmfleet/pull-reports"
    server.shutdown()


def test_each_run_reports_its_outcome_without_task_output(team: TeamRepo, tmp_path: Path, endpoint: str) -> None:
    key_file = tmp_path / "report-key"
    key_file.write_text(ReportEndpoint.key + "\n")
    settings = settings_for(team, tmp_path, report_url=endpoint, report_key_file=key_file)
    pull(settings)
    bad = team.push("bad", value="three", bad="typo")
    code, folder = pull(settings)
    assert code == ExitCode.FAILED
    [(path, bearer, good_report), (_, _, bad_report)] = ReportEndpoint.received
    assert path == "/llmfleet/pull-reports/laptop.json" and bearer == f"Bearer {ReportEndpoint.key}"
    assert good_report["state"] == "changed" and good_report["failures"] == []
    assert bad_report["commit"] == bad and bad_report["state"] == "failed" and bad_report["exit_code"] == 1
    assert bad_report["failures"] == [{"task": "Check the inventory", "message": "bad setting: typo"}]
    assert set(bad_report) == {"host", "started", "finished", "repo", "version", "commit", "fetch_error", "state",
                               "changed", "exit_code", "exit_reason", "failures"}
    summary = (folder / "summary.json").read_text()
    assert json.loads(summary)["pull"]["report_error"] is None and ReportEndpoint.key not in summary


def test_a_report_that_fails_is_noted_and_fails_nothing(team: TeamRepo, tmp_path: Path, endpoint: str) -> None:
    key_file = tmp_path / "report-key"
    key_file.write_text("a-wrong-key-000000000")
    code, folder = pull(settings_for(team, tmp_path, report_url=endpoint, report_key_file=key_file))
    record = json.loads((folder / "summary.json").read_text())["pull"]
    assert code == ExitCode.OK
    assert record["report_error"] == f"report to {endpoint}/laptop.json refused: HTTP 403 Forbidden"
    with pytest.raises(PullError, match=r"report to http://127.0.0.1:9/x/h.json failed: .*refused"):
        send_report("http://127.0.0.1:9/x", None, {"host": "h"})
