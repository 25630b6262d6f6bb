"""Attributes several of the collection's modules share, written once (extends_documentation_fragment)."""

from __future__ import annotations


class ModuleDocFragment:
    # A module that only reads: check mode changes nothing about it, and there is nothing to diff.
    READ_ONLY = r"""
options: {}
attributes:
  check_mode:
    description: Runs in check mode as in a real run (it only reads).
    support: full
  diff_mode:
    description: Has nothing to show as a diff.
    support: none
"""

    NO_DIFF = r"""
options: {}
attributes:
  diff_mode:
    description: Has nothing to show as a diff.
    support: none
"""

    POSIX = r"""
options: {}
attributes:
  platform:
    description: Linux and macOS.
    support: full
    platforms: [linux, darwin]
"""

    MACOS = r"""
options: {}
attributes:
  platform:
    description: macOS only.
    support: full
    platforms: darwin
"""
