"""Filters that turn vllm_models into server instances: validated settings, arguments, environment.

In Python so the rules are unit-tested (tests/test_vllm_filters.py) instead of spread over Jinja.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping
from typing import Any

from ansible_collections.llmfleet.llmfleet.plugins.module_utils.secrets import is_placeholder, placeholders
from ansible_collections.llmfleet.llmfleet.plugins.module_utils.vllm_serving import serves

_KEYS = {"name", "model", "port", "max_model_len", "dtype", "gpu_memory_utilization", "tensor_parallel_size",
         "tool_call_parser", "kv_cache_gb", "api_key", "environment", "extra_args", "gpus"}
# Matched whole (fullmatch: `$` would also match before a final line break).
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# Hugging Face organisations whose every repository is gated (a licence to accept, then a token):
# known offline, unlike the gating of any other repository, which only the Hub can tell.
GATED_PREFIXES = ("meta-llama/", "google/gemma")
# Arguments the role sets itself; in extra_args they would silently fight the role's own.
_OWNED = {"--model", "--host", "--port", "--served-model-name", "--api-key", "--max-model-len", "--dtype",
          "--gpu-memory-utilization", "--tensor-parallel-size", "-tp", "--tool-call-parser",
          "--enable-auto-tool-choice"}


def instance_name(name: str) -> str:
    """The systemd instance / launchd label suffix of a served name (vllm@<instance>)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", name)


def port_number(value: Any) -> int | None:
    """A port 1-65535, written as a number or as digits in quotes ("8000"); None when it is not one."""
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,5}", value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        return None
    return value


def port_clashes(ports: Iterable[Any]) -> list[str]:
    """One message per setting whose port an earlier one of the same host already has.

    `ports` are [variable, port] pairs in order (ollama_port, open_webui_port, each
    vllm_models[i].port): every service on a host needs its own port. A port that is not a number is
    left to the check of its own setting.
    """
    seen: dict[int, str] = {}
    errors = []
    for variable, value in ports or []:
        port = port_number(value)
        if port is None:
            continue
        if port in seen:
            errors.append(f"{variable} and {seen[port]} are both {port}, and two services cannot share a port on one "
                          f"host: set {variable} to a free port")
        else:
            seen[port] = str(variable)
    return errors


def model_ports(models: Any) -> list[list[Any]]:
    """[variable, port] of each vllm_models entry that has a port, for port_clashes."""
    pairs: list[list[Any]] = []
    for index, entry in enumerate(models if isinstance(models, list) else []):
        if isinstance(entry, Mapping) and "port" in entry:
            name = entry.get("name")
            pairs.append([f"vllm_models[{index}].port" + (f" ({name})" if name else ""), entry["port"]])
    return pairs


def environment_clashes(variable: str, environment: Any, owners: Mapping[str, str]) -> list[str]:
    """A message per key of `environment` (the inventory's `variable`) the role sets from its own settings.

    `owners` maps each such key to the setting it comes from. Names only, never values.
    """
    if not isinstance(environment, Mapping):
        return []
    return [f"{key} is set by {owners[key]}; remove it from {variable}" for key in environment if key in owners]


def _offline(environment: Any) -> bool:
    value = str((environment or {}).get("HF_HUB_OFFLINE", "")) if isinstance(environment, Mapping) else ""
    return value.lower() in ("1", "true", "yes", "on")


def _gpus_errors(gpus: Any) -> list[str]:
    """One message per rule an entry's gpus breaks: GPU numbers, at least one, each once."""
    if gpus is None:
        return []
    what = "gpus must be a list of GPU numbers as nvidia-smi shows them"
    if not isinstance(gpus, list):
        return [f"{what}, e.g. [0] or [0, 1], and it is {gpus!r}"]
    if not gpus:
        return [f"{what}, and it is empty: list at least one, e.g. [0], or remove gpus to use the first "
                "tensor_parallel_size GPUs"]
    errors = []
    numbers = [g for g in gpus if isinstance(g, int) and not isinstance(g, bool) and g >= 0]
    bad = [g for g in gpus if not (isinstance(g, int) and not isinstance(g, bool) and g >= 0)]
    if bad:
        errors.append(f"{what} (0, 1, ...), and {', '.join(repr(g) for g in bad)} "
                      f"{'is not one' if len(bad) == 1 else 'are not'}")
    twice = sorted({g for g in numbers if numbers.count(g) > 1})
    if twice:
        errors.append(f"{what}, each once, and it lists GPU {', '.join(str(g) for g in twice)} more than once: "
                      "list each GPU once")
    return errors


