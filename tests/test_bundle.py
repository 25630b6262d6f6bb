"""src/llmfleet/bundle.py: `invoke bundle` against an upstream served over HTTP from a temporary directory.

The upstream holds Ollama releases (the test double packaged as releases) and a team server's store
of models (the double's catalog written as its pull writes it); the server counts requests, so the
tests check what a bundle fetches, that a second run fetches nothing, that the manifest's digests are
the files', that a release whose sha256 does not match is refused, and that the bundle's models
directory works as ollama_models_mirror for the ollama role's copy.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from _fileserver import counting_file_server
from _modules import load_module

from llmfleet import bundle

ROOT = Path(__file__).resolve().parents[1]
releases = load_module("tests/doubles/ollama/build_release.py")
models = load_module("tests/doubles/ollama/build_models.py")
mirror_module = load_module("plugins/modules/ollama_mirror.py")


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[tuple[str, Path, Counter[str]]]:
    root = tmp_path / "upstream"
    releases.build("0.32.15", root / "releases")
    models.build(root / "store", ["qwen2.5-coder:1.5b", "nomic-embed-text", "llama3.2:1b"])
    with counting_file_server(root) as (url, hits):
        yield url, root, hits


def _inventory(tmp_path: Path) -> Path:
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    hosts = {"all": {"children": {
        "gpu_servers": {"hosts": {"team-gpu": {"ollama_models": ["qwen2.5-coder:1.5b", "llama3.2:1b"]}}},
        "dev_laptops": {"hosts": {"bob": {"ollama_models": ["qwen2.5-coder:1.5b", {"name": "nomic-embed-text",
                                                                                  "memory_gb": 1}]}}},
    }}}
    (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts))
    return inventory


def test_plan_reads_every_hosts_versions_and_models(tmp_path: Path) -> None:
    hostvars = bundle.read_inventory(str(_inventory(tmp_path)))
    plan = bundle.plan(hostvars, ROOT, extra_models=["qwen3:0.6b"])
    assert plan.ollama_versions == [str(bundle.role_default(ROOT, "ollama", "ollama_version"))]
    assert sorted(plan.models) == ["llama3.2:1b", "nomic-embed-text:latest", "qwen2.5-coder:1.5b", "qwen3:0.6b"]


def test_bundle_then_a_second_run_fetches_nothing(upstream: tuple[str, Path, Counter[str]], tmp_path: Path) -> None:
    url, root, hits = upstream
    plan = bundle.plan(bundle.read_inventory(str(_inventory(tmp_path))), ROOT)
    out = tmp_path / "bundle"

    first = bundle.build(ROOT, out, plan, releases_from=f"{url}/releases", models_from=f"{url}/store")

    version = plan.ollama_versions[0]
    assert "ollama-releases/v%s/ollama-linux-amd64.tar.zst" % version in first.fetched
    assert sorted(first.models_copied) == sorted(plan.models)
    # Every blob of the three models, each fetched once.
    assert {p for p in hits if p.startswith("/store/blobs/")} == {f"/store/blobs/{p.name}"
                                                                    for p in (root / "store/blobs").iterdir()}
    assert set(Counter(p for p in hits.elements() if p.startswith("/store/blobs/")).values()) == {1}
    manifest = json.loads((out / "bundle.json").read_text())
    for relative, entry in manifest["files"].items():
        assert hashlib.sha256((out / relative).read_bytes()).hexdigest() == entry["sha256"]
    assert (out / "SHA256SUMS").read_text().count("\n") == len(manifest["files"])
    assert f"ollama-releases/v{version}/sha256sum.txt" in manifest["files"]

    before = sum(hits.values())
    second = bundle.build(ROOT, out, plan, releases_from=f"{url}/releases", models_from=f"{url}/store")
    assert second.fetched == [] and second.models_copied == [] and sum(hits.values()) == before
    assert json.loads((out / "bundle.json").read_text()) == manifest


def test_a_release_that_does_not_match_its_sha256_is_refused(upstream: tuple[str, Path, Counter[str]],
                                                             tmp_path: Path) -> None:
    url, root, _ = upstream
    (root / "releases/v0.32.15/ollama-linux-amd64.tar.zst").write_bytes(b"not the release")
    plan = bundle.Plan(ollama_versions=["0.32.15"])
    with pytest.raises(bundle.BundleError, match="does not match its sha256"):
        bundle.build(ROOT, tmp_path / "bundle", plan, releases_from=f"{url}/releases")
    assert not (tmp_path / "bundle/ollama-releases/v0.32.15/ollama-linux-amd64.tar.zst").exists()


def test_models_without_a_source_are_refused(tmp_path: Path) -> None:
    with pytest.raises(bundle.BundleError, match="give --models-from"):
        bundle.build(ROOT, tmp_path / "bundle", bundle.Plan(models=["qwen3:0.6b"]))


def test_the_bundle_is_a_mirror_for_the_ollama_role(upstream: tuple[str, Path, Counter[str]], tmp_path: Path) -> None:
    url, _, _ = upstream
    out = tmp_path / "bundle"
    bundle.build(ROOT, out, bundle.Plan(ollama_versions=["0.32.15"], models=["qwen2.5-coder:1.5b"]),
                 releases_from=f"{url}/releases", models_from=f"{url}/store")
    store = tmp_path / "host-store"
    params = {"mirror": (out / "ollama-models").as_uri(), "models_dir": str(store), "models": ["qwen2.5-coder:1.5b"],
              "mode": "copy", "owner": None, "group": None, "host": "bob", "timeout": 10, "retries": 0, "delay": 0}
    result = mirror_module.run(params, check_mode=False)
    assert result["copied"] == ["qwen2.5-coder:1.5b"]
    assert (store / "manifests/registry.ollama.ai/library/qwen2.5-coder/1.5b").is_file()


def test_the_vsix_goes_in_under_the_inventorys_file_name(tmp_path: Path) -> None:
    hostvars = {"bob": {"continue_vscode_extension_vsix": "http://mirror.lan:8765/vsix/continue-1.2.22.vsix",
                        "ollama_models_mirror": "http://mirror.lan:8765/ollama-models"}}
    plan = bundle.plan(hostvars, ROOT)
    assert plan.vsix == ["http://mirror.lan:8765/vsix/continue-1.2.22.vsix"]
    source = tmp_path / "downloaded.vsix"
    source.write_bytes(b"PK a vsix")
    out = tmp_path / "bundle"

    first = bundle.build(ROOT, out, bundle.Plan(vsix=plan.vsix), vsix_from=str(source))
    second = bundle.build(ROOT, out, bundle.Plan(vsix=plan.vsix), vsix_from=str(source))

    assert first.fetched == ["vsix/continue-1.2.22.vsix"] and second.fetched == []
    assert (out / "vsix/continue-1.2.22.vsix").read_bytes() == b"PK a vsix"
    assert "vsix/continue-1.2.22.vsix" in json.loads((out / "bundle.json").read_text())["files"]
