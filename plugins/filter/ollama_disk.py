"""What a run would download into the Ollama store, with a size for each model, for the disk check.

The models and their sizes are the model plan's (the collection's ollama_models filter, imported):
the models a run pulls (those that fit the memory budget, the bases of custom models), each sized by
its memory_gb or the memory estimate from its parameter count, which is at least its download size.
llm_host's storage module then finds which are not in the store yet and whether they fit (the last
task of tasks/preflight.yml). Unit-tested in tests/test_llm_host_disk.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ansible_collections.llmfleet.llmfleet.plugins.filter import ollama_models as om


def manifest_path(name: str, models_path: str) -> str:
    """Where Ollama keeps a model's manifest: <store>/manifests/<host>/<namespace>/<model>/<tag>."""
    path, tag = om.model_name(name).rsplit(":", 1)
    parts = path.split("/")
    parts = [om.DEFAULT_HOST, om.DEFAULT_NAMESPACE][: 3 - len(parts)] + parts
    return "/".join([models_path.rstrip("/"), "manifests", *parts, tag])


def storage_wanted(declared: Iterable[Any], models_path: str, budget_mb: int, gb_per_billion: float = 0.6,
                   overhead_gb: float = 1.0, custom: Iterable[Any] = ()) -> list[dict[str, Any]]:
    """The models a run would pull on this host, each {label, path (its manifest), need_mb or None, ...}.

    For llm_host_storage's `wanted`: a model whose manifest is in the store is not downloaded again.
    """
    plan = om.model_plan(declared, [], budget_mb, gb_per_billion, overhead_gb, custom)
    memory = {}
    for entry in declared or []:
        name, memory_gb = om._entry(entry)
        memory[name] = memory_gb
    wanted = []
    for name in plan["pull"]:
        need = (int(memory[name] * 1024) if memory.get(name) is not None
                else om.estimate_mb(name, gb_per_billion, overhead_gb))
        wanted.append({"label": f"Ollama model {name}", "path": manifest_path(name, models_path), "need_mb": need,
                       "store": models_path, "setting": "ollama_models_dir"})
    return wanted


class FilterModule:
    """Ollama's downloads, for the disk check."""

    def filters(self) -> dict[str, Any]:
        return {"ollama_storage_wanted": storage_wanted}