def model_errors(models: Iterable[Any], hf_token: bool | None = None, environment: Any = None,
                 owners: Mapping[str, str] | None = None) -> list[str]:
    """Every problem in vllm_models, as messages naming the entry and the fix (empty when fine).

    `hf_token` (whether vllm_hf_token is set; None: not checked) refuses gated models without a token;
    `owners` ({environment key: the setting it comes from}) refuses those keys in an entry's environment.
    Ports shared with another entry or service are port_clashes' to report. The dtype (an entry's and
    vllm_default_dtype) is the argument spec's choice, checked before this runs.
    """
    errors: list[str] = []
    names: set[str] = set()
    for index, entry in enumerate(models or []):
        label = f"vllm_models[{index}]"
        if not isinstance(entry, Mapping):
            errors.append(f"{label} must be a mapping with name, model and port")
            continue
        name = entry.get("name")
        label = f"vllm_models[{index}] ({name})" if name else label
        unknown = set(entry) - _KEYS
        if unknown:
            errors.append(f"{label}: unknown keys {sorted(unknown)}; allowed: {sorted(_KEYS)}")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            errors.append(f"{label}: name must be 1-64 letters, digits, '.', '_' or '-'")
        elif instance_name(name) in names:
            errors.append(f"{label}: name {name!r} is used twice")
        else:
            names.add(instance_name(name))
        model = entry.get("model")
        if not isinstance(model, str) or not model.strip() or any(c.isspace() for c in model):
            errors.append(f"{label}: model must be a Hugging Face id or a path without spaces")
        if port_number(entry.get("port")) is None:
            errors.append(f"{label}: port {entry.get('port')!r} is not a port: set port to a number 1-65535")
        if "api_key" in entry and is_placeholder(entry["api_key"]):
            errors.append(f"{label}: api_key is a placeholder; put the real key in vault, or remove api_key")
        if (hf_token is False and isinstance(model, str) and model.startswith(GATED_PREFIXES)
                and not _offline(environment) and not _offline(entry.get("environment"))):
            errors.append(f"{label}: {model} is a gated Hugging Face model and vllm_hf_token is empty; set "
                          "vllm_hf_token (from vault) to a token of an account that accepted its licence")
        share = entry.get("gpu_memory_utilization")
        if share is not None and (isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1):
            errors.append(f"{label}: gpu_memory_utilization must be a fraction in (0, 1]")
        for key in ("max_model_len", "tensor_parallel_size"):
            value = entry.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                errors.append(f"{label}: {key} must be a positive whole number")
        kv = entry.get("kv_cache_gb")
        if kv is not None and (isinstance(kv, bool) or not isinstance(kv, (int, float)) or kv <= 0):
            errors.append(f"{label}: kv_cache_gb must be a positive number")
        elif kv is not None and not float(kv).is_integer():
            # vLLM reads VLLM_CPU_KVCACHE_SPACE with int(): "2.5" stops the server at start-up.
            errors.append(f"{label}: kv_cache_gb is {kv}, and vLLM takes whole GiB only; set it to "
                          f"{max(1, int(kv))}")
        errors += [f"{label}: {error}" for error in _gpus_errors(entry.get("gpus"))]
        extra = entry.get("extra_args", [])
        if not isinstance(extra, list) or not all(isinstance(a, (str, int, float)) for a in extra):
            errors.append(f"{label}: extra_args must be a list of strings")
        else:
            clash = sorted({str(a).split("=", 1)[0] for a in extra} & _OWNED)
            if clash:
                errors.append(f"{label}: extra_args sets {clash}; use the entry's own keys instead")
        env = entry.get("environment", {})
        if not isinstance(env, Mapping):
            errors.append(f"{label}: environment must be a mapping")
        else:
            errors += [f"{label}: {clash}" for clash in environment_clashes("its environment", env, owners or {})]
    return errors


