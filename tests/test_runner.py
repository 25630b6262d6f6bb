"""The run driver, end to end with the real ansible-runner on local hosts."""

from __future__ import annotations

import hashlib
import io
import json
import re
import signal
import sys
import tempfile
import threading
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.parsing.vault import VaultLib, VaultSecret
from rich.console import Console

from llmfleet.progress import HostState, LiveReporter, Note, PlainReporter, make_reporter
from llmfleet.report import ExitCode, Failure, HostStats, RunResult, render_summary
from llmfleet.runner import RunRequest, run_playbook

PLAYBOOKS = Path(__file__).resolve().parent / "playbooks"

# Both hosts run on this machine with the test's own interpreter: fast and needs no ssh.
LOCAL_HOST = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}


def write_inventory(directory: Path, hosts: dict[str, dict[str, Any]]) -> Path:
    """An inventory directory with hosts.yml listing `hosts` (name -> host vars) under `all`."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    return directory


@pytest.fixture
def two_hosts(tmp_path: Path) -> Path:
    return write_inventory(tmp_path / "inventory", {"localhost": LOCAL_HOST, "h2": LOCAL_HOST})


RUN_FOLDER = re.compile(r"^\d{8}T\d{6}Z-(?P<stem>[a-z_]+)-[0-9a-f]{8}$")


def plain_console() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=False, width=200), buffer


def run(name: str, inventory: Path, project_dir: Path, runs_dir: Path, **options: object) -> RunResult:
    request = RunRequest(playbook=PLAYBOOKS / f"{name}.yml", inventory=inventory, **options)  # type: ignore[arg-type]
    return run_playbook(request, project_dir=project_dir, runs_dir=runs_dir)


def files_under(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_success_run(two_hosts: Path, project_dir: Path, runs_dir: Path, out_dir: Path) -> None:
    sigint_before = signal.getsignal(signal.SIGINT)
    marker = f"marker-{uuid.uuid4().hex}"
    result = run("success", two_hosts, project_dir, runs_dir, extravars={"marker": marker, "out_dir": str(out_dir)})

    assert (result.status, result.rc, result.exit_code) == ("successful", 0, ExitCode.OK)
    # ok counts the changed copy too, as PLAY RECAP does; the 3-item loop counts once.
    expected = HostStats(ok=3, changed=1, skipped=1)
    assert result.hosts == {"localhost": expected, "h2": expected}
    assert result.failures == []
    assert sorted((c.host, c.task) for c in result.changes) == [
        ("h2", "Write marker file"),
        ("localhost", "Write marker file"),
    ]
    assert (out_dir / "h2.txt").read_text() == f"{marker}\n"
    assert result.started <= result.finished
    # ansible_runner.run replaces the SIGINT handler; the driver puts the caller's back.
    assert signal.getsignal(signal.SIGINT) is sigint_before

    # One predictable folder per run, holding runner's artifacts and our summary.
    assert [p.name for p in runs_dir.iterdir()] == [result.artifact_dir.name]
    assert RUN_FOLDER.match(result.artifact_dir.name)["stem"] == "success"  # type: ignore[index]
    for artifact in ("stdout", "rc", "status", "command", "summary.json"):
        assert (result.artifact_dir / artifact).is_file(), artifact
    assert any((result.artifact_dir / "job_events").iterdir())
    assert (result.artifact_dir / "status").read_text() == "successful"
    assert "PLAY RECAP" in (result.artifact_dir / "stdout").read_text()
    command = json.loads((result.artifact_dir / "command").read_text())
    assert command["cwd"] == str(project_dir)
    assert command["env"]["ANSIBLE_CONFIG"] == str(project_dir / "ansible.cfg")

    summary = json.loads((result.artifact_dir / "summary.json").read_text())
    assert summary["exit_code"] == 0 and summary["status"] == "successful"
    assert summary["errors"] == []  # ansible's messages are kept only when no host result explains the exit
    assert summary["request"]["playbook"] == str(PLAYBOOKS / "success.yml")
    assert summary["request"]["extravars"]["marker"] == marker
    assert summary["hosts"]["h2"] == {
        "ok": 3,
        "changed": 1,
        "failed": 0,
        "unreachable": 0,
        "skipped": 1,
        "rescued": 0,
        "ignored": 0,
        "state": "changed",
        "reason": "",
        "notices": [],
    }
    assert summary["artifact_dir"] == str(result.artifact_dir)
    assert datetime.fromisoformat(summary["started"]) <= datetime.fromisoformat(summary["finished"])


def test_failed_task_fails_the_run(two_hosts: Path, project_dir: Path, runs_dir: Path) -> None:
    result = run("failure", two_hosts, project_dir, runs_dir)

    assert result.exit_code == ExitCode.FAILED
    assert result.exit_reason == "failed on h2, localhost"
    # Ignored and rescued failures are counted as such and not listed.
    assert result.hosts == {
        "h2": HostStats(ok=2, failed=1, rescued=1, ignored=1),
        "localhost": HostStats(ok=2, failed=1, rescued=1, ignored=1, skipped=1),
    }
    assert sorted(result.failures, key=lambda f: f.host) == [
        Failure("h2", "Command fails on h2", "non-zero return code: disk on fire"),
        Failure("localhost", "Hidden failure on localhost", "(output hidden by no_log)"),
    ]
    summary = json.loads((result.artifact_dir / "summary.json").read_text())
    assert summary["exit_code"] == 1
    assert {
        "host": "h2",
        "task": "Command fails on h2",
        "message": "non-zero return code: disk on fire",
        "unreachable": False,
    } in summary["failures"]
    assert "hush-hush-output" not in json.dumps(summary)


def test_unreachable_host_exits_3(tmp_path: Path, project_dir: Path, runs_dir: Path) -> None:
    dead = {
        "ansible_connection": "ssh",
        "ansible_host": "127.0.0.1",
        "ansible_port": 1,  # nothing listens: refused at once
        "ansible_ssh_common_args": "-o ConnectTimeout=3 -o ControlMaster=no",
    }
    inventory = write_inventory(tmp_path / "inventory", {"localhost": LOCAL_HOST, "dead": dead})
    result = run("unreachable", inventory, project_dir, runs_dir)

    assert result.exit_code == ExitCode.UNREACHABLE
    assert result.hosts["dead"].unreachable == 1 and result.hosts["localhost"] == HostStats(ok=1)
    [failure] = result.failures
    assert (failure.host, failure.task, failure.unreachable) == ("dead", "Ping", True)
    assert "port 1" in failure.message


def test_no_targeted_host_fails(two_hosts: Path, project_dir: Path, runs_dir: Path) -> None:
    result = run("no_hosts", two_hosts, project_dir, runs_dir)

    assert result.rc == 0 and result.hosts == {}
    assert result.exit_code == ExitCode.FAILED
    assert "no host" in result.exit_reason
    # ansible's warning says why, and the summary shows it.
    assert result.errors == ("[WARNING]: Could not match supplied host pattern, ignoring: no_such_group",)
    console, buffer = plain_console()
    render_summary(result, console)
    assert "  [WARNING]: Could not match supplied host pattern, ignoring: no_such_group\n" in buffer.getvalue()


def test_check_diff_records_changes_without_applying(
    two_hosts: Path, project_dir: Path, runs_dir: Path, out_dir: Path
) -> None:
    (out_dir / "config.txt").write_text("old content\n")
    (out_dir / "same.txt").write_text("same\n")
    result = run("diff", two_hosts, project_dir, runs_dir, check=True, diff=True, extravars={"out_dir": str(out_dir)})

    assert result.exit_code == ExitCode.OK
    assert result.hosts["localhost"] == HostStats(ok=3, changed=2)
    assert (out_dir / "config.txt").read_text() == "old content\n", "check mode must not write"
    assert not (out_dir / "other.txt").exists()
    changes = {c.task: c for c in result.changes}
    assert sorted(changes) == ["Config file content", "Files per item"]
    [config_diff] = changes["Config file content"].diffs
    assert (config_diff["before"], config_diff["after"]) == ("old content\n", "new content\n")
    # Only the item that differs carries a diff.
    [item_diff] = changes["Files per item"].diffs
    assert item_diff["after"] == "other\n"
    summary = json.loads((result.artifact_dir / "summary.json").read_text())
    assert summary["request"]["check"] is True
    assert any(d.get("after") == "new content\n" for c in summary["changes"] for d in c["diffs"])


class _SnapshotReporter:
    """Copies every file under `root` whenever the run reports progress, i.e. while runner's
    private data dir still exists."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.seen: dict[Path, bytes] = {}
        self.dir_modes: dict[Path, int] = {}

    def start(self, title: str) -> None: ...

    def show(self, note: Note, hosts: Mapping[str, HostState]) -> None:
        self.seen.update(files_under(self.root))
        self.dir_modes.update((p, p.stat().st_mode & 0o777) for p in self.root.iterdir() if p.is_dir())

    def stop(self) -> None: ...


