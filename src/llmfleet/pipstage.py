"""This machine's pip settings, staged for containers: the indexes, find-links and CA a host installs
from, rewritten so that a container (a molecule test host, an execution-environment build) installs
from the same places.

Local directories and files the settings name are linked under one directory that the container
mounts read-only at PIP_MOUNT; URLs (a mirror, a proxy) pass through unchanged. No registry host
name is written here: everything comes from `pip config list`.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

# Where containers see the host's pip settings and the local directories they name.
PIP_MOUNT = "/opt/llmfleet-testbed/pip"
_PIP_LIST_KEYS = ("find-links", "extra-index-url", "index-url")
_PIP_FILE_KEYS = ("constraint", "requirement")
# The image trusts the host's CAs in the system bundle, so pip's `cert` points there.
CONTAINER_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def host_pip_settings(python: str | None = None) -> dict[str, str]:
    """This machine's effective pip settings (`pip config list`: files and PIP_* variables), key -> value."""
    proc = subprocess.run([python or sys.executable, "-m", "pip", "config", "list"], capture_output=True,
                          text=True, check=False)
    settings: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        match = re.match(r"^[^.=]+\.([^=]+)='(.*)'$", line.strip())
        if match:
            settings[match.group(1)] = match.group(2)
    return settings


def stage_host_pip(settings: Mapping[str, str], out: Path) -> dict[str, str]:
    """Write pip.conf and uv.toml for the containers into `out`, from the host's pip settings.

    Local directories and files the settings name (find-links, file:// indexes, constraints) are
    hard-linked (or copied) under `out`, which scenarios mount read-only at PIP_MOUNT; URLs pass
    through unchanged, so a mirror or proxy the host uses is what the containers use. Returns the
    rewritten settings.
    """
    # Running containers bind-mount `out`: build beside it and replace it only when something
    # changed, so a second `invoke test` never pulls the directory from under a running scenario.
    final = out.absolute()
    final.parent.mkdir(parents=True, exist_ok=True)
    # A private staging directory: two `invoke test` runs may stage at the same time.
    out = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    rewritten: dict[str, str] = {}
    count = 0
    for key, value in settings.items():
        if key in _PIP_LIST_KEYS:
            items = []
            for item in value.split():
                local = Path(item[len("file://"):] if item.startswith("file://") else item)
                if item.startswith("file://") or (local.is_absolute() and local.exists()):
                    if not local.exists():
                        continue
                    count += 1
                    if item.startswith("file://"):
                        # A file index's pages link to their files relatively (../../files/...):
                        # bring the directory around the index along.
                        _link_tree(local.parent, out / "dirs" / str(count))
                        target = f"{PIP_MOUNT}/dirs/{count}/{local.name}"
                    else:
                        _link_tree(local, out / "dirs" / str(count))
                        target = f"{PIP_MOUNT}/dirs/{count}"
                    items.append(f"file://{target}" if item.startswith("file://") else target)
                else:
                    items.append(item)
            if items:
                rewritten[key] = " ".join(items)
        elif key in _PIP_FILE_KEYS:
            source = Path(value)
            if source.is_file():
                count += 1
                (out / "files").mkdir(exist_ok=True)
                shutil.copyfile(source, out / "files" / f"{count}-{source.name}")
                rewritten[key] = f"{PIP_MOUNT}/files/{count}-{source.name}"
        elif key == "cert":
            rewritten[key] = CONTAINER_CA_BUNDLE
        elif key not in ("user", "target", "prefix", "root", "cache-dir"):
            rewritten[key] = value
    lines = ["# From the test host's pip configuration (llmfleet testbed).", "[global]"]
    lines += [f"{key} = {value}" for key, value in sorted(rewritten.items())]
    (out / "pip.conf").write_text("\n".join(lines) + "\n")
    (out / "uv.toml").write_text(_uv_toml(rewritten))
    out.chmod(0o755)
    if final.is_dir() and _tree_listing(final) == _tree_listing(out):
        shutil.rmtree(out)
        return rewritten
    shutil.rmtree(final, ignore_errors=True)
    try:
        out.rename(final)
    except OSError:
        # Another run put its (identical) copy in place first.
        shutil.rmtree(out, ignore_errors=True)
    return rewritten


def _tree_listing(root: Path) -> list[tuple[str, int, bytes]]:
    """Relative path, size and (for the small config files) content of every file under root."""
    listing = []
    for path in sorted(root.rglob("*")):
        if path.is_file():
            content = path.read_bytes() if path.suffix in (".conf", ".toml", ".txt") else b""
            listing.append((str(path.relative_to(root)), path.stat().st_size, content))
    return listing


def _uv_toml(settings: Mapping[str, str]) -> str:
    """The same indexes for uv, which does not read pip.conf."""
    lines = ["# From the test host's pip configuration (llmfleet testbed).", "system-certs = true"]
    if "index-url" in settings:
        lines.append(f"index-url = {json.dumps(settings['index-url'].split()[0])}")
    for key in ("extra-index-url", "find-links"):
        if key in settings:
            lines.append(f"{key} = {json.dumps(settings[key].split())}")
    if "extra-index-url" in settings:
        # pip takes the best version across all indexes; uv's default would stop at the first index
        # that has the package.
        lines.append('index-strategy = "unsafe-best-match"')
    return "\n".join(lines) + "\n"


def _link_tree(source: Path, dest: Path) -> None:
    """Copy a directory tree as hard links when possible (same filesystem), else as a copy."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["cp", "-al", str(source), str(dest)], capture_output=True, check=False)
    if proc.returncode != 0:
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(source, dest)
