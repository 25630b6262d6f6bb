"""The molecule testbed: host packages, podman settings and systemd Debian images built offline-friendly.

Images are built with debootstrap from the machine's own Debian mirror (container registries are often
unreachable) and imported into podman as ``localhost/llmfleet-testbed:<suite>``. A label records a hash
of every build input, so an unchanged image is reused in seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from llmfleet.pipstage import host_pip_settings, stage_host_pip

Log = Callable[[str], None]

# Bump when the build recipe below changes in a way the other inputs do not capture.
RECIPE_VERSION = "2"
IMAGE_REPOSITORY = "localhost/llmfleet-testbed"
INPUTS_LABEL = "llmfleet.inputs"
# netavark and aardvark-dns by name: with --no-install-recommends, podman's network stack could be the
# CNI plugins instead, whose DNS between containers stops on an --internal network (molecule/fleet's).
HOST_PACKAGES = ("podman", "runc", "debootstrap", "uidmap", "netavark", "aardvark-dns")
IMAGE_PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "python3", "python3-apt", "sudo", "curl",
    "ca-certificates", "iproute2", "openssh-server", "procps",
)
HOST_CA_DIR = Path("/usr/local/share/ca-certificates")
APT_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))

# Host keys made at image build time would be shared by every container: make them at first boot.
SSH_HOST_KEYS_DROPIN = """\
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
"""
# Scenarios mount the host's apt cache twice: as an overlay on apt's archive directory, so every
# container has its own lock (parallel apt runs fail on a shared one), and read-write at
# APT_SHARE_MOUNT, where this dpkg hook copies new packages back (rename: readers never see half a file).
APT_SHARE_MOUNT = "/var/cache/llmfleet/apt"
APT_SHARE_HOOK = f"""\
#!/bin/sh
shared={APT_SHARE_MOUNT}
[ -d "$shared" ] && [ -w "$shared" ] || exit 0
for deb in /var/cache/apt/archives/*.deb; do
    name=${{deb##*/}}
    [ -f "$deb" ] && [ ! -e "$shared/$name" ] || continue
    cp "$deb" "$shared/.$name.$$" && mv "$shared/.$name.$$" "$shared/$name"
done
exit 0
"""
APT_CONF = 'DPkg::Post-Invoke { "/usr/local/sbin/llmfleet-share-debs"; };\n'


def containers_conf(project_root: Path) -> Path:
    """The project's podman configuration (runc, rlimits that need no extra capability)."""
    return project_root / "testbed" / "containers.conf"


def cache_dirs(project_root: Path) -> dict[str, Path]:
    """Host directories that every scenario bind-mounts, so downloads survive containers and runs."""
    base = project_root / ".cache" / "testbed"
    return {"pip": base / "pip", "uv": base / "uv", "apt": base / "apt", "debootstrap": base / "debootstrap",
            "host-pip": base / "host-pip",
            # npm prefix for the Continue CLI the fleet scenario runs on a laptop (mounted read-only).
            "continue-cli": base / "continue-cli",
            # The fleet's team mirror (an `invoke bundle` and an apt repository), which its prepare.yml
            # writes and its mirror container serves (read-only).
            "fleet-mirror": base / "fleet-mirror"}


def test_env(project_root: Path) -> dict[str, str]:
    """Environment variables podman and molecule need for the testbed."""
    return {
        "CONTAINERS_CONF": str(containers_conf(project_root)),
        "LLMFLEET_TESTBED_CACHE": str(project_root / ".cache" / "testbed"),
    }


