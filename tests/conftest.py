"""Fixtures shared by the tests that run real ansible-runner on tests/playbooks."""

from __future__ import annotations

from pathlib import Path

import pytest


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
