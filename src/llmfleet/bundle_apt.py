"""The distribution part of `invoke bundle`: what llmfleet's roles install with apt, as an apt repository.

Layout under the bundle, for `llm_host_apt_repository: deb [trusted=yes] <mirror>/apt <suite> main`:

    apt/dists/<suite>/Release                            the suite's index files, with their sha256
    apt/dists/<suite>/main/binary-<arch>/Packages(.gz)   each package's control stanza, Filename pool/...
    apt/pool/<file>.deb                                  the packages of every suite and architecture

Which packages: for each host, the package lists of its roles (roles/<role>/vars/main.yml, the
Debian entry of each name in ROLE_PACKAGES; vLLM's only where vLLM serves) and its
`llm_host_extra_packages`; llm_proxy's and llm_firewall's wherever the host's kind has the role, as
a host exposed later needs them; llm_mirror's on the team's mirror, which reads them from this
repository as files. The bundle cannot know which release each host runs, so every suite
(`--apt-suite`, default the controller's own) and architecture (`--arch`) gets all of them.

How: apt on the controller, with a state of its own (lists, an empty dpkg status, no pinning) under
~/.cache/llmfleet/bundle-apt, reading the controller's own apt sources of its distribution (the
suites named after its codename, e.g. bookworm, bookworm-updates, bookworm-security, renamed for
another `--apt-suite`), or `--apt-sources FILE`. Each source keeps its Signed-By, so apt checks
the distribution's signatures on the controller, and each package is checked against the sha256 of
its signed index. With an empty status, apt resolves each package's whole closure, recommends
included as the roles install them, down to libc6 and the essential set: a host of that suite at any
point release finds every dependency in the bundle, whatever it already has.

The repository's Release is not signed (hence `[trusted=yes]`): the bundle's SHA256SUMS covers every
file; check it where the bundle comes in (llm_mirror does, on the mirror), and serve the mirror over
HTTPS where the team network is not trusted.

A second run keeps every package whose sha256 is its index's and fetches only what is missing or
damaged; a package no index names any more leaves the pool.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from llmfleet import bundle_hosts

FOLDER = "apt"
COMPONENT = "main"
# apt downloads here (inside the bundle, so a package moves to the pool without a copy); removed at the end.
STAGING = ".apt-staging"
FAMILY = "Debian"
# Each role's system packages, by its vars' name (the lists are per OS family; the Debian one is read).
ROLE_PACKAGES: dict[str, str] = {
    "llm_host": "_llm_host_packages",
    "llm_firewall": "_llm_firewall_packages",
    "llm_proxy": "_llm_proxy_packages",
    "vllm": "_vllm_system_packages",
    "llm_mirror": "_llm_mirror_packages",
}
_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
_SUITE = re.compile(r"^[a-z][a-z0-9.-]*$")
_ARCH = re.compile(r"^[a-z0-9]+$")
_SOURCE_FILES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))


class AptBundleError(bundle_hosts.BundleError):
    """Distribution packages that cannot be bundled, with the reason."""


@dataclass
class AptOutcome:
    """What a run fetched and kept (relative paths in the bundle)."""

    fetched: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    files: dict[str, list[str]] = field(default_factory=dict)  # "<suite>/<arch>" -> its pool files


def packages(hostvars: Mapping[str, Mapping[str, Any]], root: Path) -> dict[str, list[str]]:
    """Each package the inventory's hosts install with apt, with the hosts that need it."""
    wanted: dict[str, list[str]] = {}
    for host in sorted(hostvars):
        variables = hostvars[host]
        roles = bundle_hosts.host_roles(root, variables)
        if "llm_host" not in roles or str(variables.get("llm_host_type", "auto")).startswith("macos"):
            continue
        names: list[Any] = []
        for role, name in ROLE_PACKAGES.items():
            if role in roles and (role != "vllm" or bundle_hosts.vllm_serves(root, variables)):
                names += (bundle_hosts.role_vars(root, role).get(name) or {}).get(FAMILY, [])
        extra = variables.get("llm_host_extra_packages") or []
        if isinstance(extra, str):
            raise AptBundleError(f"{host}: llm_host_extra_packages is a string ({extra!r}), not a list of packages")
        names += list(extra)
        for package in names:
            if not isinstance(package, str) or "{{" in package:
                continue
            if not _NAME.match(package):
                raise AptBundleError(f"{host}: {package!r} (llm_host_extra_packages) is not a Debian package name")
            hosts = wanted.setdefault(package, [])
            if host not in hosts:
                hosts.append(host)
    return dict(sorted(wanted.items()))


