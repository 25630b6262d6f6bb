"""plugins/strategy/mitogen_linear.py: what it changes in Mitogen's module finder, and that the
finder's answers stay the same."""

from __future__ import annotations

import builtins
import hashlib
import importlib
import marshal
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import ansible.module_utils
import ansible_mitogen.module_finder as module_finder
import ansible_mitogen.planner
import mitogen
import mitogen.master
import mitogen.minify
import pytest
from _modules import load_module

MODULES = ["user", "uri", "systemd_service", "file", "stat", "copy", "command", "getent"]
_PLANNER_LOAD_COLLECTIONS = ansible_mitogen.planner._load_collections
SEARCH_PATH = [os.path.dirname(ansible.module_utils.__file__)]


@pytest.fixture
def strategy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    plugin = load_module("plugins/strategy/mitogen_linear.py", "llmfleet_test_mitogen_linear")
    yield plugin
    module_finder.__dict__.pop("compile", None)
    mitogen.master.__dict__.pop("compile", None)
    mitogen.minify.minimize_source = plugin._minimize_source
    ansible_mitogen.planner._load_collections = _PLANNER_LOAD_COLLECTIONS


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


def test_code_objects_and_minified_sources_are_kept_across_runs(strategy: ModuleType, tmp_path: Path) -> None:
    cache = tmp_path / "cache" / "llmfleet" / "mitogen"
    assert strategy._DISK.directory.parent == cache
    # Named by the entry format, Python's bytecode and Mitogen's version: none reads another's.
    assert strategy._DISK.directory.name.startswith(f"v{strategy._FORMAT}-{sys.implementation.cache_tag}-")
    assert strategy._DISK.directory.name.endswith("-mitogen-" + ".".join(map(str, mitogen.__version__)))
    strategy._remember_compiled_modules()
    assert mitogen.master.__dict__["compile"] is strategy._compile_once
    assert mitogen.minify.minimize_source is strategy._minimize_once
    first = _scan_all()
    source = Path(mitogen.master.__file__).read_text()
    minified = mitogen.minify.minimize_source(source)
    assert minified == strategy._minimize_source(source) and len(minified) < len(source)
    entries = sorted(strategy._DISK.directory.rglob("*"))
    assert len([e for e in entries if e.is_file()]) > 20  # basic and its helpers, and the minified source

    # A new run (the in-memory caches empty) reads them back, and finds the same.
    strategy._compile_once.cache_clear()
    strategy._minimize_once.cache_clear()
    reads: list[bytes] = []
    real_get = strategy._DISK.get

    def get(key: bytes, make: Any) -> bytes:
        reads.append(key)
        return real_get(key, lambda: pytest.fail(f"computed again: {key[:60]!r}"))

    strategy._DISK.get = get
    try:
        assert _scan_all() == first
        assert mitogen.minify.minimize_source(source) == minified
    finally:
        strategy._DISK.get = real_get
    assert reads


@pytest.mark.parametrize("damage", ["garbage", "cut-short", "empty", "checksummed-not-code"])
def test_a_damaged_cache_entry_is_computed_again(strategy: ModuleType, damage: str) -> None:
    source = "import os\nx = 1\n"
    code = strategy._compile_once(source, "damaged.py", "exec")
    [entry] = [e for e in strategy._DISK.directory.rglob("*") if e.is_file()]
    stored = entry.read_bytes()
    entry.write_bytes({"garbage": b"\x00not marshal" * 4, "cut-short": stored[:-5], "empty": b"",
                       # an entry whose checksum holds, of marshal data that is not code
                       "checksummed-not-code": hashlib.sha256(marshal.dumps(7)).digest() + marshal.dumps(7)}[damage])
    strategy._compile_once.cache_clear()
    again = strategy._compile_once(source, "damaged.py", "exec")
    assert again.co_names == code.co_names == ("os", "x")
    if damage != "checksummed-not-code":
        assert entry.read_bytes() == stored  # replaced by a good entry


def test_a_damaged_minified_source_is_computed_again(strategy: ModuleType) -> None:
    source = 'def f():\n    """A docstring."""\n    return 1\n'
    minified = strategy._minimize_once(source)
    [entry] = [e for e in strategy._DISK.directory.rglob("*") if e.is_file()]
    entry.write_bytes(entry.read_bytes()[:-3])
    strategy._minimize_once.cache_clear()
    assert strategy._minimize_once(source) == minified == strategy._minimize_source(source)


def test_a_cache_directory_that_cannot_be_made_is_not_an_error(strategy: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "blocked").write_text("")  # a file where the directory would go
    strategy._DISK.directory = tmp_path / "blocked" / "cache"
    assert strategy._compile_once("import os\n", "blocked.py", "exec").co_names == ("os",)
    source = 'def f():\n    """A docstring."""\n    return 1\n'
    assert strategy._minimize_once(source) == strategy._minimize_source(source) != source


class _Invocation:
    """What Mitogen's planner._load_collections reads and writes of an invocation."""

    def __init__(self) -> None:
        self._extra_sys_paths: set[str] = set()


def test_the_collections_are_listed_once_per_run_with_the_same_result(
        strategy: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    # Ansible's listing needs its collection loader, which only a run installs: a stand-in that
    # yields what it yields (bytes paths), counting its calls.
    listed = []

    def list_collection_dirs(*args: Any, **kwargs: Any) -> Iterator[bytes]:
        listed.append(args or kwargs)
        yield from (b"/usr/share/ansible/collections/ansible_collections/community/general",
                    b"/work/collections/ansible_collections/llmfleet/llmfleet")

    monkeypatch.setattr(strategy.ansible.collections.list, "list_collection_dirs", list_collection_dirs)
    plain = _Invocation()
    _PLANNER_LOAD_COLLECTIONS(plain)
    assert len(plain._extra_sys_paths) == 2 and len(listed) == 1
    strategy._collection_dirs.cache_clear()
    strategy._list_collections_once()
    assert ansible_mitogen.planner._load_collections is strategy._load_collections_once
    invocations = [_Invocation() for _ in range(3)]
    for invocation in invocations:
        ansible_mitogen.planner._load_collections(invocation)
    assert all(i._extra_sys_paths == plain._extra_sys_paths for i in invocations)
    assert len(listed) == 2  # the stand-in's call above, and one for the run
