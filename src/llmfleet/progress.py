"""Live progress of a playbook run, built from ansible-runner's events.

`RunTracker` turns each runner event into per-host state (current task, counts), failures and
changes, and tells a `Reporter` what just happened as a `Note`. Two reporters exist: a rich
`Live` table for terminals and one plain line per note for CI logs; `make_reporter` picks one.

Result data is already censored by ansible for `no_log` tasks; beyond a failure's message,
nothing from a result is ever shown.
"""

from __future__ import annotations

import re

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from llmfleet.report import COUNT_COLUMNS, Change, Failure, HostOutcome, HostStats, Notice, count_cells, host_outcomes

Outcome = Literal["ok", "changed", "failed", "ignored", "unreachable", "skipped", "retrying", "polling", "notice"]

NO_LOG_MESSAGE = "(output hidden by no_log)"
_STATS_KEYS = {  # playbook_on_stats key -> HostStats field
    "ok": "ok",
    "changed": "changed",
    "failures": "failed",
    "dark": "unreachable",
    "skipped": "skipped",
    "rescued": "rescued",
    "ignored": "ignored",
}
_TAIL_LINES = 3
_TAIL_CHARS = 500
# The fact playbooks/preflight.yml sets on each host that passed it: that host is to be converged
# by a later play of the same run (see RunTracker.outcomes).
PREFLIGHT_FACT = "_llmfleet_preflight_passed"
_DEBUG_ACTIONS = frozenset({"debug", "ansible.builtin.debug", "ansible.legacy.debug"})


@dataclass(frozen=True)
class Note:
    """Something worth telling the user: a play or task started, or a host got a result."""

    kind: Literal["play", "task", "result"]
    name: str  # play or task name
    host: str = ""
    outcome: Outcome | None = None
    message: str = ""  # failures, retries and notices only


@dataclass
class HostState:
    """What a host is doing now and its counts so far."""

    task: str = ""
    stats: HostStats = field(default_factory=HostStats)


