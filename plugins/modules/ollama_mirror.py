#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Copy Ollama models from a team mirror into a host's model store, or check that it has them."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: ollama_mirror
short_description: Copy Ollama models from a team mirror, digests checked, or check it has them
description:
  - >-
    A mirror is an Ollama models directory served as files (a copy of the team server's store, or of a
    bundle): C(<mirror>/manifests/<host>/<namespace>/<model>/<tag>) and C(<mirror>/blobs/sha256-<hex>),
    the layout Ollama itself keeps. O(mirror) is its base URL (http, https or file).
  - >-
    With O(mode=copy), each model of O(models) whose manifest the store lacks is copied: its manifest is
    read from the mirror, every blob it names (the config and each layer) that the store lacks is
    downloaded once, even when several models share it, its sha256 checked against the digest the
    manifest names, and put in place; the manifest is written last, so Ollama never sees a model with a
    missing blob. A blob already in the store is not downloaded again. Ollama reads its store on each
    request, so the copied models are listed without a restart.
  - >-
    With O(mode=check) nothing is written: the module fails, naming each model and the mirror, when a
    model is neither in the store nor on the mirror (the offline preflight).
  - A download that fails in a way that may pass (no answer, a timeout, HTTP 408, 429 or 5xx) is retried.
author:
  - llmfleet maintainers
options:
  mirror:
    description:
      - Base URL of the mirror (http, https or file). Empty means there is none, so every model the store
        lacks is missing.
    type: str
    required: true
  models_dir:
    description:
      - The host's Ollama model store (C(OLLAMA_MODELS)).
    type: path
    required: true
  models:
    description:
      - >-
        Models as Ollama lists them (C([host/][namespace/]model:tag)); a name without host or namespace
        is at C(registry.ollama.ai/library).
    type: list
    elements: str
    required: true
  mode:
    description:
      - C(copy) copies the missing models; C(check) only checks that each one is in the store or on the mirror.
    type: str
    choices: [copy, check]
    default: copy
  owner:
    description:
      - Owner of the files and directories written (the Ollama service user); unchanged when not given.
    type: str
  group:
    description:
      - Group of the files and directories written; unchanged when not given.
    type: str
  host:
    description:
      - The host's name in messages (its inventory name); the node name when not given.
    type: str
  timeout:
    description:
      - Seconds a download may wait for a connection or for the next data (at least 1).
    type: int
    default: 600
  retries:
    description:
      - Further attempts after a download failed in a way that may pass.
    type: int
    default: 2
  delay:
    description:
      - Seconds between two attempts.
    type: int
    default: 5
attributes:
  check_mode:
    description: Reads the manifests from the mirror and reports the models and blobs a real run would copy.
    support: full
extends_documentation_fragment:
  - llmfleet.llmfleet.attributes.no_diff
"""

EXAMPLES = r"""
- name: Copy the missing models from the team mirror
  llmfleet.llmfleet.ollama_mirror:
    mirror: https://mirror.team.lan/ollama-models
    models_dir: /usr/share/ollama/.ollama/models
    models: [qwen2.5-coder:1.5b, nomic-embed-text:latest]
    owner: ollama
    group: ollama
"""

RETURN = r"""
copied:
  description: The models copied (in check mode, those a real run would copy).
  type: list
  elements: str
  returned: always
  sample: [qwen2.5-coder:1.5b]
blobs:
  description: The digests downloaded (in check mode, those a real run would download).
  type: list
  elements: str
  returned: always
  sample: ["sha256:2f1c..."]
