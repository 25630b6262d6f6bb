"""Where a module moves what stands in its way: one naming rule for every module that keeps, never
deletes, what it replaces.

Used by the llm_host_paths and continue_json_settings modules (on the managed host); unit-tested in
tests/test_module_utils.py.
"""

from __future__ import annotations

import os
import time


def aside_path(path: str) -> str:
    """An unused name beside `path` for what is moved out of its way, in the pattern Ansible's own
    backups use (AnsibleModule.backup_local): <path>.<pid>.<timestamp>~, with a counter when taken."""
    stamp = time.strftime("%Y-%m-%d@%H:%M:%S~", time.localtime())
    candidate, count = f"{path}.{os.getpid()}.{stamp}", 0
    while os.path.lexists(candidate):
        count += 1
        candidate = f"{path}.{os.getpid()}.{count}.{stamp}"
    return candidate
