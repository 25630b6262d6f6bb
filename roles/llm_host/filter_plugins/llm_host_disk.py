"""Whether the models a run would download fit the file systems they would be written to.

The roles say what they would download and how large it is (ollama: roles/ollama/filter_plugins/
ollama_disk.py, vllm: roles/vllm/filter_plugins/vllm_host.py); llm_host_storage (library/) finds which
of those are not on the host yet and the free space where each would go; this filter adds up what
shares a file system, with a margin, and says which models would not fit. Unit-tested in
tests/test_llm_host_disk.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

# Downloads need more than the estimate: partial files next to finished ones, estimates that run low.
DEFAULT_MARGIN = 0.10


def _gib(mb: float) -> str:
    return f"{mb / 1024:.1f} GiB"


def disk_problems(missing: Iterable[Mapping[str, Any]], host: str = "this host",
                  margin: float = DEFAULT_MARGIN) -> list[str]:
    """One message per file system that the missing models (llm_host_storage's `missing`) overfill.

    Models are counted in the order given: each that would take the total of those before it that
    fit (with the margin) past the free space would not fit. Models of unknown size (need_mb null)
    are not counted; a message names them. Each item may give `setting`, the variable that moves its
    store, for the fix.
    """
    by_device: dict[Any, list[Mapping[str, Any]]] = {}
    for item in missing or []:
        by_device.setdefault(item.get("device"), []).append(item)
    problems = []
    for items in by_device.values():
        free = items[0].get("free_mb")
        counted = [item for item in items if isinstance(item.get("need_mb"), (int, float))
                   and not isinstance(item.get("need_mb"), bool)]
        if free is None or not counted:
            continue
        total = sum(item["need_mb"] for item in counted)
        if total * (1 + margin) <= free:
            continue
        running, too_many = 0.0, []
        for item in counted:
            if (running + item["need_mb"]) * (1 + margin) > free:
                too_many.append(item)
            else:
                running += item["need_mb"]
        mount = items[0].get("mount", "?")
        stores = sorted({str(item.get("store") or item.get("path", "")) for item in items})
        settings = sorted({str(item["setting"]) for item in items if item.get("setting")})
        unknown = [str(item.get("label")) for item in items if item not in counted]
        problems.append(
            f"llm_host: the models {host} does not have yet need about {_gib(total)} "
            f"({_gib(total * (1 + margin))} with a {margin:.0%} margin) on the file system at {mount} "
            f"({', '.join(stores)}), which has {_gib(free)} free. Would not fit: "
            + ", ".join(f"{item['label']} (about {_gib(item['need_mb'])})" for item in too_many)
            + (f". Not counted, their size unknown: {', '.join(unknown)}" if unknown else "")
            + f". Free space on {mount}, move the models to a larger file system"
            + (f" ({', '.join(settings)})" if settings else "")
            + ", or remove those models from the inventory.")
    return problems


class FilterModule:
    """Disk space for the models."""

    def filters(self) -> dict[str, Any]:
        return {"llm_host_disk_problems": disk_problems}
