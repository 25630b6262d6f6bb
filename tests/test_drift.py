"""`invoke drift` on real ansible-runner check+diff runs: report, exit codes, nothing applied."""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path

import pytest
from rich.console import Console

from llmfleet.drift import drift_exit, render_drift, short_diff
from llmfleet.report import ExitCode, HostStats, RunResult, host_outcomes
from test_runner import LOCAL_HOST, run, write_inventory


@pytest.fixture
def localhost(tmp_path: Path) -> Path:
    return write_inventory(tmp_path / "inv", {"localhost": LOCAL_HOST})


def _report(result: object) -> str:
    out = io.StringIO()
    render_drift(result, Console(file=out, width=200, color_system=None))  # type: ignore[arg-type]
    return out.getvalue()


def test_drift_is_reported_per_task_with_a_short_diff(localhost: Path, project_dir: Path, runs_dir: Path,
                                                      out_dir: Path) -> None:
    (out_dir / "config.txt").write_text("old content\n")
    (out_dir / "same.txt").write_text("same\n")
    result = run("diff", localhost, project_dir, runs_dir, check=True, diff=True, extravars={"out_dir": str(out_dir)})
    assert drift_exit(result) == (ExitCode.CHANGES, "drift on localhost")
    report = _report(result)
    assert "localhost: 2 task(s) would change" in report
    assert "- Config file content" in report and "- Files per item" in report
    assert "-old content" in report and "+new content" in report
    assert "+other" in report
    assert "Exit code 2: drift on localhost" in report
    assert (out_dir / "config.txt").read_text() == "old content\n", "a drift check must not repair"


def test_a_clean_host_exits_0(localhost: Path, project_dir: Path, runs_dir: Path) -> None:
    result = run("clean", localhost, project_dir, runs_dir, check=True, diff=True)
    assert drift_exit(result) == (ExitCode.OK, "no drift on 1 host(s)")
    assert "localhost: no drift" in _report(result)


def test_a_failed_check_is_not_called_clean(localhost: Path, project_dir: Path, runs_dir: Path) -> None:
    result = run("broken_check", localhost, project_dir, runs_dir, check=True, diff=True)
    code, reason = drift_exit(result)
    assert code == ExitCode.FAILED and "failed on localhost" in reason


def test_short_diff_of_attributes_and_long_texts() -> None:
    attrs = short_diff({"before": {"path": "/x", "mode": "0644", "state": "file"},
                        "after": {"path": "/x", "mode": "0600", "state": "file"}, "before_header": "/x"})
    assert attrs == ["@@ /x", "  mode: '0644' -> '0600'"]
    long = short_diff({"before": "".join(f"{i}\n" for i in range(50)), "after": ""}, limit=5)
    assert len(long) == 6 and long[-1].startswith("... ") and long[-1].endswith("more line(s)")
    assert short_diff({}) == []


def test_drift_in_no_log_tasks_is_reported_without_content(localhost: Path, project_dir: Path, runs_dir: Path,
                                                            out_dir: Path) -> None:
    (out_dir / "one.env").write_text("token=one-s3cr3t-drift\n")
    (out_dir / "one.env").chmod(0o644)
    (out_dir / "two.env").write_text("token=two-s3cr3t-drift\n")
    (out_dir / "two.env").chmod(0o600)
    (out_dir / "same.env").write_text("token=s3cr3t-drift\n")
    (out_dir / "same.env").chmod(0o600)
    result = run("hidden_drift", localhost, project_dir, runs_dir, check=True, diff=True,
                 extravars={"out_dir": str(out_dir)})
    assert [(c.host, c.task) for c in result.changes] == [("localhost", "Secret file per item"),
                                                          ("localhost", "Secret file")]
    assert drift_exit(result)[0] == ExitCode.CHANGES
    report = _report(result)
    assert "- Secret file per item" in report and "- Unchanged secret file" not in report
    assert "s3cr3t" not in report


def test_a_host_whose_check_did_not_run_is_not_called_clean() -> None:
    """A host that passed the preflight but whose play never ran has no drift found, and is no
    clean host either: the report says it was not checked to the end and the exit code is 1."""
    hosts = {"server": HostStats(ok=3, failed=1), "laptop": HostStats(ok=2)}
    result = RunResult(
        status="failed", rc=2, hosts=hosts, failures=[], changes=[], artifact_dir=Path("/runs/x"),
        started=datetime(2026, 1, 1), finished=datetime(2026, 1, 1),
        outcomes=host_outcomes(hosts, planned=["server", "laptop"], worked=["server"]),
    )
    report = _report(result)
    assert "laptop: not run: ansible-playbook ended the run before its play" in report
    assert "check incomplete" in report and "laptop: no drift" not in report
    assert drift_exit(result) == (ExitCode.FAILED, "failed on server; not run: laptop")


def test_invoke_drift_ends_with_one_exit_line(localhost: Path, project_dir: Path, runs_dir: Path, out_dir: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # The whole command as `invoke drift` runs it: the run's summary, then the drift report, and
    # the drift's exit code as the only exit line (the run's own would say 0 or "changes").
    from llmfleet import cli
    from llmfleet.project import Project
    from test_runner import PLAYBOOKS

    (out_dir / "config.txt").write_text("old content\n")
    (project_dir / "playbooks").symlink_to(PLAYBOOKS)
    monkeypatch.setenv("LLMFLEET_RUNS_DIR", str(runs_dir))
    out = io.StringIO()
    _, code = cli.drift(Project(project_dir), playbook="diff", inventory=str(localhost),
                        extra_vars=[f"out_dir={out_dir}"], console=Console(file=out, width=200, color_system=None))
    text = out.getvalue()
    assert code == ExitCode.CHANGES
    assert text.count("Exit code") == 1 and text.rstrip().endswith("Exit code 2: drift on localhost"), text[-600:]
