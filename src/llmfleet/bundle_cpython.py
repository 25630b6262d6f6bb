"""The CPython part of `invoke bundle`: the uv-managed CPython builds llm_host installs where a host's
system Python does not fit its Open WebUI or vLLM (Debian 13's 3.13, Ubuntu 22.04's 3.10), laid out
as the mirror `llm_host_python_install_mirror` (uv's UV_PYTHON_INSTALL_MIRROR) names:

    python-builds/<build>/cpython-<version>+<build>-<triple>-install_only_stripped.tar.gz

`llm_host_python_install_mirror: http://<mirror>/python-builds` then works as it is. uv asks for
`<mirror>/<build>/cpython-<version>%2B<build>-...`: the `+` is percent-encoded in the URL, and a static
web server (and uv itself for a `file://` mirror) decodes it to the file's `+`. The path of each build
is read from uv, not written here: uv lists the build's URL with the bundle's directory as its mirror.

When they go in: by default, for every `llm_host_python_version` (the host's, else the role's default)
of every host whose kind runs Open WebUI or vLLM and whose `open_webui_python` / `vllm_python` does not
name an interpreter. Whether such a host needs it is decided on the host, from its system Python's
version, which the controller does not know; an air-gapped team that found out at converge time
would have to carry the bundle in again. `--no-cpython` leaves them out.

Which builds: for each version and each `--cpython-platform` (the two Linux targets llm_host installs
a managed CPython on: x86_64-unknown-linux-gnu, the default, and aarch64-unknown-linux-gnu), the one
the pinned uv names: `uv python list --only-downloads --all-platforms --output-format json
cpython-<version>-linux-<arch>-gnu` gives its download URL (uv's own source; no host is written here).
The build names come from uv's own table, which changes between uv releases, so the hosts'
`llm_host_uv_version` must be the controller's uv; a version that uv does not know is refused. Both are
checked before anything is written.

From where: the URL uv gives, or `--cpython-from BASE` (a URL or a local directory), which replaces
everything before `/<build>/<file>` in it: a team's own mirror of python-build-standalone's releases,
another bundle's python-builds directory, or the tests' directory of a stand-in build.

Checked by uv: each fetched build is staged in the bundle's directory and installed from there with
`uv python install --mirror <staging> --install-dir <temporary>` (`--no-config`), which checks the
download against the sha256 uv carries for that build and fails on a mismatch; the install is then
removed, and only a build uv accepted is moved into python-builds/. A build uv refuses is not kept and
the bundle stops, naming it and where it came from. The accepted build's sha256 is recorded in
bundle.json ("cpython"): a second run keeps a build whose file still has that sha256 without
installing it again; a build there without a record (copied in by hand) is checked by uv where it is.

Not tested here: a real download and a real successful verification. The machine the tests run on
reaches neither GitHub nor uv's download host, and holds no real build; the tests give uv a stand-in
archive under a real build's name, which uv must refuse (tests/test_bundle.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmfleet import bundle_hosts, cli

FOLDER = "python-builds"
# A fetched build waits here, inside the bundle, until uv has checked it (bundle.json lists none of it).
STAGING = ".cpython-staging-"
# The targets llm_host installs a managed CPython on (llm_host_python.py's _LINUX_PLATFORMS), as
# python-build-standalone names them, with the platform part of uv's key.
PLATFORMS: dict[str, str] = {"x86_64-unknown-linux-gnu": "linux-x86_64-gnu",
                             "aarch64-unknown-linux-gnu": "linux-aarch64-gnu"}
DEFAULT_PLATFORMS = ("x86_64-unknown-linux-gnu",)
# The roles whose virtualenvs may be built on the managed CPython, with the variable naming another.
_ROLES = {"open_webui": "open_webui_python", "vllm": "vllm_python"}
_RELEASE = re.compile(r"^3\.\d{1,2}\.\d{1,3}$")


class CPythonBundleError(bundle_hosts.BundleError):
    """A CPython part of the bundle that cannot be made, with the reason."""


@dataclass(frozen=True)
class Build:
    """One CPython build as the pinned uv names it."""

    key: str       # uv's name: cpython-3.12.16-linux-x86_64-gnu
    version: str
    platform: str  # x86_64-unknown-linux-gnu
    url: str       # where uv downloads it from
    tail: str      # <build>/<file> as uv writes it after its mirror (the file name percent-encoded)
    relative: str  # the file in the bundle: python-builds/<build>/<file>, the name decoded
    hosts: tuple[str, ...] = ()

    def source(self, base: str = "") -> str:
        """Where the bundle fetches it: uv's URL, or `base` (a URL or a directory) in front of the tail."""
        if not base:
            return self.url
        origin = base if "://" in base else Path(base).resolve().as_uri()
        return f"{origin.rstrip('/')}/{self.tail}"