def controller_codename(os_release: Path = Path("/etc/os-release")) -> str:
    """The controller's release codename (bookworm), or '' when it is not Debian-like."""
    try:
        fields = dict(line.split("=", 1) for line in os_release.read_text().splitlines() if "=" in line)
    except OSError:
        return ""
    family = {fields.get("ID", "").strip('"')} | set(fields.get("ID_LIKE", "").strip('"').split())
    return fields.get("VERSION_CODENAME", "").strip('"') if family & {"debian", "ubuntu"} else ""


def _stanzas(text: str) -> list[list[tuple[str, str]]]:
    """deb822 paragraphs as (field, value) pairs, each value with its continuation lines."""
    result: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if not line.strip():
            if current:
                result.append(current)
            current = []
        elif line[0] in " \t" and current:
            name, value = current[-1]
            current[-1] = (name, value + "\n" + line)
        elif ":" in line:
            name, value = line.split(":", 1)
            current.append((name.strip(), value.strip()))
    if current:
        result.append(current)
    return result


def _one_line(text: str) -> list[list[tuple[str, str]]]:
    """One-line `deb [options] uri suite components` entries as deb822 paragraphs."""
    result = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        options: list[tuple[str, str]] = []
        match = re.match(r"^deb\s+\[([^\]]*)\]\s+(.*)$", line)
        rest = line[4:].strip()
        if match:
            for option in match.group(1).split():
                name, _, value = option.partition("=")
                options.append((name, value.replace(",", " ")))
            rest = match.group(2)
        words = rest.split()
        if len(words) < 2:
            continue
        result.append([("Types", "deb"), ("URIs", words[0]), ("Suites", words[1]),
                       ("Components", " ".join(words[2:]))] + options)
    return result


def read_sources(files: Iterable[Path] = _SOURCE_FILES) -> list[list[tuple[str, str]]]:
    """Every enabled binary source of the controller's apt, as deb822 paragraphs."""
    found: list[list[tuple[str, str]]] = []
    for place in files:
        for path in sorted(place.iterdir()) if place.is_dir() else [place]:
            if not path.is_file():
                continue
            if path.suffix == ".sources":
                found += _stanzas(path.read_text())
            elif path.suffix == ".list" or path == Path("/etc/apt/sources.list"):
                found += _one_line(path.read_text())
    return [s for s in found if "deb" in dict(s).get("Types", "").split()
            and dict(s).get("Enabled", "yes").lower() not in ("no", "false", "0")]


def sources_for(suite: str, codename: str, available: list[list[tuple[str, str]]]) -> str:
    """The controller's sources of its distribution (suites `codename` and `codename-*`), renamed for
    `suite`, as a deb822 file; AptBundleError when there are none."""
    paragraphs = []
    for source in available:
        suites = [s for s in dict(source).get("Suites", "").split() if s == codename or s.startswith(codename + "-")]
        if not suites:
            continue
        renamed = " ".join(suite + s[len(codename):] for s in suites)
        paragraphs.append("\n".join(f"{name}: {renamed if name == 'Suites' else value}"
                                    for name, value in source if name.lower() != "architectures"))
    if not paragraphs:
        raise AptBundleError(f"the controller's apt sources name no suite of {codename} (its release): give "
                             "--apt-sources FILE (apt sources of the hosts' distribution) and --apt-suite, or --no-apt")
    return "\n\n".join(paragraphs) + "\n"


def check_suites(suites: Iterable[str], sources_file: str = "") -> list[str]:
    """The suites to bundle (default the controller's codename), or AptBundleError."""
    chosen = list(dict.fromkeys(suites))
    for suite in chosen:
        if not _SUITE.match(suite):
            raise AptBundleError(f"--apt-suite {suite!r} is not a release codename (e.g. bookworm, trixie, noble)")
    if sources_file:
        if len(chosen) != 1:
            raise AptBundleError("--apt-sources names one distribution release: give exactly one --apt-suite with it "
                                 "(the suite the hosts' llm_host_apt_repository line names)")
        if not Path(sources_file).is_file():
            raise AptBundleError(f"--apt-sources {sources_file} is not a file")
        return chosen
    if not chosen:
        codename = controller_codename()
        if not codename:
            raise AptBundleError("this controller is not Debian or Ubuntu, so it has no apt sources of the hosts' "
                                 "distribution: give --apt-sources FILE and --apt-suite, or --no-apt")
        chosen = [codename]
    return chosen