class RunTracker:
    """Follows one run's events; feed it every event, read hosts/failures/changes at the end.

    Besides counts it follows which play each host worked in, to tell at the end what happened to
    every host (`outcomes`): a host that passed the preflight (PREFLIGHT_FACT) but never got a task
    result in a later play was not run, and a host whose last play never ended (no later play, no
    recap) was interrupted. Notices are what roles say to the user: the message of every
    `debug` task that changed nothing, and every module warning.
    """

    def __init__(self) -> None:
        self.hosts: dict[str, HostState] = {}
        self.changes: list[Change] = []
        self.notices: list[Notice] = []
        self.recap: dict[str, HostStats] | None = None
        # What plays reported with set_stats (ansible-runner's artifact_data), e.g. the status playbook.
        self.custom_stats: dict[str, Any] = {}
        self._failures: list[Failure] = []
        # Loop items of no_log tasks that changed: (host, task uuid). See _hidden_change.
        self._hidden_changes: set[tuple[str, str]] = set()
        self._play = ""  # uuid of the play running now
        self._play_names: dict[str, str] = {}
        self._ended_plays: set[str] = set()
        self._preflight_plays: set[str] = set()
        self._planned: list[str] = []  # hosts that passed the preflight, in order
        self._worked_in: dict[str, list[str]] = {}  # host -> plays (uuids) it got task results in

    def feed(self, event: Mapping[str, Any]) -> Note | None:
        """Update state from one runner event; return a note if the user should hear about it."""
        kind = event.get("event", "")
        data: Mapping[str, Any] = event.get("event_data") or {}
        task = str(data.get("task") or data.get("name") or "")
        if kind == "playbook_on_play_start":
            self._end_play()
            self._play = str(data.get("play_uuid") or data.get("uuid") or "")
            name = str(data.get("play") or data.get("name") or "")
            self._play_names[self._play] = name
            return Note("play", name)
        if kind in ("playbook_on_task_start", "playbook_on_handler_task_start"):
            return Note("task", task)
        if kind == "playbook_on_stats":
            self._end_play()
            self.recap = _recap(data)
            self.custom_stats = dict(data.get("artifact_data") or {})
            return None
        host = str(data.get("host") or "")
        if not host:
            return None
        state = self.hosts.setdefault(host, HostState())
        res: Mapping[str, Any] = data.get("res") or {}
        if kind == "runner_on_start":
            state.task = task
            return None
        if kind in ("runner_on_ok", "runner_on_failed", "runner_on_unreachable"):
            self._note_play(host, res)
        changed = bool(res.get("changed"))
        if _hidden(res) and _hidden_change(event):
            if kind == "runner_item_on_ok":
                self._hidden_changes.add((host, str(data.get("task_uuid"))))
            changed = True
        elif kind == "runner_on_ok" and (host, str(data.get("task_uuid"))) in self._hidden_changes:
            changed = True
        outcome = self._count(kind, host, task, res, changed, bool(data.get("ignore_errors")), state.stats)
        if outcome is None:
            return None
        message = ""
        if outcome in ("failed", "unreachable", "ignored"):
            message = failure_message(res)
        elif outcome == "retrying":
            message = f"{res.get('attempts', '?')}/{res.get('retries', '?')}"
        notices = notice_messages(res, debug=str(data.get("resolved_action") or data.get("task_action") or "")
                                  in _DEBUG_ACTIONS and not changed)
        if kind in ("runner_on_ok", "runner_on_failed") and notices:
            self.notices.extend(Notice(host, task, text) for text in notices)
            if outcome in ("ok", "changed"):
                # A failure's own message says more; its warnings still reach the summary.
                return Note("result", task, host, "notice", "\n".join(notices))
        return Note("result", task, host, outcome, message)

    def _end_play(self) -> None:
        if self._play:
            self._ended_plays.add(self._play)

    def _note_play(self, host: str, res: Mapping[str, Any]) -> None:
        """Record that `host` worked in the current play; a preflight pass plans it for a later one."""
        if PREFLIGHT_FACT in (res.get("ansible_facts") or {}):
            self._preflight_plays.add(self._play)
            if host not in self._planned:
                self._planned.append(host)
        plays = self._worked_in.setdefault(host, [])
        if self._play not in plays:
            plays.append(self._play)

    def outcomes(self, status: str) -> dict[str, HostOutcome]:
        """What happened to each host, once the run is over (ansible-runner's `status`)."""
        hosts = self.stats()
        worked = {
            host: [p for p in plays if p not in self._preflight_plays] for host, plays in self._worked_in.items()
        }
        interrupted = {
            host for host, plays in worked.items()
            if plays and plays[-1] not in self._ended_plays
        }
        return host_outcomes(
            hosts,
            planned=[h for h in self._planned if h in hosts],
            worked={h for h, plays in worked.items() if plays},
            interrupted=interrupted,
            status=status,
        )

    def _count(
        self, kind: str, host: str, task: str, res: Mapping[str, Any], changed: bool, ignore_errors: bool,
        stats: HostStats,
    ) -> Outcome | None:
        """Count a final task result as PLAY RECAP does; report interim events without counting them."""
        match kind:
            case "runner_on_ok":
                stats.ok += 1
                if changed:
                    stats.changed += 1
                    self.changes.append(Change(host, task, tuple(_diffs(res))))
                    return "changed"
                return "ok"
            case "runner_on_failed" if ignore_errors:
                stats.ok += 1
                stats.ignored += 1
                stats.changed += bool(res.get("changed"))
                return "ignored"
            case "runner_on_failed":
                stats.failed += 1
                self._failures.append(Failure(host, task, failure_message(res)))
                return "failed"
            case "runner_on_unreachable":
                stats.unreachable += 1
                self._failures.append(Failure(host, task, failure_message(res), unreachable=True))
                return "unreachable"
            case "runner_on_skipped":
                stats.skipped += 1
                return "skipped"
            case "runner_retry":
                return "retrying"
            case "runner_on_async_poll":
                return "polling"
        # runner_item_on_* precede the task's own runner_on_* event, which carries every item's
        # result: counting items too would count a loop several times. runner_on_async_ok/failed
        # likewise precede the task's runner_on_ok/failed.
        return None

    def stats(self) -> dict[str, HostStats]:
        """Final per-host counts: the PLAY RECAP if the run reached it, else the live counts."""
        if self.recap is not None:
            return self.recap
        return {host: state.stats for host, state in self.hosts.items()}

    def failures(self) -> list[Failure]:
        """Failures that stood: rescued ones are dropped.

        Ansible reports a failure before it knows a `rescue:` block will catch it, so events
        cannot tell. The recap's counts can: a host stops after a failure that stands, so the
        last `failed` (resp. `unreachable`) events of a host are the ones that stood.
        """
        if self.recap is None:
            return list(self._failures)
        keep: set[int] = set()
        for host, stats in self.recap.items():
            for unreachable, count in ((False, stats.failed), (True, stats.unreachable)):
                mine = [i for i, f in enumerate(self._failures) if f.host == host and f.unreachable == unreachable]
                keep.update(mine[-count:] if count else ())
        return [f for i, f in enumerate(self._failures) if i in keep]


