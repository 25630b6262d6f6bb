"""`invoke status`: per host, each service's state, installed vs pinned versions, models present vs declared.

playbooks/status.yml changes nothing; it reports each host with set_stats, which the run driver
keeps in RunResult.custom_stats["llmfleet_status"].
"""

from __future__ import annotations

from collections.abc import Mapping
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


def status_rows(status: Mapping[str, Any]) -> list[tuple[str, str, str, str, str, str]]:
    """(host, component, service state, installed, pinned, note) for every host and component."""
    rows = []
    for host in sorted(status):
        report = status[host] or {}
        services: Mapping[str, str] = report.get("services") or {}
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
            rows.append((host, component, ", ".join(states) or "-", installed or "-", pinned or "-", note))
    return rows


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
        if not status_rows({host: status[host]}) and not ((status[host] or {}).get("models") or {}).get("declared"):
            console.print(Text.assemble((host, "bold"), f" ({(status[host] or {}).get('type', 'unknown')}): "
                                        "nothing installed by llmfleet yet"))
    return clean