def test_secrets_never_reach_disk_or_argv(
    tmp_path: Path, project_dir: Path, runs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = f"s3cret-{uuid.uuid4().hex}"
    marker = f"plain-{uuid.uuid4().hex}"
    # A user vault too: host vars encrypted with the user's password file must still decrypt.
    user_password_file = tmp_path / "vault-pass"
    user_password_file.write_text("user-vault-password\n")
    inventory = write_inventory(tmp_path / "inventory", {"localhost": LOCAL_HOST})
    (inventory / "host_vars").mkdir()
    user_vault = VaultLib([("default", VaultSecret(b"user-vault-password"))])
    (inventory / "host_vars/localhost.yml").write_bytes(user_vault.encrypt("user_vaulted: from-user-vault\n"))
    # The driver's private data dir is made under tempfile's directory: point that at a folder we watch.
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    watcher = _SnapshotReporter(scratch)

    request = RunRequest(
        playbook=PLAYBOOKS / "secret.yml",
        inventory=inventory,
        extravars={"marker": marker, "api_token_sha256": hashlib.sha256(secret.encode()).hexdigest()},
        secret_extravars={"api_token": secret},
        vault_password_file=user_password_file,
    )
    assert secret not in repr(request)
    result = run_playbook(request, project_dir=project_dir, runs_dir=runs_dir, reporter=watcher)

    assert result.exit_code == ExitCode.OK, result.failures  # the assert task saw the secret
    assert len(watcher.dir_modes) == 1
    [(private_dir, mode)] = watcher.dir_modes.items()
    assert mode == 0o700
    assert not private_dir.exists(), "private data dir must be removed after the run"
    # The scans see real content: the encrypted secret file, and the plain marker in the artifacts.
    ciphertexts = [data for path, data in watcher.seen.items() if path.parent == private_dir]
    assert ciphertexts and all(data.startswith(b"$ANSIBLE_VAULT;1.2;AES256;llmfleet_run") for data in ciphertexts)
    assert not (private_dir / "env").exists() and not any("env" in p.parts for p in watcher.seen)
    artifacts = files_under(runs_dir)
    assert any(marker.encode() in data for data in artifacts.values())

    for path, data in {**watcher.seen, **artifacts}.items():
        assert secret.encode() not in data, f"secret found in {path}"
    command = json.loads((result.artifact_dir / "command").read_text())
    assert secret not in json.dumps(command)
    assert "--vault-id" in command["command"] and "llmfleet_run@prompt" in command["command"]
    summary = json.loads((result.artifact_dir / "summary.json").read_text())
    assert summary["request"]["secret_extravar_names"] == ["api_token"]


def test_the_become_password_answers_ansibles_prompt_and_is_kept_nowhere(
    tmp_path: Path, project_dir: Path, runs_dir: Path
) -> None:
    password = f"sudo-{uuid.uuid4().hex}"
    inventory = write_inventory(tmp_path / "inventory", {"localhost": LOCAL_HOST})
    request = RunRequest(playbook=PLAYBOOKS / "become.yml", inventory=inventory, become_password=password)
    assert password not in repr(request)
    # Unanswered, ansible would wait at its prompt for good: run it where a hang ends the test.
    outcome: list[RunResult] = []
    worker = threading.Thread(target=lambda: outcome.append(
        run_playbook(request, project_dir=project_dir, runs_dir=runs_dir)), daemon=True)
    worker.start()
    worker.join(timeout=120)
    assert outcome, "ansible-playbook still waits at its BECOME password prompt"
    result = outcome[0]
    assert result.exit_code == ExitCode.OK, result.failures
    command = json.loads((result.artifact_dir / "command").read_text())
    assert "--ask-become-pass" in command["command"]
    for path, data in files_under(runs_dir).items():
        assert password.encode() not in data, f"become password found in {path}"
    summary = json.loads((result.artifact_dir / "summary.json").read_text())
    assert summary["request"]["become_password_given"] is True


def test_the_become_password_comes_from_the_environment_or_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    from llmfleet import cli

    assert cli.read_become_password({"LLMFLEET_BECOME_PASSWORD": "pw"}) == "pw"
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False)
    with pytest.raises(cli.UsageError, match="LLMFLEET_BECOME_PASSWORD"):
        cli.read_become_password({})


