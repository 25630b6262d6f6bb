"""plugins/modules/vllm_hf_mirror.py against a mirror served over HTTP from a temporary directory.

The mirror is what `invoke bundle` writes under hf-models/ (written here directly: a manifest and the
files); the server counts the requests per path, so the tests check that each file is fetched once and
lands in the hub cache's layout (snapshots/<commit>, refs/main last), that a cached model fetches
nothing, that a file that does not match its sha256 leaves no ref behind, that a manifest reaching out of
the snapshot is refused, check mode, and the offline check's message.
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

mod = load_module("plugins/modules/vllm_hf_mirror.py")

MODEL = "team-org/coder-mini"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
FILES = {"config.json": b'{"model_type": "llama"}', "sub/model.safetensors": b"w" * 5000}


def _publish(root: Path, model: str = MODEL, files: dict[str, bytes] = FILES, commit: str = COMMIT) -> None:
    folder = root / model
    for path, data in files.items():
        (folder / commit / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / commit / path).write_bytes(data)
    manifest = {"model": model, "revision": "main", "commit": commit,
                "files": [{"path": p, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()} for p, d in files.items()]}
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[tuple[str, Path, Counter[str]]]:
    root = tmp_path / "mirror"
    root.mkdir()
    with counting_file_server(root) as (url, hits):
        yield url, root, hits


def _params(url: str, hub: Path, models: list[str], mode: str = "copy") -> dict[str, Any]:
    return {"mirror": url, "models": [{"model": m, "hub": str(hub), "label": f"vllm_models[{i}].model"}
                                      for i, m in enumerate(models)],
            "revision": "main", "mode": mode, "owner": None, "group": None, "host": "team-gpu", "timeout": 5,
            "retries": 0}


def _snapshot(hub: Path) -> Path:
    return hub / "models--team-org--coder-mini" / "snapshots" / COMMIT


def test_a_missing_model_is_copied_into_the_cache_each_file_once(mirror: tuple[str, Path, Counter[str]],
                                                                  tmp_path: Path) -> None:
    url, root, hits = mirror
    _publish(root)
    hub = tmp_path / "hub"

    first = mod.run(_params(url, hub, [MODEL]), check_mode=False)

    assert first["changed"] and first["copied"] == [MODEL] and first["missing"] == []
    assert {p: (_snapshot(hub) / p).read_bytes() for p in FILES} == FILES
    assert (hub / "models--team-org--coder-mini/refs/main").read_text() == COMMIT
    assert {path: n for path, n in hits.items() if f"/{COMMIT}/" in path} == {
        f"/{MODEL}/{COMMIT}/{p}": 1 for p in FILES}
    assert not list(hub.rglob("*.llmfleet-partial"))

    hits.clear()
    second = mod.run(_params(url, hub, [MODEL]), check_mode=False)
    assert not second["changed"] and second["files"] == [] and sum(hits.values()) == 0  # a converged host reads nothing


def test_a_file_already_in_the_snapshot_is_not_fetched_again(mirror: tuple[str, Path, Counter[str]],
                                                             tmp_path: Path) -> None:
    url, root, hits = mirror
    _publish(root)
    hub = tmp_path / "hub"
    (_snapshot(hub) / "sub").mkdir(parents=True)
    (_snapshot(hub) / "sub/model.safetensors").write_bytes(FILES["sub/model.safetensors"])  # an interrupted copy
    result = mod.run(_params(url, hub, [MODEL]), check_mode=False)
    assert result["files"] == [f"{MODEL}/config.json"]
    assert hits[f"/{MODEL}/{COMMIT}/sub/model.safetensors"] == 0


def test_a_file_that_does_not_match_its_sha256_leaves_no_model(mirror: tuple[str, Path, Counter[str]],
                                                               tmp_path: Path) -> None:
    url, root, _ = mirror
    _publish(root)
    (root / MODEL / COMMIT / "sub/model.safetensors").write_bytes(b"x" * 5000)  # same size, other content
    hub = tmp_path / "hub"
    with pytest.raises(mod.MirrorError, match="does not match the manifest"):
        mod.run(_params(url, hub, [MODEL]), check_mode=False)
    assert not (hub / "models--team-org--coder-mini/refs/main").exists()
    assert not (_snapshot(hub) / "sub/model.safetensors").exists()
    assert not mod.cached(str(hub), MODEL, "main")


def test_a_manifest_reaching_out_of_the_snapshot_is_refused(mirror: tuple[str, Path, Counter[str]],
                                                            tmp_path: Path) -> None:
    url, root, _ = mirror
    _publish(root, files={"../../../evil": b"x"})
    with pytest.raises(mod.MirrorError, match="bad file entry"):
        mod.run(_params(url, tmp_path / "hub", [MODEL]), check_mode=False)
    assert not (tmp_path / "evil").exists()


def test_check_mode_lists_what_would_be_fetched_and_writes_nothing(mirror: tuple[str, Path, Counter[str]],
                                                                  tmp_path: Path) -> None:
    url, root, hits = mirror
    _publish(root)
    hub = tmp_path / "hub"
    result = mod.run(_params(url, hub, [MODEL]), check_mode=True)
    assert result["changed"] and sorted(result["files"]) == sorted(f"{MODEL}/{p}" for p in FILES)
    assert not hub.exists() and not any(f"/{COMMIT}/" in p for p in hits)


def test_the_offline_check_names_a_model_neither_cached_nor_on_the_mirror(mirror: tuple[str, Path, Counter[str]],
                                                                        tmp_path: Path) -> None:
    url, root, _ = mirror
    _publish(root)
    hub = tmp_path / "hub"
    result = mod.run(_params(url, hub, [MODEL, "team-org/absent"], mode="check"), check_mode=False)
    assert result["missing"] == ["team-org/absent"] and not hub.exists()
    message = mod.missing_message(result["missing"], url, "team-gpu")
    assert message.startswith(f"vllm: team-org/absent: neither in the Hugging Face cache of team-gpu nor on the mirror {url};")
    assert message.endswith("nothing was changed.")
    assert "vllm_models_mirror is not set" in mod.missing_message(["a/b"], "", "team-gpu")
