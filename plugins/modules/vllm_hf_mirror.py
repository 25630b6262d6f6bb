#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Copy Hugging Face models from the team mirror into a host's hub cache, sha256 checked, or check it has them."""

from __future__ import annotations

import grp
import hashlib
import json
import os
import pwd
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: vllm_hf_mirror
short_description: Copy Hugging Face models from a team mirror into the hub cache, or check it has them
description:
  - >-
    The mirror is a static file tree (an C(invoke bundle)'s C(hf-models/), served as files):
    C(<mirror>/<org>/<name>/manifest.json) names the commit, the revision and every file of a snapshot
    (relative path, size, sha256), and the files are at C(<mirror>/<org>/<name>/<commit>/<path>).
    A hub mirror (C(HF_ENDPOINT)) needs the hub's API; this needs a web server, or C(file://).
  - >-
    A model is in the cache when its C(refs/<revision>) names a commit whose C(snapshots/<commit>)
    directory has files. Each model that is not is copied into the hub cache's own layout
    (C(<hub>/models--<org>--<name>/snapshots/<commit>/<path>), then C(refs/<revision>) last), each file
    checked against the manifest's size and sha256 before it is put in place; a file the snapshot already
    holds with that sha256 is not downloaded again. With C(HF_HUB_OFFLINE=1) the hub client then reads it
    from the cache.
  - >-
    With O(mode=check) nothing is written: the module fails, naming each model and the mirror, when a model
    is neither in the cache nor on the mirror (the offline preflight).
author:
  - llmfleet maintainers
options:
  mirror:
    description:
      - Base URL of the mirror's Hugging Face models (http, https or file); empty means there is none.
    type: str
    required: true
  models:
    description:
      - Each model, a mapping with C(model) (the repository id, C(org/name)), C(hub) (the hub cache
        directory its server uses) and C(label) (its setting, for messages).
    type: list
    elements: dict
    required: true
  revision:
    description:
      - The revision the servers ask for (the hub client's default, C(main)).
    type: str
    default: main
  mode:
    description:
      - C(copy) copies the missing models; C(check) only checks each one is in the cache or on the mirror.
    type: str
    choices: [copy, check]
    default: copy
  owner:
    description:
      - Owner of what is written (the vLLM service user); unchanged when not given.
    type: str
  group:
    description:
      - Group of what is written; unchanged when not given.
    type: str
  host:
    description:
      - The host's name in messages.
    type: str
  timeout:
    description:
      - Seconds a download may wait for a connection or the next data.
    type: int
    default: 60
  retries:
    description:
      - How many times a failed download is tried again (no answer, a timeout, HTTP 408, 429, 5xx).
    type: int
    default: 3
"""

EXAMPLES = r"""
- name: Copy the models the cache lacks from the mirror
  llmfleet.llmfleet.vllm_hf_mirror:
    mirror: http://mirror.internal/hf-models
    models:
      - {model: Qwen/Qwen2.5-Coder-1.5B-Instruct, hub: /var/lib/vllm/huggingface/hub, label: "vllm_models[0].model"}
    owner: vllm
    group: vllm
"""

RETURN = r"""
copied:
  description: The models copied (in check mode, that would be).
  type: list
  returned: always
files:
  description: The files downloaded, each C(<model>/<path>).
  type: list
  returned: always
missing:
  description: The models neither in the cache nor on the mirror.
  type: list
  returned: always
"""

ARGUMENT_SPEC: dict[str, Any] = {
    "mirror": {"type": "str", "required": True},
    "models": {"type": "list", "elements": "dict", "required": True},
    "revision": {"type": "str", "default": "main"},
    "mode": {"type": "str", "choices": ["copy", "check"], "default": "copy"},
    "owner": {"type": "str"},
    "group": {"type": "str"},
    "host": {"type": "str"},
    "timeout": {"type": "int", "default": 60},
    "retries": {"type": "int", "default": 3},
}

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*\Z")
_COMMIT = re.compile(r"^[0-9a-f]{40}\Z")
_SHA256 = re.compile(r"^[0-9a-f]{64}\Z")
_PARTIAL = ".llmfleet-partial"


class MirrorError(Exception):
    """A mirror that cannot be read, or a file that does not match its manifest."""


def entry_dir(hub: str, model: str) -> str:
    """The hub cache's directory of a model: <hub>/models--<org>--<name>."""
    return os.path.join(hub, "models--" + model.replace("/", "--"))


def cached(hub: str, model: str, revision: str) -> bool:
    """Whether refs/<revision> names a snapshot that has files."""
    entry = entry_dir(hub, model)
    try:
        with open(os.path.join(entry, "refs", revision), encoding="utf-8") as ref:
            commit = ref.read().strip()
        return bool(commit) and any(os.scandir(os.path.join(entry, "snapshots", commit)))
    except OSError:
        return False


def _transient(error: Exception) -> bool:
    if isinstance(error, urllib.error.HTTPError):
        return error.code in (408, 429) or error.code >= 500
    return isinstance(error, (urllib.error.URLError, TimeoutError, ConnectionError))


def _open(url: str, timeout: int, retries: int) -> Any:
    for attempt in range(retries + 1):
        try:
            return urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 - the mirror is http(s) or file
        except Exception as error:  # noqa: BLE001 - sorted below
            if attempt == retries or not _transient(error):
                raise
            time.sleep(min(2 ** attempt, 10))
    raise AssertionError("unreachable")


def _url(mirror: str, *parts: str) -> str:
    return mirror.rstrip("/") + "/" + "/".join(urllib.parse.quote(p) for p in parts)


def check_manifest(model: str, data: Any) -> dict[str, Any]:
    """The manifest, its shape checked (paths stay inside the snapshot)."""
    if not isinstance(data, dict) or not _COMMIT.match(str(data.get("commit", ""))) or not isinstance(data.get("files"), list):
        raise MirrorError(f"the manifest of {model} is not a manifest (commit, files)")
    for item in data["files"]:
        path = item.get("path") if isinstance(item, dict) else None
        if (not isinstance(path, str) or not path or path.startswith("/") or ".." in path.split("/")
                or not _SHA256.match(str(item.get("sha256", ""))) or not isinstance(item.get("size"), int)):
            raise MirrorError(f"the manifest of {model} has a bad file entry: {item!r}")
    return data


def read_manifest(mirror: str, model: str, timeout: int, retries: int) -> dict[str, Any] | None:
    """The model's manifest on the mirror; None when the mirror does not have it."""
    org, name = model.split("/")
    try:
        with _open(_url(mirror, org, name, "manifest.json"), timeout, retries) as answer:
            raw = answer.read()
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise MirrorError(f"HTTP {error.code} for {model}'s manifest") from error
    except FileNotFoundError:
        return None
    except urllib.error.URLError as error:
        if isinstance(error.reason, FileNotFoundError):
            return None
        raise MirrorError(f"{model}'s manifest: {error.reason}") from error
    try:
        return check_manifest(model, json.loads(raw))
    except ValueError as error:
        raise MirrorError(f"the manifest of {model} is not JSON") from error


def _ids(owner: str | None, group: str | None) -> tuple[int, int]:
    uid = pwd.getpwnam(owner).pw_uid if owner else -1
    gid = grp.getgrnam(group).gr_gid if group else -1
    return uid, gid


def _makedirs(path: str, ids: tuple[int, int]) -> None:
    if os.path.isdir(path):
        return
    _makedirs(os.path.dirname(path), ids)
    os.mkdir(path, 0o755)
    os.chmod(path, 0o755)
    os.chown(path, *ids)


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(url: str, dest: str, item: dict[str, Any], params: dict[str, Any], ids: tuple[int, int]) -> None:
    """One file through a partial file, put in place only when its size and sha256 are the manifest's."""
    partial = dest + _PARTIAL
    _makedirs(os.path.dirname(dest), ids)
    digest = hashlib.sha256()
    try:
        with _open(url, params["timeout"], params["retries"]) as answer, open(partial, "wb") as out:
            for chunk in iter(lambda: answer.read(1 << 20), b""):
                digest.update(chunk)
                out.write(chunk)
        size = os.path.getsize(partial)
        if size != item["size"] or digest.hexdigest() != item["sha256"]:
            raise MirrorError(f"{url} does not match the manifest (size {size}, sha256 {digest.hexdigest()}; "
                              f"the manifest says {item['size']}, {item['sha256']})")
        os.chmod(partial, 0o644)
        os.chown(partial, *ids)
        os.replace(partial, dest)
    except urllib.error.HTTPError as error:
        raise MirrorError(f"HTTP {error.code} for {url}") from error
    except urllib.error.URLError as error:
        raise MirrorError(f"{url}: {error.reason}") from error
    finally:
        if os.path.exists(partial):
            os.unlink(partial)


def run(params: dict[str, Any], check_mode: bool) -> dict[str, Any]:
    """What the module does, without AnsibleModule (the unit tests call it)."""
    mirror = params["mirror"] or ""
    revision = params["revision"]
    models = []
    for entry in params["models"]:
        if not _ID.match(str(entry.get("model", ""))) or not entry.get("hub"):
            raise MirrorError(f"{entry.get('label') or entry!r}: {entry.get('model')!r} is not a repository id org/name with a hub")
        if not cached(entry["hub"], entry["model"], revision):
            models.append(entry)
    manifests: dict[str, dict[str, Any]] = {}
    missing = []
    for entry in models:
        found = read_manifest(mirror, entry["model"], params["timeout"], params["retries"]) if mirror else None
        if found is None:
            missing.append(entry["model"])
        else:
            manifests[entry["model"]] = found
    result: dict[str, Any] = {"changed": False, "copied": [], "files": [], "missing": missing}
    if missing or params["mode"] == "check":
        return result
    result.update(copied=list(manifests), changed=bool(manifests))
    ids = (-1, -1) if check_mode else _ids(params["owner"], params["group"])
    for entry in models:
        model, manifest = entry["model"], manifests[entry["model"]]
        org, name = model.split("/")
        root = entry_dir(entry["hub"], model)
        snapshot = os.path.join(root, "snapshots", manifest["commit"])
        for item in manifest["files"]:
            dest = os.path.join(snapshot, *item["path"].split("/"))
            if os.path.isfile(dest) and os.path.getsize(dest) == item["size"] and _sha256(dest) == item["sha256"]:
                continue
            result["files"].append(f"{model}/{item['path']}")
            if not check_mode:
                download(_url(mirror, org, name, manifest["commit"], *item["path"].split("/")), dest, item, params, ids)
        if check_mode:
            continue
        # The ref last: until it is there, the hub client does not see a half-copied snapshot.
        _makedirs(os.path.join(root, "refs"), ids)
        ref = os.path.join(root, "refs", revision)
        with open(ref + _PARTIAL, "w", encoding="utf-8") as out:
            out.write(manifest["commit"])
        os.chmod(ref + _PARTIAL, 0o644)
        os.chown(ref + _PARTIAL, *ids)
        os.replace(ref + _PARTIAL, ref)
    return result


def missing_message(missing: list[str], mirror: str, host: str) -> str:
    where = f"the mirror {mirror}" if mirror else "a mirror (vllm_models_mirror is not set)"
    return (f"vllm: {', '.join(missing)}: neither in the Hugging Face cache of {host} nor on {where}; add "
            f"{'it' if len(missing) == 1 else 'them'} to the mirror (`invoke bundle --hf-from` a cache that has "
            f"{'it' if len(missing) == 1 else 'them'}), put {'it' if len(missing) == 1 else 'them'} in the cache, or "
            "serve a local directory (vllm_models[].model: /srv/models/<name>); nothing was changed.")


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    if params["timeout"] < 1 or params["retries"] < 0:
        module.fail_json(msg="vllm_hf_mirror: timeout must be 1 or more, retries 0 or more")
    try:
        result = run(params, module.check_mode)
    except (MirrorError, OSError, KeyError) as exc:
        action = "copying models from" if params["mode"] == "copy" else "reading"
        module.fail_json(msg=f"vllm: {action} the Hugging Face models mirror {params['mirror']} failed: {exc}")
    if result["missing"]:
        module.fail_json(msg=missing_message(result["missing"], params["mirror"], params["host"] or os.uname().nodename),
                         **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
