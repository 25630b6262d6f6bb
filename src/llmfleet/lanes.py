"""Long test stages (molecule scenarios) run side by side, their output kept whole per stage.

`invoke test` runs the scenarios in `jobs` lanes: each lane takes the next stage from one queue
(the heaviest first, so the lanes end close together), runs it with its output in a log file, and
when it ends prints that output whole between the stage's `==>` and `<==` lines, so a CI log reads
as if the stages had run one after another. Once a stage fails no new one starts; the ones running
finish and are printed. Most of a scenario's time is waiting (model loads, health checks, package
downloads), which is why two lanes on two cores end sooner than one.
"""

from __future__ import annotations

import os
import queue
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
    return outcomes
