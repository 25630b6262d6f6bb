"""What one playbook run produced, what exit code it maps to, and the end-of-run summary.

Exit codes (returned by `invoke provision`, shared by later commands):

    0  every targeted host finished with no failure and no unreachability.
    1  a host failed or was not run, or the run itself did not complete: ansible-playbook stopped
       on an error of its own (syntax, missing file, a --limit matching nothing, a bad vault
       password), ansible-runner timed out or was canceled (Ctrl-C), or no host was targeted at all.
       A run that "succeeds" on zero hosts is treated as an error: for provisioning it almost
       always means an empty inventory group or a wrong --limit.
    2  reserved for `invoke drift`: a check run found changes.
    3  some hosts were unreachable and none failed.

A failure outranks unreachability: 1 wins over 3.

Every host also gets a state (`HostOutcome`): failed, unreachable, not run (it passed the
preflight but its play never ran, with the reason), interrupted (its play was cut short), changed
or ok. A host is never shown ok unless its play ran to its end. Counts follow ansible's PLAY RECAP: `ok`
includes `changed` and `ignored` results, and a failure caught by a `rescue:` block counts as
`rescued`, not `failed`.

When no host result explains the exit (ansible-playbook stopped on an error of its own, or targeted
no host), the reason is only in ansible's own messages: `ansible_messages` picks them out of its
output, and the summary prints them with the file and line ansible gave.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
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

# Lines of ansible's messages kept for a run it stopped: a traceback must not flood the summary.
# The whole output stays in the run folder's `stdout`.
MESSAGE_LINES = 40
SECRET_MASK = "********"
_SECRET_LINE_MIN = 6


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
class Notice:
    """Something a role told the user about a host: a debug message or a module warning."""

    host: str
    task: str
    message: str


@dataclass(frozen=True)
class HostOutcome:
    """What happened to one host in a run: `state` is one of HOST_STATES, `reason` says why when
    the state alone does not (not run, interrupted)."""

    state: str
    reason: str = ""


HOST_STATES = ("failed", "unreachable", "not run", "interrupted", "changed", "ok")
_UNFINISHED = ("not run", "interrupted")


def host_outcomes(
    hosts: dict[str, HostStats],
    *,
    planned: Iterable[str] = (),
    worked: Iterable[str] = (),
    interrupted: Iterable[str] = (),
    status: str = "successful",
) -> dict[str, HostOutcome]:
    """Each host's state from its counts and the plays it worked in.

    `planned`: hosts that passed a preflight play and so expect a later play of the run; `worked`:
    hosts with a task result in a play after the preflight; `interrupted`: hosts whose last play
    never ended (the run was canceled, timed out or killed in it).
    """
    worked, interrupted = set(worked), set(interrupted)
    stopped = {"canceled": "the run was canceled", "timeout": "the run timed out"}.get(status)
    outcomes: dict[str, HostOutcome] = {}
    for host, stats in hosts.items():
        if stats.failed:
            outcomes[host] = HostOutcome("failed")
        elif stats.unreachable:
            outcomes[host] = HostOutcome("unreachable")
        elif host in planned and host not in worked:
            if stopped:
                reason = f"{stopped} before its play started"
            elif any(s.failed or s.unreachable for s in hosts.values()):
                reason = ("ansible-playbook ended the run before its play: every host of an earlier "
                          "play had failed or was unreachable")
            else:
                reason = "no play of this run converged it (does its kind's play match it?)"
            outcomes[host] = HostOutcome("not run", reason)
        elif host in interrupted:
            outcomes[host] = HostOutcome("interrupted", f"{stopped or 'the run ended'} while its play ran")
        else:
            outcomes[host] = HostOutcome("changed" if stats.changed else "ok")
    return outcomes


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
    # ansible's own error and warning lines (ansible_messages), kept when they are the only
    # explanation of the exit: see `needs_ansible_messages`.
    errors: tuple[str, ...] = ()
    # Each host's state (host_outcomes); a host missing here is read from its counts alone.
    outcomes: dict[str, HostOutcome] = field(default_factory=dict)
    notices: tuple[Notice, ...] = ()

    def outcome(self, host: str) -> HostOutcome:
        """`host`'s state: the recorded one, else what its counts say."""
        if host in self.outcomes:
            return self.outcomes[host]
        # Without the tracker's record of plays, a stopped run may have cut any host short.
        stopped = [host] if self.status in ("canceled", "timeout") else []
        return host_outcomes({host: self.hosts.get(host, HostStats())}, interrupted=stopped, status=self.status)[host]

    @property
    def exit_code(self) -> ExitCode:
        return self._decide()[0]

    @property
    def exit_reason(self) -> str:
        """One line explaining `exit_code` for this run."""
        return self._decide()[1]

    @property
    def needs_ansible_messages(self) -> bool:
        """Whether no host result explains the exit: ansible-playbook stopped on an error of its
        own (syntax, vault, missing role or module, --limit matching nothing ...) or targeted no host."""
        return self._decide()[2]

    def _decide(self) -> tuple[ExitCode, str, bool]:
        failed = sorted(h for h, s in self.hosts.items() if s.failed)
        unreachable = sorted(h for h, s in self.hosts.items() if s.unreachable)
        if self.status in ("timeout", "canceled"):
            return ExitCode.FAILED, f"the run was {'canceled' if self.status == 'canceled' else 'timed out'}", False
        unfinished = sorted(h for h in self.hosts if self.outcome(h).state in _UNFINISHED)
        not_run = f"; not run: {', '.join(unfinished)}" if unfinished else ""
        if failed:
            return ExitCode.FAILED, f"failed on {', '.join(failed)}{not_run}", False
        if unfinished and self.status == "successful" or unfinished and unreachable:
            return ExitCode.FAILED, f"not run: {', '.join(unfinished)}", False
        if self.status != "successful" and not (unreachable and self.rc == ANSIBLE_RC_UNREACHABLE):
            return ExitCode.FAILED, self._stop_reason(), True
        if not self.hosts:
            return ExitCode.FAILED, "no host was targeted (empty group or wrong --limit?)", True
        if unreachable:
            return ExitCode.UNREACHABLE, f"unreachable: {', '.join(unreachable)}", False
        return ExitCode.OK, f"all {len(self.hosts)} host(s) ok", False

    def _stop_reason(self) -> str:
        """ansible's first error message, when there is one: the exit line then says what happened."""
        first = next((line for line in self.errors if _ERROR_START.match(line)), "")
        first = _ERROR_START.sub("", first, count=1).strip()
        if first:
            return f"ansible-playbook stopped with rc {self.rc}: {first}"
        return f"ansible-playbook stopped with rc {self.rc}; see stdout in the run folder"

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
            "hosts": {
                host: {
                    **asdict(stats),
                    **asdict(self.outcome(host)),
                    "notices": [{"task": n.task, "message": n.message} for n in self.notices if n.host == host],
                }
                for host, stats in sorted(self.hosts.items())
            },
            "failures": [asdict(f) for f in self.failures],
            "changes": [{"host": c.host, "task": c.task, "diffs": list(c.diffs)} for c in self.changes],
            "custom_stats": self.custom_stats,
            "errors": list(self.errors),
        }


