"""plugins/strategy/mitogen_linear.py: what it changes in Mitogen's module finder, and that the
finder's answers stay the same."""

from __future__ import annotations

import builtins
import importlib
import os
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import ansible.module_utils
import ansible_mitogen.module_finder as module_finder
import pytest
from _modules import load_module

MODULES = ["user", "uri", "systemd_service", "file", "stat", "copy", "command", "getent"]
SEARCH_PATH = [os.path.dirname(ansible.module_utils.__file__)]


@pytest.fixture
def strategy() -> Iterator[ModuleType]:
    plugin = load_module("plugins/strategy/mitogen_linear.py", "llmfleet_test_mitogen_linear")
    yield plugin
    module_finder.__dict__.pop("compile", None)


def _scan_all() -> dict[str, Any]:
    found = {}
    for name in MODULES:
        module = importlib.import_module(f"ansible.modules.{name}")
        found[name] = module_finder.scan(module.__name__, module.__file__, SEARCH_PATH)
    return found


def test_the_module_finder_finds_the_same_module_utils(strategy: ModuleType) -> None:
    assert "compile" not in module_finder.__dict__
    plain = _scan_all()
    strategy._remember_compiled_modules()
    assert module_finder.__dict__["compile"] is strategy._compile_once
    remembered = _scan_all()
    assert remembered == plain
    # Not vacuous: every module reaches module_utils, and basic among them.
    assert all(any(name == "ansible.module_utils.basic" for name, _, _ in found) for found in plain.values())


def test_each_source_is_compiled_once(strategy: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    compiled: list[str] = []

    def counting_compile(source: Any, filename: str, mode: str, *args: Any, **kwargs: Any) -> Any:
        compiled.append(filename)
        return builtins.compile(source, filename, mode, *args, **kwargs)

    strategy._compile_once.cache_clear()
    monkeypatch.setattr(strategy, "compile", counting_compile, raising=False)
    strategy._remember_compiled_modules()
    _scan_all()
    assert "ansible.module_utils.basic" in compiled
    assert len(compiled) == len(set(compiled)), sorted(n for n in compiled if compiled.count(n) > 1)
    before = len(compiled)
    _scan_all()
    assert len(compiled) == before
