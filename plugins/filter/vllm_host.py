"""vllm_models against the host, before anything changes: model paths and the Hugging Face downloads.

The vLLM preflight (tasks/preflight.yml) asks llm_host's storage module, in one call, whether the
models given as paths are models and whether the Hugging Face models not in the cache yet fit its file
system; these filters say what to ask: the paths, and each download's cache entry and size.
Unit-tested in tests/test_llm_host_disk.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

# A parameter count in a Hugging Face model name: "Qwen2.5-Coder-1.5B-Instruct", "Llama-3.1-8B",
# "Mixtral-8x7B" (experts times size), "SmolLM2-135M"; "Qwen3-30B-A3B" counts its 30B (all are stored).
_SIZE = re.compile(r"(?:^|[-_.])(?:(\d+)x)?(\d+(?:\.\d+)?)([bm])(?=$|[-_.])", re.IGNORECASE)
# Bytes per parameter in the files: bf16/fp16 unless the name says the checkpoint is quantised.
_BYTES = ((re.compile(r"(?:^|[-_.])(awq|gptq|int4|4bit|w4a16|nf4|bnb)(?=$|[-_.])", re.IGNORECASE), 0.6),
          (re.compile(r"(?:^|[-_.])(fp8|int8|8bit|w8a8)(?=$|[-_.])", re.IGNORECASE), 1.1))
_BF16_BYTES = 2.0


def is_path(model: Any) -> bool:
    """Whether vllm_models[].model is a local path (absolute), not a Hugging Face id (org/name)."""
    return isinstance(model, str) and model.startswith("/")


def _env(environment: Any) -> Mapping[str, Any]:
    return environment if isinstance(environment, Mapping) else {}


def estimate_mb(model: str) -> int | None:
    """Download size of a Hugging Face model from the parameter count in its name; None without one."""
    name = model.rsplit("/", 1)[-1]
    sizes = [(int(m.group(1) or 1)) * float(m.group(2)) * (1e-3 if m.group(3).lower() == "m" else 1)
             for m in _SIZE.finditer(name)]
    if not sizes:
        return None
    per_param = next((b for pattern, b in _BYTES if pattern.search(name)), _BF16_BYTES)
    return int(max(sizes) * 1e9 * per_param / (1024 * 1024))


def hub_dir(hf_home: str, environment: Any = None, entry_environment: Any = None) -> str:
    """The Hugging Face hub cache a server uses: HF_HUB_CACHE, else $HF_HOME/hub (per-model wins)."""
    env = {**_env(environment), **_env(entry_environment)}
    if env.get("HF_HUB_CACHE"):
        return str(env["HF_HUB_CACHE"]).rstrip("/")
    return str(env.get("HF_HOME") or hf_home).rstrip("/") + "/hub"


def storage_wanted(models: Iterable[Any], hf_home: str, environment: Any = None) -> list[dict[str, Any]]:
    """The Hugging Face models vLLM would download, for llm_host_storage's `wanted`.

    Each {label, path (its cache entry's snapshots), need_mb or None, store, setting}; paths are not
    downloaded and are left out.
    """
    wanted = []
    for index, entry in enumerate(models or []):
        if not isinstance(entry, Mapping) or not isinstance(entry.get("model"), str) or is_path(entry["model"]):
            continue
        model = entry["model"]
        hub = hub_dir(hf_home, environment, entry.get("environment"))
        wanted.append({"label": f"vllm_models[{index}].model {model}",
                       "path": f"{hub}/models--{model.replace('/', '--')}/snapshots",
                       "need_mb": estimate_mb(model), "store": hub, "setting": "vllm_home"})
    return wanted


def model_paths(models: Iterable[Any]) -> list[dict[str, str]]:
    """The models given as paths, each {label, path}, for llm_host_storage's `models` (it checks them)."""
    return [{"label": f"vllm: vllm_models[{index}].model", "path": entry["model"]}
            for index, entry in enumerate(models or []) if isinstance(entry, Mapping) and is_path(entry.get("model"))]


def mirror_models(models: Iterable[Any], hf_home: str, environment: Any = None) -> list[dict[str, str]]:
    """The models named by repository id, each {label, model, hub} for vllm_hf_mirror (plugins/modules)."""
    return [{"label": f"vllm_models[{index}].model", "model": entry["model"],
             "hub": hub_dir(hf_home, environment, entry.get("environment"))}
            for index, entry in enumerate(models or [])
            if isinstance(entry, Mapping) and isinstance(entry.get("model"), str) and entry["model"]
            and not is_path(entry["model"])]


class FilterModule:
    """vLLM's models against the host."""

    def filters(self) -> dict[str, Any]:
        return {
            "vllm_storage_wanted": storage_wanted,
            "vllm_model_paths": model_paths,
            "vllm_mirror_models": mirror_models,
            # A model's weights in MiB (0 for a path or a name without a size): the CPU memory plan's.
            "vllm_model_size_mb": lambda model: (estimate_mb(model) or 0) if isinstance(model, str) and not is_path(model) else 0,
        }
