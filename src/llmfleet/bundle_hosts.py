"""What the parts of `invoke bundle` read alike: a role's defaults and vars, a collection plugin loaded
by path, the roles a host of the inventory runs, and whether its vLLM serves.

A host's roles come from its `group_names` (bundle.read_inventory adds them) among the kinds of
roles/llm_host/vars/main.yml's `_llm_host_kind_roles`. A role's files are read once per run, not once
per host.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml


class BundleError(Exception):
    """A bundle that cannot be made, with the reason: the base of each part's own error."""


def tail(text: str, lines: int) -> str:
    """The last `lines` lines of a tool's output, for an error message."""
    return "\n".join(text.strip().splitlines()[-lines:])


@lru_cache(maxsize=None)
def _role_file(root: Path, role: str, part: str) -> dict[str, Any]:
    return yaml.safe_load((root / "roles" / role / part / "main.yml").read_text()) or {}


def role_default(root: Path, role: str, name: str) -> Any:
    """A role's default for a variable the inventory does not set."""
    return _role_file(root, role, "defaults").get(name)


def role_vars(root: Path, role: str) -> dict[str, Any]:
    """A role's vars/main.yml, as data (its templates are not rendered)."""
    return _role_file(root, role, "vars")


@lru_cache(maxsize=None)
def load_plugin(root: Path, relative: str, name: str) -> ModuleType:
    """A plugin of the collection by path (the module and filter files are not a package here)."""
    spec = importlib.util.spec_from_file_location(name, root / relative)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def setting(root: Path, variables: Mapping[str, Any], role: str, name: str) -> Any:
    """A host's value of a role's variable: the inventory's, else the role's default."""
    return variables[name] if name in variables else role_default(root, role, name)


def host_roles(root: Path, variables: Mapping[str, Any]) -> set[str]:
    """The roles the kinds of a host (its group_names) run."""
    kind_roles: dict[str, list[str]] = role_vars(root, "llm_host")["_llm_host_kind_roles"]
    return {role for group in variables.get("group_names") or [] for role in kind_roles.get(group, [])}


def vllm_serves(root: Path, variables: Mapping[str, Any]) -> bool:
    """Whether a host's vLLM serves, by the role's own rule (plugins/module_utils/vllm_serving.py); with
    vllm_enabled "auto" on a host whose type is detected at converge, whenever it lists models (it may
    serve, so the bundle holds what it would need)."""
    enabled = setting(root, variables, "vllm", "vllm_enabled")
    models = setting(root, variables, "vllm", "vllm_models")
    host_type = str(variables.get("llm_host_type", "auto"))
    if host_type == "auto" and str(enabled).lower() == "auto":
        return bool(models)
    serving = load_plugin(root, "plugins/module_utils/vllm_serving.py", "llmfleet_bundle_vllm_serving")
    return bool(serving.serves(enabled, host_type, models))
