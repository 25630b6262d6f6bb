"""The Hugging Face part of `invoke bundle`: the models the inventory's vLLM servers name by repository id.

Layout under the bundle, what the vllm role's copy (plugins/modules/vllm_hf_mirror.py) reads from a
mirror set as `vllm_models_mirror: <mirror>/hf-models`:

    hf-models/<org>/<name>/manifest.json        {model, revision, commit, files: [{path, size, sha256}]}
    hf-models/<org>/<name>/<commit>/<path>      each file of the snapshot

Which models: every `vllm_models[].model` that is not a path (a local directory needs no mirror), on the
hosts whose vLLM serves (a kind with vllm; vllm_enabled true, or auto with models, as the Python part reads
it). They come from `--hf-from`, a Hugging Face cache the controller can read (a team server's HF_HOME, or
its hub/ directory): the snapshot its refs/main names. The hub itself is not a source: a host that can
download from it fills a cache first (`hf download <id>` with HF_HOME set), and the bundle reads that cache.
A second run keeps a model whose manifest names the cache's commit and whose files are all there with
the manifest's sizes; nothing of it is copied again.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmfleet import bundle_hosts

FOLDER = "hf-models"
REVISION = "main"


class HFBundleError(bundle_hosts.BundleError):
    """A Hugging Face model that cannot be bundled, with the reason."""


@dataclass
class Done:
    """What a run copied and kept (relative paths in the bundle), and the models of each."""

    fetched: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    copied: list[str] = field(default_factory=list)
    kept_models: list[str] = field(default_factory=list)


def models(hostvars: Mapping[str, Mapping[str, Any]], root: Path) -> list[str]:
    """The repository ids the serving vLLM hosts name, each once (templated values are left out)."""
    found: list[str] = []
    for host in sorted(hostvars):
        variables = hostvars[host]
        if "vllm" not in bundle_hosts.host_roles(root, variables) or not bundle_hosts.vllm_serves(root, variables):
            continue
        for entry in bundle_hosts.setting(root, variables, "vllm", "vllm_models") or []:
            model = entry.get("model") if isinstance(entry, Mapping) else None
            if isinstance(model, str) and model and not model.startswith("/") and "{{" not in model and model not in found:
                found.append(model)
    return found


def hub_of(source: str) -> Path:
    """The hub cache under `source`: HF_HOME's hub/, or the directory itself when it is one."""
    path = Path(source)
    if not path.is_dir():
        raise HFBundleError(f"--hf-from {source} is not a directory (a Hugging Face cache: HF_HOME or its hub/)")
    return path / "hub" if (path / "hub").is_dir() else path


def snapshot(hub: Path, model: str) -> tuple[str, Path]:
    """The commit refs/main names and its snapshot directory in the cache."""
    entry = hub / ("models--" + model.replace("/", "--"))
    try:
        commit = (entry / "refs" / REVISION).read_text().strip()
    except OSError:
        commit = ""
    folder = entry / "snapshots" / commit
    if not commit or not folder.is_dir() or not any(folder.iterdir()):
        raise HFBundleError(f"{model} is not in the Hugging Face cache {hub} (no snapshot for refs/{REVISION}); "
                            f"download it into that cache first (e.g. `hf download {model}` with HF_HOME set), "
                            "or give --hf-from a cache that has it")
    return commit, folder


def _kept(folder: Path, commit: str) -> dict[str, Any] | None:
    """The manifest already in the bundle when it is for `commit` and every file is there at its size."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("commit") != commit:
        return None
    for item in manifest.get("files", []):
        path = folder / commit / item["path"]
        if not path.is_file() or path.stat().st_size != item["size"]:
            return None
    return manifest


def check(wanted: list[str], source: str) -> dict[str, tuple[str, Path]]:
    """Each model's commit and snapshot in the cache `source`; a clear error for the first one missing."""
    if not wanted:
        return {}
    if not source:
        raise HFBundleError(f"the inventory's vLLM servers name Hugging Face models ({', '.join(wanted)}): give "
                            "--hf-from, a Hugging Face cache that has them (e.g. the team server's HF_HOME)")
    hub = hub_of(source)
    return {model: snapshot(hub, model) for model in wanted}


def build(out: Path, wanted: list[str], source: str, sha256: Callable[[Path], str],
          log: Callable[[str], None] = print) -> Done:
    """Copy each of `wanted` from the cache `source` into out/hf-models, with its manifest."""
    done = Done()
    found = check(wanted, source)  # every model found before anything is copied
    for model, (commit, files) in found.items():
        folder = out / FOLDER / model
        kept = _kept(folder, commit)
        if kept is not None:
            done.kept_models.append(model)
            done.kept += [f"{FOLDER}/{model}/{commit}/{item['path']}" for item in kept["files"]]
            continue
        items = []
        for path in sorted(p for p in files.rglob("*") if p.is_file()):
            relative = path.relative_to(files).as_posix()
            dest = folder / commit / relative
            dest.parent.mkdir(parents=True, exist_ok=True)
            partial = dest.with_name(dest.name + ".partial")
            shutil.copyfile(path, partial)  # follows the cache's links to its blobs
            os.replace(partial, dest)
            items.append({"path": relative, "size": dest.stat().st_size, "sha256": sha256(dest)})
            done.fetched.append(f"{FOLDER}/{model}/{commit}/{relative}")
        manifest = {"model": model, "revision": REVISION, "commit": commit, "files": items}
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        done.copied.append(model)
        log(f"Hugging Face: {model} at {commit[:12]}, {len(items)} files")
    return done
