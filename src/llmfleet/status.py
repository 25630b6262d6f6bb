"""`invoke status`: per host, each service's state, installed vs pinned versions, models present vs declared,
and the last pull run of a host in pull mode; `invoke status --pulled`: every host's last pull report, as
the team server received it.

playbooks/status.yml changes nothing; it reports each host with set_stats, which the run driver
keeps in RunResult.custom_stats["llmfleet_status"].
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

COMPONENTS = (("ollama", "ollama"), ("open_webui", "open-webui"), ("vllm", "vllm@"))


def _instance_of(name: str, unit: str) -> bool:
    """Whether service `name` is `unit`, or an instance of template `unit@` (not the template itself)."""
    if unit.endswith("@"):
        return name.startswith(unit) and name != unit
    return name == unit


def vllm_placement(lines: Iterable[str]) -> dict[str, str]:
    """Where each vLLM server runs, from its settings file's lines (`<path>/<name>.env:KEY="value"`).

    "GPU 0 (0.46)" for a server on the GPUs vLLM takes by default (its first tensor_parallel_size ones) or
    its CUDA_VISIBLE_DEVICES, with its gpu_memory_utilization; "CPU, KV cache 4 GiB" on CPU hosts.
    """
    settings: dict[str, dict[str, str]] = {}
    for line in lines or []:
        match = re.match(r"^(?:.*/)?([^/:]+)\.env:([A-Z_]+)=\"?(.*?)\"?$", line)
        if match:
            # Inside the file's double quotes a backslash escapes \, ", $ and ` (the collection's
            # plugins/module_utils/env_file.py); the arguments' own quoting is shlex's to read.
            value = re.sub(r'\\([\\"$`])', r"\1", match.group(3))
            settings.setdefault(match.group(1), {})[match.group(2)] = value
    placement = {}
    for instance, values in settings.items():
        try:
            args = shlex.split(values.get("LLMFLEET_VLLM_ARGS", ""))
        except ValueError:  # an argument that spans lines: grep gave its first line only
            args = values.get("LLMFLEET_VLLM_ARGS", "").split()
        option = {a: b for a, b in zip(args, args[1:]) if a.startswith("--")}
        if "VLLM_CPU_KVCACHE_SPACE" in values and "--gpu-memory-utilization" not in option:
            placement[instance] = f"CPU, KV cache {values['VLLM_CPU_KVCACHE_SPACE']} GiB"
            continue
        size = int(option.get("--tensor-parallel-size", "1") or 1)
        devices = values.get("CUDA_VISIBLE_DEVICES") or ",".join(str(i) for i in range(size))
        share = option.get("--gpu-memory-utilization", "")
        placement[instance] = f"GPU{'s' if ',' in devices else ''} {devices}" + (f" ({share})" if share else "")
    return placement


def proxy_row(host: str, report: Mapping[str, Any], now: datetime) -> tuple[str, str, str, str, str, str] | None:
    """The TLS proxy's row where llmfleet configured one: nginx's state, and its certificate's end when a
    run would renew it (fewer days left than llm_proxy_renew_days) or it has ended."""
    proxy: Mapping[str, Any] = report.get("proxy") or {}
    if not proxy:
        return None
    state = (report.get("services") or {}).get("nginx", "-")
    note = "" if state == "running" else "not running"
    try:
        # openssl's -enddate: "Dec  5 11:00:00 2027 GMT"
        end = datetime.strptime(" ".join(str(proxy.get("certificate_end", "")).split()), "%b %d %H:%M:%S %Y %Z")
    except ValueError:
        end = None
    if end is None:
        note = note or "certificate unreadable: run provision"
    else:
        days = (end.replace(tzinfo=timezone.utc) - now).days
        if days < int(proxy.get("renew_days") or 0):
            ended = f"certificate ended {end:%Y-%m-%d}" if days < 0 else f"certificate ends {end:%Y-%m-%d} ({days} days)"
            note = ", ".join(filter(None, (note, f"{ended}: run provision")))
    return (host, "proxy", state, "-", "-", note)


def status_rows(status: Mapping[str, Any], now: datetime | None = None) -> list[tuple[str, str, str, str, str, str]]:
    """(host, component, service state, installed, pinned, note) for every host and component.

    A vLLM server's state is followed by where it runs (vllm_placement), when its host reported it; the
    TLS proxy follows the services it fronts (proxy_row).
    """
    now = now or datetime.now(timezone.utc)
    rows = []
    for host in sorted(status):
        report = status[host] or {}
        services: Mapping[str, str] = report.get("services") or {}
        placement = vllm_placement(report.get("vllm_servers") or [])
        for component, unit in COMPONENTS:
            versions = (report.get("versions") or {}).get(component) or {}
            installed, pinned = str(versions.get("installed") or ""), str(versions.get("pinned") or "")
            states = sorted(f"{name}: {state}" if unit.endswith("@") else state
                            for name, state in services.items() if _instance_of(name, unit))
            if not installed and not states:
                continue
            note = ""
            if installed and pinned and installed != pinned:
                note = f"pinned {pinned}: run provision"
            elif any(not s.endswith("running") for s in states):
                note = "not running"
            if unit.endswith("@"):
                states = [f"{s} on {placement[s.split(': ')[0][len(unit):]]}"
                          if s.split(": ")[0][len(unit):] in placement else s for s in states]
            rows.append((host, component, ", ".join(states) or "-", installed or "-", pinned or "-", note))
        proxy = proxy_row(host, report, now)
        if proxy:
            rows.append(proxy)
    return rows


def pull_line(host: str, pull: Mapping[str, Any]) -> tuple[str, bool]:
    """The line about a host's last pull run (llm_host's pull mode) and whether it ended well.

    `pull` is what playbooks/status.yml read from the newest summary.json the host keeps: started,
    commit, version, state, reason, fetch_error.
    """
    state = str(pull.get("state") or "unknown")
    good = state in ("ok", "changed")
    commit = str(pull.get("commit") or "")[:12] or "none"
    line = f"{host}: last pull {pull.get('started') or '?'}, commit {commit} ({pull.get('version') or '?'}), {state}"
    if not good and pull.get("reason"):
        line += f": {pull['reason']}"
    if pull.get("fetch_error"):
        line += f"; the fetch failed, it converged the checkout it had: {pull['fetch_error']}"
    return line, good


def render_status(status: Mapping[str, Any], console: Console) -> bool:
    """Print the status tables; True when every host matches its inventory."""
    table = Table(box=box.SIMPLE_HEAD if console.is_terminal else None, show_edge=False, pad_edge=False)
    for column in ("host", "component", "service", "installed", "pinned", "note"):
        table.add_column(column)
    clean = True
    rows = status_rows(status)
    for host, component, state, installed, pinned, note in rows:
        clean = clean and not note
        table.add_row(host, component, state, installed, pinned, Text(note, style="bold red" if note else ""))
    if rows:
        console.print(table)
    for host in sorted(status):
        models = (status[host] or {}).get("models") or {}
        declared, present = models.get("declared") or [], models.get("present") or []
        missing, skipped = models.get("missing") or [], models.get("skipped") or []
        if not declared and not present:
            continue
        clean = clean and not missing
        line = Text.assemble((host, "bold"), f": {len(present)} model(s) present, {len(declared)} declared")
        if missing:
            line.append(f"; missing {', '.join(missing)}", style="bold red")
        if skipped:
            line.append(f"; skipped (too big for this host) {', '.join(skipped)}", style="dim")
        console.print(line, soft_wrap=True)
    for host in sorted(status):
        pull = (status[host] or {}).get("pull") or {}
        if pull:
            line, good = pull_line(host, pull)
            clean = clean and good
            console.print(Text(line, style="" if good else "bold red"), soft_wrap=True)
    for host in sorted(status):
        if not status_rows({host: status[host]}) and not ((status[host] or {}).get("models") or {}).get("declared"):
            console.print(Text.assemble((host, "bold"), f" ({(status[host] or {}).get('type', 'unknown')}): "
                                        "nothing installed by llmfleet yet"))
    return clean


# `invoke status --pulled`: the reports the hosts in pull mode sent to the team server (llm_proxy's
# endpoint), read there by playbooks/pulled.yml: per server, its clock ("now", epoch seconds), one
# line per report ("<received epoch> <host> <json>", the host being the file's name, which only that
# host's key may write) and the hosts the inventory puts in pull mode ("enrolled": {host: {report,
# interval, random_delay}}, no keys).

@dataclass(frozen=True)
class PullReport:
    """A host's last pull report as the team server keeps it."""

    host: str
    received: datetime
    finished: str = ""
    commit: str = ""
    version: str = ""
    state: str = "unknown"
    reason: str = ""
    fetch_error: str = ""
    failures: tuple[str, ...] = ()
    readable: bool = True


