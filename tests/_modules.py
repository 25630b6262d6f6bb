"""Load a Python file of the project (a role's filter plugin or module, a test double) by its path.

Role plugins are not importable packages, so each test loads the file it tests through this one helper.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def load_module(path: Path | str, name: str | None = None) -> ModuleType:
    """Execute the file at `path` (relative to the project root, or absolute) as a fresh module.

    The module is registered in sys.modules under `name` (default: the file's stem) while it runs,
    as dataclasses and typing need to find their module there.
    """
    path = ROOT / path
    name = name or path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
