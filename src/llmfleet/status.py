"""`invoke status`: per host, each service's state, installed vs pinned versions, models present vs declared,
and the last pull run of a host in pull mode.

playbooks/status.yml changes nothing; it reports each host with set_stats, which the run driver
keeps in RunResult.custom_stats["llmfleet_status"].
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping
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
