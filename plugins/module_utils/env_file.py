r"""The environment files llmfleet writes, in the one form systemd and POSIX sh both read back exactly.

Every file is `NAME="value"` lines. The rules are systemd's for EnvironmentFile= (systemd.exec(5);
parse_env_file_internal in its source), which inside double quotes are POSIX sh's: a backslash before
one of \ " $ ` stands for that character; a backslash before a line break joins the lines (the break
is dropped); before anything else both are kept; nothing is expanded. So escaping exactly those four
characters writes any value, and one file serves systemd's EnvironmentFile= on Linux and
`set -a; . file` in sh on macOS (Open WebUI's launcher).

A line break in a value is written as itself inside the quotes: double-quoted values "can span
multiple lines" for systemd's parser, systemd keeps such a value since v239 (systemd/systemd#8471; RHEL
8 has 239), and sh keeps it too. A backslash before it would join the lines instead; the value's own
backslash is written `\\`, so it never does. Refused, naming the variable but never showing the
value: what systemd.exec(5) says a file may not hold (NUL, U+FEFF and Unicode noncharacters), and
control characters other than tab and line break, for which systemd 239 still drops the variable
(#8471 allowed the line break only) with nothing but a log line.

A list of arguments for a unit's ExecStart= takes one more layer (exec_args): systemd replaces a word
`$NAME` of ExecStart= by the variable's value split at whitespace, "quotes are respected when splitting
into words, and afterwards removed" (systemd.service(5), COMMAND LINES; extract_first_word with
EXTRACT_UNQUOTE|EXTRACT_RELAX), where a backslash takes the next character literally, inside single
quotes too (unlike sh). `${NAME}` would give one argument, whitespace included. systemd 252 (Debian 12)
and 257 (Debian 13) read what this module writes back exactly, every argument whole.

Unit-tested in tests/test_env_file.py against a parser that follows systemd's rules.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# What a backslash escapes inside double quotes, for systemd's EnvironmentFile= and for sh alike.
_ESCAPED = re.compile(r'([\\"$`])')
# NUL and control characters other than tab and line feed (a CR too), the byte order mark, and the
# Unicode noncharacters (U+FDD0..U+FDEF, and the last two code points of each plane): see the docstring.
_REFUSED = re.compile("[\x00-\x08\x0b-\x1f\x7f\ufeff\ufdd0-\ufdef"
                      + "".join(chr(plane << 16 | 0xFFFE) + chr(plane << 16 | 0xFFFF) for plane in range(17)) + "]")
# Words systemd's splitter (and sh, and Python's shlex) read as themselves, written without quotes.
_BARE = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")


def text(value: Any) -> str:
    """A setting as the environment gets it: YAML booleans as true/false, anything else as str() writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def value_errors(name: Any, value: Any) -> list[str]:
    """Why `name=value` cannot be written to an environment file (empty: it can). Never shows the value."""
    errors = []
    if not isinstance(name, str) or not NAME.fullmatch(name):
        errors.append(f"{name!r} is not a valid environment variable name (letters, digits and _, not starting "
                      "with a digit)")
    if value is not None and _REFUSED.search(text(value)):
        errors.append(f"the value of {name} holds a NUL, a control character other than tab and line break, or a "
                      "Unicode noncharacter, which systemd drops or cannot read: remove it")
    return errors


def quote(value: Any) -> str:
    """One value, double-quoted with `\\`, `"`, `$` and backquotes escaped (the module's rule)."""
    return '"' + _ESCAPED.sub(r"\\\1", text(value)) + '"'


def env_file(environment: Mapping[str, Any]) -> str:
    """`NAME="value"` lines, sorted by name; a None value leaves its variable out.

    That is how an inventory unsets a variable a role computes. Raises ValueError for a name or value
    value_errors refuses, naming the variable but never showing its value (it may be a secret).
    """
    lines = []
    for name in sorted(environment or {}, key=str):
        value = environment[name]
        if value is None:
            continue
        errors = value_errors(name, value)
        if errors:
            raise ValueError("; ".join(errors))
        lines.append(f"{name}={quote(value)}")
    return "".join(line + "\n" for line in lines)


def exec_word(argument: Any) -> str:
    """One argument, quoted for systemd's split of `$NAME` in ExecStart= (and read alike by shlex).

    Bare when it is made of safe characters; else in single quotes when it holds no `'` and no
    backslash; else in double quotes with `\\` and `"` escaped. An empty argument is `''`.
    """
    word = text(argument)
    if _BARE.fullmatch(word):
        return word
    if "'" not in word and "\\" not in word:
        return f"'{word}'"
    return '"' + re.sub(r'([\\"])', r"\\\1", word) + '"'


def exec_args(arguments: Iterable[Any]) -> str:
    """The value of a variable that ExecStart= expands as `$NAME` into exactly `arguments`."""
    return " ".join(exec_word(argument) for argument in arguments or [])
