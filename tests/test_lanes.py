"""Scenarios side by side (llmfleet.lanes): real subprocesses, their output printed whole per stage."""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from llmfleet import lanes


def _stage(name: str, code: int = 0, sleep: float = 0.0, lines: int = 3) -> lanes.Stage:
    script = (f"import sys, time\nfor i in range({lines}):\n    print('{name} line', i, flush=True)\n"
              f"    time.sleep({sleep / max(lines, 1)})\nsys.exit({code})\n")
    return lanes.Stage(name, [sys.executable, "-c", script])


def _run(stages: list[lanes.Stage], jobs: int, tmp_path: Path,
         capfd: pytest.CaptureFixture[str]) -> tuple[list[lanes.Outcome], str]:
    console = Console(file=sys.stdout, width=200, color_system=None)
    outcomes = lanes.run_lanes(stages, jobs=jobs, cwd=tmp_path, logs=tmp_path / "logs", console=console)
    return outcomes, capfd.readouterr().out


def test_each_stage_is_printed_whole_between_its_markers(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    # Two stages that print at the same time: neither's lines may end up inside the other's block.
    outcomes, out = _run([_stage("a", sleep=0.6, lines=6), _stage("b", sleep=0.6, lines=6)], 2, tmp_path, capfd)
    assert sorted(o.name for o in outcomes) == ["a", "b"] and all(o.returncode == 0 for o in outcomes)
    for name in "ab":
        block = out[out.index(f"==> {name}\n"):out.index(f"<== {name}: ")]
        assert [line for line in block.splitlines()[1:]] == [f"{name} line {i}" for i in range(6)]
        assert (tmp_path / "logs" / f"{name}.log").read_text().count(f"{name} line") == 6


def test_two_lanes_overlap(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    # Four stages of a second each: two lanes end in about two seconds, one lane would take four.
    started = time.monotonic()
    outcomes, _ = _run([_stage(n, sleep=1.0) for n in "abcd"], 2, tmp_path, capfd)
    wall = time.monotonic() - started
    assert len(outcomes) == 4 and all(o.seconds >= 1.0 for o in outcomes)
    assert wall < sum(o.seconds for o in outcomes) - 1.0


def test_after_a_failure_no_new_stage_starts(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    # One lane: the failing second stage stops the third from starting; the first was printed.
    outcomes, out = _run([_stage("ok"), _stage("bad", code=3), _stage("never")], 1, tmp_path, capfd)
    assert [(o.name, o.returncode) for o in outcomes] == [("ok", 0), ("bad", 3)]
    assert "<== bad: " in out and "(exit 3)" in out and "never line" not in out


def test_the_heaviest_go_first_and_the_rest_keep_their_order() -> None:
    names = ["continue", "firewall", "fleet", "llm_host", "vllm", "workstation"]
    assert lanes.heaviest_first(names, ("fleet", "workstation", "vllm", "gone")) == [
        "fleet", "workstation", "vllm", "continue", "firewall", "llm_host"]


def test_a_console_on_another_stream_still_gets_the_markers(tmp_path: Path) -> None:
    buffer = io.StringIO()
    outcomes = lanes.run_lanes([_stage("x")], jobs=2, cwd=tmp_path, logs=tmp_path / "logs",
                               console=Console(file=buffer, width=200, color_system=None))
    assert outcomes[0].returncode == 0 and "==> x" in buffer.getvalue() and "<== x: " in buffer.getvalue()


def test_a_failure_is_digested_after_every_lane_ended(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    # The failing stage ends first and a slow one prints after it; the run's last lines still say
    # which task failed and why.
    fail = ("import sys\nprint('TASK [Wait for the API]')\nprint('\\x1b[31mfatal: [fleet-server]: FAILED! => "
            "timed out\\x1b[0m')\nprint('detail one')\nfor i in range(200):\n    print('noise', i)\nsys.exit(2)\n")
    outcomes, out = _run([lanes.Stage("bad", [sys.executable, "-c", fail]), _stage("slow", sleep=1.0, lines=50)],
                         2, tmp_path, capfd)
    assert {o.name: o.returncode for o in outcomes} == {"bad": 2, "slow": 0}
    tail = out[out.index("<== slow"):]
    assert "=== why bad failed" in tail
    assert "fatal: [fleet-server]: FAILED! => timed out" in tail and "\x1b[31m" not in tail
    assert "detail one" in tail and "noise 199" in tail and "noise 100" not in tail


def test_the_digest_keeps_error_context_and_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("\n".join(["start", "ok", "fatal: [h]: FAILED! => boom", "after", *[f"l{i}" for i in range(50)]]))
    digest = lanes.failure_digest(log, context=1, tail=3)
    assert digest[:2] == ["fatal: [h]: FAILED! => boom", "after"]
    assert digest[-3:] == ["l47", "l48", "l49"] and "l10" not in digest
