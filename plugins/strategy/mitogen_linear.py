"""Ansible's linear strategy run over Mitogen (ansible.cfg's `strategy`): one persistent Python
interpreter per host instead of a new SSH command and module upload per task.

Mitogen is a dependency of llmfleet (pyproject.toml), installed as a Python package; this file makes
its strategy findable through ansible.cfg's relative `strategy_plugins` path, wherever the package is
installed. Set ANSIBLE_STRATEGY=linear to run without it.

Four additions, all done once before the first worker forks (docs/performance.md has the
measurements):

- Every task runs in a worker process forked from the controller, and a worker that meets its first
  Jinja filter or test loads every filter and test plugin to find it. Loading them here lets each
  worker inherit them.
- The first time a run uses a module, Mitogen finds the module_utils it imports by compiling the
  module and each module_util it reaches, again for every module: ansible.module_utils.basic and its
  dozens of helpers are compiled anew for each module type, 50-100 ms of controller CPU each, on the
  path of the task that waits for it. Mitogen's module finder is given a compile() that remembers
  what it compiled, by source text, for the life of the run: the same source gives the same code
  object, so what it finds is unchanged.
- Across runs: Mitogen's module finder and its module responder compile each module they send to
  find its imports, and the responder minifies Mitogen's own modules, in every run again (a no-op run
  of a laptop spent 1.5 s of controller CPU on it). Both are pure functions of their input, so their
  results are also kept on disk (`_DiskCache`: the user's cache directory, one file per input hash,
  marshal's format for code objects, as Python's own .pyc files; a directory per entry format,
  Python and Mitogen version). An entry that does not match its own checksum is computed again; a cache directory that
  cannot be written is not an error.
- Before each task of a collection's module (llmfleet's own modules are), Mitogen's planner lists
  every installed collection, in the worker process, which exits after the task: 0.1 s of controller
  CPU per task with the `ansible` package's hundred collections. The list is made once, here, and the
  workers inherit it; it names the same directories.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import marshal
import os
import sys
import tempfile
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ansible.collections.list
import ansible_mitogen.module_finder
import ansible_mitogen.planner
import mitogen
import mitogen.master
import mitogen.minify
from ansible.plugins.loader import filter_loader, test_loader
from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule as _MitogenLinear


def _load_jinja_plugins() -> None:
    for loader in (filter_loader, test_loader):
        for _plugin in loader.all():
            pass


class _DiskCache:
    """Results of a pure function of bytes, kept as files named by the hash of their input. Each file
    starts with the hash of the value it holds: one that does not match (damaged, cut short) is
    computed again and replaced."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def get(self, key: bytes, make: Callable[[], bytes]) -> bytes:
        digest = hashlib.sha256(key).hexdigest()
        path = self.directory / digest[:2] / digest[2:]
        try:
            stored = path.read_bytes()
        except OSError:
            stored = b""
        check, value = stored[:32], stored[32:]
        if len(check) == 32 and hashlib.sha256(value).digest() == check:
            return value
        value = make()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Written whole under another name, then renamed: a run reading it meanwhile sees all or nothing.
            with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as handle:
                handle.write(hashlib.sha256(value).digest() + value)
            os.replace(handle.name, path)
        except OSError:
            pass
        return value


# The layout of an entry (checksum, then value). A change to it gets a new number, so that runs of
# two llmfleet versions on one controller never read each other's entries.
_FORMAT = 2


def _cache_directory() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    mitogen_version = ".".join(map(str, mitogen.__version__))
    version = f"v{_FORMAT}-{sys.implementation.cache_tag}-{importlib.util.MAGIC_NUMBER.hex()}-mitogen-{mitogen_version}"
    return base / "llmfleet" / "mitogen" / version


_DISK = _DiskCache(_cache_directory())


@functools.lru_cache(maxsize=None)
def _compile_once(source: bytes | str, filename: str, mode: str) -> Any:
    """compile() for Mitogen's module finder and responder: each source text compiled once, its code
    object kept on disk for the next runs. Compiled without the caller's __future__ flags, as their
    own modules (Python 3 semantics) compile it."""
    data = source if isinstance(source, bytes) else source.encode("utf-8", "surrogateescape")
    key = b"\0".join((b"compile", filename.encode("utf-8", "surrogateescape"), mode.encode(), data))
    try:
        code = marshal.loads(_DISK.get(key, lambda: marshal.dumps(compile(source, filename, mode, dont_inherit=True))))
    except (EOFError, ValueError, TypeError):
        code = None
    # A damaged entry: compiled again.
    return code if isinstance(code, types.CodeType) else compile(source, filename, mode, dont_inherit=True)


_minimize_source = mitogen.minify.minimize_source


@functools.lru_cache(maxsize=None)
def _minimize_once(source: bytes | str) -> str:
    """Mitogen's minifier (text or UTF-8 bytes in, text out), its results kept on disk like the code
    objects."""
    data = source if isinstance(source, bytes) else source.encode("utf-8", "surrogateescape")
    try:
        return _DISK.get(b"minify\0" + data, lambda: _minimize_source(source).encode("utf-8", "surrogateescape")).decode(
            "utf-8", "surrogateescape")
    except UnicodeDecodeError:  # a damaged entry
        return _minimize_source(source)


def _remember_compiled_modules() -> None:
    # Mitogen's module finder and responder call the builtin compile(source, name, 'exec') by its
    # global name; a module-level name shadows the builtin for that module only.
    ansible_mitogen.module_finder.compile = _compile_once  # type: ignore[attr-defined]
    mitogen.master.compile = _compile_once  # type: ignore[attr-defined]
    mitogen.minify.minimize_source = _minimize_once


@functools.lru_cache(maxsize=1)
def _collection_dirs() -> tuple[str, ...]:
    """The installed collections' directories, as Mitogen's planner lists them for a collection's module."""
    return tuple(path.decode("utf-8") for path in ansible.collections.list.list_collection_dirs())


def _load_collections_once(invocation: Any) -> None:
    """Mitogen's planner._load_collections, from the list made once per run."""
    invocation._extra_sys_paths.update(_collection_dirs())


def _list_collections_once() -> None:
    _collection_dirs()
    ansible_mitogen.planner._load_collections = _load_collections_once


class StrategyModule(_MitogenLinear):
    """mitogen_linear, with the Jinja plugins loaded, the module finder's compiles remembered and the
    collections listed before the first worker forks."""

    def run(self, iterator: Any, play_context: Any, *args: Any, **kwargs: Any) -> Any:
        _load_jinja_plugins()
        _remember_compiled_modules()
        _list_collections_once()
        return super().run(iterator, play_context, *args, **kwargs)