bytes:
  description: The bytes downloaded, blobs and manifests (in check mode, the blobs' sizes).
  type: int
  returned: always
  sample: 986000000
missing:
  description: The models neither in the store nor on the mirror.
  type: list
  elements: str
  returned: always
  sample: []
"""

# The options as AnsibleModule takes them; DOCUMENTATION's options say the same (tests/test_module_docs.py).
ARGUMENT_SPEC = {
    "mirror": {"type": "str", "required": True},
    "models_dir": {"type": "path", "required": True},
    "models": {"type": "list", "elements": "str", "required": True},
    "mode": {"type": "str", "choices": ["copy", "check"], "default": "copy"},
    "owner": {"type": "str"},
    "group": {"type": "str"},
    "host": {"type": "str"},
    "timeout": {"type": "int", "default": 600},
    "retries": {"type": "int", "default": 2},
    "delay": {"type": "int", "default": 5},
}

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
_CHUNK = 1 << 20


class MirrorError(Exception):
    """A failure that names what failed; `may_pass` when a retry could help."""

    def __init__(self, message: str, may_pass: bool = False) -> None:
        super().__init__(message)
        self.may_pass = may_pass


def manifest_path(name: str) -> str:
    """`host/namespace/model/tag` of a model as Ollama lists it, defaults filled in."""
    path, _, tag = name.rpartition(":") if ":" in name.rsplit("/", 1)[-1] else (name, "", "")
    parts = path.split("/")
    if len(parts) == 1:
        parts = [DEFAULT_HOST, DEFAULT_NAMESPACE] + parts
    elif len(parts) == 2:
        parts = [DEFAULT_HOST] + parts
    if len(parts) != 3 or not all(parts) or any(p in (".", "..") for p in parts + [tag]):
        raise MirrorError(f"{name!r} is not a model name as Ollama lists it ([host/][namespace/]model:tag)")
    return "/".join(parts + [tag or "latest"])


def blob_file(digest: str) -> str:
    """`sha256-<hex>`, the file a digest is stored in; refuses anything but a sha256 digest."""
    algo, _, hexdigest = str(digest).partition(":")
    if algo != "sha256" or len(hexdigest) != 64 or any(c not in "0123456789abcdef" for c in hexdigest):
        raise MirrorError(f"the manifest names {digest!r}, which is not a sha256 digest")
    return "sha256-" + hexdigest


def _open(url: str, timeout: int) -> Any:
    try:
        return urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 - http(s) and file by design
    except urllib.error.HTTPError as exc:
        raise MirrorError(f"{url} answered HTTP {exc.code}", exc.code >= 500 or exc.code in (408, 429)) from exc
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        # file:// of a missing file is final; no answer over the network may pass.
        final = isinstance(reason, FileNotFoundError) or url.startswith("file:")
        raise MirrorError(f"{url}: {reason}", not final) from exc


def _retrying(action: Any, retries: int, delay: int) -> Any:
    attempt = 0
    while True:
        try:
            return action()
        except MirrorError as exc:
            attempt += 1
            if not exc.may_pass or attempt > retries:
                raise
            time.sleep(delay)


def read_manifest(mirror: str, name: str, timeout: int, retries: int, delay: int) -> tuple[bytes, dict[str, Any]] | None:
    """The manifest's bytes and JSON from the mirror, or None when the mirror does not have it."""
    url = mirror.rstrip("/") + "/manifests/" + manifest_path(name)

    def fetch() -> bytes:
        with _open(url, timeout) as answer:
            return answer.read()

    try:
        raw = _retrying(fetch, retries, delay)
    except MirrorError as exc:
        if "HTTP 404" in str(exc) or "HTTP 410" in str(exc) or url.startswith("file:"):
            return None
        raise
    try:
        data = json.loads(raw)
        layers = [data["config"]] + list(data.get("layers") or [])
        for layer in layers:
            blob_file(layer["digest"])
            int(layer["size"])
    except (ValueError, KeyError, TypeError) as exc:
        raise MirrorError(f"{url} is not an Ollama manifest ({exc})") from exc
    return raw, data


def blobs_of(manifest: dict[str, Any]) -> list[tuple[str, int]]:
    """(digest, size) of the config and each layer."""
    return [(layer["digest"], int(layer["size"])) for layer in [manifest["config"]] + list(manifest.get("layers") or [])]


def _chown(path: str, owner: str | None, group: str | None) -> None:
    if owner or group:
        shutil.chown(path, owner or None, group or None)


def _makedirs(path: str, root: str, owner: str | None, group: str | None) -> None:
    """Create `path` under `root`, each new directory 0755 and owned like the store."""
    missing = []
    current = path
    while not os.path.isdir(current) and current.startswith(root):
        missing.append(current)
        current = os.path.dirname(current)
    for directory in reversed(missing):
        os.mkdir(directory, 0o755)
        _chown(directory, owner, group)


def download_blob(mirror: str, store: str, digest: str, params: dict[str, Any]) -> int:
    """Download one blob into the store through a partial file; its sha256 must be the digest."""
    name = blob_file(digest)
    url = mirror.rstrip("/") + "/blobs/" + name
    final = os.path.join(store, "blobs", name)
    partial = final + "-llmfleet-partial"

    def fetch() -> int:
        sha = hashlib.sha256()
        got = 0
        with _open(url, params["timeout"]) as answer, open(partial, "wb") as out:
            while True:
                try:
                    chunk = answer.read(_CHUNK)
                except OSError as exc:
                    raise MirrorError(f"{url}: {exc}", True) from exc
                if not chunk:
                    break
                sha.update(chunk)
                out.write(chunk)
                got += len(chunk)
        # The digest is the check (the size a manifest records is what a client shows).
        if "sha256:" + sha.hexdigest() != digest:
            os.unlink(partial)
            raise MirrorError(f"{url} does not match the manifest: its sha256 is {sha.hexdigest()}, the manifest names {digest}")
        return got

    try:
        got = _retrying(fetch, params["retries"], params["delay"])
    except MirrorError:
        if os.path.exists(partial):
            os.unlink(partial)
        raise
    os.chmod(partial, 0o644)
    _chown(partial, params["owner"], params["group"])
    os.replace(partial, final)
    return got


def _has_blob(store: str, digest: str) -> bool:
    """A blob in the store is Ollama's (it verified it when it wrote it): not fetched again."""
    return os.path.isfile(os.path.join(store, "blobs", blob_file(digest)))


def run(params: dict[str, Any], check_mode: bool) -> dict[str, Any]:
    """What the module does, without AnsibleModule (the unit tests call it)."""
    store = os.path.abspath(params["models_dir"])
    mirror = params["mirror"] or ""
    models = list(dict.fromkeys(params["models"]))
    wanted = [m for m in models if not os.path.isfile(os.path.join(store, "manifests", manifest_path(m)))]
    manifests: dict[str, tuple[bytes, dict[str, Any]]] = {}
    missing = []
    for name in wanted:
        found = read_manifest(mirror, name, params["timeout"], params["retries"], params["delay"]) if mirror else None
        if found is None:
            missing.append(name)
        else:
            manifests[name] = found
    result: dict[str, Any] = {"changed": False, "copied": [], "blobs": [], "bytes": 0, "missing": missing}
    if missing or params["mode"] == "check":
        return result
    needed: dict[str, int] = {}
    for _, data in manifests.values():
        for digest, size in blobs_of(data):
            if digest not in needed and not _has_blob(store, digest):
                needed[digest] = size
    result.update(copied=list(manifests), blobs=list(needed), changed=bool(manifests))
    if check_mode:
        result["bytes"] = sum(needed.values())
        return result
    _makedirs(os.path.join(store, "blobs"), store, params["owner"], params["group"])
    with ThreadPoolExecutor(max_workers=min(4, len(needed) or 1)) as pool:
        fetched = list(pool.map(lambda digest: download_blob(mirror, store, digest, params), needed))
    result["bytes"] = sum(fetched)
    for name, (raw, _) in manifests.items():
        path = os.path.join(store, "manifests", manifest_path(name))
        _makedirs(os.path.dirname(path), store, params["owner"], params["group"])
        with open(path + ".llmfleet-partial", "wb") as out:
            out.write(raw)
        os.chmod(path + ".llmfleet-partial", 0o644)
        _chown(path + ".llmfleet-partial", params["owner"], params["group"])
        os.replace(path + ".llmfleet-partial", path)
        result["bytes"] += len(raw)
    return result


def missing_message(missing: list[str], mirror: str, host: str) -> str:
    where = f"the mirror {mirror}" if mirror else "a mirror (ollama_models_mirror is not set)"
    return (
        f"ollama: {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} neither on {host or 'this host'} nor on "
        f"{where}; add {'it' if len(missing) == 1 else 'them'} to the mirror (a copy of a models directory that has "
        f"{'it' if len(missing) == 1 else 'them'}, e.g. the team server's, or an `invoke bundle`), or take "
        f"{'it' if len(missing) == 1 else 'them'} off this host's model list; nothing was changed."
    )


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    for name in ("timeout", "retries", "delay"):
        if params[name] < (1 if name == "timeout" else 0):
            module.fail_json(msg=f"ollama_mirror: {name} is {params[name]}, which is out of range")
    try:
        result = run(params, module.check_mode)
    except (MirrorError, OSError) as exc:
        action = "copying models from" if params["mode"] == "copy" else "reading"
        module.fail_json(msg=f"ollama: {action} the models mirror {params['mirror']} failed: {exc}")
    if result["missing"]:
        host = params["host"] or os.uname().nodename
        module.fail_json(msg=missing_message(result["missing"], params["mirror"], host), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