# A message block starts with one of ansible's prefixes: `[ERROR]:` / `[WARNING]:` (ansible-core
# 2.19 on), `ERROR!` (before 2.19); the lines up to the next prefix belong to it.
_BLOCK_START = re.compile(r"^(\[ERROR\]:|ERROR!|\[WARNING\]:|\[DEPRECATION WARNING\]:)")
_ERROR_START = re.compile(r"^(\[ERROR\]:|ERROR!)")
# Where ansible says the error is: `Origin: <file>[:line[:column]]` (2.19 on), or
# `The error appears to (be|have been) in '<file>': line N, column M` (before).
_ORIGIN = re.compile(
    r"^Origin: (?P<path>.+?)(?::\d+){0,2}$|^The error appears to (?:be|have been) in '(?P<legacy>[^']+)'"
)
# The source excerpt under an origin (2.19 on): numbered lines and the `^ column N` mark. Before
# 2.19, every line after _OFFENDING is source.
_SOURCE_LINE = re.compile(r"^(\s*\d+(\s.*)?|\s+\^.*)$")
_OFFENDING = "The offending line appears to be:"
_SOURCE_HIDDEN = "(source not shown: content encrypted)"  # ansible's own words for a vaulted origin


def ansible_messages(
    *outputs: str,
    secrets: Iterable[str] = (),
    hides_source: Callable[[str], bool] = lambda path: False,
    limit: int = MESSAGE_LINES,
) -> list[str]:
    """ansible's error and warning blocks in `outputs` (stretches of its output outside host
    results, in order), to show.

    Each `[ERROR]:`, `ERROR!` or `[WARNING]:` line starts a block that runs to the next one or to
    the end of its stretch: the message, the `Origin:` file:line and the source excerpt ansible
    shows. Lines before a stretch's first block are not ansible's messages. Deprecation warnings
    are left out. Errors come first within `limit` lines, then warnings (they often say why, e.g.
    an inventory that did not parse), printed in ansible's order; a note counts what was cut.

    Every value in `secrets` is replaced by SECRET_MASK, and the excerpt under an origin for which
    `hides_source(path)` holds is dropped (a vault-encrypted file must not show decrypted lines).
    """
    secrets = list(secrets)
    blocks: list[list[str]] = []
    for output in outputs:
        in_block = False
        for line in _scrub(output.replace("\r\n", "\n"), secrets).split("\n"):
            if _BLOCK_START.match(line):
                blocks.append([])
                in_block = True
            if in_block:
                blocks[-1].append(line.rstrip())
    blocks = [_tidy(_hide_sources(b, hides_source)) for b in blocks if not b[0].startswith("[DEPRECATION")]
    chosen: dict[int, list[str]] = {}
    budget = limit
    for index, block in sorted(enumerate(blocks), key=lambda pair: not _ERROR_START.match(pair[1][0])):
        if budget <= 0:
            break
        chosen[index] = block[:budget]
        budget -= len(chosen[index])
    lines: list[str] = []
    for index in sorted(chosen):
        if lines and not _BLOCK_START.match(lines[-1]):
            lines.append("")  # as ansible prints them: a blank line after a block of several lines
        lines.extend(chosen[index])
    cut = sum(map(len, blocks)) - sum(map(len, chosen.values()))
    if cut:
        lines.append(f"... {cut} more line(s) in the run folder's stdout")
    return lines


