"""bench/benchlib.py's parsing: the PLAY RECAP of a bare ansible-playbook, the slowest tasks of a run."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest
from _modules import load_module


@pytest.fixture(scope="module")
def benchlib() -> ModuleType:
    return load_module("bench/benchlib.py")


RECAP = """\
TASK [Release the host lock] ****
ok: [bench-laptop-00]

PLAY RECAP *********************************************************************
bench-laptop-00            : ok=97   changed=0    unreachable=0    failed=0    skipped=25   rescued=0    ignored=0
bench-server               : ok=138  changed=2    unreachable=0    failed=1    skipped=43   rescued=0    ignored=0
"""


def test_recap_gives_each_host_its_counts(benchlib: ModuleType) -> None:
    hosts = benchlib._recap(RECAP)
    assert hosts["bench-laptop-00"] == {"ok": 97, "changed": 0, "unreachable": 0, "failed": 0, "skipped": 25,
                                        "rescued": 0, "ignored": 0}
    assert hosts["bench-server"]["changed"] == 2 and hosts["bench-server"]["failed"] == 1


def test_no_recap_is_no_hosts(benchlib: ModuleType) -> None:
    assert benchlib._recap("ERROR! the playbook could not be found\n") == {}


def test_task_profile_sums_each_task_over_hosts(benchlib: ModuleType, tmp_path: Path) -> None:
    events = tmp_path / "job_events"
    events.mkdir()
    rows = [("runner_on_ok", "Gather", "detect.yml:4", 0.8), ("runner_on_ok", "Gather", "detect.yml:4", 0.7),
            ("runner_on_skipped", "Pull", "models.yml:36", 0.02), ("playbook_on_task_start", "Pull", "models.yml:36", None)]
    for counter, (event, task, where, duration) in enumerate(rows):
        data = {"task": task, "task_path": where, **({"duration": duration} if duration is not None else {})}
        (events / f"{counter}.json").write_text(json.dumps({"event": event, "event_data": data}))
    run = benchlib.Run("x", [], 1.0, 0, tmp_path)
    profile = benchlib.task_profile(run)
    assert profile[0] == (pytest.approx(1.5), "Gather", "detect.yml:4")
    assert profile[1] == (pytest.approx(0.02), "Pull", "models.yml:36")
    assert len(profile) == 2


def test_run_counts_ok_and_skipped_as_tasks(benchlib: ModuleType) -> None:
    run = benchlib.Run("x", [], 6.2, 0, None, {"hosts": {"h": {"ok": 77, "changed": 0, "skipped": 25}}})
    assert run.tasks("h") == 102 and run.changed() == 0


def test_machine_speed_is_a_positive_duration(benchlib: ModuleType) -> None:
    speed = benchlib.machine_speed(runs=1)
    assert 0 < speed < 60


def test_timed_counts_the_cpu_of_the_whole_process_tree(benchlib: ModuleType) -> None:
    # A child that spends its time in a grandchild: the grandchild's CPU is the run's too.
    burn = "import time; t = time.process_time(); exec('while time.process_time() - t < 0.3: pass')"
    argv = [sys.executable, "-c", f"import subprocess, sys; subprocess.run([sys.executable, '-c', {burn!r}])"]
    wall, cpu, _ = benchlib._timed("cpu", argv, dict(os.environ))
    assert 0.3 <= cpu <= wall + 0.5


def test_a_sleeping_run_costs_no_cpu(benchlib: ModuleType) -> None:
    wall, cpu, _ = benchlib._timed("sleep", [sys.executable, "-c", "import time; time.sleep(0.5)"], dict(os.environ))
    assert wall >= 0.5 and cpu < 0.3
