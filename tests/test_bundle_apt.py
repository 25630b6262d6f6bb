"""`invoke bundle`'s distribution part (llmfleet/bundle_apt.py): which packages, from which sources, and
the repository it writes, read back by apt itself.

The end-to-end cases use an upstream repository of packages built here with dpkg-deb (a file: source,
through --apt-sources), so they need apt and dpkg but no network. The fleet scenario bundles the
real thing (Debian's packages, from this machine's own apt sources) and its hosts install from it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmfleet import bundle, bundle_apt

ROOT = Path(__file__).resolve().parents[1]


def _vars(role: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / "roles" / role / "vars/main.yml").read_text()) or {}


def test_every_roles_package_list_is_read() -> None:
    """A role whose vars gain a per-OS package list must be in ROLE_PACKAGES, or its packages would be
    missing from an offline fleet's mirror."""
    found = {(path.parent.parent.name, name) for path in (ROOT / "roles").glob("*/vars/main.yml")
             for name, value in (yaml.safe_load(path.read_text()) or {}).items()
             if isinstance(value, dict) and isinstance(value.get("Debian"), list) and name.endswith("packages")}
    assert found == set(bundle_apt.ROLE_PACKAGES.items())


def test_each_host_brings_its_roles_packages() -> None:
    server = {"group_names": ["gpu_servers"], "llm_host_type": "linux_cpu", "vllm_enabled": True,
              "vllm_models": [{"name": "m", "model": "org/m"}]}
    quiet_server = {"group_names": ["gpu_servers"], "llm_host_type": "linux_cpu", "vllm_enabled": False}
    laptop = {"group_names": ["dev_laptops"], "llm_host_extra_packages": ["nodejs"]}
    mac = {"group_names": ["dev_laptops"], "llm_host_type": "macos_arm64", "llm_host_extra_packages": ["jq"]}
    outsider = {"group_names": ["mirror"]}
    # The team's mirror: llm_host's prerequisites and its nginx (the package llm_proxy installs too).
    mirror = {"group_names": ["llm_mirrors"]}
    wanted = bundle_apt.packages({"server": server, "quiet": quiet_server, "laptop": laptop, "mac": mac,
                                  "outsider": outsider, "mirror": mirror}, ROOT)
    host = _vars("llm_host")["_llm_host_packages"]["Debian"]
    for name in host:
        assert set(wanted[name]) == {"laptop", "mirror", "quiet", "server"}
    served = _vars("llm_mirror")["_llm_mirror_packages"]["Debian"]
    assert served == ["nginx"]
    for name in _vars("llm_proxy")["_llm_proxy_packages"]["Debian"] + _vars("llm_firewall")["_llm_firewall_packages"]["Debian"]:
        assert wanted[name] == (["mirror"] if name in served else []) + ["quiet", "server"]
    for name in _vars("vllm")["_vllm_system_packages"]["Debian"]:
        assert wanted[name] == ["server"]
    assert wanted["nodejs"] == ["laptop"] and "jq" not in wanted
    assert not any("outsider" in hosts or "mac" in hosts for hosts in wanted.values())


@pytest.mark.parametrize(("extra", "message"), [
    ("nodejs", "llm_host_extra_packages is a string ('nodejs'), not a list"),
    (["Node JS"], "'Node JS' (llm_host_extra_packages) is not a Debian package name"),
])
def test_extra_packages_the_bundle_cannot_follow_are_refused(extra: Any, message: str) -> None:
    with pytest.raises(bundle.BundleError, match=re.escape(message)):
        bundle_apt.packages({"l": {"group_names": ["dev_laptops"], "llm_host_extra_packages": extra}}, ROOT)


SOURCES_822 = """\
# the distribution
Types: deb deb-src
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main contrib
Architectures: amd64
Signed-By: -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 mQINBGPL0BUBEADmW5NdOOHwPIJlgPu6JDcKw/NZJPR8lsD9K7UgrF6nzG
 -----END PGP PUBLIC KEY BLOCK-----

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/old
Suites: bookworm
Components: main
Enabled: no
"""