def _recap(data: Mapping[str, Any]) -> dict[str, HostStats]:
    recap: dict[str, HostStats] = {str(h): HostStats() for h in data.get("processed") or {}}
    for key, attr in _STATS_KEYS.items():
        for host, count in (data.get(key) or {}).items():
            setattr(recap.setdefault(str(host), HostStats()), attr, int(count))
    return recap


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _hidden_change(event: Mapping[str, Any]) -> bool:
    """Whether a no_log result's display line says "changed".

    Ansible censors a no_log result down to {"censored": ...}, dropping its `changed` flag, while the
    stdout callback still prints `changed: [host] => (item=(censored due to no_log))`. Without this a
    drift in a file that holds secrets (a 0600 env file, a Continue config) would go unreported.
    """
    return _ANSI.sub("", str(event.get("stdout") or "")).lstrip().startswith("changed:")


def _hidden(res: Mapping[str, Any]) -> bool:
    # Ansible replaces a no_log result by {"censored": ...}; item results keep the flag.
    return bool(res.get("_ansible_no_log")) or "censored" in res


def failure_message(res: Mapping[str, Any]) -> str:
    """A short reason for a failed result: its msg, plus the tail of the output that explains it."""
    if _hidden(res):
        return NO_LOG_MESSAGE
    items = [r for r in res.get("results") or () if isinstance(r, Mapping) and r.get("failed")]
    if items:  # a loop: the task's own msg only says "One or more items failed"
        return "; ".join(f"item {_item_label(r)}: {failure_message(r)}" for r in items)
    msg = str(res.get("msg") or "").strip()
    # Commands fail with the generic "non-zero return code" and crashed modules with "MODULE
    # FAILURE": the actual reason is in their output.
    output = next((str(res[k]) for k in ("stderr", "module_stderr", "stdout", "module_stdout") if res.get(k)), "")
    detail = _tail(output)
    if detail and detail not in msg:
        return f"{msg}: {detail}" if msg else detail
    return msg or "(no message)"


def notice_messages(res: Mapping[str, Any], *, debug: bool) -> list[str]:
    """What a result tells the user: its module warnings, and for a `debug` task that changed
    nothing (`debug`), its message. Loop items count one by one; skipped ones say nothing.

    A no_log result says nothing: its message may hold what no_log hides.
    """
    if _hidden(res) or res.get("skipped"):
        return []
    notes = [str(w) for w in res.get("warnings") or ()]
    items = [r for r in res.get("results") or () if isinstance(r, Mapping)]
    if items:
        for item in items:
            notes.extend(notice_messages(item, debug=debug and not item.get("changed")))
    elif debug and "msg" in res:
        message = res["msg"]
        notes.extend(str(m) for m in message) if isinstance(message, list) else notes.append(str(message))
    return list(dict.fromkeys(note.strip() for note in notes if note.strip()))


