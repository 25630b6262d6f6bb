"""Secrets left at a placeholder in an inventory: one rule for every role's checks.

Used by the continue, open_webui and vllm filters; unit-tested in tests/test_module_utils.py.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# Values people leave in an inventory for a secret they have not filled in ("none" is not one: it is
# the key Open WebUI sends to a server that needs none).
PLACEHOLDER = re.compile(r"^(change[-_ ]?me|change[-_ ]?it|replace[-_ ]?me|password|secret|todo|tbd|fixme|x{3,}|\*+|<.*>|\.\.\.)$",
                         re.IGNORECASE)


def is_placeholder(value: Any) -> bool:
    """True for a secret left at a placeholder ("changeme", "<token>", blanks); never says which."""
    text = str(value)
    return bool(text) and (not text.strip() or bool(PLACEHOLDER.match(text.strip())))


def placeholders(secrets: Mapping[str, Any]) -> list[str]:
    """The names of the secrets (name -> value) that hold a placeholder; the values stay out."""
    return [str(name) for name, value in (secrets or {}).items() if is_placeholder(value)]