def test_the_controllers_own_sources_are_read_and_renamed(tmp_path: Path) -> None:
    parts = tmp_path / "sources.list.d"
    parts.mkdir()
    (parts / "debian.sources").write_text(SOURCES_822)
    (parts / "vendor.list").write_text("deb [signed-by=/usr/share/keyrings/v.gpg arch=amd64] https://vendor.example/apt "
                                       "cloud-sdk-bookworm main\n# deb http://mirror.example/debian bookworm main\n")
    (parts / "backports.list").write_text("deb http://mirror.example/debian bookworm-backports main\n")
    available = bundle_apt.read_sources([tmp_path / "absent.list", parts])
    assert len(available) == 4  # the disabled one and the commented line left out
    trixie = bundle_apt.sources_for("trixie", "bookworm", available)
    paragraphs = trixie.strip().split("\n\n")
    assert [re.search(r"^Suites: (.*)$", p, re.M).group(1) for p in paragraphs] == [  # type: ignore[union-attr]
        "trixie-backports", "trixie trixie-updates", "trixie-security"]
    assert "vendor.example" not in trixie and "Architectures" not in trixie
    # The embedded key keeps its continuation lines (apt reads it so).
    assert " .\n mQINBGPL0BUBEADmW5NdOOHwPIJlgPu6JDcKw/NZJPR8lsD9K7UgrF6nzG\n -----END PGP PUBLIC KEY BLOCK-----" in trixie
    assert "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" in trixie
    with pytest.raises(bundle.BundleError, match="name no suite of jammy"):
        bundle_apt.sources_for("jammy", "jammy", available)


def test_the_controllers_release_is_the_default_suite(tmp_path: Path) -> None:
    release = tmp_path / "os-release"
    release.write_text('ID=ubuntu\nID_LIKE=debian\nVERSION_CODENAME=noble\n')
    assert bundle_apt.controller_codename(release) == "noble"
    release.write_text('ID=fedora\nVERSION_CODENAME=""\n')
    assert bundle_apt.controller_codename(release) == ""
    assert bundle_apt.controller_codename(tmp_path / "absent") == ""


def _deb(folder: Path, name: str, version: str, fields: str = "") -> Path:
    tree = folder / f"{name}-tree"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "usr/share/doc" / name).mkdir(parents=True)
    (tree / "usr/share/doc" / name / "README").write_text(f"{name} {version}\n")
    (tree / "DEBIAN/control").write_text(f"Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: t <t@t>\n"
                                         f"{fields}Description: a test package\n")
    deb = folder / f"{name}_{version.split(':')[-1]}_all.deb"  # Debian's pool names have no epoch
    subprocess.run(["dpkg-deb", "-Zgzip", "--root-owner-group", "-b", str(tree), str(deb)], check=True,
                   capture_output=True)
    return deb


@pytest.fixture(name="upstream")
def fixture_upstream(tmp_path: Path) -> Path:
    """A flat repository (the kind a file: source reads) of four packages: a needs b, recommends c; d alone."""
    repo = tmp_path / "upstream"
    repo.mkdir()
    debs = [_deb(repo, "llmf-a", "1.0-1", "Depends: llmf-b (>= 2)\nRecommends: llmf-c\n"),
            _deb(repo, "llmf-b", "1:2.0-1"), _deb(repo, "llmf-c", "3.0-1"), _deb(repo, "llmf-d", "4.0-1")]
    stanzas = []
    for deb in debs:
        control = subprocess.run(["dpkg-deb", "-f", str(deb)], capture_output=True, text=True, check=True).stdout
        stanzas.append(control.rstrip("\n") + f"\nFilename: ./{deb.name}\nSize: {deb.stat().st_size}\n"
                       f"SHA256: {hashlib.sha256(deb.read_bytes()).hexdigest()}\n")
    (repo / "Packages").write_text("\n".join(stanzas))
    sources = tmp_path / "upstream.list"
    sources.write_text(f"deb [trusted=yes] file:{repo} ./\n")
    return sources


def _apt_reads(bundle_dir: Path, tmp_path: Path, *packages: str) -> list[str]:
    """The files apt on this machine would fetch from the bundle's repository for `packages` (a state of its
    own, an empty status), as a host with llm_host_apt_repository does."""
    state = tmp_path / "consumer"
    for folder in ("lists/partial", "archives/partial", "parts", "state"):
        (state / folder).mkdir(parents=True, exist_ok=True)
    (state / "status").write_text("")
    (state / "sources.list").write_text(f"deb [trusted=yes] file:{bundle_dir / 'apt'} testing main\n")
    options = [f"Dir::State::Lists={state}/lists", f"Dir::State::status={state}/status", f"Dir::State={state}/state",
               f"Dir::Cache={state}", f"Dir::Cache::archives={state}/archives/", f"Dir::Etc::SourceList={state}/sources.list",
               f"Dir::Etc::SourceParts={state}/parts", "Debug::NoLocking=1", "APT::Install-Recommends=true"]
    argv = ["apt-get"] + [x for o in options for x in ("-o", o)]
    update = subprocess.run(argv + ["update"], capture_output=True, text=True, check=False)
    assert update.returncode == 0 and "Err" not in update.stdout, update.stdout + update.stderr
    listed = subprocess.run(argv + ["install", "-y", "--print-uris", *packages], capture_output=True, text=True,
                            check=False)
    assert listed.returncode == 0, listed.stderr
    return sorted(re.findall(r"^'file:([^']+)'", listed.stdout, re.M))