def test_plain_reporter_prints_a_line_per_task_result(
    two_hosts: Path, project_dir: Path, runs_dir: Path, out_dir: Path
) -> None:
    console, buffer = plain_console()
    request = RunRequest(
        playbook=PLAYBOOKS / "success.yml", inventory=two_hosts, extravars={"marker": "m", "out_dir": str(out_dir)}
    )
    reporter = make_reporter(console)
    assert isinstance(reporter, PlainReporter)
    run_playbook(request, project_dir=project_dir, runs_dir=runs_dir, reporter=reporter)

    lines = buffer.getvalue().splitlines()
    assert all(re.match(r"^\d\d:\d\d:\d\d ", line) for line in lines)
    text = "\n".join(line[9:] for line in lines)
    assert "PLAY Success play" in text and "TASK Write marker file" in text
    for host in ("localhost", "h2"):
        assert re.search(rf"^{host} +changed +Write marker file$", text, re.M)
        assert re.search(rf"^{host} +skipped +Never runs$", text, re.M)
        # A loop is one result line, not one per item.
        assert len(re.findall(rf"^{host} +ok +Loop counted once$", text, re.M)) == 1


def test_plain_reporter_shows_failure_messages(two_hosts: Path, project_dir: Path, runs_dir: Path) -> None:
    console, buffer = plain_console()
    run_playbook(
        RunRequest(playbook=PLAYBOOKS / "failure.yml", inventory=two_hosts),
        project_dir=project_dir,
        runs_dir=runs_dir,
        reporter=PlainReporter(console),
    )

    text = buffer.getvalue()
    assert re.search(r"h2 +failed +Command fails on h2: non-zero return code: disk on fire$", text, re.M)
    assert re.search(r"localhost +failed +Hidden failure on localhost: \(output hidden by no_log\)$", text, re.M)
    assert "hush-hush-output" not in text


