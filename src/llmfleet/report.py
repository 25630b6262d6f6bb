"""What one playbook run produced, what exit code it maps to, and the end-of-run summary.

Exit codes (returned by `invoke provision`, shared by later commands):

    0  every targeted host finished with no failure and no unreachability.
    1  a host failed, or the run itself did not complete: ansible-playbook stopped on an
       error of its own (syntax, missing file, a --limit matching nothing, a bad vault password),
       ansible-runner timed out or was canceled (Ctrl-C), or no host was targeted at all.
       A run that "succeeds" on zero hosts is treated as an error: for provisioning it almost
       always means an empty inventory group or a wrong --limit.
    2  reserved for `invoke drift`: a check run found changes.
    3  some hosts were unreachable and none failed.

A failure outranks unreachability: 1 wins over 3. Counts follow ansible's PLAY RECAP: `ok`
includes `changed` and `ignored` results, and a failure caught by a `rescue:` block counts as
`rescued`, not `failed`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import IntEnum
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

# ansible-playbook's return code when hosts were unreachable (and for parser errors: ansible
# shares the value, so it only means "unreachable" when the recap shows unreachable hosts).
ANSIBLE_RC_UNREACHABLE = 4


class ExitCode(IntEnum):
    """Process exit codes; see the module docstring."""

    OK = 0
    FAILED = 1
    CHANGES = 2
    UNREACHABLE = 3


@dataclass
class HostStats:
    """One host's result counts, as in ansible's PLAY RECAP."""

    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    rescued: int = 0
    ignored: int = 0


@dataclass(frozen=True)
class Failure:
    """A task that failed (not ignored, not rescued) or found its host unreachable."""

    host: str
    task: str
    message: str
    unreachable: bool = False


@dataclass(frozen=True)
class Change:
    """A task that changed (or, in check mode, would change) a host; `diffs` as ansible reports them."""

    host: str
    task: str
    diffs: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class RunResult:
    """Outcome of one `run_playbook` call."""

    status: str  # ansible-runner's: successful, failed, timeout, canceled
    rc: int  # ansible-playbook's return code (254 when runner killed it)
    hosts: dict[str, HostStats]
    failures: list[Failure]
    changes: list[Change]
    artifact_dir: Path
    started: datetime
    finished: datetime
    custom_stats: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> ExitCode:
        return self._decide()[0]

    @property
    def exit_reason(self) -> str:
        """One line explaining `exit_code` for this run."""
        return self._decide()[1]

    def _decide(self) -> tuple[ExitCode, str]:
        failed = sorted(h for h, s in self.hosts.items() if s.failed)
        unreachable = sorted(h for h, s in self.hosts.items() if s.unreachable)
        if self.status in ("timeout", "canceled"):
            return ExitCode.FAILED, f"the run was {'canceled' if self.status == 'canceled' else 'timed out'}"
        if failed:
            return ExitCode.FAILED, f"failed on {', '.join(failed)}"
        if self.status != "successful" and not (unreachable and self.rc == ANSIBLE_RC_UNREACHABLE):
            return ExitCode.FAILED, f"ansible-playbook stopped with rc {self.rc}; see stdout in the run folder"
        if not self.hosts:
            return ExitCode.FAILED, "no host was targeted (empty group or wrong --limit?)"
        if unreachable:
            return ExitCode.UNREACHABLE, f"unreachable: {', '.join(unreachable)}"
        return ExitCode.OK, f"all {len(self.hosts)} host(s) ok"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as written to summary.json."""
        return {
            "status": self.status,
            "rc": self.rc,
            "exit_code": int(self.exit_code),
            "exit_reason": self.exit_reason,
            "started": self.started.isoformat(),
            "finished": self.finished.isoformat(),
            "artifact_dir": str(self.artifact_dir),
            "hosts": {host: asdict(stats) for host, stats in sorted(self.hosts.items())},
            "failures": [asdict(f) for f in self.failures],
            "changes": [{"host": c.host, "task": c.task, "diffs": list(c.diffs)} for c in self.changes],
            "custom_stats": self.custom_stats,
        }


COUNT_COLUMNS = ("ok", "changed", "failed", "unreachable", "skipped")
_COUNT_STYLE = {"ok": "green", "changed": "yellow", "failed": "red", "unreachable": "red"}


def count_cells(stats: HostStats) -> list[Text]:
    """`stats` as table cells in COUNT_COLUMNS order: zeros dimmed, problems in red."""
    cells = []
    for column in COUNT_COLUMNS:
        count = getattr(stats, column)
        cells.append(Text(str(count), style=_COUNT_STYLE.get(column, "") if count else "dim"))
    return cells


def render_summary(result: RunResult, console: Console) -> None:
    """Print per-host counts, each failure, the run folder and what the exit code means.

    On a terminal the table is boxed and coloured; otherwise (CI logs) it is bare aligned text.
    """
    terminal = console.is_terminal
    table = Table(box=box.SIMPLE_HEAD if terminal else None, show_edge=False, pad_edge=False)
    table.add_column("host", no_wrap=True)
    for column in COUNT_COLUMNS:
        table.add_column(column, justify="right")
    for host, stats in sorted(result.hosts.items()):
        bad = stats.failed or stats.unreachable
        table.add_row(
            Text(host, style="bold red" if bad else ""),
            *count_cells(stats),
        )
    console.print(table)

    if result.failures:
        console.print(Text("Failures:", style="bold red"))
        for failure in result.failures:
            kind = " (unreachable)" if failure.unreachable else ""
            line = Text.assemble(
                "  ", (failure.host, "bold"), kind, "  ", (failure.task, "cyan"), ": ", failure.message
            )
            console.print(line, soft_wrap=True)
    if result.changes:
        hosts = len({c.host for c in result.changes})
        console.print(Text(f"{len(result.changes)} change(s) on {hosts} host(s); details in summary.json"))

    console.print(Text.assemble("Run folder: ", str(result.artifact_dir)), soft_wrap=True)
    style = "green" if result.exit_code == ExitCode.OK else "bold red"
    console.print(Text(f"Exit code {int(result.exit_code)}: {result.exit_reason}", style=style), soft_wrap=True)
