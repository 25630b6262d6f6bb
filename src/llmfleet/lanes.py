"""Long test stages (molecule scenarios) run side by side, their output kept whole per stage.

`invoke test` runs the scenarios in `jobs` lanes: each lane takes the next stage from one queue
(the heaviest first, so the lanes end close together), runs it with its output in a log file, and
when it ends prints that output whole between the stage's `==>` and `<==` lines, so a CI log reads
as if the stages had run one after another. Once a stage fails no new one starts; the ones running
finish and are printed. A failed stage's log is long and another lane may print after it, so
the run ends with a digest of each failure (its error lines and its last lines), where a CI log's
tail shows it. Most of a scenario's time is waiting (model loads, health checks, package
downloads), which is why two lanes on two cores end sooner than one.
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape


@dataclass(frozen=True)
class Stage:
    name: str
    argv: Sequence[str]


@dataclass(frozen=True)
class Outcome:
    name: str
    returncode: int
    seconds: float
    log: Path


def heaviest_first(names: Sequence[str], heavy: Sequence[str]) -> list[str]:
    """`names` with those listed in `heavy` first, in that order; the others after, as given."""
    return [n for n in heavy if n in names] + [n for n in names if n not in heavy]


_ANSI = re.compile(rb"\x1b\[[0-9;]*[A-Za-z]")
# What Ansible, molecule and pytest print when something fails.
_FAILURE = re.compile(rb"fatal:|FAILED!|failed=[1-9]|\bERROR\b|Traceback|AssertionError|^E\s")


def failure_digest(log: Path, *, context: int = 6, limit: int = 120, tail: int = 20) -> list[str]:
    """The lines of `log` that say why a stage failed, without colours: each error line with the
    `context` lines after it (at most `limit` lines in all), then the log's last `tail` lines."""
    lines = [_ANSI.sub(b"", raw).decode("utf-8", "replace").rstrip() for raw in log.read_bytes().splitlines()]
    chosen: list[int] = []
    for number, line in enumerate(lines):
        if _FAILURE.search(line.encode()):
            chosen.extend(range(number, min(number + context + 1, len(lines))))
    picked = sorted(set(chosen))[:limit]
    digest: list[str] = []
    previous = -2
    for number in picked:
        if number != previous + 1 and digest:
            digest.append("  ...")
        digest.append(lines[number])
        previous = number
    last = [lines[n] for n in range(max(0, len(lines) - tail), len(lines)) if n not in set(picked)]
    if last:
        digest += ["  ... (the log's last lines)", *last]
    return digest


def tool_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment plus `env`, with this interpreter's bin directory leading PATH:
    molecule and ansible-lint call ansible-* tools by name, and the venv need not be activated."""
    merged = {**os.environ, **(env or {})}
    bindir = str(Path(sys.executable).parent)
    if merged.get("PATH", "").split(os.pathsep)[0] != bindir:
        merged["PATH"] = os.pathsep.join(filter(None, [bindir, merged.get("PATH")]))
    return merged


def run_lanes(stages: Sequence[Stage], *, jobs: int, cwd: Path, logs: Path, console: Console,
              env: Mapping[str, str] | None = None) -> list[Outcome]:
    """Run `stages` in `jobs` lanes; every stage's outcome, in the order they ended.

    A stage's output goes to `logs/<name>.log` (kept after the run) and is printed whole when it
    ends. After a failure the stages not yet started are skipped (not in the result).
    """
    logs.mkdir(parents=True, exist_ok=True)
    pending: queue.Queue[Stage] = queue.Queue()
    for stage in stages:
        pending.put(stage)
    outcomes: list[Outcome] = []
    failed = threading.Event()
    printing = threading.Lock()
    merged = tool_environment(env)

    def lane() -> None:
        while not failed.is_set():
            try:
                stage = pending.get_nowait()
            except queue.Empty:
                return
            log = logs / f"{stage.name.replace(' ', '-').replace('/', '_')}.log"
            with printing:
                console.print(f"[dim]started {escape(stage.name)} (output: {log})[/dim]")
            started = time.monotonic()
            with log.open("wb") as out:
                code = subprocess.run(list(stage.argv), cwd=cwd, env=merged, stdout=out, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, check=False).returncode
            seconds = time.monotonic() - started
            if code:
                failed.set()
            with printing:
                outcomes.append(Outcome(stage.name, code, seconds, log))
                console.print(f"[bold]==> {escape(stage.name)}[/bold]")
                sys.stdout.flush()
                console.file.flush()
                with log.open("rb") as text:
                    # The tool's own bytes, colours and all, as the one-lane run would have shown them.
                    for chunk in iter(lambda: text.read(1 << 16), b""):
                        sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
                status = "" if code == 0 else f" (exit {code})"
                console.print(f"[bold]<== {escape(stage.name)}: {seconds:.1f} s{status}[/bold]")

    threads = [threading.Thread(target=lane, name=f"lane-{i}", daemon=True) for i in range(max(1, jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for outcome in outcomes:
        if outcome.returncode:
            console.print(f"[bold red]=== why {escape(outcome.name)} failed (digest of {outcome.log}) ===[/bold red]")
            for line in failure_digest(outcome.log):
                console.print(escape(line), highlight=False, soft_wrap=True)
    return outcomes