def ensure_host_packages(log: Log = print) -> None:
    """Install podman (with netavark and aardvark-dns), runc, debootstrap and uidmap with apt, only those
    that are missing."""
    missing = [name for name in HOST_PACKAGES if not _dpkg_installed(name)]
    if not missing:
        return
    if os.geteuid() != 0:
        raise RuntimeError(f"missing packages {', '.join(missing)}: run as root or `apt-get install {' '.join(missing)}`")
    with _stage(log, f"apt-get install {' '.join(missing)}"):
        _run(["apt-get", "update"])
        _run(["apt-get", "install", "-y", "--no-install-recommends", *missing],
             env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def _dpkg_installed(package: str) -> bool:
    proc = subprocess.run(["dpkg-query", "-W", "-f", "${db:Status-Abbrev}", package],
                          capture_output=True, text=True, check=False)
    return proc.returncode == 0 and proc.stdout.startswith("ii")


def host_release(os_release: Path = Path("/etc/os-release")) -> str | None:
    """The host's Debian codename (VERSION_CODENAME), or None."""
    try:
        text = os_release.read_text(encoding="utf-8")
    except OSError:
        return None
    match = re.search(r"^VERSION_CODENAME=\"?([^\"\n]*)\"?$", text, re.MULTILINE)
    return (match.group(1) or None) if match else None


def debian_mirror(*sources: Path, release: str | None = None) -> str:
    """The Debian mirror URL apt uses for the plain release (not -updates or -security).

    `sources` are sources.list files or directories of them (deb822 ``*.sources`` and one-line
    ``*.list``); default: /etc/apt/sources.list and /etc/apt/sources.list.d. `release` defaults to the
    host's codename; without one, any suite name without a dash counts as the plain release.
    """
    paths = sources or APT_SOURCES
    release = release or host_release()
    for uri, suites in _apt_entries(paths):
        if any(suite == release if release else "-" not in suite for suite in suites):
            return uri.rstrip("/")
    wanted = f"suite {release!r}" if release else "a suite without '-'"
    raise LookupError(f"no apt source with {wanted} in {', '.join(map(str, paths))}; "
                      "add the Debian mirror to apt's sources to build the testbed images")


def _apt_entries(paths: Iterable[Path]) -> Iterator[tuple[str, list[str]]]:
    """(URI, suites) of every enabled binary `deb` entry, in apt's reading order."""
    for path in paths:
        files = sorted(path.glob("*.sources")) + sorted(path.glob("*.list")) if path.is_dir() else [path]
        for file in files:
            if not file.is_file():
                continue
            text = file.read_text(encoding="utf-8", errors="replace")
            yield from _parse_deb822(text) if file.suffix == ".sources" else _parse_one_line(text)


def _parse_one_line(text: str) -> Iterator[tuple[str, list[str]]]:
    for line in text.splitlines():
        # `deb [arch=amd64 signed-by=...] URI SUITE COMPONENT...`; the options do not matter here.
        words = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0]).split()
        if len(words) >= 3 and words[0] == "deb" and not words[1].startswith("cdrom:"):
            yield words[1], [words[2]]


def _parse_deb822(text: str) -> Iterator[tuple[str, list[str]]]:
    for paragraph in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = ""
        for line in paragraph.splitlines():
            if line.startswith("#"):
                continue
            if line[:1].isspace() and key:
                fields[key] += " " + line.strip()
            elif ":" in line:
                key, value = line.split(":", 1)
                key = key.strip().lower()
                fields[key] = value.strip()
        uris = fields.get("uris", "").split()
        if ("deb" in fields.get("types", "").split() and uris and not uris[0].startswith("cdrom:")
                and fields.get("enabled", "yes").lower() not in ("no", "false")):
            yield uris[0], fields.get("suites", "").split()


def host_ca_certs(ca_dir: Path = HOST_CA_DIR) -> dict[str, bytes]:
    """The host's extra CA certificates by file name; containers need them for HTTPS here."""
    return {path.name: path.read_bytes() for path in sorted(ca_dir.glob("*.crt")) if path.is_file()}