def _scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret masked: as written, as repr/JSON quote it, and each line of a
    multi-line one (a message may show a single line of a key)."""
    forms: set[str] = set()
    for secret in secrets:
        if secret:
            forms.update((secret, json.dumps(secret)[1:-1], repr(secret)[1:-1]))
            # A short line ("}", "---") is no secret alone, and masking it would garble the message.
            forms.update(line.strip() for line in secret.splitlines() if len(line.strip()) >= _SECRET_LINE_MIN)
    for form in sorted(forms - {""}, key=len, reverse=True):
        text = text.replace(form, SECRET_MASK)
    return text


def _hide_sources(block: list[str], hides_source: Callable[[str], bool]) -> list[str]:
    """`block` without the excerpt lines under an origin whose source must not be shown."""
    kept: list[str] = []
    hiding = excerpt = noted = False
    for line in block:
        origin = _ORIGIN.match(line)
        if origin or line == "<<< caused by >>>":
            hiding = bool(origin) and hides_source(origin["path"] or origin["legacy"])
            excerpt = noted = False
        elif hiding and line == _OFFENDING:
            excerpt = True
        elif hiding and line.strip() and (excerpt or _SOURCE_LINE.match(line)):
            if not noted:
                kept.append(_SOURCE_HIDDEN)
                noted = True
            continue
        kept.append(line)
    return kept


def _tidy(block: list[str]) -> list[str]:
    """No leading or trailing blank lines, no runs of them."""
    tidy: list[str] = []
    for line in block:
        if line or (tidy and tidy[-1]):
            tidy.append(line)
    while tidy and not tidy[-1]:
        tidy.pop()
    return tidy


COUNT_COLUMNS = ("ok", "changed", "failed", "unreachable", "skipped")
_COUNT_STYLE = {"ok": "green", "changed": "yellow", "failed": "red", "unreachable": "red"}


def count_cells(stats: HostStats) -> list[Text]:
    """`stats` as table cells in COUNT_COLUMNS order: zeros dimmed, problems in red."""
    cells = []
    for column in COUNT_COLUMNS:
        count = getattr(stats, column)
        cells.append(Text(str(count), style=_COUNT_STYLE.get(column, "") if count else "dim"))
    return cells


_STATE_STYLE = {"failed": "bold red", "unreachable": "bold red", "not run": "bold red", "interrupted": "bold red",
                "changed": "yellow", "ok": "green"}


def render_summary(result: RunResult, console: Console, *, exit_line: bool = True) -> None:
    """Print each host's state and counts, why a host did not run, each failure, the roles'
    notices, ansible's messages when only they explain the exit, the run folder and what the exit
    code means.

    On a terminal the table is boxed and coloured; otherwise (CI logs) it is bare aligned text.
    """
    terminal = console.is_terminal
    table = Table(box=box.SIMPLE_HEAD if terminal else None, show_edge=False, pad_edge=False)
    table.add_column("host", no_wrap=True)
    table.add_column("state", no_wrap=True)
    for column in COUNT_COLUMNS:
        table.add_column(column, justify="right")
    for host, stats in sorted(result.hosts.items()):
        state = result.outcome(host).state
        table.add_row(
            Text(host, style="bold red" if state not in ("changed", "ok") else ""),
            Text(state, style=_STATE_STYLE.get(state, "")),
            *count_cells(stats),
        )
    console.print(table)

    unfinished = [(host, result.outcome(host)) for host in sorted(result.hosts)
                  if result.outcome(host).state in _UNFINISHED]
    if unfinished:
        console.print(Text("Not converged:", style="bold red"))
        for host, outcome in unfinished:
            console.print(Text.assemble("  ", (host, "bold"), f" {outcome.state}: {outcome.reason}"), soft_wrap=True)
    if result.failures:
        console.print(Text("Failures:", style="bold red"))
        for failure in result.failures:
            kind = " (unreachable)" if failure.unreachable else ""
            line = Text.assemble(
                "  ", (failure.host, "bold"), kind, "  ", (failure.task, "cyan"), ": ", failure.message
            )
            console.print(line, soft_wrap=True)
    if result.notices:
        console.print(Text("Notices:", style="bold yellow"))
        for notice in result.notices:
            console.print(
                Text.assemble("  ", (notice.host, "bold"), "  ", (notice.task, "cyan"), ": ", notice.message),
                soft_wrap=True,
            )
    if result.changes:
        hosts = len({c.host for c in result.changes})
        console.print(Text(f"{len(result.changes)} change(s) on {hosts} host(s); details in summary.json"))

    if result.errors:
        console.print(Text("ansible-playbook said:", style="bold red"))
        for line in result.errors:
            console.print(Text(f"  {line}" if line else "", style=_message_style(line)), soft_wrap=True)

    console.print(Text.assemble("Run folder: ", str(result.artifact_dir)), soft_wrap=True)
    if exit_line:
        render_exit(result.exit_code, result.exit_reason, console)


def render_exit(code: ExitCode, reason: str, console: Console) -> None:
    """The last line of a command's output: its exit code and why."""
    style = "green" if code == ExitCode.OK else "bold red"
    console.print(Text(f"Exit code {int(code)}: {reason}", style=style), soft_wrap=True)


def _message_style(line: str) -> str:
    if _ERROR_START.match(line):
        return "red"
    if line.startswith("[WARNING]:"):
        return "yellow"
    return "bold" if _ORIGIN.match(line) else ""
