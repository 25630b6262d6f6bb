"""Fixtures shared by the tests that run real ansible-runner on tests/playbooks.

The checkout is also the collection llmfleet.llmfleet: playbooks/collections/ansible_collections/llmfleet/llmfleet
links to it. With playbooks/collections on sys.path, the plugins' own imports of the collection's shared code
(`from ansible_collections.llmfleet.llmfleet.plugins.module_utils.<name> import ...`) work when a test
loads a plugin file by its path, as they do when Ansible loads it. `ansible_collections` is a namespace
package: the collections the `ansible` package installs in site-packages stay importable beside ours.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_COLLECTIONS = str(Path(__file__).resolve().parents[1] / "playbooks" / "collections")
if _COLLECTIONS not in sys.path:
    sys.path.append(_COLLECTIONS)


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    """A project root whose ansible.cfg sets a telltale timeout (7) that playbooks can check."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "ansible.cfg").write_text(
        "[defaults]\ntimeout = 7\nretry_files_enabled = false\nhost_key_checking = false\n"
    )
    return root


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    return tmp_path / "runs"


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    """Where test playbooks write files."""
    path = tmp_path / "out"
    path.mkdir()
    return path