def check_arches(arches: Iterable[str]) -> list[str]:
    chosen = list(dict.fromkeys(arches)) or ["amd64"]
    for arch in chosen:
        if not _ARCH.match(arch):
            raise AptBundleError(f"--arch {arch!r} is not a Debian architecture (amd64, arm64)")
    return chosen


class _Apt:
    """apt-get and apt-cache with a state of their own, for one suite and architecture."""

    def __init__(self, state: Path, sources: str, arch: str, archives: Path) -> None:
        self.state = state
        for folder in ("lists/partial", "cache", "etc/sources.list.d", "etc/preferences.d", "state"):
            (state / folder).mkdir(parents=True, exist_ok=True)
        (state / "etc/sources.list").write_text("")
        (state / "etc/preferences").write_text("")
        (state / "status").write_text("")
        path = state / "etc/sources.list.d/bundle.sources"
        if not path.is_file() or path.read_text() != sources:
            path.write_text(sources)
        self.options = [
            f"Dir::Etc::SourceList={state}/etc/sources.list",
            f"Dir::Etc::SourceParts={state}/etc/sources.list.d",
            f"Dir::Etc::Preferences={state}/etc/preferences",
            f"Dir::Etc::PreferencesParts={state}/etc/preferences.d",
            f"Dir::State={state}/state",
            f"Dir::State::Lists={state}/lists",
            f"Dir::State::status={state}/status",
            f"Dir::Cache={state}/cache",
            f"Dir::Cache::archives={archives}/",
            f"APT::Architecture={arch}",
            f"APT::Architectures={arch}",
            "APT::Install-Recommends=true",
            "APT::Install-Suggests=false",
            "Acquire::Languages=none",
            "Debug::NoLocking=true",
        ]

    def run(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [tool, "-q"] + [item for option in self.options for item in ("-o", option)] + list(args)
        return subprocess.run(argv, capture_output=True, text=True, check=False, env={**os.environ, "LC_ALL": "C"})


_URI = re.compile(r"^'(?P<uri>[^']+)' (?P<name>[^ ]+\.deb) ")


def _control(text: str) -> dict[tuple[str, str, str], str]:
    """apt-cache show's stanzas by (package, version, architecture)."""
    found: dict[tuple[str, str, str], str] = {}
    for block in re.split(r"\n\s*\n", text.strip()):
        fields = dict(re.findall(r"^([A-Za-z0-9-]+): ?(.*)$", block, re.M))
        key = (fields.get("Package", ""), fields.get("Version", ""), fields.get("Architecture", ""))
        if all(key):
            found.setdefault(key, block.strip())
    return found


class _Package(NamedTuple):
    """One package of a closure: apt's file name and URI for it, its sha256 from the signed index, its
    file name in the pool (the distribution's, without the epoch) and its stanza as the bundle's
    Packages gives it (Filename: pool/<pool>)."""

    name: str
    uri: str
    sha256: str
    pool: str
    stanza: str


def resolve(apt: _Apt, wanted: Mapping[str, list[str]], where: str) -> list[_Package]:
    """Every package of the closure of `wanted`."""
    done = apt.run("apt-get", "update")
    if done.returncode != 0 or "\nE: " in "\n" + done.stdout + done.stderr:
        raise AptBundleError(f"apt-get update for {where} failed:\n{bundle_hosts.tail(done.stdout + done.stderr, 12)}")
    with_empty = apt.state / "empty-archives"
    shutil.rmtree(with_empty, ignore_errors=True)
    (with_empty / "partial").mkdir(parents=True)
    # apt prints only what its archives directory lacks: an empty one, for the whole closure.
    done = apt.run("apt-get", "-o", f"Dir::Cache::archives={with_empty}/", "install", "-y", "--print-uris", *wanted)
    if done.returncode != 0:
        unknown = re.findall(r"Unable to locate package (\S+)", done.stderr)
        if unknown:
            raise AptBundleError(f"{where} has no package " + "; ".join(
                f"{name} (wanted by {', '.join(wanted.get(name, ['?']))})" for name in unknown)
                + ": fix the name (llm_host_extra_packages), or give a macOS host llm_host_type: macos_arm64")
        raise AptBundleError(f"apt cannot resolve the packages for {where}:\n{bundle_hosts.tail(done.stdout + done.stderr, 12)}")
    matches = [m for m in map(_URI.match, done.stdout.splitlines()) if m]
    names = [m["name"] for m in matches]
    if not names:
        raise AptBundleError(f"apt listed no package to fetch for {where}:\n{bundle_hosts.tail(done.stdout + done.stderr, 12)}")
    keys = []
    for name in names:
        package, version, arch = urllib.parse.unquote(name[:-4]).split("_")
        keys.append((package, version, arch))
    shown = apt.run("apt-cache", "show", *(f"{p}:{a}={v}" if a != "all" else f"{p}={v}" for p, v, a in keys))
    stanzas = _control(shown.stdout)
    result = []
    for match, key in zip(matches, keys):
        name = match["name"]
        stanza = stanzas.get(key)
        digest = re.search(r"^SHA256: ([0-9a-f]{64})$", stanza or "", re.M)
        if stanza is None or digest is None:
            raise AptBundleError(f"apt-cache has no control data with a sha256 for {'_'.join(key)} ({where}):\n"
                                 f"{bundle_hosts.tail(shown.stderr, 12)}")
        filename = re.search(r"^Filename: (.+)$", stanza, re.M)
        if filename is None:
            raise AptBundleError(f"no Filename in {stanza.splitlines()[0]} ({where})")
        pool = Path(filename.group(1).strip()).name
        result.append(_Package(name, match["uri"], digest.group(1), pool,
                               stanza[:filename.start()] + f"Filename: pool/{pool}" + stanza[filename.end():]))
    return result


def _write_if_changed(path: Path, data: bytes) -> bool:
    if path.is_file() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)
    return True


