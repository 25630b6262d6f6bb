"""`invoke bundle`: one directory with what an offline fleet downloads, for a sneakernet.

The bundle is laid out as the team's mirror serves it, so a web server pointed at the directory
(or a `file://` path to it) is the mirror, and inventory/example's network.yml names its parts:

    ollama-releases/v<version>/<asset>, sha256sum.txt    ollama_download_base_url
    ollama-models/manifests/..., blobs/sha256-<hex>      ollama_models_mirror
    vsix/<file>.vsix                                     continue_vscode_extension_vsix
    python/simple/, python/files/                        llm_host_python_index_url (<mirror>/python/simple)
    python-builds/<build>/cpython-<version>+<build>-...  llm_host_python_install_mirror (<mirror>/python-builds)
    hf-models/<org>/<name>/manifest.json, <commit>/...  vllm_models_mirror (<mirror>/hf-models)
    apt/dists/<suite>/..., apt/pool/<file>.deb           llm_host_apt_repository (deb [trusted=yes] <mirror>/apt <suite> main)
    bundle.json, SHA256SUMS                              what is in it, with each file's sha256

What goes in comes from the inventory (`ansible-inventory --list`, vault included): every
`ollama_version` and the models every host lists in `ollama_models` (and its custom models' bases),
plus `--model`; the Continue VSIX when `continue_vscode_extension_vsix` is a URL. Releases come from
`--releases-from` (default GitHub's release downloads), checked against the release's sha256sum.txt;
the VSIX from `--vsix-from` when the inventory's URL is the mirror itself; the Hugging Face models the
serving vLLM hosts name by id from `--hf-from`, a Hugging Face cache (llmfleet/bundle_hf.py);
models are copied from `--models-from` (a models directory or a mirror of one, e.g. the team server's
store) with the ollama role's own copy (plugins/modules/ollama_mirror.py): digests checked, each blob
once. The Python packages every host installs (uv, Open WebUI, vLLM, the pull tools) are resolved
per component and laid out as a package index (llmfleet/bundle_python.py says what and how). The
CPython builds of the hosts' llm_host_python_version are the ones the pinned uv names, each checked by
uv itself before it is kept (llmfleet/bundle_cpython.py says which, from where, and why by default).
The distribution packages the roles install with apt, with their whole closure, are an apt repository
resolved by the controller's apt from its distribution's sources (llmfleet/bundle_apt.py).
A second run keeps what the directory already holds (a release whose sha256 matches, a model
whose manifest is there, a wheel whose sha256 is in its lock, a CPython build whose sha256 is the one
recorded when uv checked it) and fetches nothing of it again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from llmfleet import bundle_apt, bundle_cpython, bundle_hf, bundle_python, cli
from llmfleet.bundle_hosts import BundleError as BundleError
from llmfleet.bundle_hosts import load_plugin as _load
from llmfleet.bundle_hosts import role_default as role_default

DEFAULT_RELEASES = "https://github.com/ollama/ollama/releases/download"


@dataclass
class Plan:
    """What the inventory asks the bundle to hold."""

    ollama_versions: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    vsix: list[str] = field(default_factory=list)
    python: list[bundle_python.Component] = field(default_factory=list)
    cpython: dict[str, list[str]] = field(default_factory=dict)  # llm_host_python_version -> hosts
    hf_models: list[str] = field(default_factory=list)  # vllm_models[].model given as a repository id
    apt: dict[str, list[str]] = field(default_factory=dict)  # distribution package -> the hosts that install it


@dataclass
class Outcome:
    """What a run fetched and what it found already there (relative paths in the bundle)."""

    fetched: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    models_copied: list[str] = field(default_factory=list)
    models_kept: list[str] = field(default_factory=list)
    python_fetched: list[str] = field(default_factory=list)
    python_kept: list[str] = field(default_factory=list)
    cpython_fetched: list[str] = field(default_factory=list)
    cpython_kept: list[str] = field(default_factory=list)
    hf_copied: list[str] = field(default_factory=list)
    hf_kept: list[str] = field(default_factory=list)
    apt_fetched: list[str] = field(default_factory=list)
    apt_kept: list[str] = field(default_factory=list)


def read_inventory(inventory: str, vault_password_file: str | None = None) -> dict[str, dict[str, Any]]:
    """Every host's variables as `ansible-inventory --list` gives them (group_vars merged, vault decrypted),
    with `group_names` as a play sees it (the host's groups, the ones it is in through children too)."""
    argv = [cli.venv_tool("ansible-inventory"), "-i", inventory, "--list"]
    if vault_password_file:
        argv += ["--vault-password-file", vault_password_file]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BundleError(f"ansible-inventory could not read {inventory}: {done.stderr.strip()[-600:]}")
    listing = json.loads(done.stdout)
    hostvars: dict[str, dict[str, Any]] = listing.get("_meta", {}).get("hostvars", {})

    def members(group: str, seen: frozenset[str] = frozenset()) -> set[str]:
        entry = listing.get(group) or {}
        found = set(entry.get("hosts") or [])
        for child in entry.get("children") or []:
            if child not in seen:
                found |= members(child, seen | {group})
        return found

    groups = {name: members(name) for name in listing if name not in ("_meta", "all", "ungrouped")}
    for host in {h for hosts in groups.values() for h in hosts} | set(members("all")):
        hostvars.setdefault(host, {})["group_names"] = sorted(g for g, hosts in groups.items() if host in hosts)
    return hostvars


def plan(hostvars: Mapping[str, Mapping[str, Any]], root: Path, extra_models: Iterable[str] = (), *,
         python: bool = True, cpython: bool = True, apt: bool = False) -> Plan:
    """The versions, models, VSIX files, and (unless `python` / `cpython` is false, and when `apt` is
    true) Python components, CPython versions and distribution packages the inventory's hosts need
    (templated values are left out; a templated Python setting is refused)."""
    model_name = _load(root, "plugins/filter/ollama_models.py", "llmfleet_bundle_ollama_models").model_name
    result = Plan()

    def add(items: list[str], value: Any) -> None:
        if isinstance(value, str) and value and "{{" not in value and value not in items:
            items.append(value)

    default_version = str(role_default(root, "ollama", "ollama_version"))
    for host in sorted(hostvars):
        variables = hostvars[host]
        add(result.ollama_versions, str(variables.get("ollama_version", default_version)))
        for entry in variables.get("ollama_models") or []:
            add(result.models, model_name(entry["name"] if isinstance(entry, Mapping) else entry))
        for custom in variables.get("ollama_custom_models") or []:
            if isinstance(custom, Mapping) and custom.get("from"):
                add(result.models, model_name(custom["from"]))
        vsix = variables.get("continue_vscode_extension_vsix") or ""
        if isinstance(vsix, str) and vsix.startswith(("http://", "https://")):
            add(result.vsix, vsix)
    for name in extra_models:
        add(result.models, model_name(name))
    result.hf_models = bundle_hf.models(hostvars, root)
    if python:
        result.python = bundle_python.components(hostvars, root)
    if cpython:
        result.cpython = bundle_cpython.versions(hostvars, root, bundle_cpython.uv_version())
    if apt:
        result.apt = bundle_apt.packages(hostvars, root)
    return result


_SHA256_SEEN: dict[tuple[str, int, int], str] = {}


def sha256_file(path: Path) -> str:
    """A file's sha256 (remembered by path, size and mtime: a bundle's wheels are read more than once)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA256_SEEN:
        _SHA256_SEEN[key] = _sha256(path)
    return _SHA256_SEEN[key]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(url: str, dest: Path) -> None:
    """Download `url` (http, https or file) to `dest` through a partial file."""
    partial = dest.with_name(dest.name + ".partial")
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=600) as answer, partial.open("wb") as out:  # noqa: S310 - by design
            shutil.copyfileobj(answer, out, 1 << 20)
    except (OSError, ValueError) as error:
        partial.unlink(missing_ok=True)
        raise BundleError(f"could not fetch {url}: {getattr(error, 'reason', error)}") from error
    os.replace(partial, dest)


def _releases(out: Path, versions: list[str], base: str, assets: list[str], outcome: Outcome,
              sha256sums: Callable[[str], dict[str, str]]) -> None:
    for version in versions:
        folder = out / "ollama-releases" / f"v{version}"
        sums_path = folder / "sha256sum.txt"
        url = f"{base.rstrip('/')}/v{version}"
        relative = sums_path.relative_to(out).as_posix()
        if sums_path.is_file():
            outcome.kept.append(relative)
        else:
            _fetch(f"{url}/sha256sum.txt", sums_path)
            outcome.fetched.append(relative)
        published = sha256sums(sums_path.read_text())
        for asset in assets:
            if asset not in published:
                raise BundleError(f"{url}/sha256sum.txt has no sha256 for {asset}")
            path = folder / asset
            relative = path.relative_to(out).as_posix()
            if path.is_file() and sha256_file(path) == published[asset]:
                outcome.kept.append(relative)
                continue
            _fetch(f"{url}/{asset}", path)
            if sha256_file(path) != published[asset]:
                path.unlink()
                raise BundleError(f"{url}/{asset} does not match its sha256 in sha256sum.txt")
            outcome.fetched.append(relative)


def _vsix(out: Path, urls: list[str], outcome: Outcome, source: str = "") -> None:
    """Each VSIX under the file name the inventory's URL gives it, from that URL or from `source`."""
    for url in urls:
        name = Path(urllib.parse.urlsplit(url).path).name
        path = out / "vsix" / name
        relative = path.relative_to(out).as_posix()
        if path.is_file():
            outcome.kept.append(relative)
        else:
            origin = source or url
            _fetch(origin if "://" in origin else Path(origin).resolve().as_uri(), path)
            outcome.fetched.append(relative)


def write_manifest(out: Path, plan_: Plan,
                   python_locks: Mapping[str, Mapping[str, str]] | None = None,
                   cpython: Mapping[str, Mapping[str, Any]] | None = None,
                   apt_files: Mapping[str, list[str]] | None = None) -> dict[str, Any]:
    """bundle.json and SHA256SUMS over every file of the bundle (the two themselves aside); `cpython`,
    the CPython builds uv checked, each with the sha256 it had then; `apt_files`, each apt suite and
    architecture's packages."""
    files = {}
    for path in sorted(p for p in out.rglob("*") if p.is_file() and p.name not in ("bundle.json", "SHA256SUMS")
                       and not p.relative_to(out).parts[0].startswith(bundle_cpython.STAGING)
                       and p.relative_to(out).parts[:2] != (bundle_apt.FOLDER, bundle_apt.STAGING)):
        files[path.relative_to(out).as_posix()] = {"sha256": sha256_file(path), "size": path.stat().st_size}
    python = {c.name: {"requirements": c.requirements, "constraints": c.constraints, "overrides": c.overrides,
                       "hosts": c.hosts, "locks": dict((python_locks or {}).get(c.name, {}))} for c in plan_.python}
    manifest = {"ollama_versions": plan_.ollama_versions, "ollama_models": plan_.models, "vsix": plan_.vsix,
                "hf_models": plan_.hf_models,
                "python": python, "cpython": {k: dict(v) for k, v in (cpython or {}).items()},
                "apt": {"packages": plan_.apt, "suites": {k: len(v) for k, v in (apt_files or {}).items()}},
                "files": files}
    (out / "bundle.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    (out / "SHA256SUMS").write_text("".join(f"{v['sha256']}  {k}\n" for k, v in files.items()))
    return manifest


def build(
    root: Path,
    out: Path,
    plan_: Plan,
    *,
    releases_from: str = DEFAULT_RELEASES,
    models_from: str = "",
    vsix_from: str = "",
    arches: Iterable[str] = ("amd64",),
    python_versions: Iterable[str] | None = None,
    python_platforms: Iterable[str] = (),
    cpython_platforms: Iterable[str] = (),
    cpython_from: str = "",
    hf_from: str = "",
    apt_suites: Iterable[str] = (),
    apt_sources: str = "",
    log: Callable[[str], None] = print,
) -> Outcome:
    """Fill `out` with what `plan_` names; returns what was fetched and what was already there.

    Python packages (plan_.python) for each of `python_versions` (default the controller's X.Y) and
    `python_platforms` (default the controller's) come first: a version, platform or requirement that
    does not work stops the run before anything is fetched. So does a CPython version (plan_.cpython)
    uv has no build of for one of `cpython_platforms` (default x86_64-unknown-linux-gnu); the builds
    come from `cpython_from` (a URL or directory in place of uv's download base) when it is given.
    The distribution packages (plan_.apt) go in for each of `apt_suites` and `arches`, from the
    controller's apt sources of its distribution or `apt_sources` (llmfleet/bundle_apt.py).
    """
    versions = list(python_versions or [bundle_python.controller_version()])
    platforms = list(python_platforms) or [""]
    bundle_python.check_versions(versions)
    bundle_python.check_platforms(platforms)
    builds = (bundle_cpython.lookup(plan_.cpython, cpython_platforms, bundle_cpython.uv_version())
              if plan_.cpython else [])
    if plan_.hf_models:  # every Hugging Face model found in the cache before anything is fetched
        bundle_hf.check(plan_.hf_models, hf_from)
    apt_targets = (bundle_apt.resolve_all(out, plan_.apt, list(apt_suites) or bundle_apt.check_suites([], apt_sources),
                                          bundle_apt.check_arches(arches), sources_file=apt_sources)
                   if plan_.apt else [])
    out.mkdir(parents=True, exist_ok=True)
    outcome = Outcome()
    python_locks: dict[str, dict[str, str]] = {}
    if plan_.python:
        done = bundle_python.build(out, plan_.python, versions, sha256_file, log=log, platforms=platforms)
        outcome.python_fetched, outcome.python_kept, python_locks = done.fetched, done.kept, done.locks
        outcome.fetched += done.fetched
        outcome.kept += done.kept
    try:
        cpython = bundle_cpython.build(out, builds, bundle_cpython.read_records(out), sha256_file, _fetch,
                                       cpython_from, log)
    except bundle_cpython.CPythonBundleError:
        raise
    except BundleError as error:
        raise BundleError(f"{error} (a CPython build: --cpython-from names another source, --no-cpython leaves "
                          "them out)") from error
    outcome.cpython_fetched, outcome.cpython_kept = cpython.fetched, cpython.kept
    outcome.fetched += cpython.fetched
    outcome.kept += cpython.kept
    sums = _load(root, "plugins/filter/ollama_models.py", "llmfleet_bundle_ollama_models").sha256sums
    _releases(out, plan_.ollama_versions, releases_from, [f"ollama-linux-{arch}.tar.zst" for arch in arches],
              outcome, sums)
    if plan_.models:
        if not models_from:
            raise BundleError(f"the inventory names Ollama models ({', '.join(plan_.models)}): give --models-from, "
                              "a models directory or a mirror of one that has them (e.g. the team server's store)")
        mirror = _load(root, "plugins/modules/ollama_mirror.py", "llmfleet_bundle_ollama_mirror")
        source = models_from if "://" in models_from else Path(models_from).resolve().as_uri()
        params = {"mirror": source, "models_dir": str(out / "ollama-models"), "models": plan_.models, "mode": "copy",
                  "owner": None, "group": None, "host": "the bundle", "timeout": 600, "retries": 2, "delay": 5}
        try:
            result = mirror.run(params, check_mode=False)
        except (mirror.MirrorError, OSError) as error:
            raise BundleError(f"copying models from {models_from} failed: {error}") from error
        if result["missing"]:
            raise BundleError(f"{', '.join(result['missing'])} not in {models_from}")
        outcome.models_copied = list(result["copied"])
        outcome.models_kept = [m for m in plan_.models if m not in result["copied"]]
        outcome.fetched += [f"ollama-models/blobs/{d.replace(':', '-')}" for d in result["blobs"]]
    _vsix(out, plan_.vsix, outcome, vsix_from)
    try:
        hf = bundle_hf.build(out, plan_.hf_models, hf_from, sha256_file, log)
    except (bundle_hf.HFBundleError, OSError) as error:
        raise BundleError(f"Hugging Face models: {error}") from error
    outcome.hf_copied, outcome.hf_kept = hf.copied, hf.kept_models
    outcome.fetched += hf.fetched
    outcome.kept += hf.kept
    apt_files: dict[str, list[str]] = {}
    if plan_.apt:
        done_apt = bundle_apt.build(out, plan_.apt, apt_targets, sha256_file, log=log)
        outcome.apt_fetched, outcome.apt_kept, apt_files = done_apt.fetched, done_apt.kept, done_apt.files
        outcome.fetched += done_apt.fetched
        outcome.kept += done_apt.kept
    write_manifest(out, plan_, python_locks, cpython.records, apt_files)
    return outcome


def _mirrors(hostvars: Mapping[str, Mapping[str, Any]]) -> set[str]:
    """The hosts (scheme://host[:port]/) of the mirrors the inventory names."""
    found = set()
    for variables in hostvars.values():
        for name in ("ollama_download_base_url", "ollama_models_mirror"):
            parts = urllib.parse.urlsplit(str(variables.get(name) or ""))
            if parts.scheme and parts.netloc:
                found.add(f"{parts.scheme}://{parts.netloc}/")
    return found


def make(
    root: Path,
    *,
    inventory: str,
    out: str,
    vault_password_file: str | None = None,
    releases_from: str = "",
    models_from: str = "",
    vsix_from: str = "",
    models: Iterable[str] = (),
    arches: Iterable[str] = ("amd64",),
    python: bool = True,
    python_versions: Iterable[str] = (),
    python_platforms: Iterable[str] = (),
    cpython: bool = True,
    cpython_platforms: Iterable[str] = (),
    cpython_from: str = "",
    hf_from: str = "",
    apt: bool = True,
    apt_suites: Iterable[str] = (),
    apt_sources: str = "",
    log: Callable[[str], None] = print,
) -> Outcome:
    """`invoke bundle`: read the inventory, fill the directory, say what was fetched and what was kept."""
    versions = list(python_versions) or [bundle_python.controller_version()]
    cpython_platforms = bundle_cpython.check_platforms(cpython_platforms)
    if not apt and (apt_suites or apt_sources):
        raise BundleError("--apt-suite and --apt-sources say which distribution packages go in, and --no-apt leaves "
                          "them out: give one or the other")
    apt_suites = bundle_apt.check_suites(apt_suites, apt_sources) if apt else []
    arches = bundle_apt.check_arches(arches)
    if cpython_from and not cpython:
        raise BundleError("--cpython-from names where CPython builds come from, and --no-cpython leaves them out: "
                          "give one of the two")
    if cpython_from and "://" not in cpython_from and not Path(cpython_from).is_dir():
        raise BundleError(f"--cpython-from {cpython_from} is neither a URL nor a directory")
    hostvars = read_inventory(inventory, vault_password_file)
    if not hostvars:
        raise BundleError(f"{inventory} has no hosts")
    wanted = plan(hostvars, root, models, python=python, cpython=cpython, apt=apt)
    if not releases_from:
        bases = {str(v["ollama_download_base_url"]) for v in hostvars.values() if v.get("ollama_download_base_url")}
        releases_from = DEFAULT_RELEASES if not bases else ""
        if not releases_from:
            raise BundleError("the inventory's ollama_download_base_url is the mirror this bundle is for: "
                              "give --releases-from, where the releases come from (e.g. GitHub's release downloads)")
    if wanted.vsix and not vsix_from and any(u.startswith(m) for u in wanted.vsix for m in _mirrors(hostvars)):
        raise BundleError("the inventory's continue_vscode_extension_vsix is on the mirror this bundle is for: "
                          "give --vsix-from, the VSIX file or its download URL")
    outcome = build(root, Path(out), wanted, releases_from=releases_from, models_from=models_from,
                    vsix_from=vsix_from, arches=arches, python_versions=versions, python_platforms=python_platforms,
                    cpython_platforms=cpython_platforms, cpython_from=cpython_from, hf_from=hf_from,
                    apt_suites=apt_suites, apt_sources=apt_sources, log=log)
    log(f"bundle {out}: Ollama {', '.join(wanted.ollama_versions)}; models {', '.join(wanted.models) or 'none'}; "
        f"VSIX {', '.join(wanted.vsix) or 'none'}; Python "
        + (f"{', '.join(c.name for c in wanted.python)} for {', '.join(versions)}"
           + (f" on {', '.join(python_platforms)}" if python_platforms else "") if wanted.python else "none"))
    log(f"fetched {len(outcome.fetched)} files ({len(outcome.models_copied)} models copied), "
        f"kept {len(outcome.kept)} files and {len(outcome.models_kept)} models already there; "
        f"manifest: {Path(out) / 'bundle.json'}, {Path(out) / 'SHA256SUMS'}")
    if wanted.hf_models:
        log(f"Hugging Face models {', '.join(wanted.hf_models)}: copied {len(outcome.hf_copied)}, kept "
            f"{len(outcome.hf_kept)} already there; mirror: {Path(out) / bundle_hf.FOLDER} "
            f"(vllm_models_mirror: <mirror>/{bundle_hf.FOLDER})")
    if wanted.python:
        log(f"Python: fetched {len(outcome.python_fetched)} wheels, kept {len(outcome.python_kept)} already there; "
            f"index: {Path(out) / 'python/simple'}")
    if wanted.apt:
        log(f"distribution packages {', '.join(wanted.apt)} for {', '.join(apt_suites)} ({', '.join(arches)}) with "
            f"their dependencies: fetched {len(outcome.apt_fetched)}, kept {len(outcome.apt_kept)} already there; "
            f"repository: {Path(out) / bundle_apt.FOLDER} (llm_host_apt_repository: deb [trusted=yes] <mirror>/"
            f"{bundle_apt.FOLDER} {apt_suites[0]} {bundle_apt.COMPONENT})")
    if wanted.cpython:
        log(f"CPython {', '.join(wanted.cpython)} for {', '.join(cpython_platforms)}: fetched "
            f"{len(outcome.cpython_fetched)} builds, kept {len(outcome.cpython_kept)} already there; mirror: "
            f"{Path(out) / bundle_cpython.FOLDER} (llm_host_python_install_mirror: <mirror>/{bundle_cpython.FOLDER})")
    return outcome
