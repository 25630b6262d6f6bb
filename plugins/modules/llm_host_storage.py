#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Check model paths and the room for the models to download on a host, in one read-only call."""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Iterable, Mapping
from typing import Any

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: llm_host_storage
short_description: Fail before any change when a model path is not a model or the models to download do not fit
description:
  - For each item of I(models), a model given as a local path, whether it is one: a directory with
    config.json (or params.json, Mistral's format) and weights (*.safetensors, *.bin or *.pt files,
    sharded or not), as transformers and so vLLM load it, or a single *.gguf file, which vLLM loads
    given as the file itself.
  - For each item of I(wanted) (something a run would download: an Ollama model's manifest, a Hugging
    Face cache entry), whether it is on the host: its path exists as a file, or as a directory that is
    not empty. Each missing item gets the free space (statvfs, what an unprivileged writer may use) of
    the file system it would be written to, read on its nearest existing parent (a store that does not
    exist yet counts on the file system that will hold it), and that file system's mount point and device.
  - The missing items, with those of I(missing) (found by an earlier call), are added up per file
    system; with I(margin) on top they must fit its free space. Taken in the order given, each model
    that would take the total of those before it that fit past the free space would not fit. Models
    whose need_mb is null (size unknown) are not counted; a message names them.
  - Fails with one message per problem (each model path, each file system), else reports what is
    missing. Read-only; supports check mode. Run by the vllm and ollama preflights
    (roles/vllm/tasks/preflight.yml, roles/ollama/tasks/preflight.yml).
options:
  models:
    description: "Model paths to check, each {label (the setting, e.g. 'vllm: vllm_models[0].model'), path}."
    type: list
    elements: dict
    default: []
  wanted:
    description: >-
      What a run would download, each {label, path, need_mb (MiB, null when unknown), store (the
      directory it goes to, for the message), setting (the variable that moves that store)}.
    type: list
    elements: dict
    default: []
  missing:
    description: The C(missing) result of an earlier call, counted with this call's.
    type: list
    elements: dict
    default: []
  host:
    description: The host's name in messages.
    type: str
    default: this host
  margin:
    description: Share added to the estimates (0.1 is 10 %).
    type: float
    default: 0.1
author: llmfleet
"""

RETURN = r"""
missing:
  description: "the wanted items not on the host, each as given plus {mount, device, free_mb}"
  type: list
  returned: always
problems:
  description: the messages (the module fails when there is any)
  type: list
  returned: always
