"""Ansible's linear strategy run over Mitogen (ansible.cfg's `strategy`): one persistent Python
interpreter per host instead of a new SSH command and module upload per task.

Mitogen is a dependency of llmfleet (pyproject.toml), installed as a Python package; this file only
makes its strategy findable through ansible.cfg's relative `strategy_plugins` path, wherever the
package is installed. Set ANSIBLE_STRATEGY=linear to run without it.
"""

from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule

__all__ = ["StrategyModule"]
