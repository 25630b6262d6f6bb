"""Host names and service URLs as the inventory writes them: one rule for every role's checks.

Used by the llm_host, continue and open_webui filters; unit-tested in tests/test_module_utils.py.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

# One DNS label: letters, digits, '-' (and '_', which some LANs use), not starting or ending with '-'.
LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
# A whole name: labels joined by dots, 253 characters at most (a final dot allowed).
HOST_NAME = re.compile(rf"(?=.{{1,253}}\.?$){LABEL}(?:\.{LABEL})*\.?")
_HOST = rf"(?:{LABEL}(?:\.{LABEL})*|\[[0-9A-Fa-f:.]+\])"


def is_host_name(value: Any) -> bool:
    """A DNS name or an IP address, with nothing else: no scheme, port, path or spaces."""
    if not isinstance(value, str):
        return False
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return bool(HOST_NAME.fullmatch(value)) and "\n" not in value


def is_url(value: Any, forbidden: str = "") -> bool:
    """http(s)://host[:port][/path] and nothing before or after it: the host a name, an IPv4 address
    or an [IPv6] address, a port 1-65535 if one is given, no whitespace, and none of `forbidden` (a
    list that joins URLs with `;` forbids `;`)."""
    if not isinstance(value, str):
        return False
    path = "[^\\s" + re.escape(forbidden) + "]*" if forbidden else "\\S*"
    match = re.fullmatch(rf"https?://{_HOST}(?::([0-9]{{1,5}}))?(?:/{path})?", value)
    return bool(match) and (match.group(1) is None or 1 <= int(match.group(1)) <= 65535)