def inputs_hash(suite: str, packages: Iterable[str], mirror: str, ca_certs: Mapping[str, bytes],
                recipe: str = RECIPE_VERSION) -> str:
    """A short digest of everything an image is built from."""
    inputs = {
        "recipe": recipe, "suite": suite, "mirror": mirror, "packages": sorted(packages),
        "ca_certs": {name: hashlib.sha256(data).hexdigest() for name, data in ca_certs.items()},
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def image_name(suite: str) -> str:
    """The podman image of one Debian suite."""
    return f"{IMAGE_REPOSITORY}:{suite}"


def _image_inputs(image: str, env: Mapping[str, str]) -> str | None:
    proc = subprocess.run(["podman", "image", "inspect", "--format", f'{{{{ index .Labels "{INPUTS_LABEL}" }}}}', image],
                          capture_output=True, text=True, env=env, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def build_image(project_root: Path, suite: str = "bookworm", force: bool = False, log: Log = print) -> str:
    """Build (or reuse) the systemd Debian image of `suite` and return its name."""
    image = image_name(suite)
    env = {**os.environ, **test_env(project_root)}
    mirror = debian_mirror()
    ca_certs = host_ca_certs()
    digest = inputs_hash(suite, IMAGE_PACKAGES, mirror, ca_certs)
    if not force and _image_inputs(image, env) == digest:
        log(f"{image} is up to date (inputs {digest})")
        return image
    if os.geteuid() != 0:
        raise RuntimeError("building testbed images needs root (debootstrap, chroot)")
    deb_cache = cache_dirs(project_root)["debootstrap"] / suite
    deb_cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"llmfleet-{suite}-", dir="/var/tmp") as tmp:
        rootfs = Path(tmp) / "rootfs"
        with _stage(log, f"debootstrap {suite} from {mirror}"):
            _run(["debootstrap", "--variant=minbase", f"--include={','.join(IMAGE_PACKAGES)}",
                  f"--cache-dir={deb_cache}", suite, str(rootfs), mirror])
        with _stage(log, "configure the root filesystem"):
            _configure_rootfs(rootfs, ca_certs)
        with _stage(log, f"podman import {image}"):
            with subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE) as tar:
                _run(["podman", "import", "--change", 'CMD ["/sbin/init"]',
                      "--change", f"LABEL {INPUTS_LABEL}={digest}", "-", image], stdin=tar.stdout, env=env)
            if tar.returncode != 0:
                raise RuntimeError(f"tar of {rootfs} failed with exit code {tar.returncode}")
    return image


