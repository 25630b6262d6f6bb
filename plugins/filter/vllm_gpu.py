"""Where vLLM runs on a host: the CUDA build its NVIDIA driver can run, and each server's share of memory.

- cuda_build: from vars/main.yml's table of a release's CUDA builds (the PyPI wheel and the variant
  wheels) and the driver version llm_host's probe read from nvidia-smi, the build to install, its
  requirement and the torch backend of the same CUDA version; or why none fits.
- memory_plan: which GPUs each server uses and its gpu_memory_utilization (servers sharing a GPU split
  vllm_gpu_memory_utilization: each its weights' part of the GPU, where both are known, and an even part
  of the rest; an entry's own value counts first), or on CPU and macOS hosts each server's KV cache in
  GiB, sized from the host's RAM after the other services' needs.

In Python so the decisions are unit-tested (tests/test_vllm_gpu.py, tests/test_vllm_cuda_resolution.py).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

GPU_TYPES = ("linux_cuda", "linux_rocm")
CPU_TYPES = ("linux_cpu", "macos_arm64")
# uname's machine for the wheel file names, by llm_host_facts' arch.
WHEEL_ARCH = {"amd64": "x86_64", "arm64": "aarch64"}
# Memory a CPU server needs besides its weights and KV cache (Python, torch, the API server), MiB.
SERVER_RUNTIME_MB = 1024
# Ollama's own estimate of a model's memory (roles/ollama defaults): 0.6 GB per billion parameters + 1 GB.
_OLLAMA_PARAMS = re.compile(r"(?:^|[-_.:])(\d+(?:\.\d+)?)b(?=$|[-_.])", re.IGNORECASE)


def version_key(text: Any) -> tuple[int, ...] | None:
    """A dotted version ("550.54.15") as numbers for comparing; None when it is not one."""
    parts = str(text or "").strip().split(".")
    if not all(part.isdigit() for part in parts):
        return None
    return tuple(int(part) for part in parts)


def driver_version(gpus: Iterable[Any]) -> str:
    """The oldest driver version the host's NVIDIA GPUs report (one driver serves them all); '' when none."""
    versions = [str(g.get("driver_version", "")) for g in gpus or [] if isinstance(g, Mapping)]
    known = [v for v in versions if version_key(v)]
    return min(known, key=version_key) if known else ""


def _requirement(build: Mapping[str, Any], version: str, wheel_url: str, arch: str) -> str:
    if not build.get("wheel"):
        return f"vllm=={version}"
    name = str(build["wheel"]).format(version=version, arch=WHEEL_ARCH.get(arch, arch))
    return f"vllm @ {wheel_url.rstrip('/')}/v{version}/{name}"