"""

CONFIGS = ("config.json", "params.json")
WEIGHTS = ("*.safetensors", "*.bin", "*.pt")
# Enough names to tell a model directory from something else.
MAX_ENTRIES = 1000
FIX = ("Copy the model there (a Hugging Face model directory: config.json and its *.safetensors), correct the "
       "path, or give the model's Hugging Face id (org/name) to have it downloaded.")


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
    """{mount, device, free_mb} of the file system `path` (or its nearest existing parent) is on."""
    existing = nearest_existing(path)
    try:
        info = os.statvfs(existing)
        device = os.stat(existing).st_dev
    except OSError:
        return {"mount": existing, "device": -1, "free_mb": None}
    return {"mount": mount_point(existing), "device": device,
            "free_mb": info.f_bavail * info.f_frsize // (1024 * 1024)}


def describe(path: str) -> dict:
    """{type: directory, file, other or missing, entries (a directory's names), error}."""
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
    names = []
    try:
        with os.scandir(path) as entries:
            for entry in entries:
                names.append(entry.name)
                if len(names) >= MAX_ENTRIES:
                    break
    except OSError as error:
        return {"type": "directory", "entries": [], "error": error.strerror or str(error)}
    return {"type": "directory", "entries": sorted(names)}


def model_problem(label: str, path: str, seen: Mapping[str, Any], host: str) -> str | None:
    """Why `path` (described as `seen`) is not a model vLLM can load, or None when it is one."""
    kind, names = seen.get("type"), seen.get("entries") or []
    head = f"{label} is {path}"
    if kind == "missing":
        return f"{head}, which does not exist on {host}. {FIX}"
    if kind == "file":
        if path.lower().endswith(".gguf"):
            return None
        return (f"{head}, a file that is not a GGUF model; vLLM loads a directory with config.json and weights, "
                f"or a single .gguf file. {FIX}")
    if kind != "directory":
        return f"{head}, which is not a directory on {host}{' (' + seen['error'] + ')' if seen.get('error') else ''}. {FIX}"
    lacks = []
    if not any(name in names for name in CONFIGS):
        lacks.append("config.json")
    if not any(fnmatch.fnmatch(name, pattern) for name in names for pattern in WEIGHTS):
        lacks.append("weights (*.safetensors or *.bin)")
    if not lacks:
        return None
    gguf = " (it holds a GGUF file: give the .gguf file as the model)" if any(
        name.lower().endswith(".gguf") for name in names) else ""
    return f"{head}, a directory on {host} without {' and without '.join(lacks)}, so not a model directory{gguf}. {FIX}"


def find_missing(wanted: Iterable[Mapping[str, Any]]) -> list[dict]:
    """The wanted items not on the host, each with the file system it would go to (statvfs once per parent)."""
    missing = []
    filesystems: dict[str, dict] = {}
    for item in wanted or []:
        path = str(item.get("path") or "")
        if not path or present(path):
            continue
        parent = nearest_existing(os.path.dirname(path.rstrip("/")) or "/")
        if parent not in filesystems:
            filesystems[parent] = filesystem(parent)
        missing.append({**item, "label": str(item.get("label") or path), "path": path,
                        "need_mb": item.get("need_mb"), **filesystems[parent]})
    return missing


def _gib(mb: float) -> str:
    return f"{mb / 1024:.1f} GiB"


def disk_problems(missing: Iterable[Mapping[str, Any]], host: str = "this host", margin: float = 0.1) -> list[str]:
    """One message per file system that the missing models overfill (see the module's description)."""
    by_device: dict[Any, list[Mapping[str, Any]]] = {}
    for item in missing or []:
        by_device.setdefault(item.get("device"), []).append(item)
    problems = []
    for items in by_device.values():
        free = items[0].get("free_mb")
        counted = [item for item in items
                   if isinstance(item.get("need_mb"), (int, float)) and not isinstance(item.get("need_mb"), bool)]
        if free is None or not counted:
            continue
        total = sum(item["need_mb"] for item in counted)
        if total * (1 + margin) <= free:
            continue
        running, too_many = 0.0, []
        for item in counted:
            if (running + item["need_mb"]) * (1 + margin) > free:
                too_many.append(item)
            else:
                running += item["need_mb"]
        mount = items[0].get("mount", "?")
        stores = sorted({str(item.get("store") or item.get("path", "")) for item in items})
        settings = sorted({str(item["setting"]) for item in items if item.get("setting")})
        unknown = [str(item.get("label")) for item in items if item not in counted]
        problems.append(
            f"llm_host: the models {host} does not have yet need about {_gib(total)} "
            f"({_gib(total * (1 + margin))} with a {margin:.0%} margin) on the file system at {mount} "
            f"({', '.join(stores)}), which has {_gib(free)} free. Would not fit: "
            + ", ".join(f"{item['label']} (about {_gib(item['need_mb'])})" for item in too_many)
            + (f". Not counted, their size unknown: {', '.join(unknown)}" if unknown else "")
            + f". Free space on {mount}, move the models to a larger file system"
            + (f" ({', '.join(settings)})" if settings else "")
            + ", or remove those models from the inventory.")
    return problems


def check(models: Iterable[Mapping[str, Any]] = (), wanted: Iterable[Mapping[str, Any]] = (),
          missing: Iterable[Mapping[str, Any]] = (), host: str = "this host", margin: float = 0.1) -> dict:
    """The module's result: {missing (this call's), problems}."""
    problems = []
    for model in models or []:
        path = str(model.get("path") or "")
        problem = model_problem(str(model.get("label") or "model"), path, describe(path), host)
        if problem:
            problems.append(problem)
    found = find_missing(wanted)
    problems += disk_problems([*(missing or []), *found], host, margin)
    return {"missing": found, "problems": problems}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "models": {"type": "list", "elements": "dict", "default": []},
            "wanted": {"type": "list", "elements": "dict", "default": []},
            "missing": {"type": "list", "elements": "dict", "default": []},
            "host": {"type": "str", "default": "this host"},
            "margin": {"type": "float", "default": 0.1},
        },
        supports_check_mode=True,
    )
    result = check(**module.params)
    if result["problems"]:
        module.fail_json(msg=" ".join(result["problems"]), **result)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
