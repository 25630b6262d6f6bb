"""plugins/modules/ollama_mirror.py against a mirror served over HTTP from a temporary directory.

The mirror is an Ollama models directory (manifests/<host>/<ns>/<model>/<tag>, blobs/sha256-<hex>)
written here the way Ollama writes its store; the server counts the requests per path, so the tests
check what is downloaded, that a blob two models share is fetched once, that a blob already in the
store is not fetched, that a corrupted blob is refused and leaves no model behind, and the offline
check's message.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _fileserver import counting_file_server
from _modules import load_module

mod = load_module("plugins/modules/ollama_mirror.py")


def _blob(root: Path, data: bytes) -> dict[str, Any]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    (root / "blobs" / digest.replace(":", "-")).write_bytes(data)
    return {"mediaType": "application/vnd.ollama.image.model", "digest": digest, "size": len(data)}


def _model(root: Path, name: str, layers: list[bytes], config: bytes) -> dict[str, Any]:
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": _blob(root, config),
        "layers": [_blob(root, data) for data in layers],
    }
    path = root / "manifests" / mod.manifest_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest))
    return manifest


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[tuple[str, Path, Counter[str]]]:
    root = tmp_path / "mirror"
    with counting_file_server(root) as (url, hits):
        yield url, root, hits


def _params(url: str, store: Path, models: list[str], mode: str = "copy") -> dict[str, Any]:
    return {"mirror": url, "models_dir": str(store), "models": models, "mode": mode, "owner": None, "group": None,
            "host": "laptop-1", "timeout": 10, "retries": 0, "delay": 0}


def test_names_map_to_ollama_store_paths() -> None:
    assert mod.manifest_path("qwen2.5-coder:1.5b") == "registry.ollama.ai/library/qwen2.5-coder/1.5b"
    assert mod.manifest_path("team/coder:v1") == "registry.ollama.ai/team/coder/v1"
    assert mod.manifest_path("mirror.lan:5000/team/coder:v1") == "mirror.lan:5000/team/coder/v1"
    with pytest.raises(mod.MirrorError):
        mod.manifest_path("../../etc:passwd")
    with pytest.raises(mod.MirrorError):
        mod.blob_file("sha256:../../x")


def test_copies_missing_models_each_shared_blob_once(mirror: tuple[str, Path, Counter[str]], tmp_path: Path) -> None:
    url, root, hits = mirror
    shared = b"shared tokenizer layer"
    coder = _model(root, "qwen2.5-coder:1.5b", [b"coder weights", shared], b'{"config": 1}')
    _model(root, "nomic-embed-text:latest", [b"embed weights", shared], b'{"config": 2}')
    store = tmp_path / "store"

    result = mod.run(_params(url, store, ["qwen2.5-coder:1.5b", "nomic-embed-text:latest"]), check_mode=False)

    assert result["changed"] and result["missing"] == []
    assert sorted(result["copied"]) == ["nomic-embed-text:latest", "qwen2.5-coder:1.5b"]
    # 2 configs + 2 own layers + 1 shared layer: five blobs, each fetched exactly once.
    blob_hits = {path: n for path, n in hits.items() if path.startswith("/blobs/")}
    assert len(blob_hits) == 5 and set(blob_hits.values()) == {1}
    for layer in [coder["config"]] + coder["layers"]:
        blob = store / "blobs" / layer["digest"].replace(":", "-")
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == layer["digest"].split(":")[1]
    manifest = store / "manifests/registry.ollama.ai/library/qwen2.5-coder/1.5b"
    assert json.loads(manifest.read_text()) == coder
    assert not list(store.rglob("*partial*"))

    # A second run finds every manifest in the store and fetches nothing.
    before = sum(hits.values())
    again = mod.run(_params(url, store, ["qwen2.5-coder:1.5b", "nomic-embed-text:latest"]), check_mode=False)
    assert not again["changed"] and again["copied"] == [] and sum(hits.values()) == before


def test_blob_already_in_store_is_not_fetched(mirror: tuple[str, Path, Counter[str]], tmp_path: Path) -> None:
    url, root, hits = mirror
    shared = b"shared layer"
    _model(root, "a:1", [shared], b"cfg-a")
    _model(root, "b:1", [shared, b"own"], b"cfg-b")
    store = tmp_path / "store"
    mod.run(_params(url, store, ["a:1"]), check_mode=False)
    hits.clear()

    result = mod.run(_params(url, store, ["b:1"]), check_mode=False)

    shared_path = "/blobs/sha256-" + hashlib.sha256(shared).hexdigest()
    assert result["copied"] == ["b:1"] and len(result["blobs"]) == 2
    assert shared_path not in hits and sum(1 for p in hits if p.startswith("/blobs/")) == 2


def test_corrupted_blob_is_refused_and_no_model_appears(mirror: tuple[str, Path, Counter[str]], tmp_path: Path) -> None:
    url, root, _ = mirror
    manifest = _model(root, "a:1", [b"good weights"], b"cfg")
    (root / "blobs" / manifest["layers"][0]["digest"].replace(":", "-")).write_bytes(b"evil weights")
    store = tmp_path / "store"

    with pytest.raises(mod.MirrorError, match="does not match the manifest"):
        mod.run(_params(url, store, ["a:1"]), check_mode=False)

    assert not (store / "manifests").exists()
    assert not list((store / "blobs").glob("*partial*"))
    assert not (store / "blobs" / manifest["layers"][0]["digest"].replace(":", "-")).exists()


def test_check_mode_reports_and_writes_nothing(mirror: tuple[str, Path, Counter[str]], tmp_path: Path) -> None:
    url, root, hits = mirror
    _model(root, "a:1", [b"weights"], b"cfg")
    store = tmp_path / "store"

    result = mod.run(_params(url, store, ["a:1"]), check_mode=True)

    assert result["changed"] and result["copied"] == ["a:1"] and len(result["blobs"]) == 2
    assert result["bytes"] == len(b"weights") + len(b"cfg")
    assert not store.exists() and not any(p.startswith("/blobs/") for p in hits)


def test_offline_check_names_models_on_neither_store_nor_mirror(
    mirror: tuple[str, Path, Counter[str]], tmp_path: Path
) -> None:
    url, root, _ = mirror
    _model(root, "a:1", [b"weights"], b"cfg")
    store = tmp_path / "store"
    _model(store, "local:1", [b"local"], b"cfg-local")

    result = mod.run(_params(url, store, ["a:1", "local:1", "llama3.2:1b"], mode="check"), check_mode=False)

    assert result["missing"] == ["llama3.2:1b"] and not result["changed"]
    assert not (store / "manifests/registry.ollama.ai/library/a").exists()
    message = mod.missing_message(result["missing"], url, "laptop-1")
    assert "llama3.2:1b" in message and url in message and "laptop-1" in message
    assert "ollama_models_mirror is not set" in mod.missing_message(["x:1"], "", "laptop-1")


def test_file_mirror_works_like_http(tmp_path: Path) -> None:
    root = tmp_path / "bundle"
    _model(root, "a:1", [b"weights"], b"cfg")
    store = tmp_path / "store"

    result = mod.run(_params(root.as_uri(), store, ["a:1", "b:1"], mode="copy"), check_mode=False)

    assert result["missing"] == ["b:1"] and not (store / "manifests").exists()
    result = mod.run(_params(root.as_uri(), store, ["a:1"]), check_mode=False)
    assert result["copied"] == ["a:1"] and (store / "manifests/registry.ollama.ai/library/a/1").is_file()
