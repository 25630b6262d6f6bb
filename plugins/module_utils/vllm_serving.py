"""Whether the vllm role serves on a host: read by the vllm role (_vllm_is_enabled) and by Open WebUI's
default connections to this host's vLLM servers, so both follow one rule.

Unit-tested in tests/test_module_utils.py.
"""

from __future__ import annotations

from typing import Any

# The host types (llm_host_facts['type']) where `vllm_enabled: auto` serves the listed models.
AUTO_TYPES = ("linux_cuda", "macos_arm64")
_TRUE = ("true", "yes", "on", "1")


def serves(enabled: Any, host_type: str, models: Any) -> bool:
    """vllm_enabled read on a host: true or false as written (Ansible's `bool` words), or "auto":
    serve where the host type is one of AUTO_TYPES and vllm_models lists a model.
    """
    if isinstance(enabled, str) and enabled.lower() == "auto":
        return host_type in AUTO_TYPES and bool(models)
    return str(enabled).lower() in _TRUE
