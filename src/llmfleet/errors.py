"""Errors every layer may raise: the bottom of the package, importing nothing of it."""

from __future__ import annotations


class UsageError(ValueError):
    """Bad command-line input, found before anything runs."""
