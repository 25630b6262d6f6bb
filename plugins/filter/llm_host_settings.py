"""Filters the roles' preflights share to check single settings: a host name, a URL, an account
name, an environment override of what a role sets itself.

Kept in Python so the patterns are anchored at both ends (re.fullmatch: Python's `$` also matches
before a final line break); the host name and URL rules are the collection's (module_utils/addresses.py).
Unit-tested in tests/test_llm_host_settings.py.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ansible_collections.llmfleet.llmfleet.plugins.module_utils.addresses import is_host_name, is_url

# An account or group name as useradd and dscl take them (useradd's default NAME_REGEX, with '.' and
# upper case for directory accounts), at most 32 characters.
_ACCOUNT = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")


def account_errors(settings: Mapping[str, Any]) -> list[str]:
    """A message per setting (variable -> value) whose value is not an account or group name, e.g.
    {"ollama_user": "ollama"}."""
    return [f"{name} {value!r} is not an account name: use 1-32 letters, digits, '_', '.' or '-', starting "
            "with a letter or '_'"
            for name, value in settings.items() if not isinstance(value, str) or not _ACCOUNT.fullmatch(value)]


def environment_clashes(variable: str, environment: Any, owners: Mapping[str, str]) -> list[str]:
    """A message per key of `environment` (the inventory's `variable`) that the role sets itself.

    `owners` maps each key the role writes to the variable(s) that set it. Only names reach the
    messages, never values (an environment may hold a token).
    """
    if not isinstance(environment, Mapping):
        return []
    return [f"{key} is set by {owners[key]}; remove it from {variable}"
            for key in environment if key in owners]


class FilterModule:
    """llm_host's settings filters, shared by the roles' preflights."""

    def filters(self) -> dict[str, Any]:
        return {
            "llm_host_is_host_name": is_host_name,
            "llm_host_is_url": is_url,
            "llm_host_environment_clashes": environment_clashes,
            "llm_host_account_errors": account_errors,
        }
