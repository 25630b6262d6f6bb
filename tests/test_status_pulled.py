"""`invoke status --pulled`: every host's last pull report, read on the team server by playbooks/pulled.yml."""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from llmfleet import cli
from llmfleet.errors import UsageError
from llmfleet.project import Project
from llmfleet.report import ExitCode
from llmfleet.status import parse_report_line, pulled_rows, render_pulled
from test_runner import LOCAL_HOST, run

NOW = 1_780_000_000
SCHEDULE = {"report": True, "interval": 3600, "random_delay": 900}


def _line(name: str, age: int, **report: object) -> str:
    body = {"host": name, "started": "2026-12-05T11:00:00+00:00", "finished": "2026-12-05T11:01:00+00:00",
            "repo": "ssh://git@git.team.lan/team/llmfleet.git", "version": "main",
            "commit": "0123456789abcdef0123456789abcdef01234567", "fetch_error": None, "state": "changed",
            "changed": 3, "exit_code": 0, "exit_reason": "all 1 host(s) ok", "failures": [], **report}
    return f"{NOW - age} {name} {json.dumps(body)}"


def _server(*lines: str, now: int = NOW, **enrolled: dict) -> dict:
    return {"now": now, "reports": list(lines), "enrolled": enrolled}


def _render(pulled: dict) -> tuple[bool, str]:
    out = io.StringIO()
    clean = render_pulled(pulled, Console(file=out, width=250, color_system=None))
    return clean, out.getvalue()


def test_good_reports_in_time_are_clean() -> None:
    pulled = {"team-gpu": _server(_line("alice-mbp", 600), _line("bob-mbp", 5400, state="ok", finished="2026-12-05T13:01:00.123456+01:00"),
                                  **{"alice-mbp": SCHEDULE, "bob-mbp": SCHEDULE})}
    assert pulled_rows(pulled) == [
        ("alice-mbp", "2026-12-05 11:01:00Z", "0123456789ab", "changed", "10 min", ""),
        ("bob-mbp", "2026-12-05 12:01:00Z", "0123456789ab", "ok", "90 min", ""),
    ]
    clean, text = _render(pulled)
    assert clean and "alice-mbp" in text and "10 min" in text


def test_what_needs_a_look_is_named() -> None:
    failure = {"host": "carol-mbp", "task": "Check the inventory", "message": "continue_user is not a variable"}
    pulled = {"team-gpu": _server(
        _line("alice-mbp", 3 * 86400),
        _line("bob-mbp", 60, fetch_error="git fetch failed (128): could not resolve host", state="ok"),
        _line("carol-mbp", 60, state="failed", exit_reason="failed on carol-mbp", failures=[failure]),
        f"{NOW - 60} dave-mbp {{not json",
        _line("erin-mbp", 60),
        **{"alice-mbp": SCHEDULE, "bob-mbp": SCHEDULE, "carol-mbp": SCHEDULE, "dave-mbp": SCHEDULE,
           "frank-mbp": SCHEDULE, "gina-mbp": {**SCHEDULE, "report": False}})}
    rows = {row[0]: row for row in pulled_rows(pulled)}
    assert rows["alice-mbp"][4:] == ("3 d", "overdue: no report for two intervals")
    assert rows["bob-mbp"][5] == "the fetch failed, it converged the checkout it had: git fetch failed (128): could not resolve host"
    assert rows["carol-mbp"][3:] == ("failed", "60 s", "continue_user is not a variable")
    assert rows["dave-mbp"][5] == "the report cannot be read"
    assert rows["erin-mbp"][5] == "not in pull mode in this inventory"
    assert rows["frank-mbp"] == ("frank-mbp", "-", "-", "-", "-", "no report yet")
    assert rows["gina-mbp"][5] == "sends no report (no llm_host_pull_report_url and key)"
    clean, text = _render(pulled)
    assert not clean and "no report yet" in text


def test_the_newest_report_wins_across_servers_and_the_file_name_names_the_host() -> None:
    old = _line("alice-mbp", 7200, commit="aaaaaaaaaaaaaaaa")
    new = _line("alice-mbp", 60, commit="bbbbbbbbbbbbbbbb")
    # The report's own "host" field is the laptop's word; the file name is what the proxy enforced.
    lying = _line("bob-mbp", 30, host="alice-mbp", commit="cccccccccccccccc")
    pulled = {"gpu-1": _server(new, **{"alice-mbp": SCHEDULE}), "gpu-2": _server(old, lying)}
    rows = {row[0]: row for row in pulled_rows(pulled)}
    assert rows["alice-mbp"][2] == "bbbbbbbbbbbb" and rows["bob-mbp"][2] == "cccccccccccc"
    assert parse_report_line("not a report") is None and parse_report_line("") is None
    # A report without a readable time: when the server received it.
    unreadable_time = _line("carol-mbp", 0, finished="yesterday")
    assert pulled_rows({"gpu-1": _server(unreadable_time)})[0][1] == \
        datetime.fromtimestamp(NOW, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def test_an_inventory_without_a_report_server_is_not_clean() -> None:
    clean, text = _render({})
    assert not clean and "No host of this inventory takes pull reports" in text
    clean, text = _render({"team-gpu": _server()})
    assert clean and "No host is in pull mode" in text


def test_pulled_takes_no_host_or_group(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--pulled lists every host in pull mode"):
        cli.status(Project(tmp_path), pulled=True, host="alice-mbp")


def test_the_playbook_reads_the_server_and_names_the_hosts_in_pull_mode_without_keys(
        tmp_path: Path, project_dir: Path, runs_dir: Path) -> None:
    # The server is this machine (no reports directory here: none received); the laptops are never reached.
    key = "laptop-report-key-0123456789abcdef"
    laptop = {"ansible_host": "192.0.2.10", "llm_host_pull": True}
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    (inventory / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {
        "gpu_servers": {"hosts": {"localhost": {**LOCAL_HOST, "llm_host_expose": True}}},
        "dev_laptops": {"hosts": {
            "alice-mbp": {**laptop, "llm_host_pull_report_url": "https://localhost/llmfleet/pull-reports",
                          "llm_host_pull_report_key": key, "llm_host_pull_interval": 7200},
            "bob-mbp": {**laptop, "llm_host_pull": "yes"},
            "carol-mbp": {"ansible_host": "192.0.2.12"}}}}}}))
    playbook = Path(__file__).resolve().parents[1] / "playbooks/pulled.yml"
    result = run(str(playbook.with_suffix("")), inventory, project_dir, runs_dir)
    assert result.exit_code == ExitCode.OK
    assert sorted(result.hosts) == ["localhost"]
    pulled = result.custom_stats["llmfleet_pulled"]["localhost"]
    assert pulled["reports"] == [] and abs(pulled["now"] - NOW) < 10 * 365 * 86400
    assert pulled["enrolled"] == {"alice-mbp": {"report": True, "interval": 7200, "random_delay": 900},
                                  "bob-mbp": {"report": False, "interval": 3600, "random_delay": 900}}
    for path in result.artifact_dir.rglob("*"):
        if path.is_file():
            assert key not in path.read_text(errors="replace"), path
