"""Filters that write every environment file llmfleet puts on a host (ollama.env, open-webui.env and
secrets.env, /etc/vllm/<name>.env) by one rule: plugins/module_utils/env_file.py says which and why.

    {{ _ollama_env | llmfleet.llmfleet.env_file }}
    {{ {'LLMFLEET_VLLM_ARGS': item.args | llmfleet.llmfleet.systemd_exec_args} | llmfleet.llmfleet.env_file }}

Unit-tested in tests/test_env_file.py.
"""

from __future__ import annotations

from typing import Any

from ansible_collections.llmfleet.llmfleet.plugins.module_utils.env_file import env_file, exec_args


class FilterModule:
    """Environment file filters."""

    def filters(self) -> dict[str, Any]:
        return {
            # NAME="value" lines, sorted; None leaves a variable out; NUL and control characters refused.
            "env_file": env_file,
            # The value of a variable that ExecStart= expands as $NAME into exactly these arguments.
            "systemd_exec_args": exec_args,
        }
