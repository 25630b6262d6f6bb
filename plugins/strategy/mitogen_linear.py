"""Ansible's linear strategy run over Mitogen (ansible.cfg's `strategy`): one persistent Python
interpreter per host instead of a new SSH command and module upload per task.

Mitogen is a dependency of llmfleet (pyproject.toml), installed as a Python package; this file makes
its strategy findable through ansible.cfg's relative `strategy_plugins` path, wherever the package is
installed. Set ANSIBLE_STRATEGY=linear to run without it.

One addition: every task runs in a worker process forked from the controller, and a worker that
meets its first Jinja filter or test loads every filter and test plugin to find it. Loading them once
here, before the workers fork, lets each inherit them (docs/performance.md has the measurement).
"""

from __future__ import annotations

from typing import Any

from ansible.plugins.loader import filter_loader, test_loader
from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule as _MitogenLinear


def _load_jinja_plugins() -> None:
    for loader in (filter_loader, test_loader):
        for _plugin in loader.all():
            pass


class StrategyModule(_MitogenLinear):
    """mitogen_linear, with the Jinja plugins loaded before the first worker forks."""

    def run(self, iterator: Any, play_context: Any, *args: Any, **kwargs: Any) -> Any:
        _load_jinja_plugins()
        return super().run(iterator, play_context, *args, **kwargs)