def test_a_repository_of_the_closure_apt_installs_from_and_a_second_run_fetches_nothing(
        upstream: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = tmp_path / "bundle"
    plan = bundle.Plan(apt={"llmf-a": ["laptop-1"]})
    first = bundle.build(ROOT, out, plan, apt_suites=["testing"], apt_sources=str(upstream), log=lambda _: None)
    pool = ["apt/pool/llmf-a_1.0-1_all.deb", "apt/pool/llmf-b_2.0-1_all.deb", "apt/pool/llmf-c_3.0-1_all.deb"]
    assert sorted(first.apt_fetched) == pool and first.apt_kept == []
    assert sorted(p.relative_to(out).as_posix() for p in (out / "apt/pool").iterdir()) == pool  # not d

    # The index: each package's own control data, its pool file, its sha256; Release has the indexes' sha256.
    packages = (out / "apt/dists/testing/main/binary-amd64/Packages").read_text()
    assert gzip.decompress((out / "apt/dists/testing/main/binary-amd64/Packages.gz").read_bytes()).decode() == packages
    assert "Package: llmf-b\nVersion: 1:2.0-1" in packages and "Filename: pool/llmf-b_2.0-1_all.deb" in packages
    for name in pool:
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() in packages
    release = (out / "apt/dists/testing/Release").read_text()
    assert "Suite: testing" in release and "Architectures: amd64" in release
    assert f"{hashlib.sha256(packages.encode()).hexdigest()} " in release
    manifest = json.loads((out / "bundle.json").read_text())
    assert manifest["apt"] == {"packages": {"llmf-a": ["laptop-1"]}, "suites": {"testing/amd64": 3}}
    assert {name for name in manifest["files"] if name.startswith("apt/")} == set(pool) | {
        "apt/dists/testing/Release", "apt/dists/testing/main/binary-amd64/Packages",
        "apt/dists/testing/main/binary-amd64/Packages.gz"}
    assert not (out / "apt" / bundle_apt.STAGING).exists()

    # apt reads it as a host would: the whole closure from the bundle, recommends included.
    assert _apt_reads(out, tmp_path, "llmf-a") == sorted(str(out / name) for name in pool)

    before = {name: (out / name).stat().st_mtime_ns for name in pool + ["apt/dists/testing/Release"]}
    second = bundle.build(ROOT, out, plan, apt_suites=["testing"], apt_sources=str(upstream), log=lambda _: None)
    assert second.apt_fetched == [] and sorted(second.apt_kept) == pool
    assert {name: (out / name).stat().st_mtime_ns for name in before} == before  # nothing rewritten

    # A damaged package is fetched again, and only it.
    (out / pool[1]).write_bytes(b"not a package")
    third = bundle.build(ROOT, out, plan, apt_suites=["testing"], apt_sources=str(upstream), log=lambda _: None)
    assert third.apt_fetched == [pool[1]] and sorted(third.apt_kept) == [pool[0], pool[2]]

    # A package no host needs any more leaves the pool.
    fourth = bundle.build(ROOT, out, bundle.Plan(apt={"llmf-d": ["laptop-1"]}), apt_suites=["testing"],
                          apt_sources=str(upstream), log=lambda _: None)
    assert fourth.apt_fetched == ["apt/pool/llmf-d_4.0-1_all.deb"]
    assert sorted(p.name for p in (out / "apt/pool").iterdir()) == ["llmf-d_4.0-1_all.deb"]


def test_a_package_the_distribution_lacks_stops_before_anything_is_written(
        upstream: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = tmp_path / "bundle"
    plan = bundle.Plan(apt={"llmf-a": ["server"], "jq-typo": ["laptop-2", "laptop-3"]})
    with pytest.raises(bundle.BundleError, match=re.escape("has no package jq-typo (wanted by laptop-2, laptop-3)")):
        bundle.build(ROOT, out, plan, apt_suites=["testing"], apt_sources=str(upstream), log=lambda _: None)
    assert not (out / "apt").exists() and not (out / "bundle.json").exists()


# invoke bundle's apt options are checked first with the others': tests/test_bundle.py,
# test_invoke_bundles_options_are_checked_first.


def test_what_else_is_in_the_apt_folder_goes(upstream: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An older bundle's flat repository (Packages and packages at the top) is not served beside the new one."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = tmp_path / "bundle"
    (out / "apt").mkdir(parents=True)
    (out / "apt/Packages").write_text("Package: old\n")
    (out / "apt/old_1_all.deb").write_text("old")
    bundle.build(ROOT, out, bundle.Plan(apt={"llmf-d": ["h"]}), apt_suites=["testing"], apt_sources=str(upstream),
                 log=lambda _: None)
    assert sorted(p.name for p in (out / "apt").iterdir()) == ["dists", "pool"]
    assert "apt/Packages" not in json.loads((out / "bundle.json").read_text())["files"]