def write_indexes(apt_dir: Path, suite: str, entries: Mapping[str, list[str]]) -> None:
    """dists/<suite>/main/binary-<arch>/Packages(.gz) from each architecture's stanzas, and the
    suite's Release (rewritten only when an index changed, so an unchanged bundle stays unchanged)."""
    dists = apt_dir / "dists" / suite
    changed = not (dists / "Release").is_file()
    for arch, stanzas in entries.items():
        text = "\n\n".join(sorted(stanzas)) + "\n"
        folder = dists / COMPONENT / f"binary-{arch}"
        changed |= _write_if_changed(folder / "Packages", text.encode())
        changed |= _write_if_changed(folder / "Packages.gz", gzip.compress(text.encode(), mtime=0))
    for stale in (dists / COMPONENT).glob("binary-*") if (dists / COMPONENT).is_dir() else []:
        if stale.name.removeprefix("binary-") not in entries:
            shutil.rmtree(stale)
            changed = True
    if not changed:
        return
    lines = []
    for path in sorted((dists / COMPONENT).rglob("Packages*")):
        data = path.read_bytes()
        lines.append(f" {hashlib.sha256(data).hexdigest()} {len(data):>9} {path.relative_to(dists).as_posix()}")
    release = (f"Origin: llmfleet\nLabel: llmfleet bundle\nSuite: {suite}\nCodename: {suite}\n"
               f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S UTC', time.gmtime())}\n"
               f"Architectures: {' '.join(sorted(entries))}\nComponents: {COMPONENT}\n"
               "Description: what llmfleet's roles install, from invoke bundle\nSHA256:\n" + "\n".join(lines) + "\n")
    _write_if_changed(dists / "Release", release.encode())


def state_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "llmfleet" / "bundle-apt"


@dataclass
class _Target:
    suite: str
    arch: str
    apt: _Apt
    files: list[_Package]


def _sources(suite: str, sources_file: str, codename: str, available: list[list[tuple[str, str]]] | None) -> str:
    if sources_file:
        text = Path(sources_file).read_text()
        if "Types:" in text:
            return text
        return "\n\n".join("\n".join(f"{k}: {v}" for k, v in s) for s in _one_line(text)) + "\n"
    return sources_for(suite, codename or controller_codename(), read_sources() if available is None else available)