def check_platforms(platforms: Iterable[str]) -> list[str]:
    """The platforms (default x86_64-unknown-linux-gnu), or CPythonBundleError naming one it does not know."""
    checked: list[str] = []
    for platform in platforms:
        if platform not in PLATFORMS:
            raise CPythonBundleError(f"--cpython-platform {platform!r} is not one llm_host installs a CPython on: "
                                     f"{' or '.join(PLATFORMS)}")
        if platform not in checked:
            checked.append(platform)
    return checked or list(DEFAULT_PLATFORMS)


def uv_version() -> str:
    """The controller's uv version (the one whose table names the builds)."""
    done = subprocess.run([cli.venv_tool("uv"), "--version"], capture_output=True, text=True, check=False)
    match = re.match(r"^uv (\S+)", done.stdout)
    if done.returncode != 0 or not match:
        raise CPythonBundleError(f"uv --version did not answer: {(done.stderr or done.stdout).strip()}")
    return match.group(1)


def versions(hostvars: Mapping[str, Mapping[str, Any]], root: Path, uv: str) -> dict[str, list[str]]:
    """The llm_host_python_version of every host that may build a virtualenv on it, with those hosts.

    A host's kinds are its `group_names` among `_llm_host_kind_roles`'s keys (read_inventory adds them).
    A version that is not X.Y.Z or still templated, or a host whose uv is not `uv`, is refused.
    """
    found: dict[str, list[str]] = {}
    for host in sorted(hostvars):
        variables = hostvars[host]
        roles = bundle_hosts.host_roles(root, variables)
        if not any(role in roles and not variables.get(name) for role, name in _ROLES.items()):
            continue
        version = str(bundle_hosts.setting(root, variables, "llm_host", "llm_host_python_version"))
        if not _RELEASE.match(version):
            raise CPythonBundleError(f"{host}: llm_host_python_version is {version!r}; the bundle needs a CPython "
                                     "release X.Y.Z (the inventory is read without Ansible's templating), or leave "
                                     "CPython out (--no-cpython)")
        host_uv = str(bundle_hosts.setting(root, variables, "llm_host", "llm_host_uv_version"))
        if host_uv != uv:
            raise CPythonBundleError(f"{host}: llm_host_uv_version is {host_uv}, this controller's uv is {uv}; the "
                                     "CPython builds are named from uv's own table, which differs between uv "
                                     "releases: bundle with the hosts' uv, or leave CPython out (--no-cpython)")
        found.setdefault(version, []).append(host)
    return found


