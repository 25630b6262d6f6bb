#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Look at model paths and stores on a host in one round trip: what is there, and how much room is left."""

from __future__ import annotations

import os
import stat

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: llm_host_storage
short_description: Report which wanted paths are missing, the free space where they would go, and what model paths hold
description:
  - For each item of I(wanted) (something a run would download, e.g. an Ollama model's manifest or a
    Hugging Face cache entry), whether it is on the host: its path exists as a file, or as a directory
    that is not empty. Each missing item comes back with the free space of the file system it would be
    written to, read with statvfs on its nearest existing parent (a store that does not exist yet
    counts on the file system that will hold it), and that file system's mount point and device, so a
    caller can add up what shares one file system.
  - For each path of I(look), its type and, for a directory, the names in it (not recursive).
  - Read-only; supports check mode. Used by the preflight (roles/llm_host/tasks/preflight-disk.yml,
    roles/vllm/tasks/preflight-host.yml) before anything is changed.
options:
  wanted:
    description: >-
      Items {label, path, need_mb} (need_mb in MiB, null when the size is unknown); other keys are
      returned with a missing item as they were given.
    type: list
    elements: dict
    default: []
  look:
    description: Paths to describe.
    type: list
    elements: str
    default: []
author: llmfleet
"""

RETURN = r"""
missing:
  description: "the wanted items that are not on the host, each {label, path, need_mb, mount, device, free_mb}"
  type: list
  returned: always
looked:
  description: "path -> {type: directory, file, other or missing, entries: sorted names (directories only)}"
  type: dict
  returned: always
"""

# A directory listing is for telling a model directory from something else: enough names for that.
MAX_ENTRIES = 1000


def present(path: str) -> bool:
    """A file, or a directory with something in it (an interrupted download leaves an empty one)."""
    try:
        if os.path.isdir(path):
            with os.scandir(path) as entries:
                return any(True for _ in entries)
        return os.path.exists(path)
    except OSError:
        return False


def nearest_existing(path: str) -> str:
    """`path` itself or its nearest existing parent (/ at worst)."""
    path = os.path.abspath(path or "/")
    while not os.path.exists(path) and path != os.path.dirname(path):
        path = os.path.dirname(path)
    return path


def mount_point(path: str) -> str:
    """The mount point of the file system that holds the existing `path`."""
    path = os.path.realpath(path)
    while not os.path.ismount(path):
        path = os.path.dirname(path)
    return path


def filesystem(path: str) -> dict:
    """{mount, device, free_mb} of the file system `path` (or its nearest existing parent) is on.

    free_mb is what an unprivileged writer may use (f_bavail), as the services write as their own users.
    """
    existing = nearest_existing(path)
    try:
        info = os.statvfs(existing)
        device = os.stat(existing).st_dev
    except OSError:
        return {"mount": existing, "device": -1, "free_mb": None}
    return {"mount": mount_point(existing), "device": device,
            "free_mb": info.f_bavail * info.f_frsize // (1024 * 1024)}


def describe(path: str) -> dict:
    """{type, entries} of one path; the names only for a directory (a first MAX_ENTRIES of them)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return {"type": "missing", "entries": []}
    except OSError as error:
        return {"type": "other", "entries": [], "error": error.strerror or str(error)}
    if stat.S_ISREG(mode):
        return {"type": "file", "entries": []}
    if not stat.S_ISDIR(mode):
        return {"type": "other", "entries": []}
    try:
        with os.scandir(path) as entries:
            names = []
            for entry in entries:
                names.append(entry.name)
                if len(names) >= MAX_ENTRIES:
                    break
    except OSError as error:
        return {"type": "directory", "entries": [], "error": error.strerror or str(error)}
    return {"type": "directory", "entries": sorted(names)}


def look(wanted: list, paths: list) -> dict:
    """The module's result for `wanted` items and `paths` (statvfs once per distinct parent)."""
    missing = []
    filesystems: dict[str, dict] = {}
    for item in wanted or []:
        path = str(item.get("path") or "")
        if not path or present(path):
            continue
        parent = nearest_existing(os.path.dirname(path.rstrip("/")) or "/")
        if parent not in filesystems:
            filesystems[parent] = filesystem(parent)
        # The caller's other keys (e.g. the setting that moves the store) come back with the item.
        missing.append({**item, "label": str(item.get("label") or path), "path": path,
                        "need_mb": item.get("need_mb"), **filesystems[parent]})
    return {"missing": missing, "looked": {str(path): describe(str(path)) for path in paths or []}}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "wanted": {"type": "list", "elements": "dict", "default": []},
            "look": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    module.exit_json(changed=False, **look(module.params["wanted"], module.params["look"]))


if __name__ == "__main__":
    main()
