"""Ansible's linear strategy run over Mitogen (ansible.cfg's `strategy`): one persistent Python
interpreter per host instead of a new SSH command and module upload per task.

Mitogen is a dependency of llmfleet (pyproject.toml), installed as a Python package; this file makes
its strategy findable through ansible.cfg's relative `strategy_plugins` path, wherever the package is
installed. Set ANSIBLE_STRATEGY=linear to run without it.

Two additions, both done once before the first worker forks (docs/performance.md has the
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
"""

from __future__ import annotations

import functools
from typing import Any

import ansible_mitogen.module_finder
from ansible.plugins.loader import filter_loader, test_loader
from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule as _MitogenLinear


def _load_jinja_plugins() -> None:
    for loader in (filter_loader, test_loader):
        for _plugin in loader.all():
            pass


@functools.lru_cache(maxsize=None)
def _compile_once(source: bytes, filename: str, mode: str) -> Any:
    """compile() for Mitogen's module finder: each source text compiled once per run."""
    return compile(source, filename, mode)


def _remember_compiled_modules() -> None:
    # Mitogen's module finder calls the builtin compile(source, name, 'exec') by its global name;
    # a module-level name shadows the builtin for that module only.
    ansible_mitogen.module_finder.compile = _compile_once  # type: ignore[attr-defined]


class StrategyModule(_MitogenLinear):
    """mitogen_linear, with the Jinja plugins loaded and the module finder's compiles remembered
    before the first worker forks."""

    def run(self, iterator: Any, play_context: Any, *args: Any, **kwargs: Any) -> Any:
        _load_jinja_plugins()
        _remember_compiled_modules()
        return super().run(iterator, play_context, *args, **kwargs)
