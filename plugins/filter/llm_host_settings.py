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


# A git URL a host can fetch from: a scheme and a path, or scp's user@host:path.
_GIT_URL = re.compile(r"(?:(?:https?|ssh|git|file)://\S+|[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:\S+)")
# A password in a URL (scheme://user:password@host): the settings file that holds the URL is world-readable.
_URL_PASSWORD = re.compile(r"[a-z+]+://[^/@]*:[^/@]*@.*")
# A branch or tag name git accepts (git check-ref-format, the parts a setting can get wrong).
_REF = re.compile(r"(?!-)(?!.*\.\.)(?!.*//)[^\s~^:?*\[\\]+(?<![/.])")


def pull_problems(settings: Mapping[str, Any]) -> list[str]:
    """A message per pull-mode setting (llm_host_pull_*, variable -> value) that cannot work.

    Only for an enrolled host; the argument specs have already checked the types.
    """
    problems = []
    url = str(settings.get("llm_host_pull_repo_url") or "")
    if not _GIT_URL.fullmatch(url):
        problems.append(f"llm_host_pull is on but llm_host_pull_repo_url {url!r} is not a git URL. Set it to the "
                        "team's llmfleet repository: https://, http://, ssh://, git:// or file:// and its path, or "
                        "user@host:path.")
    elif _URL_PASSWORD.fullmatch(url):
        problems.append("llm_host_pull_repo_url carries a password (user:password@), which would be readable on the "
                        "host. Give the host a read-only deploy key (ssh://) or a repository it may read without one.")
    inventory = str(settings.get("llm_host_pull_inventory") or "")
    if not inventory or inventory.startswith("/") or ".." in inventory.split("/") or re.search(r"\s", inventory):
        problems.append(f"llm_host_pull is on but llm_host_pull_inventory {inventory!r} is not a path inside the "
                        "repository. Set it to the inventory's path from the repository's root, e.g. inventory/team.")
    version = str(settings.get("llm_host_pull_version") or "")
    if not _REF.fullmatch(version):
        problems.append(f"llm_host_pull_version {version!r} is not a branch or tag name. Set it to the branch or tag "
                        "the host converges from, e.g. main.")
    if settings.get("llm_host_pull_driver_found") is False:
        problems.append("llm_host_pull is on but this run has no src/llmfleet/pull.py beside its playbooks: pull mode "
                        "installs llmfleet's run driver from the checkout. Run it from llmfleet's checkout (the "
                        "repository the host pulls), not from the installed collection.")
    report = str(settings.get("llm_host_pull_report_url") or "")
    if report and not (report.startswith("https://") and is_url(report)) or _URL_PASSWORD.fullmatch(report):
        problems.append(f"llm_host_pull_report_url {report.split('@')[-1]!r} is not an https:// URL without credentials: "
                        "the report carries the host's key. Set it to the team server's report endpoint over TLS, "
                        "e.g. https://team-gpu.lan/llmfleet/pull-reports, or to \"\" for no report.")
    if report and int(settings.get("llm_host_pull_report_key_length") or 0) < 16:
        problems.append("llm_host_pull_report_url is set but llm_host_pull_report_key is shorter than 16 characters. "
                        "Put this host's report key in the vault (e.g. openssl rand -base64 32).")
    for name, least in (("llm_host_pull_interval", 60), ("llm_host_pull_boot_delay", 0),
                        ("llm_host_pull_random_delay", 0), ("llm_host_pull_keep", 1)):
        value = settings.get(name)
        try:
            number = int(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            number = least - 1
        if number < least:
            unit = "runs" if name == "llm_host_pull_keep" else "seconds"
            problems.append(f"{name} is {value!r}; set it to {least} {unit} or more.")
    return problems


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
            "llm_host_pull_problems": pull_problems,
        }