def parse_report_line(line: str) -> PullReport | None:
    """One line of playbooks/pulled.yml's reading, or None when it is not one. The host is the file's name
    (the proxy let only that host's key write it), never what the report says of itself."""
    parts = line.split(" ", 2)
    if len(parts) < 2 or not parts[0].isdigit() or not parts[1]:
        return None
    received = datetime.fromtimestamp(int(parts[0]), timezone.utc)
    try:
        data = json.loads(parts[2]) if len(parts) == 3 else None
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return PullReport(parts[1], received, readable=False)
    failures = tuple(str(f.get("message") or f.get("task") or "")[:300]
                     for f in data.get("failures") or [] if isinstance(f, dict))
    return PullReport(
        host=parts[1], received=received, finished=str(data.get("finished") or data.get("started") or ""),
        commit=str(data.get("commit") or ""), version=str(data.get("version") or ""),
        state=str(data.get("state") or "unknown"), reason=str(data.get("exit_reason") or ""),
        fetch_error=str(data.get("fetch_error") or ""), failures=failures)


def _when(text: str, received: datetime) -> str:
    """The run's end as the laptop reported it (ISO 8601), to the second in UTC; when it is not a
    time, when the server received the report."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        when = received
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


def pulled_rows(pulled: Mapping[str, Any]) -> list[tuple[str, str, str, str, str, str]]:
    """(host, last run, commit, result, age, note) per host that reported or is in pull mode, in name order.

    The newest report of a host wins when several servers hold one. The age is the server's clock minus
    when it received the report. A note says what needs a look: a failed run (its reason), a fetch that
    failed, no report yet, a report older than two of the host's intervals and random delays (asleep,
    away, or its timer stopped), a report that cannot be read.
    """
    reports: dict[str, tuple[PullReport, int]] = {}
    enrolled: dict[str, Mapping[str, Any]] = {}
    for server in sorted(pulled):
        data = pulled[server] or {}
        now = int(data.get("now") or 0)
        enrolled.update(data.get("enrolled") or {})
        for line in data.get("reports") or []:
            report = parse_report_line(str(line))
            if report and (report.host not in reports or report.received > reports[report.host][0].received):
                reports[report.host] = (report, now)
    rows = []
    for host in sorted(set(reports) | set(enrolled)):
        schedule = enrolled.get(host)
        if host not in reports:
            note = ("no report yet" if (schedule or {}).get("report")
                    else "sends no report (no llm_host_pull_report_url and key)")
            rows.append((host, "-", "-", "-", "-", note))
            continue
        report, now = reports[host]
        age = now - report.received.timestamp()
        notes = []
        if not report.readable:
            notes.append("the report cannot be read")
        elif report.state not in ("ok", "changed"):
            notes.append(report.failures[0] if report.failures else report.reason or "failed")
        if report.fetch_error:
            notes.append(f"the fetch failed, it converged the checkout it had: {report.fetch_error}")
        if schedule is None:
            notes.append("not in pull mode in this inventory")
        elif age > 2 * (int(schedule.get("interval") or 0) + int(schedule.get("random_delay") or 0)):
            notes.append("overdue: no report for two intervals")
        rows.append((host, _when(report.finished, report.received),
                     report.commit[:12] or "-", report.state, _age(age), "; ".join(notes)))
    return rows


def render_pulled(pulled: Mapping[str, Any], console: Console) -> bool:
    """Print the pull reports' table; True when every host in pull mode reported a run that ended well, in time."""
    rows = pulled_rows(pulled)
    if not pulled:
        console.print(Text("No host of this inventory takes pull reports (llm_proxy on a host with llm_host_expose).",
                           style="bold red"), soft_wrap=True)
        return False
    if not rows:
        console.print("No host is in pull mode and no report was received.")
        return True
    table = Table(box=box.SIMPLE_HEAD if console.is_terminal else None, show_edge=False, pad_edge=False)
    for column in ("host", "last pull run", "commit", "result", "age", "note"):
        table.add_column(column)
    for host, finished, commit, state, age, note in rows:
        table.add_row(host, finished, commit, state, age, Text(note, style="bold red" if note else ""))
    console.print(table)
    return all(not note for *_, note in rows)
