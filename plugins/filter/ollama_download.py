"""Filters that judge a failed release download (uri or get_url result): retry it, and what to tell the user.

Kept in Python so the retry rules are unit-tested in tests/test_ollama_download_filters.py.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# Answers that may go away on their own: timeout, too early, rate limit (and every 5xx).
_RETRY_STATUS = {408, 425, 429}
# No HTTP answer at all: refused, reset, timed out, a transfer cut short (uri and get_url wording).
_NETWORK = re.compile(r"timed out|incomplete ?read|connection|urlopen error|request failed|reset by peer|"
                      r"remote end closed|name or service not known|temporary failure", re.IGNORECASE)


def _status(result: Mapping[str, Any]) -> int:
    """HTTP status of a uri (status) or get_url (status_code) result; -1 when no HTTP answer came."""
    try:
        return int(result.get("status_code", result.get("status", -1)))
    except (TypeError, ValueError):
        return -1


def _msg(result: Mapping[str, Any]) -> str:
    return " ".join(str(result.get("msg", "")).split())


def _checksum_mismatch(result: Mapping[str, Any]) -> bool:
    return "did not match" in _msg(result)


def _network_fault(result: Mapping[str, Any]) -> bool:
    return _status(result) == -1 and bool(_NETWORK.search(_msg(result)))


def retryable(result: Mapping[str, Any]) -> bool:
    """Whether a failed download is worth another attempt.

    Transient: no HTTP answer at all (refused, reset, timed out, a transfer cut short), 5xx, 408/425/429.
    Not retried: any other 4xx (a 404 means the mirror has no such file; asking again gets the same
    answer and only delays the failure) and a checksum mismatch (the mirror serves a different file
    than the one published, and would serve it again).
    """
    if not result.get("failed") or _checksum_mismatch(result):
        return False
    status = _status(result)
    return status >= 500 or status in _RETRY_STATUS or _network_fault(result)


def _attempts(result: Mapping[str, Any], attempts: int | None) -> str:
    # A retried task that runs out of retries reports one attempt less than it made (ansible-core
    # sets attempts to the retries count), so the caller passes retries + 1 when it knows it.
    attempts = attempts or int(result.get("attempts", 1) or 1)
    return f"after {attempts} attempt{'s' if attempts != 1 else ''}"


def _cause(result: Mapping[str, Any], attempts: int | None) -> str:
    msg = _msg(result)
    status = _status(result)
    if _checksum_mismatch(result):
        sums = re.search(r"did not match (\w+); it was (\w+)", msg)
        found = f": expected {sums.group(1)}, got {sums.group(2)}" if sums else f" ({msg})"
        return f"sha256 mismatch{found}, the mirror serves another file than the checksum names; not retried"
    if status == 404:
        return "HTTP 404 not found, the mirror has no such file (check ollama_version and ollama_download_base_url); not retried"
    if 400 <= status < 500 and status not in _RETRY_STATUS:
        return f"HTTP {status} ({msg}); not retried"
    if status >= 500 or status in _RETRY_STATUS:
        return f"HTTP {status} ({msg}), {_attempts(result, attempts)}"
    if _network_fault(result):
        if "timed out" in msg.lower():
            kind = "timed out, no data within ollama_download_timeout"
        elif "incomplete" in msg.lower():
            kind = "transfer cut short"
        else:
            kind = "connection failed"
        return f"{kind} ({msg}), {_attempts(result, attempts)}"
    if result.get("stderr"):
        return " ".join(str(result["stderr"]).split())[-400:]
    return msg or "failed"


def failure_summary(result: Mapping[str, Any], attempts: int | None = None) -> str:
    """One line per failed item of a task result (looped or not): what was fetched and why it failed.

    attempts: how many attempts a transient fault got (retries + 1); default: what the result says.
    """
    items = result.get("results") if isinstance(result.get("results"), list) else [result]
    lines = []
    for item in items:
        if not isinstance(item, Mapping) or not item.get("failed"):
            continue
        what = item.get("url") or item.get("item") or ""
        cause = _cause(item, attempts)
        lines.append(f"{what}: {cause}" if what else cause)
    return "; ".join(lines) or " ".join(str(result.get("msg", "failed")).split())


class FilterModule:
    """Ollama download filters."""

    def filters(self) -> dict[str, Any]:
        return {
            "ollama_download_retryable": retryable,
            "ollama_download_failure": failure_summary,
        }