def _configure_rootfs(rootfs: Path, ca_certs: Mapping[str, bytes]) -> None:
    """Make a debootstrapped tree trust the host's CAs and boot cleanly as a systemd container."""
    ca_dir = rootfs / HOST_CA_DIR.relative_to("/")
    ca_dir.mkdir(parents=True, exist_ok=True)
    for name, data in ca_certs.items():
        (ca_dir / name).write_bytes(data)
    _run(["chroot", str(rootfs), "update-ca-certificates", "--fresh"])
    # Empty machine-id: systemd makes a fresh one per container instead of all sharing the image's.
    (rootfs / "etc/machine-id").write_text("")
    (rootfs / "etc/hostname").write_text("")
    for key in (rootfs / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    dropin = rootfs / "etc/systemd/system/ssh.service.d/host-keys.conf"
    dropin.parent.mkdir(parents=True, exist_ok=True)
    dropin.write_text(SSH_HOST_KEYS_DROPIN)
    hook = rootfs / "usr/local/sbin/llmfleet-share-debs"
    hook.write_text(APT_SHARE_HOOK)
    hook.chmod(0o755)
    (rootfs / "etc/apt/apt.conf.d/90llmfleet-share-debs").write_text(APT_CONF)
    for leftover in (*(rootfs / "var/cache/apt/archives").glob("*.deb"), *(rootfs / "var/lib/apt/lists").glob("*_*")):
        leftover.unlink()


def scenario_suites(project_root: Path, scenarios: Iterable[str]) -> list[str]:
    """The Debian suites whose testbed images the scenarios' platforms name (the base config's
    bookworm for a scenario that names none), in first-use order: a suite is built only when a
    scenario that runs needs it."""
    import yaml  # a dependency of molecule and ansible, present wherever scenarios run

    def suites_of(config: Path) -> list[str] | None:
        """The suites of the file's platforms; None when it lists no platforms (molecule takes the base's)."""
        data = yaml.safe_load(config.read_text(encoding="utf-8")) if config.is_file() else None
        platforms = (data or {}).get("platforms")
        if not platforms:
            return None
        images = [str(platform.get("image", "")) for platform in platforms]
        return [image.split(":", 1)[1] for image in images if image.startswith(f"{IMAGE_REPOSITORY}:")]

    default = suites_of(project_root / ".config" / "molecule" / "config.yml") or ["bookworm"]
    found: list[str] = []
    for name in scenarios:
        own = suites_of(project_root / "molecule" / name / "molecule.yml")
        for suite in default if own is None else own:
            if suite not in found:
                found.append(suite)
    return found


def scenario_networks(project_root: Path, scenarios: Iterable[str]) -> list[str]:
    """The networks the scenarios' platforms join with `--network=<name>` in their extra_opts: networks
    with no route out (ensure_internal_network), which the test bed makes and keeps. (A platform's
    `network:` key is the podman driver's own network, which it makes and deletes with a route out.)"""
    import yaml  # a dependency of molecule and ansible, present wherever scenarios run

    found: list[str] = []
    for name in scenarios:
        config = project_root / "molecule" / name / "molecule.yml"
        data = yaml.safe_load(config.read_text(encoding="utf-8")) if config.is_file() else None
        for platform in (data or {}).get("platforms") or []:
            for option in platform.get("extra_opts") or []:
                if str(option).startswith("--network=") and str(option)[10:] not in found:
                    found.append(str(option)[10:])
    return found


def ensure_internal_network(name: str, log: Log = print) -> None:
    """A podman network with no route out (`--internal`: no default route in its containers, no NAT;
    the test host keeps its address on the bridge, so it still reaches them over SSH). A network of
    that name with a route out is replaced (it fails while containers are attached to it)."""
    proc = subprocess.run(["podman", "network", "inspect", name], capture_output=True, text=True, check=False)
    if proc.returncode == 0:
        if all(network.get("internal") for network in json.loads(proc.stdout)):
            return
        log(f"network {name} has a route out: making it again without one")
        _run(["podman", "network", "rm", name])
    _run(["podman", "network", "create", "--internal", name])
    log(f"network {name}: created, with no route out")


def prepare(project_root: Path, suites: Iterable[str] = ("bookworm",), force: bool = False,
            log: Log = print, networks: Iterable[str] = ()) -> list[str]:
    """Everything `molecule test` needs: host packages, cache directories, pip settings, images, and
    the internal networks the scenarios name."""
    ensure_host_packages(log)
    for path in cache_dirs(project_root).values():
        path.mkdir(parents=True, exist_ok=True)
    settings = stage_host_pip(host_pip_settings(), cache_dirs(project_root)["host-pip"])
    log(f"host pip settings for the containers: {', '.join(sorted(settings)) or 'none'}")
    images = [build_image(project_root, suite, force=force, log=log) for suite in suites]
    for network in networks:
        ensure_internal_network(network, log)
    return images


@contextmanager
def _stage(log: Log, what: str) -> Iterator[None]:
    start = time.monotonic()
    log(f"{what} ...")
    yield
    log(f"{what}: done in {time.monotonic() - start:.1f} s")


def _run(cmd: list[str], **kwargs: object) -> None:
    """Run a command quietly; on failure, raise with the end of its output."""
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False,
                          **kwargs)  # type: ignore[call-overload]
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.strip().splitlines()[-20:])
        raise RuntimeError(f"{' '.join(cmd)} failed with exit code {proc.returncode}:\n{tail}")
