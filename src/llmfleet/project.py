"""Where things are in an llmfleet checkout."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Project:
    """Paths of one checkout. `root` holds ansible.cfg, playbooks/, roles/ and inventory/."""

    root: Path

    @classmethod
    def find(cls, start: Path | None = None) -> Project:
        """The nearest directory at or above `start` (default: cwd) that holds ansible.cfg and roles/."""
        here = (start or Path.cwd()).resolve()
        for candidate in (here, *here.parents):
            if (candidate / "ansible.cfg").is_file() and (candidate / "roles").is_dir():
                return cls(candidate)
        raise FileNotFoundError(f"no llmfleet checkout (ansible.cfg + roles/) at or above {here}")

    @property
    def playbooks(self) -> Path:
        return self.root / "playbooks"

    @property
    def default_inventory(self) -> Path:
        return self.root / "inventory" / "local"

    @property
    def runs_dir(self) -> Path:
        """One folder per run, kept for audit; LLMFLEET_RUNS_DIR moves it."""
        return Path(os.environ.get("LLMFLEET_RUNS_DIR", self.root / "runs"))

    def playbook(self, name: str) -> Path:
        """Resolve `site`, `site.yml` or a path to an existing playbook file."""
        candidates = [Path(name), self.playbooks / name, self.playbooks / f"{name}.yml"]
        for path in candidates:
            if path.is_file():
                return path.resolve()
        raise FileNotFoundError(f"playbook {name!r} not found (looked in {self.playbooks})")

    def scenarios(self) -> list[str]:
        """Molecule scenarios, in name order."""
        return sorted(p.parent.name for p in (self.root / "molecule").glob("*/molecule.yml"))