def instances(models: Iterable[Mapping[str, Any]], host: str = "127.0.0.1", default_parser: str = "hermes",
              default_max_model_len: int = 16384, default_dtype: str = "auto", api_key: str = "",
              environment: Mapping[str, Any] | None = None, plan: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """One server per served model: {name, instance, port, args (list), env (dict, secrets included)}.

    `plan` is vllm_gpu's memory_plan for the host: each server's gpu_memory_utilization and, for an entry
    with gpus, CUDA_VISIBLE_DEVICES (GPU hosts), or its KV cache (CPU and macOS hosts).
    """
    errors = model_errors(models)
    if errors:
        raise ValueError("; ".join(errors))
    planned = {server["name"]: server for server in (plan or {}).get("servers", [])}
    result = []
    for entry in models or []:
        server = planned.get(entry["name"], {})
        port = port_number(entry["port"])
        args = ["--model", entry["model"], "--served-model-name", entry["name"], "--host", host,
                "--port", str(port),
                "--max-model-len", str(entry.get("max_model_len", default_max_model_len)),
                "--dtype", str(entry.get("dtype", default_dtype))]
        share = entry.get("gpu_memory_utilization", server.get("share"))
        if share is not None:
            args += ["--gpu-memory-utilization", str(share)]
        if entry.get("tensor_parallel_size"):
            args += ["--tensor-parallel-size", str(entry["tensor_parallel_size"])]
        parser = entry.get("tool_call_parser", default_parser)
        if parser:
            args += ["--enable-auto-tool-choice", "--tool-call-parser", str(parser)]
        args += [str(a) for a in entry.get("extra_args", [])]
        env = {str(k): str(v) for k, v in (environment or {}).items()}
        env.update({str(k): str(v) for k, v in (entry.get("environment") or {}).items()})
        kv = entry.get("kv_cache_gb", server.get("kv_cache_gb"))
        if kv is not None:
            env["VLLM_CPU_KVCACHE_SPACE"] = str(int(float(kv)))
        if entry.get("gpus") is not None:
            # nvidia-smi's numbers are PCI bus order; CUDA's own order (fastest first) may differ.
            env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in entry["gpus"])
        key = entry.get("api_key", api_key)
        if key:
            env["VLLM_API_KEY"] = str(key)
        result.append({"name": entry["name"], "instance": instance_name(entry["name"]), "port": port,
                       "args": args, "command_line": shlex.join(args), "env": env})
    return result


def unlisted(results: Iterable[Mapping[str, Any]]) -> list[str]:
    """From registered /v1/models results, a message per server that does not list its served name.

    Only names, ports and status codes go into the messages, never the request (it carries the key).
    """
    problems = []
    for result in results or []:
        item = result.get("item", {})
        status = result.get("status", -1)
        ids = [m.get("id") for m in (result.get("json") or {}).get("data", [])] if status == 200 else []
        if status != 200:
            problems.append(f"vllm@{item.get('instance')} answered /v1/models with {status}")
        elif item.get("name") not in ids:
            problems.append(f"vllm@{item.get('instance')} lists {ids}, not {item.get('name')}")
    return problems


class FilterModule:
    """vLLM model filters."""

    def filters(self) -> dict[str, Any]:
        return {
            "vllm_model_errors": model_errors,
            "vllm_model_ports": model_ports,
            "vllm_port_clashes": port_clashes,
            "vllm_placeholders": placeholders,
            "vllm_instances": instances,
            "vllm_instance_name": instance_name,
            "vllm_unlisted": unlisted,
            # vllm_enabled on this host (true, false or auto), as the role and Open WebUI's defaults read it.
            "vllm_serves_here": serves,
        }