def _environment(**extra: str) -> dict[str, str]:
    """uv's environment without the settings that would change which build it names or where from."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_PYTHON", "UV_INSTALL_DIR", "UV_OFFLINE"))}
    env.update(extra)
    return env


def _listed(key: str, mirror: str = "") -> str:
    """The download URL uv gives for `key` (with `mirror` as its UV_PYTHON_INSTALL_MIRROR); '' when none."""
    env = _environment(**({"UV_PYTHON_INSTALL_MIRROR": mirror} if mirror else {}))
    done = subprocess.run([cli.venv_tool("uv"), "python", "list", "--no-config", "--only-downloads", "--all-platforms",
                           "--output-format", "json", key], capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise CPythonBundleError(f"uv python list {key} failed: {done.stderr.strip()[-600:]}")
    entries = [entry for entry in json.loads(done.stdout or "[]") if entry.get("key") == key and entry.get("url")]
    return str(entries[0]["url"]) if len(entries) == 1 else ""


def mirror_tail(key: str, mirror: str) -> str:
    """`<build>/<file>` as uv asks `mirror` for the build `key` (the part after the mirror's URL)."""
    url = _listed(key, mirror)
    if not url.startswith(mirror.rstrip("/") + "/"):
        raise CPythonBundleError(f"uv does not put {key} under the mirror {mirror} (it gives {url or 'nothing'})")
    return url[len(mirror.rstrip("/")) + 1:]


def lookup(wanted: Mapping[str, Iterable[str]], platforms: Iterable[str], uv: str) -> list[Build]:
    """Each version's build for each platform, as uv names it; CPythonBundleError for one uv does not have."""
    builds = []
    # Any URL does as the mirror here: uv only writes it in front of the build's tail.
    probe = "file:///llmfleet-bundle/python-builds"
    for version, hosts in wanted.items():
        for platform in check_platforms(platforms):
            key = f"cpython-{version}-{PLATFORMS[platform]}"
            url = _listed(key)
            if not url:
                raise CPythonBundleError(f"uv {uv} has no CPython {version} build for {platform} "
                                         f"(llm_host_python_version of {', '.join(hosts)}): set a release it has "
                                         "(roles/llm_host/vars/main.yml lists them), or leave CPython out (--no-cpython)")
            # uv puts the mirror in place of its download base; a uv that did otherwise stops here.
            tail = mirror_tail(key, probe)
            if not url.endswith("/" + tail) or tail.count("/") != 1:
                raise CPythonBundleError(f"uv's mirror URL for {key} ({probe}/{tail}) is not its download URL's "
                                         f"<build>/<file> ({url}); the bundle cannot lay it out")
            build, name = tail.split("/")
            relative = f"{FOLDER}/{build}/{urllib.parse.unquote(name)}"
            builds.append(Build(key, version, platform, url, tail, relative, tuple(hosts)))
    return builds


def verify(mirror: Path, key: str) -> None:
    """Have uv install `key` from the mirror directory `mirror` into a temporary directory (removed after):
    uv checks the archive against its own sha256 for the build. CPythonBundleError when it refuses."""
    with tempfile.TemporaryDirectory(prefix="llmfleet-bundle-cpython-") as scratch:
        env = _environment(UV_CACHE_DIR=str(Path(scratch) / "cache"), UV_HTTP_RETRIES="0")
        done = subprocess.run([cli.venv_tool("uv"), "python", "install", "--no-config", "--no-bin",
                               "--mirror", mirror.resolve().as_uri(), "--install-dir", str(Path(scratch) / "install"),
                               key], capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        said = " | ".join(line.strip() for line in done.stderr.strip().splitlines() if line.strip())
        raise CPythonBundleError(f"uv python install refused {key}: {said[-900:]}")


def _remove(out: Path, path: Path) -> None:
    """A build that is not kept, and the directories it leaves empty."""
    path.unlink()
    for folder in (path.parent, out / FOLDER):
        with contextlib.suppress(OSError):
            folder.rmdir()


@dataclass
class CPythonOutcome:
    fetched: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)


def build(out: Path, builds: Iterable[Build], recorded: Mapping[str, Mapping[str, Any]],
          sha256: Callable[[Path], str], fetch: Callable[[str, Path], None], base: str = "",
          log: Callable[[str], None] = print) -> CPythonOutcome:
    """Put each build into out/python-builds, keeping one whose sha256 is `recorded` (bundle.json's
    "cpython" of an earlier run); returns what was fetched and kept, and the records to write."""
    outcome = CPythonOutcome()
    for stale in out.glob(STAGING + "*"):  # left by a run that was killed
        shutil.rmtree(stale, ignore_errors=True)
    # What an earlier run checked and is still there unchanged stays recorded (a version the
    # inventory no longer names included: the bundle removes nothing).
    for relative, record in recorded.items():
        path = out / relative
        if relative.startswith(FOLDER + "/") and path.is_file() and sha256(path) == record.get("sha256"):
            outcome.records[relative] = dict(record)
    for wanted in builds:
        path = out / wanted.relative
        record = {"key": wanted.key, "version": wanted.version, "platform": wanted.platform, "url": wanted.url,
                  "hosts": list(wanted.hosts)}
        if path.is_file():
            if wanted.relative in outcome.records:
                outcome.records[wanted.relative].update(record)
                outcome.kept.append(wanted.relative)
                continue
            if wanted.relative not in recorded:
                try:
                    verify(out / FOLDER, wanted.key)
                except CPythonBundleError as error:
                    log(f"CPython: {wanted.relative} was there unchecked and uv refused it ({error}); fetching it")
                else:
                    outcome.records[wanted.relative] = {**record, "sha256": sha256(path)}
                    outcome.kept.append(wanted.relative)
                    continue
            _remove(out, path)
        source = wanted.source(base)
        log(f"CPython {wanted.version} {wanted.platform}: fetching {source}")
        # Staged inside the bundle (one file system, so the move is a rename), named as on the mirror,
        # so uv checks it from there; the bundle only ever holds builds uv accepted.
        with tempfile.TemporaryDirectory(dir=out, prefix=STAGING) as staging:
            staged = Path(staging) / wanted.relative[len(FOLDER) + 1:]
            fetch(source, staged)
            try:
                verify(Path(staging), wanted.key)
            except CPythonBundleError as error:
                raise CPythonBundleError(f"{source} is not CPython {wanted.version} for {wanted.platform} as uv "
                                         f"knows it, so it was not kept ({error}). Check --cpython-from, or leave "
                                         "CPython out (--no-cpython)") from error
            path.parent.mkdir(parents=True, exist_ok=True)
            digest = sha256(staged)
            os.replace(staged, path)
        outcome.records[wanted.relative] = {**record, "sha256": digest}
        outcome.fetched.append(wanted.relative)
    return outcome


def read_records(out: Path) -> dict[str, dict[str, Any]]:
    """bundle.json's "cpython" of an earlier run ({} when there is none)."""
    try:
        manifest = json.loads((out / "bundle.json").read_text())
    except (OSError, ValueError):
        return {}
    records = manifest.get("cpython") if isinstance(manifest, dict) else None
    return {k: v for k, v in records.items() if isinstance(v, dict)} if isinstance(records, dict) else {}

