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
short_description: Fail before any change when a model path is no model or the models to download do not fit
description:
  - >-
    For each item of O(models), a model given as a local path, checks that it is one: a directory with
    C(config.json) (or C(params.json), Mistral's format) and weights (C(*.safetensors), C(*.bin) or
    C(*.pt) files, sharded or not), as transformers and so vLLM load it, or a single C(*.gguf) file,
    which vLLM loads when given the file itself.
  - >-
    For each item of O(wanted) (something a run would download, such as an Ollama model's manifest or a
    Hugging Face cache entry), checks whether it is on the host: its path exists as a file, or as a
    directory that is not empty. Each missing item gets the free space (statvfs, what an unprivileged
    writer may use) of the file system it would be written to, read on its nearest existing parent
    directory (so a store that does not exist yet counts on the file system that will hold it), and that
    file system's mount point and device.
  - >-
    The missing items, with those of O(missing) (found by an earlier call), are added up per file system;
    with O(margin) on top they must fit in its free space. Taken in the order given, a model that would
    take the total of the models before it that fit past the free space does not fit. Models whose
    C(need_mb) is null (size unknown) are not counted; the message names them.
  - >-
    Fails with one message per problem (each model path, each file system), or else reports what is
    missing. Reads only.
author:
  - llmfleet maintainers
options:
  models:
    description:
      - >-
        The model paths to check, each a mapping with C(label) (the setting, for example
        C(vllm: vllm_models[0].model)) and C(path).
    type: list
    elements: dict
    default: []
  wanted:
    description:
      - >-
        What a run would download, each a mapping with C(label), C(path), C(need_mb) (MiB, null when
        unknown), C(store) (the directory it goes to, for the message) and C(setting) (the variable that
        moves that store).
    type: list
    elements: dict
    default: []
  missing:
    description:
      - The RV(missing) result of an earlier call, counted with this call's.
    type: list
    elements: dict
    default: []
  host:
    description:
      - The host's name in the messages.
    type: str
    default: this host
  margin:
    description:
      - The share added to the size estimates (V(0.1) is 10 %).
    type: float
    default: 0.1
extends_documentation_fragment:
  - llmfleet.llmfleet.attributes.read_only
notes:
  - >-
    The vllm and ollama preflights run it (roles/vllm/tasks/preflight.yml, roles/ollama/tasks/preflight.yml);
    the Ollama one passes on what the vLLM one found missing, as both may fill the same file system.
"""

EXAMPLES = r"""
- name: Check the vLLM models against the host
  llmfleet.llmfleet.llm_host_storage:
    models:
      - {label: "vllm: vllm_models[1].model", path: /srv/models/qwen2.5-coder-7b}
    wanted:
      - label: vllm_models[0].model Qwen/Qwen2.5-Coder-1.5B-Instruct
        path: /var/lib/vllm/huggingface/hub/models--Qwen--Qwen2.5-Coder-1.5B-Instruct/snapshots
        need_mb: 3100
        store: /var/lib/vllm/huggingface/hub
        setting: vllm_home
    host: "{{ inventory_hostname }}"
  register: __vllm_storage

- name: Check the Ollama models, counted with what vLLM will download
  llmfleet.llmfleet.llm_host_storage:
    wanted:
      - label: qwen2.5-coder:7b
        path: /usr/share/ollama/.ollama/models/manifests/registry.ollama.ai/library/qwen2.5-coder/7b
        need_mb: 4700
        store: /usr/share/ollama/.ollama/models
        setting: ollama_models_dir
    missing: "{{ __vllm_storage.missing | default([]) }}"
    host: "{{ inventory_hostname }}"
    margin: 0.2
"""

RETURN = r"""
missing:
  description: >-
    The items of O(wanted) that are not on the host, each as given plus C(mount), C(device) and C(free_mb)
    of the file system it would go to.
  type: list
  elements: dict
  returned: always
problems:
  description: The messages, one per problem (the module fails when there is any).
  type: list
  elements: str
  returned: always
"""

# The options as AnsibleModule takes them; DOCUMENTATION's options say the same (tests/test_module_docs.py).
ARGUMENT_SPEC = {
    "models": {"type": "list", "elements": "dict", "default": []},
    "wanted": {"type": "list", "elements": "dict", "default": []},
    "missing": {"type": "list", "elements": "dict", "default": []},
    "host": {"type": "str", "default": "this host"},
    "margin": {"type": "float", "default": 0.1},
}

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
        argument_spec=ARGUMENT_SPEC,
        supports_check_mode=True,
    )
    result = check(**module.params)
    if result["problems"]:
        module.fail_json(msg=" ".join(result["problems"]), **result)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