def test_live_reporter_runs_on_a_terminal(two_hosts: Path, project_dir: Path, runs_dir: Path, out_dir: Path) -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=120)
    reporter = make_reporter(console)
    assert isinstance(reporter, LiveReporter)
    request = RunRequest(playbook=PLAYBOOKS / "failure.yml", inventory=two_hosts)
    result = run_playbook(request, project_dir=project_dir, runs_dir=runs_dir, reporter=reporter)

    assert result.exit_code == ExitCode.FAILED
    text = buffer.getvalue()
    assert "Command fails on h2" in text and "disk on fire" in text


def _result(**overrides: object) -> RunResult:
    fields: dict[str, object] = {
        "status": "successful",
        "rc": 0,
        "hosts": {"web1": HostStats(ok=2)},
        "failures": [],
        "changes": [],
        "artifact_dir": Path("/runs/20250101T000000Z-site-0123abcd"),
        "started": datetime(2025, 1, 1, tzinfo=UTC),
        "finished": datetime(2025, 1, 1, 0, 1, tzinfo=UTC),
    }
    return RunResult(**{**fields, **overrides})  # type: ignore[arg-type]


def test_summary_lists_hosts_failures_folder_and_exit_code() -> None:
    result = _result(
        status="failed",
        rc=2,
        hosts={"web1": HostStats(ok=4, changed=1), "gpu1": HostStats(ok=1, failed=1)},
        failures=[Failure("gpu1", "Install [nvidia] driver", "No package matching 'nvidia-driver-550'")],
    )
    console, buffer = plain_console()
    render_summary(result, console)

    text = buffer.getvalue()
    assert re.search(r"^web1 +changed +4 +1 +0 +0 +0$", text, re.M)
    assert re.search(r"^gpu1 +failed +1 +0 +1 +0 +0$", text, re.M)
    # Task names and messages are printed verbatim, never read as rich markup.
    assert "gpu1  Install [nvidia] driver: No package matching 'nvidia-driver-550'" in text
    assert "/runs/20250101T000000Z-site-0123abcd" in text
    assert "Exit code 1: failed on gpu1" in text
    assert "\x1b[" not in text


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({}, ExitCode.OK),
        (
            {"status": "failed", "rc": 2, "hosts": {"a": HostStats(failed=1), "b": HostStats(unreachable=1)}},
            ExitCode.FAILED,
        ),
        (
            {"status": "failed", "rc": 4, "hosts": {"a": HostStats(ok=1), "b": HostStats(unreachable=1)}},
            ExitCode.UNREACHABLE,
        ),
        # rc 4 is also ansible's parser error: without unreachable hosts it is a plain failure.
        ({"status": "failed", "rc": 4, "hosts": {}}, ExitCode.FAILED),
        ({"status": "canceled", "rc": 254}, ExitCode.FAILED),
        ({"status": "timeout", "rc": 254, "hosts": {"b": HostStats(unreachable=1)}}, ExitCode.FAILED),
        ({"hosts": {}}, ExitCode.FAILED),
    ],
)
def test_exit_code_scheme(overrides: dict[str, object], code: ExitCode) -> None:
    assert _result(**overrides).exit_code == code


