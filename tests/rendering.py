"""Render a role's templates with Ansible itself, for the tests that check files we cannot deploy here.

Each tests/playbooks/render_*.yml loads a role's defaults and vars, pretends to be the target OS and
writes the templates into `out_dir`; this runs one with the project's ansible.cfg, which finds the
collection's filters in the checkout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def render(playbook: str, out_dir: Path, **extravars: Any) -> Path:
    """Run tests/playbooks/<playbook> with `out_dir` and `extravars`; return `out_dir`."""
    bindir = Path(sys.executable).parent
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
           "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    subprocess.run(
        [str(bindir / "ansible-playbook"), "-i", "localhost,", str(ROOT / "tests/playbooks" / playbook),
         "-e", json.dumps({"out_dir": str(out_dir), **extravars})],
        cwd=ROOT, env=env, check=True, capture_output=True, text=True,
    )
    return out_dir