def cuda_build(builds: Iterable[Mapping[str, Any]], version: str, gpus: Iterable[Any], choice: str = "auto",
               wheel_url: str = "https://github.com/vllm-project/vllm/releases/download",
               arch: str = "amd64", table: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The CUDA build of vLLM `version` for a host whose GPUs are `gpus` (llm_host_facts['gpus']).

    `builds` are the release's CUDA builds from vars/main.yml, newest CUDA first. `choice` is vllm_cuda:
    "auto" takes the first build the driver can run (the first of all when no driver is reported), a
    CUDA version ("12.9") that build. Returns {cuda, torch_backend, packages, min_driver, driver, reason,
    error}: `error` is the preflight's message when no build fits (empty otherwise); it names the newest
    release of `table` (vars/main.yml's, {version: {builds: [...]}}) with a build the driver runs.
    """
    builds = list(builds or [])
    driver = driver_version(gpus)
    result: dict[str, Any] = {"cuda": "", "torch_backend": "", "packages": [], "min_driver": "", "driver": driver,
                              "reason": "", "error": ""}
    if not builds:
        result["error"] = f"vllm: vars/main.yml lists no CUDA build of vLLM {version}; set vllm_packages"
        return result
    needs = ", ".join(f"CUDA {b['cuda']} needs {b['min_driver']} or newer" for b in builds)
    if choice not in ("auto", "", None):
        chosen = next((b for b in builds if str(b["cuda"]) == str(choice)), None)
        if chosen is None:
            result["error"] = (f"vllm: vllm_cuda is {choice!r}, and vLLM {version} is built for CUDA "
                               f"{', '.join(str(b['cuda']) for b in builds)}; set vllm_cuda to one of those or auto")
            return result
        if driver and version_key(driver) < version_key(chosen["min_driver"]):
            result["error"] = (f"vllm: vllm_cuda is {choice!r}, and CUDA {chosen['cuda']} needs the NVIDIA driver "
                               f"{chosen['min_driver']} or newer, while this host has {driver}; upgrade the driver, "
                               "or set vllm_cuda to auto (the newest build this driver runs)")
            return result
        reason = "vllm_cuda"
    elif not driver:
        # A host type set in the inventory (no nvidia-smi answer): the release's default build.
        chosen, reason = builds[0], "no NVIDIA driver reported: the default build"
    else:
        fitting = [b for b in builds if version_key(driver) >= version_key(b["min_driver"])]
        if not fitting:
            oldest = builds[-1]
            older = sorted(((version_key(v), v, b) for v, release in (table or {}).items()
                            for b in (release or {}).get("builds", []) if version_key(v)
                            and version_key(driver) >= version_key(b["min_driver"])),
                           key=lambda item: item[0], reverse=True)
            pin = (f"or pin vllm_version: \"{older[0][1]}\", the newest release llmfleet knows a build of for this "
                   f"driver (CUDA {older[0][2]['cuda']})" if older else
                   "and no release llmfleet knows has a build for an older one")
            comma = "," if older else ""
            result["error"] = (f"vllm: the NVIDIA driver {driver} is too old for every CUDA build of vLLM {version} "
                               f"({needs}); upgrade the driver to {oldest['min_driver']} or newer{comma} {pin}")
            return result
        chosen = fitting[0]
        reason = f"driver {driver} >= {chosen['min_driver']}"
    result.update(cuda=str(chosen["cuda"]), torch_backend=str(chosen["torch_backend"]),
                  packages=[_requirement(chosen, str(version), wheel_url, arch)],
                  min_driver=str(chosen["min_driver"]), reason=reason)
    return result


def _label(index: int, entry: Mapping[str, Any]) -> str:
    return f"vllm_models[{index}] ({entry['name']})" if entry.get("name") else f"vllm_models[{index}]"


def _floor(value: float, places: int = 2) -> float:
    return math.floor(value * 10 ** places + 1e-9) / 10 ** places


def _devices(entry: Mapping[str, Any]) -> list[int]:
    """The GPUs a server uses: its `gpus`, else the first tensor_parallel_size ones (what vLLM takes)."""
    if isinstance(entry.get("gpus"), list):
        return [g for g in entry["gpus"] if isinstance(g, int) and not isinstance(g, bool)]
    size = entry.get("tensor_parallel_size") or 1
    return list(range(size if isinstance(size, int) and size > 0 else 1))


def _gpu_plan(models: list[Mapping[str, Any]], host_gpus: list[Any], budget: float,
              weights_mb: list[Any]) -> dict[str, Any]:
    errors: list[str] = []
    memory = {g["index"]: int(g.get("vram_mb") or 0) for g in host_gpus
              if isinstance(g, Mapping) and isinstance(g.get("index"), int)}
    known = sorted(memory)
    servers = []
    for index, entry in enumerate(models):
        label, devices = _label(index, entry), _devices(entry)
        size = entry.get("tensor_parallel_size") or 1
        missing = [d for d in devices if known and d not in known]
        if missing:
            errors.append(f"{label}: gpus names GPU {', '.join(map(str, missing))}, and this host has GPU "
                          f"{', '.join(map(str, known))} (nvidia-smi's numbers); list only those")
        if isinstance(entry.get("gpus"), list) and isinstance(size, int) and size > len(devices):
            errors.append(f"{label}: tensor_parallel_size {size} needs {size} GPUs, and gpus lists {len(devices)}; "
                          f"list {size} GPUs or lower tensor_parallel_size")
        elif "gpus" not in entry and known and isinstance(size, int) and size > len(known):
            errors.append(f"{label}: tensor_parallel_size {size} needs {size} GPUs, and this host has {len(known)}; "
                          "lower tensor_parallel_size")
        parts = size if isinstance(size, int) and size > 0 else 1
        servers.append({"name": entry.get("name"), "label": label, "devices": devices,
                        "declared": entry.get("gpu_memory_utilization"),
                        # Its weights on each of its GPUs: tensor parallelism splits them.
                        "weights_mb": int(weights_mb[index] or 0) // parts})
    # Per GPU: the servers on it and what the declared shares take. The others get their weights'
    # part of the GPU (when its memory and their size are known) and an even part of what is left.
    per_device: dict[int, list[dict[str, Any]]] = {}
    for server in servers:
        for device in server["devices"]:
            per_device.setdefault(device, []).append(server)
    part: dict[tuple[int, str], float] = {}
    for device, on_it in sorted(per_device.items()):
        declared = [s for s in on_it if s["declared"] is not None]
        others = [s for s in on_it if s["declared"] is None]
        total = round(sum(float(s["declared"]) for s in declared), 4)
        names = " and ".join(f"{s['name']} ({s['declared']})" for s in declared)
        vram = memory.get(device, 0)
        weights = {s["name"]: s["weights_mb"] / vram if vram else 0.0 for s in others}
        left = budget - total - sum(weights.values())
        if total > 1:
            errors.append(f"vllm: GPU {device} is promised {total:g} of its memory: the gpu_memory_utilization of "
                          f"{names} add up to more than the whole GPU; lower them so they add up to 1 or less, or "
                          "move a server to another GPU with its gpus key")
        elif others and budget - total < 0.01 * len(others):
            errors.append(f"vllm: on GPU {device}, {names} take {total:g} of its memory, which leaves nothing of "
                          f"vllm_gpu_memory_utilization ({budget:g}) for {', '.join(s['name'] for s in others)}; "
                          "give those their own gpu_memory_utilization, lower the others', or move them to "
                          "another GPU with gpus")
        elif others and left < 0.01 * len(others):
            sizes = " and ".join(f"{s['name']} (about {s['weights_mb'] / 1024:.1f} GiB)"
                                 for s in others if s["weights_mb"])
            errors.append(f"vllm: the weights of {sizes} do not fit GPU {device}: {budget - total:.2f} of its "
                          f"{vram / 1024:.1f} GiB is theirs (vllm_gpu_memory_utilization {budget:g}"
                          f"{' less the declared shares' if declared else ''}), with room left for their KV caches; "
                          "split a model over more GPUs (tensor_parallel_size), give the servers GPUs of their own "
                          "(gpus), serve a quantised checkpoint, or declare gpu_memory_utilization to overrule "
                          "the estimate (2 bytes per parameter of the size in the name)")
        for server in others:
            part[(device, server["name"])] = weights[server["name"]] + max(left, 0.0) / len(others)
    for server in servers:
        if server["declared"] is not None:
            server["share"] = float(server["declared"])
        else:
            server["share"] = min(1.0, max(0.01, _floor(min(part[(d, server["name"])] for d in server["devices"]))))
    return {"servers": [{"name": s["name"], "devices": s["devices"], "share": s["share"],
                         "pinned": "gpus" in models[i]} for i, s in enumerate(servers)], "errors": errors}


def ollama_need_mb(models: Any) -> tuple[int, str]:
    """The memory of the largest Ollama model (Ollama's estimate: 0.6 GB per billion parameters + 1 GB)."""
    best, name = 0, ""
    for entry in models if isinstance(models, list) else []:
        model = entry.get("name") if isinstance(entry, Mapping) else entry
        memory = entry.get("memory_gb") if isinstance(entry, Mapping) else None
        if isinstance(memory, (int, float)) and not isinstance(memory, bool):
            need = int(memory * 1024)
        else:
            match = _OLLAMA_PARAMS.search(str(model).rsplit(":", 1)[-1]) if ":" in str(model) else None
            need = int((float(match.group(1)) * 0.6 + 1.0) * 1024) if match else 0
        if need > best:
            best, name = need, str(model)
    return best, name


def _cpu_plan(models: list[Mapping[str, Any]], ram_mb: int, reserved: list[list[Any]],
              weights_mb: list[Any]) -> dict[str, Any]:
    """Each CPU server's KV cache: what RAM leaves after the reserved needs, weights and runtimes, split evenly.

    With the RAM unknown (the probe read 0), only the declared kv_cache_gb are set and nothing is refused.
    """
    errors: list[str] = []
    if ram_mb <= 0:
        return {"servers": [{"name": e.get("name"), "kv_cache_gb": int(float(e["kv_cache_gb"]))
                             if e.get("kv_cache_gb") is not None else None} for e in models],
                "errors": [], "pool_mb": 0}
    used = [[str(label), int(mb)] for label, mb in reserved if int(mb) > 0]
    weights = sum(int(w or 0) for w in weights_mb) + SERVER_RUNTIME_MB * len(models)
    names = ", ".join(str(e.get("name")) for e in models)
    used.append([f"weights and runtime of {names}", weights])
    declared = [e for e in models if e.get("kv_cache_gb") is not None]
    others = [e for e in models if e.get("kv_cache_gb") is None]
    if declared:
        used.append(["the kv_cache_gb of " + ", ".join(str(e.get("name")) for e in declared),
                     sum(int(float(e["kv_cache_gb"]) * 1024) for e in declared)])
    pool_mb = ram_mb - sum(mb for _, mb in used)
    each = int(pool_mb // 1024 // len(others)) if others else 0
    arithmetic = f"{ram_mb / 1024:.0f} GiB of RAM - " + " - ".join(f"{mb / 1024:.1f} GiB ({label})"
                                                                  for label, mb in used)
    if others and each < 1:
        errors.append(f"vllm: the KV caches of {', '.join(str(e.get('name')) for e in others)} do not fit this host's "
                      f"memory: {arithmetic} leaves {pool_mb / 1024:.1f} GiB, less than 1 GiB each; serve fewer or "
                      "smaller models here, give each a kv_cache_gb, or lower vllm_cpu_reserved_gb")
    elif not others and pool_mb < 0:
        errors.append(f"vllm: the kv_cache_gb of {names} do not fit this host's memory: {arithmetic} leaves "
                      f"{pool_mb / 1024:.1f} GiB; lower kv_cache_gb or serve fewer models here")
    servers = [{"name": e.get("name"), "kv_cache_gb": int(float(e["kv_cache_gb"])) if e.get("kv_cache_gb") is not None
                else max(each, 1)} for e in models]
    return {"servers": servers, "errors": errors, "pool_mb": pool_mb}


def memory_plan(models: Any, host_type: str, gpus: Any = None, budget: float = 0.92, ram_mb: Any = 0,
                reserved: Any = None, weights_mb: Any = None) -> dict[str, Any]:
    """Each server's GPUs and memory share (GPU hosts) or KV cache (CPU and macOS hosts).

    `weights_mb` are the entries' weight sizes (vllm_host's vllm_model_size_mb, None or 0 when unknown),
    in the order of `models`. Returns {servers: [{name, devices, share, pinned} | {name, kv_cache_gb}],
    errors: [...]}. Entries that are not valid mappings are left to model_errors; on other host types
    the plan is empty.
    """
    entries = [e for e in models if isinstance(e, Mapping)] if isinstance(models, list) else []
    if not entries:
        return {"servers": [], "errors": []}
    weights = [w for e, w in zip(models, list(weights_mb or []) + [0] * len(models)) if isinstance(e, Mapping)]
    if host_type in GPU_TYPES:
        return _gpu_plan(entries, list(gpus or []), float(budget), weights)
    if host_type in CPU_TYPES:
        return _cpu_plan(entries, int(ram_mb or 0), list(reserved or []), weights)
    return {"servers": [], "errors": []}


def cpu_reserved(setting: Any, roles: Iterable[str], ollama_models: Any, os_mb: int = 2048,
                 open_webui_mb: int = 2048, ollama_default_mb: int = 4096) -> list[list[Any]]:
    """[label, MiB] the other services of a CPU host need: vllm_cpu_reserved_gb, or by default the OS,
    Open WebUI when it runs here, and Ollama's largest model when Ollama does (a default without one)."""
    if setting not in ("auto", None, ""):
        return [["vllm_cpu_reserved_gb", int(float(setting) * 1024)]]
    roles = list(roles or [])
    reserved: list[list[Any]] = [["the system", os_mb]]
    if "open_webui" in roles:
        reserved.append(["Open WebUI", open_webui_mb])
    if "ollama" in roles:
        need, name = ollama_need_mb(ollama_models)
        reserved.append([f"Ollama's largest model, {name}" if need else "Ollama's models", need or ollama_default_mb])
    return reserved


class FilterModule:
    """vLLM's CUDA build and memory plan."""

    def filters(self) -> dict[str, Any]:
        return {
            "vllm_cuda_build": cuda_build,
            "vllm_memory_plan": memory_plan,
            "vllm_cpu_reserved": cpu_reserved,
        }