def test_missing_inventory_is_refused_before_running(project_dir: Path, runs_dir: Path) -> None:
    request = RunRequest(playbook=PLAYBOOKS / "success.yml", inventory=project_dir / "nope")
    with pytest.raises(FileNotFoundError, match="inventory"):
        run_playbook(request, project_dir=project_dir, runs_dir=runs_dir)
    assert not runs_dir.exists()


def test_set_stats_data_reaches_the_result_and_summary(two_hosts: Path, project_dir: Path, runs_dir: Path) -> None:
    result = run("stats", two_hosts, project_dir, runs_dir)
    assert result.custom_stats == {"report": {"h2": {"ok": True, "n": 3}, "localhost": {"ok": True, "n": 3}}}
    summary = json.loads((result.artifact_dir / "summary.json").read_text())
    assert summary["custom_stats"] == result.custom_stats


def test_host_lock_is_named_after_the_run_and_released_by_a_failed_host(
    two_hosts: Path, project_dir: Path, runs_dir: Path, tmp_path: Path
) -> None:
    """llm_host's lock (playbooks/*.yml's shape): the run folder names it, and a host that fails
    mid-play still releases it without changing the failure, the counts or the exit code."""
    lock_dir = tmp_path / "lock"
    config = project_dir / "ansible.cfg"
    config.write_text(config.read_text().replace("[defaults]\n", f"[defaults]\nroles_path = {PLAYBOOKS.parents[1] / 'roles'}\n"
                                                f"collections_path = {PLAYBOOKS.parents[1] / 'playbooks' / 'collections'}\n"))
    extravars = {"lock_dir": str(lock_dir), "_llm_host_lock_dirs": {"Linux": str(lock_dir), "Darwin": str(lock_dir)}}
    result = run("locked", two_hosts, project_dir, runs_dir, extravars=extravars)
    seen = json.loads((lock_dir / "seen-by-localhost.json").read_text())
    assert seen["id"] == result.artifact_dir.name  # LLMFLEET_RUN_ID from the driver
    assert seen["mode"] == "apply" and seen["play"] == "Locked play" and seen["user"]
    assert not (lock_dir / "provision.lock").exists()
    assert result.exit_code == ExitCode.FAILED
    assert [(f.host, f.task, f.message) for f in result.failures] == [("h2", "Fail on h2", "h2 broke mid-run")]
    assert result.hosts["h2"].failed == 1 and result.hosts["localhost"].failed == 0
    # The lock is bookkeeping: only the copy changed anything.
    assert sorted((c.host, c.task) for c in result.changes) == [
        ("h2", "Record the lock while it is held"), ("localhost", "Record the lock while it is held")]
