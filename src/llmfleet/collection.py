"""The checkout as an Ansible collection (galaxy.yml): build its tarball, install it somewhere.

`invoke collection` builds `dist/llmfleet-llmfleet-<version>.tar.gz`; a team installs that (or the
repository's git URL) with ansible-galaxy and uses the roles and playbooks by their fully qualified
names (README, "Use it from your own playbooks"). Both steps are ansible-galaxy's own; this module
only finds the tools, names the paths and reads what galaxy.yml declares.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class Metadata:
    namespace: str
    name: str
    version: str

    @property
    def fqcn(self) -> str:
        return f"{self.namespace}.{self.name}"

    @property
    def artifact(self) -> str:
        """The tarball's file name, as ansible-galaxy writes it."""
        return f"{self.namespace}-{self.name}-{self.version}.tar.gz"


def metadata(root: Path) -> Metadata:
    """Namespace, name and version from `root`/galaxy.yml."""
    data: Mapping[str, Any] = yaml.safe_load((root / "galaxy.yml").read_text(encoding="utf-8"))
    return Metadata(str(data["namespace"]), str(data["name"]), str(data["version"]))


def _galaxy() -> str:
    candidate = Path(sys.executable).parent / "ansible-galaxy"
    return str(candidate) if candidate.exists() else "ansible-galaxy"


def build(root: Path, output: Path) -> Path:
    """Build the collection from the checkout at `root` into `output`; the tarball's path.

    What goes in is galaxy.yml's: build_ignore keeps tests, caches, run folders and the Python
    driver out.
    """
    output.mkdir(parents=True, exist_ok=True)
    subprocess.run([_galaxy(), "collection", "build", "--force", "--output-path", str(output), str(root)],
                   check=True, capture_output=True, text=True)
    tarball = output / metadata(root).artifact
    if not tarball.is_file():
        raise FileNotFoundError(f"ansible-galaxy built no {tarball}")
    return tarball


def install(source: str, collections_path: Path) -> Path:
    """Install `source` (a tarball, or `git+<url>,<ref>`) under `collections_path`; the installed dir.

    --offline: no Galaxy server is asked; the dependencies (community.general) must already be
    installed, as the `ansible` package installs them.
    """
    done = subprocess.run([_galaxy(), "collection", "install", "--offline", "--force", "-p", str(collections_path),
                           source], check=True, capture_output=True, text=True)
    for line in done.stdout.splitlines():
        if line.startswith("Installing '"):
            fqcn = line.split("'")[1].split(":")[0]
            namespace, name = fqcn.split(".")
            return collections_path / "ansible_collections" / namespace / name
    raise RuntimeError(f"ansible-galaxy did not say what it installed:\n{done.stdout}")