def _item_label(res: Mapping[str, Any]) -> str:
    if _hidden(res):
        return "(hidden)"
    return str(res.get("_ansible_item_label", res.get("item", "?")))


def _tail(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(lines[-_TAIL_LINES:])[-_TAIL_CHARS:]


def _diffs(res: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The diffs of a changed result, including those of its changed loop items.

    Unchanged items are left out: modules such as copy report a no-op diff for them.
    """
    found = res.get("diff")
    diffs = [d for d in (found if isinstance(found, list) else [found]) if isinstance(d, dict) and d]
    for item in res.get("results") or ():
        if isinstance(item, Mapping) and item.get("changed"):
            diffs.extend(_diffs(item))
    return diffs


class Reporter(Protocol):
    """Shows a run while it happens."""

    def start(self, title: str) -> None: ...

    def show(self, note: Note, hosts: Mapping[str, HostState]) -> None: ...

    def stop(self) -> None: ...


class PlainReporter:
    """One line per note, for logs: `HH:MM:SS host  changed  Task name`."""

    def __init__(self, console: Console) -> None:
        self._console = console

    def start(self, title: str) -> None:
        self._line(title)

    def show(self, note: Note, hosts: Mapping[str, HostState]) -> None:
        if note.kind == "play":
            self._line(f"PLAY {note.name}")
        elif note.kind == "task":
            self._line(f"TASK {note.name}")
        else:
            width = max(map(len, hosts), default=0)
            line = f"{note.host:<{width}}  {note.outcome:<11}  {note.name}"
            self._line(f"{line}: {note.message}" if note.message else line)

    def stop(self) -> None:
        """Nothing to tear down: every line is already out."""

    def _line(self, text: str) -> None:
        stamp = datetime.now().strftime("%H:%M:%S")
        self._console.print(f"{stamp} {text}", markup=False, highlight=False, soft_wrap=True)


class LiveReporter:
    """A table of hosts (current task and counts) redrawn in place; failures scroll above it."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._live = Live(console=console, transient=True, refresh_per_second=8)
        self._play = ""
        self._task = ""

    def start(self, title: str) -> None:
        self._console.print(Text(title, style="bold"), soft_wrap=True)
        self._live.start()

    def show(self, note: Note, hosts: Mapping[str, HostState]) -> None:
        if note.kind == "play":
            self._play, self._task = note.name, ""
        elif note.kind == "task":
            self._task = note.name
        elif note.outcome in ("failed", "unreachable", "notice"):
            # Printed through the Live so it lands above the table and stays after it is gone.
            style = "bold yellow" if note.outcome == "notice" else "bold red"
            self._live.console.print(
                Text.assemble((note.host, style), f" {note.outcome} ", (note.name, "cyan"), ": ", note.message)
            )
        self._live.update(self._render(hosts))

    def stop(self) -> None:
        self._live.stop()

    def _render(self, hosts: Mapping[str, HostState]) -> Group:
        table = Table(show_edge=False)
        table.add_column("host", no_wrap=True)
        table.add_column("task", no_wrap=True, overflow="ellipsis", max_width=60)
        for column in COUNT_COLUMNS:
            table.add_column(column, justify="right")
        for host, state in sorted(hosts.items()):
            bad = state.stats.failed or state.stats.unreachable
            table.add_row(Text(host, style="bold red" if bad else "bold"), Text(state.task), *count_cells(state.stats))
        header = Text.assemble(("PLAY ", "dim"), self._play, ("  TASK ", "dim"), self._task)
        return Group(header, table)


def make_reporter(console: Console) -> Reporter:
    """The live table on a terminal, plain lines otherwise (CI, pipes, files)."""
    return LiveReporter(console) if console.is_terminal else PlainReporter(console)
