"""The collection's own files, for the filters that read the roles (their argument specs, their defaults).

Paths are relative to the collection root, which is the checkout itself or an installed copy of it.
Unit-tested in tests/test_module_utils.py.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import yaml

# plugins/module_utils/collection.py -> the collection root.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROLES_DIR = os.path.join(ROOT, "roles")
# libyaml's loader when PyYAML has it: each task runs in a fresh worker, so the files are read again on
# every run (20 ms instead of 170 ms for all argument specs).
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@functools.lru_cache(maxsize=16)
def role_defaults(role: str, roles_dir: str = ROLES_DIR) -> dict[str, Any]:
    """The variables of roles/<role>/defaults/main.yml as written (templates unrendered); {} without one."""
    path = os.path.join(roles_dir, role, "defaults", "main.yml")
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as handle:
        return yaml.load(handle, Loader=LOADER) or {}
