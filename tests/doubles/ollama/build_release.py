#!/usr/bin/env python3
"""Package the Ollama TEST DOUBLE like an official Ollama Linux release.

The real Ollama release cannot be downloaded on this machine, so tests serve this
stand-in instead. It lays out a mirror of the GitHub release download directory:

    <out>/v<version>/ollama-linux-<arch>.tar.zst   (or .tgz, the pre-0.14 format)
    <out>/v<version>/sha256sum.txt                 (`<hex>  <asset>` per archive)

Each archive holds `bin/ollama` (ollama_double.py with VERSION set, mode 0755) and
`lib/ollama/DOUBLE.txt`, every member owned by 0:0 with a fixed mtime, so building
the same version again gives byte-identical archives and the same sha256.

Usage: build_release.py --version 0.32.15 --out DIR [--arch amd64 --arch arm64] [--format zst|tgz]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable
from pathlib import Path

DOUBLE_SOURCE = Path(__file__).resolve().parent / "ollama_double.py"
ARCHES = ("amd64", "arm64")
FORMATS = {"zst": ".tar.zst", "tgz": ".tgz"}
# 2026-01-01T00:00:00Z: every member gets this mtime so rebuilds are byte-identical.
FIXED_MTIME = 1767225600
VERSION_LINE = re.compile(r'^VERSION = "[^"\n]*"$', re.MULTILINE)
VERSION_FORMAT = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+(?:-[0-9A-Za-z.]+)?$")
ASSET_PATTERN = re.compile(r"^ollama-linux-[a-z0-9]+(?:-[a-z0-9]+)?(?:\.tar\.zst|\.tgz)$")


def double_binary(version: str) -> bytes:
    """The double's source with its VERSION constant set to `version`."""
    source = DOUBLE_SOURCE.read_text()
    replaced, count = VERSION_LINE.subn(f'VERSION = "{version}"', source)
    if count != 1:
        raise RuntimeError(f"{DOUBLE_SOURCE}: expected exactly one VERSION line, found {count}")
    return replaced.encode()


def readme_text(version: str, arch: str) -> bytes:
    """`lib/ollama/DOUBLE.txt`: says what this archive really is."""
    return (
        f"This is NOT Ollama {version} ({arch}).\n\n"
        "It is the llmfleet test double standing in for Ollama, which cannot be downloaded\n"
        "on the machine where these tests run. bin/ollama is a Python 3 program (stdlib only)\n"
        "that imitates `ollama serve` and the ollama CLI closely enough for provisioning tests.\n"
        "It runs no model and downloads nothing. Source: tests/doubles/ollama/ in llmfleet.\n"
    ).encode()


def _member(name: str, mode: int, data: bytes | None = None) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.mode = mode
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = FIXED_MTIME
    if data is None:
        info.type = tarfile.DIRTYPE
    else:
        info.size = len(data)
    return info, data


def tar_bytes(version: str, arch: str) -> bytes:
    """The uncompressed tar: bin/ollama and lib/ollama/, like the release's archive stage."""
    members = [
        _member("bin/", 0o755),
        _member("bin/ollama", 0o755, double_binary(version)),
        _member("lib/", 0o755),
        _member("lib/ollama/", 0o755),
        _member("lib/ollama/DOUBLE.txt", 0o644, readme_text(version, arch)),
    ]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, None if data is None else io.BytesIO(data))
    return buffer.getvalue()


def compress(raw: bytes, fmt: str) -> bytes:
    """zstd (with the `zstd` command, as Ollama's release does) or gzip with no name/mtime."""
    if fmt == "tgz":
        buffer = io.BytesIO()
        with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=9) as handle:
            handle.write(raw)
        return buffer.getvalue()
    zstd = shutil.which("zstd")
    if zstd is None:
        raise RuntimeError("the zstd command is needed to build .tar.zst archives (apt-get install zstd)")
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "archive.tar"
        source.write_bytes(raw)
        target = Path(tmp) / "archive.tar.zst"
        subprocess.run([zstd, "-q", "-f", "-19", "-T1", "-o", str(target), str(source)], check=True)
        return target.read_bytes()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_if_changed(path: Path, data: bytes) -> None:
    """Atomic write that leaves an identical existing file untouched (idempotent rebuilds)."""
    if path.is_file() and path.read_bytes() == data:
        return
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def write_checksums(release_dir: Path) -> Path:
    """`sha256sum.txt` covering every archive in the release directory."""
    assets = sorted(path for path in release_dir.iterdir() if path.is_file() and ASSET_PATTERN.match(path.name))
    text = "".join(f"{_sha256(path)}  {path.name}\n" for path in assets)
    target = release_dir / "sha256sum.txt"
    _write_if_changed(target, text.encode())
    return target


def build(
    version: str, out: str | os.PathLike[str], arches: Iterable[str] = ("amd64",), fmt: str = "zst"
) -> dict[str, str]:
    """Write `out/v<version>/ollama-linux-<arch><ext>` + sha256sum.txt; returns asset name -> sha256."""
    version = version.removeprefix("v")
    if not VERSION_FORMAT.match(version):
        raise ValueError(f"not a release version: {version!r}")
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {sorted(FORMATS)}, not {fmt!r}")
    arch_list = list(dict.fromkeys(arches))
    unknown = [arch for arch in arch_list if arch not in ARCHES]
    if unknown or not arch_list:
        raise ValueError(f"arch must be among {ARCHES}, got {arch_list}")
    release_dir = Path(out) / f"v{version}"
    release_dir.mkdir(parents=True, exist_ok=True)
    built: dict[str, str] = {}
    for arch in arch_list:
        name = f"ollama-linux-{arch}{FORMATS[fmt]}"
        data = compress(tar_bytes(version, arch), fmt)
        _write_if_changed(release_dir / name, data)
        built[name] = hashlib.sha256(data).hexdigest()
    write_checksums(release_dir)
    return built


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description="Package the Ollama test double like an Ollama Linux release.")
    parser.add_argument("--version", required=True, help="release version to bake in, e.g. 0.32.15")
    parser.add_argument("--out", required=True, help="mirror root; files go to OUT/v<version>/")
    parser.add_argument("--arch", action="append", choices=ARCHES, help="repeatable; default amd64")
    parser.add_argument("--format", choices=sorted(FORMATS), default="zst", help="zst (>= 0.14) or tgz (older)")
    args = parser.parse_args(argv)
    try:
        built = build(args.version, args.out, args.arch or ["amd64"], args.format)
    except (ValueError, RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        print(f"build_release: {exc}", file=sys.stderr)
        return 1
    for name, digest in built.items():
        print(f"{digest}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
