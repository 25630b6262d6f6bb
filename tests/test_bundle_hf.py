"""src/llmfleet/bundle_hf.py: the Hugging Face part of `invoke bundle`, from a Hugging Face cache.

The cache is written here as the hub client keeps it (tests/fixtures/make_hf_cache.py: blobs, snapshot
links, refs/main) from a small model directory; the tests check which models the inventory brings, the
bundle's layout and manifest (each file's size and sha256), that a second run copies nothing, that
bundle.json and SHA256SUMS cover it, and the errors for a model the cache lacks or no --hf-from.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from _modules import load_module

from llmfleet import bundle, bundle_hf

ROOT = Path(__file__).resolve().parents[1]
make_hf_cache = load_module("tests/fixtures/make_hf_cache.py")

MODEL = "team-org/coder-mini"


def _cache(tmp_path: Path, model: str = MODEL) -> tuple[Path, dict[str, bytes]]:
    """An HF_HOME whose hub/ has `model` (two files, one in a subdirectory)."""
    files = {"config.json": b'{"model_type": "llama"}', "weights/model.safetensors": b"\x00" * 4096 + b"weights"}
    source = tmp_path / "model"
    for path, data in files.items():
        (source / path).parent.mkdir(parents=True, exist_ok=True)
        (source / path).write_bytes(data)
    make_hf_cache.main(str(source), str(tmp_path / "hf-home/hub"), model)
    return tmp_path / "hf-home", files


def test_the_serving_vllm_hosts_models_by_id_are_bundled() -> None:
    hostvars: dict[str, dict[str, Any]] = {
        "gpu": {"group_names": ["gpu_servers"], "vllm_enabled": True,
                "vllm_models": [{"name": "a", "model": MODEL}, {"name": "b", "model": "/srv/models/local"},
                                {"name": "c", "model": "{{ team_model }}"}, {"name": "d", "model": MODEL}]},
        "off": {"group_names": ["gpu_servers"], "vllm_enabled": False, "vllm_models": [{"name": "e", "model": "x/off"}]},
        "laptop": {"group_names": ["dev_laptops"], "vllm_enabled": True, "vllm_models": [{"name": "f", "model": "x/lap"}]},
    }
    # A path needs no mirror, a templated value is not known here, a host that does not serve brings none.
    assert bundle.plan(hostvars, ROOT, python=False, cpython=False).hf_models == [MODEL]


def test_a_model_is_copied_with_its_manifest_and_a_second_run_keeps_it(tmp_path: Path) -> None:
    source, files = _cache(tmp_path)
    out = tmp_path / "bundle"
    plan = bundle.Plan(hf_models=[MODEL])

    first = bundle.build(ROOT, out, plan, hf_from=str(source), log=lambda _: None)

    manifest = json.loads((out / "hf-models" / MODEL / "manifest.json").read_text())
    commit = (source / "hub/models--team-org--coder-mini/refs/main").read_text()
    assert manifest["commit"] == commit and manifest["revision"] == "main" and manifest["model"] == MODEL
    assert manifest["files"] == [{"path": p, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()}
                                 for p, d in sorted(files.items())]
    for path, data in files.items():  # the content, not the cache's links
        copied = out / "hf-models" / MODEL / commit / path
        assert copied.read_bytes() == data and not copied.is_symlink()
    assert first.hf_copied == [MODEL]
    assert sorted(first.fetched) == sorted(f"hf-models/{MODEL}/{commit}/{p}" for p in files)
    listed = json.loads((out / "bundle.json").read_text())
    assert listed["hf_models"] == [MODEL]
    assert f"hf-models/{MODEL}/manifest.json" in listed["files"]
    assert f"hf-models/{MODEL}/{commit}/weights/model.safetensors" in (out / "SHA256SUMS").read_text()

    second = bundle.build(ROOT, out, plan, hf_from=str(source / "hub"), log=lambda _: None)  # hub/ itself works too
    assert second.fetched == [] and second.hf_copied == [] and second.hf_kept == [MODEL]


def test_a_file_gone_from_the_bundle_copies_the_model_again(tmp_path: Path) -> None:
    source, _ = _cache(tmp_path)
    out = tmp_path / "bundle"
    bundle.build(ROOT, out, bundle.Plan(hf_models=[MODEL]), hf_from=str(source), log=lambda _: None)
    commit = json.loads((out / "hf-models" / MODEL / "manifest.json").read_text())["commit"]
    (out / "hf-models" / MODEL / commit / "config.json").unlink()
    again = bundle.build(ROOT, out, bundle.Plan(hf_models=[MODEL]), hf_from=str(source), log=lambda _: None)
    assert again.hf_copied == [MODEL] and (out / "hf-models" / MODEL / commit / "config.json").is_file()


def test_a_model_the_cache_lacks_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    source, _ = _cache(tmp_path)
    out = tmp_path / "bundle"
    with pytest.raises(bundle.BundleError, match=r"team-org/absent is not in the Hugging Face cache .*hf-home/hub"):
        bundle.build(ROOT, out, bundle.Plan(hf_models=[MODEL, "team-org/absent"]), hf_from=str(source),
                     log=lambda _: None)
    assert not out.exists()


def test_hugging_face_models_without_a_source_are_refused(tmp_path: Path) -> None:
    with pytest.raises(bundle.BundleError, match=rf"Hugging Face models \({MODEL}\): give --hf-from"):
        bundle.build(ROOT, tmp_path / "bundle", bundle.Plan(hf_models=[MODEL]), log=lambda _: None)
    with pytest.raises(bundle.BundleError, match="is not a directory"):
        bundle.build(ROOT, tmp_path / "bundle", bundle.Plan(hf_models=[MODEL]), hf_from=str(tmp_path / "none"),
                     log=lambda _: None)


def test_the_bundle_is_a_mirror_for_the_vllm_roles_copy(tmp_path: Path) -> None:
    source, files = _cache(tmp_path)
    out = tmp_path / "bundle"
    bundle.build(ROOT, out, bundle.Plan(hf_models=[MODEL]), hf_from=str(source), log=lambda _: None)
    copy = load_module("plugins/modules/vllm_hf_mirror.py")
    hub = tmp_path / "host/hub"
    params = {"mirror": (out / "hf-models").as_uri(), "models": [{"model": MODEL, "hub": str(hub), "label": "m"}],
              "revision": "main", "mode": "copy", "owner": None, "group": None, "host": "gpu", "timeout": 5,
              "retries": 0}
    assert copy.run(params, check_mode=False)["copied"] == [MODEL]
    commit = (hub / "models--team-org--coder-mini/refs/main").read_text()
    assert {p: (hub / "models--team-org--coder-mini/snapshots" / commit / p).read_bytes() for p in files} == files
