"""vllm_models against the host, before anything changes: model paths and the Hugging Face downloads.

roles/vllm/tasks/preflight-host.yml asks llm_host's storage module (one call) about the models given
as paths and the Hugging Face cache entries of the others; these filters say what to ask and judge the
answer. Unit-tested in tests/test_llm_host_disk.py.

A model given as a path is what vLLM (through transformers) loads from disk: a directory holding
config.json (or params.json, Mistral's own format) and weights (*.safetensors, *.bin or *.pt files,
sharded or not), or a single GGUF file (*.gguf), which vLLM loads given as the file itself.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from typing import Any

CONFIGS = ("config.json", "params.json")
WEIGHTS = ("*.safetensors", "*.bin", "*.pt")
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


def model_paths(models: Iterable[Any]) -> list[str]:
    """The models given as paths, for llm_host_storage's `look`."""
    return [entry["model"] for entry in models or [] if isinstance(entry, Mapping) and is_path(entry.get("model"))]


def path_errors(models: Iterable[Any], looked: Mapping[str, Any], host: str = "this host") -> list[str]:
    """A message for each model path that is missing or does not look like a model (see the module doc)."""
    errors = []
    for index, entry in enumerate(models or []):
        if not isinstance(entry, Mapping) or not is_path(entry.get("model")):
            continue
        path = entry["model"]
        seen = (looked or {}).get(path) or {}
        kind, names = seen.get("type"), seen.get("entries") or []
        label = f"vllm: vllm_models[{index}].model is {path}"
        if kind is None:
            continue  # not looked at (check skipped)
        fix = ("Copy the model there (a Hugging Face model directory: config.json and its *.safetensors), "
               "correct the path, or give the model's Hugging Face id (org/name) to have it downloaded.")
        if kind == "missing":
            errors.append(f"{label}, which does not exist on {host}. {fix}")
        elif kind == "file":
            if not path.lower().endswith(".gguf"):
                errors.append(f"{label}, a file that is not a GGUF model; vLLM loads a directory with config.json "
                              f"and weights, or a single .gguf file. {fix}")
        elif kind != "directory":
            errors.append(f"{label}, which is not a directory on {host}"
                          f"{' (' + seen['error'] + ')' if seen.get('error') else ''}. {fix}")
        else:
            lacks = []
            if not any(name in names for name in CONFIGS):
                lacks.append("config.json")
            if not any(fnmatch.fnmatch(name, pattern) for name in names for pattern in WEIGHTS):
                lacks.append("weights (*.safetensors or *.bin)")
            gguf = any(name.lower().endswith(".gguf") for name in names)
            if lacks:
                errors.append(f"{label}, a directory on {host} without {' and without '.join(lacks)}, so not a "
                              f"model directory{' (it holds a GGUF file: give the .gguf file as the model)' if gguf else ''}."
                              f" {fix}")
    return errors


class FilterModule:
    """vLLM's models against the host."""

    def filters(self) -> dict[str, Any]:
        return {
            "vllm_storage_wanted": storage_wanted,
            "vllm_model_paths": model_paths,
            "vllm_path_errors": path_errors,
        }