def resolve_all(out: Path, wanted: Mapping[str, list[str]], suites: Iterable[str], arches: Iterable[str], *,
                sources_file: str = "", state: Path | None = None,
                available: list[list[tuple[str, str]]] | None = None, codename: str = "") -> list[_Target]:
    """Every suite and architecture's closure of `wanted`, resolved (package lists refreshed) before the
    bundle fetches anything: a package that does not resolve stops the run with the bundle as it is."""
    if shutil.which("apt-get") is None:
        raise AptBundleError("the distribution packages need apt-get on the controller (Debian or Ubuntu): "
                             "bundle from such a machine, or give --no-apt")
    state = state or state_root()
    targets: list[_Target] = []
    for suite in suites:
        sources = _sources(suite, sources_file, codename, available)
        key = hashlib.sha256(sources.encode()).hexdigest()[:12]
        for arch in arches:
            apt = _Apt(state / f"{suite}-{arch}-{key}", sources, arch, out / FOLDER / STAGING)
            targets.append(_Target(suite, arch, apt, resolve(apt, wanted, f"{suite} ({arch})")))
    return targets


def build(out: Path, wanted: Mapping[str, list[str]], targets: list[_Target], sha256: Callable[[Path], str],
          log: Callable[[str], None] = print) -> AptOutcome:
    """Fetch what the pool lacks of each resolved target, write the indexes, drop what none names."""
    apt_dir = out / FOLDER
    pool = apt_dir / "pool"
    staging = apt_dir / STAGING
    outcome = AptOutcome()
    entries: dict[str, dict[str, list[str]]] = {}
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "partial").mkdir(parents=True)
    pool.mkdir(parents=True, exist_ok=True)
    try:
        for target in targets:
            missing = set()
            for package in target.files:
                kept = pool / package.pool
                if kept.is_file() and sha256(kept) == package.sha256:
                    if not (staging / package.name).exists():  # apt finds it there and fetches it not
                        os.link(kept, staging / package.name)
                else:
                    missing.add(package.name)
            where = f"{target.suite} ({target.arch})"
            if missing:
                log(f"apt {where}: fetching {len(missing)} of {len(target.files)} packages")
                done = target.apt.run("apt-get", "install", "-y", "--download-only", *wanted)
                if done.returncode != 0:
                    raise AptBundleError(f"apt could not fetch the packages for {where}:\n"
                                         f"{bundle_hosts.tail(done.stdout + done.stderr, 12)}")
            for package in target.files:
                relative = f"{FOLDER}/pool/{package.pool}"
                if package.name in missing:
                    fetched = staging / package.name
                    if package.uri.startswith("file:") and not fetched.is_file():  # apt reads a file: source in place
                        shutil.copyfile(urllib.parse.unquote(urllib.parse.urlsplit(package.uri).path), fetched)
                    if not fetched.is_file() or sha256(fetched) != package.sha256:
                        raise AptBundleError(f"{package.name} from apt does not match the sha256 of its signed index "
                                             f"({where})")
                    (out / relative).unlink(missing_ok=True)
                    os.link(fetched, out / relative)
                    if relative not in outcome.fetched:
                        outcome.fetched.append(relative)
                elif relative not in outcome.kept and relative not in outcome.fetched:
                    outcome.kept.append(relative)
                outcome.files.setdefault(f"{target.suite}/{target.arch}", []).append(relative)
            entries.setdefault(target.suite, {})[target.arch] = [package.stanza for package in target.files]
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for suite, by_arch in entries.items():
        write_indexes(apt_dir, suite, by_arch)
    named = {Path(p).name for files in outcome.files.values() for p in files}
    for stale in sorted(pool.glob("*.deb")):
        if stale.name not in named:
            stale.unlink()
            outcome.removed.append(f"{FOLDER}/pool/{stale.name}")
    for stale in (apt_dir / "dists").iterdir():
        if stale.name not in entries:
            shutil.rmtree(stale)
    for other in apt_dir.iterdir():  # the folder is the bundle's: nothing else is served from it
        if other.name not in ("dists", "pool"):
            shutil.rmtree(other) if other.is_dir() else other.unlink()
    return outcome
