"""`invoke drift`: a check+diff run read as a drift report, with an exit code cron and CI can use.

Exit codes: 0 no drift, 2 drift found (report printed), and the run's own 1 or 3 when a host
failed or was unreachable: an incomplete check cannot say a host is clean.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.text import Text

from llmfleet.report import Change, ExitCode, RunResult, render_exit

# Lines of diff shown per change; the full diffs are in the run folder's summary.json.
DIFF_LINES = 12


def drift_exit(result: RunResult) -> tuple[ExitCode, str]:
    """The drift verdict: the run's failure codes first, then 2 when anything would change."""
    if result.exit_code != ExitCode.OK:
        return result.exit_code, result.exit_reason
    drifted = sorted({change.host for change in result.changes})
    if drifted:
        return ExitCode.CHANGES, f"drift on {', '.join(drifted)}"
    return ExitCode.OK, f"no drift on {len(result.hosts)} host(s)"


def short_diff(diff: Mapping[str, Any], limit: int = DIFF_LINES) -> list[str]:
    """A few lines that say what one ansible diff would change."""
    before, after = diff.get("before"), diff.get("after")
    if isinstance(before, str) and isinstance(after, str):
        lines = list(difflib.unified_diff(
            before.splitlines(), after.splitlines(), lineterm="", n=1,
            fromfile=str(diff.get("before_header", "before")), tofile=str(diff.get("after_header", "after"))))
    elif isinstance(before, Mapping) and isinstance(after, Mapping):
        # file, user, service ... report the attributes that differ.
        header = diff.get("before_header") or diff.get("after_header")
        lines = [f"@@ {header}"] if header else []
        lines += [f"  {key}: {before.get(key)!r} -> {after.get(key)!r}"
                  for key in sorted(set(before) | set(after)) if before.get(key) != after.get(key)]
    elif isinstance(diff.get("prepared"), str):
        lines = diff["prepared"].splitlines()
    else:
        lines = []
    if len(lines) > limit:
        lines = lines[:limit] + [f"... {len(lines) - limit} more line(s)"]
    return lines


def render_drift(result: RunResult, console: Console) -> None:
    """Per host, each task that would change it and a short diff of what."""
    by_host: dict[str, list[Change]] = {}
    for change in result.changes:
        by_host.setdefault(change.host, []).append(change)
    for host in sorted(result.hosts):
        changes = by_host.get(host, [])
        outcome = result.outcome(host)
        if outcome.state not in ("ok", "changed"):
            # A check that did not run to its end cannot call the host clean.
            reason = f": {outcome.reason}" if outcome.reason else ""
            console.print(Text.assemble((host, "bold red"), f": {outcome.state}{reason}; check incomplete"))
        elif not changes:
            console.print(Text.assemble((host, "bold"), ": no drift", style="green"))
            continue
        if changes:
            console.print(Text.assemble((host, "bold red"), f": {len(changes)} task(s) would change"))
        for change in changes:
            console.print(Text.assemble("  - ", (change.task, "cyan")), soft_wrap=True)
            for diff in change.diffs:
                for line in short_diff(diff):
                    style = "green" if line.startswith("+") else "red" if line.startswith("-") else "dim"
                    console.print(Text("      " + line, style=style), soft_wrap=True, markup=False)
    render_exit(*drift_exit(result), console)
