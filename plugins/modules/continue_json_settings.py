#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Set keys in a developer's JSON settings file and leave everything else in it as it was."""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmfleet.llmfleet.plugins.module_utils.backups import aside_path

DOCUMENTATION = r"""
module: continue_json_settings
short_description: Set keys in a JSON settings file (VS Code's settings.json, Continue's globalContext.json)
description:
  - >-
    Sets each leaf of O(settings) in the file and changes no other byte of it: comments, trailing
    commas, key order, indentation and line endings stay as they were (VS Code's settings.json is JSON
    with comments). A key that already holds its value is not touched; a missing key is added after the
    last key of its object; a nested mapping is merged key by key.
  - >-
    A file that cannot be read as JSON with comments, or that this account may not replace (for example
    a settings.json that a dotfile manager links into a read-only place), is left as it is, with a
    warning that names it and the reason, and C(changed=false).
  - >-
    Creates a missing file, and the missing directories up to it (with O(dir_mode)), owned by O(owner)
    and O(group). Follows a symbolic link to the file it points at (as dotfile managers make them).
  - >-
    What is in the way of the file is moved aside, never deleted: a directory (or a link to one, or
    anything else that is not a file) at O(path), or a file where one of the directories up to it must
    be, is renamed to C(<name>.<pid>.<date>@<time>~) (Ansible's backup naming) with a warning, and the
    file is created (in check mode, reported). What this account may not rename is left alone, with a
    warning.
author:
  - llmfleet maintainers
options:
  path:
    description:
      - The settings file.
    type: path
    required: true
  settings:
    description:
      - >-
        The keys to set. A mapping is merged into the object at its key; any other value replaces the
        one at its key. VS Code's flat keys are keys like any other (C(continue.telemetryEnabled)).
    type: dict
    required: true
  owner:
    description:
      - Owner of the file and of the directories this module creates.
    type: str
  group:
    description:
      - Group of the file and of the directories this module creates.
    type: str
  mode:
    description:
      - >-
        Mode of the file. When unset, an existing file keeps its mode and a new one gets V(0600).
    type: raw
  dir_mode:
    description:
      - Mode of the directories this module creates.
    type: raw
    default: "0700"
  indent:
    description:
      - >-
        Spaces per level, for a file that has no indented key to copy the indentation from.
    type: int
    default: 4
attributes:
  check_mode:
    description: Reports what it would change, moves nothing aside and writes nothing.
    support: full
  diff_mode:
    description: Shows the file's text before and after.
    support: full
"""

EXAMPLES = r"""
- name: Turn Continue's telemetry off in VS Code's settings, keeping the developer's comments
  llmfleet.llmfleet.continue_json_settings:
    path: /home/alice/.config/Code/User/settings.json
    settings:
      continue.telemetryEnabled: false
    owner: alice
    group: alice
  become: true
  become_user: alice

- name: Set a nested key in Continue's global context, with two-space indentation for a new file
  llmfleet.llmfleet.continue_json_settings:
    path: /Users/alice/.continue/index/globalContext.json
    settings:
      sharedConfig:
        allowAnonymousTelemetry: false
    mode: "0600"
    dir_mode: "0700"
    indent: 2
"""

RETURN = r"""
path:
  description: The file written (the target, when O(path) is a symbolic link).
  type: str
  returned: always
  sample: /home/alice/.config/Code/User/settings.json
created:
  description: Whether the file did not exist and was (in check mode, would be) created.
  type: bool
  returned: always
left_alone:
  description: >-
    Why the file was left as it is (not JSON with comments, not writable, or something in the way that
    may not be moved), or null.
  type: str
  returned: always
moved:
  description: >-
    What was in the way, mapped to where it was (in check mode, would be) moved; an empty mapping when
    nothing was.
  type: dict
  returned: always
  sample: {/home/alice/.continue: "/home/alice/.continue.4242.2026-01-05@10:31:02~"}
"""

# The options as AnsibleModule takes them; DOCUMENTATION's options say the same (tests/test_module_docs.py).
ARGUMENT_SPEC = {
    "path": {"type": "path", "required": True},
    "settings": {"type": "dict", "required": True},
    "owner": {"type": "str"},
    "group": {"type": "str"},
    "mode": {"type": "raw"},
    "dir_mode": {"type": "raw", "default": "0700"},
    "indent": {"type": "int", "default": 4},
}

_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_STRING = re.compile(r'"(?:[^"\\\x00-\x1f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"')
_LITERALS = (("true", True), ("false", False), ("null", None))


class JsoncError(ValueError):
    """The text is not JSON with comments; the message names the line and column."""


@dataclass
class Node:
    """A value in the text: where it is (start, end exclusive) and what it is."""

    kind: str  # "object", "array" or "scalar"
    start: int
    end: int
    value: Any
    members: list[Member] = field(default_factory=list)  # objects only, in text order


@dataclass
class Member:
    key: str
    start: int  # where the key's opening quote is
    value: Node


class _Parser:
    """JSON as VS Code reads settings.json: with // and /* */ comments and trailing commas."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, message: str) -> JsoncError:
        line = self.text.count("\n", 0, self.pos) + 1
        column = self.pos - (self.text.rfind("\n", 0, self.pos) + 1) + 1
        return JsoncError(f"{message} at line {line}, column {column}")

    def skip(self) -> None:
        text = self.text
        while self.pos < len(text):
            if text[self.pos] in " \t\r\n\ufeff":
                self.pos += 1
            elif text.startswith("//", self.pos):
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end
            elif text.startswith("/*", self.pos):
                end = text.find("*/", self.pos + 2)
                if end < 0:
                    raise self.error("unterminated comment")
                self.pos = end + 2
            else:
                return

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def value(self) -> Node:
        self.skip()
        start, char = self.pos, self.peek()
        if char == "{":
            return self.object()
        if char == "[":
            return self.array()
        if char == '"':
            text = self.string()
            return Node("scalar", start, self.pos, text)
        number = _NUMBER.match(self.text, self.pos)
        if number:
            self.pos = number.end()
            return Node("scalar", start, self.pos, json.loads(number.group()))
        for literal, value in _LITERALS:
            if self.text.startswith(literal, self.pos):
                self.pos += len(literal)
                return Node("scalar", start, self.pos, value)
        raise self.error("expected a value" if char else "unexpected end")

    def string(self) -> str:
        match = _STRING.match(self.text, self.pos)
        if not match:
            raise self.error("invalid string")
        self.pos = match.end()
        return json.loads(match.group())

    def object(self) -> Node:
        start = self.pos
        self.pos += 1
        members: list[Member] = []
        while True:
            self.skip()
            if self.peek() == "}":  # empty, or after a trailing comma
                self.pos += 1
                break
            if self.peek() != '"':
                raise self.error("expected a key in double quotes")
            key_start = self.pos
            key = self.string()
            self.skip()
            if self.peek() != ":":
                raise self.error("expected ':'")
            self.pos += 1
            members.append(Member(key, key_start, self.value()))
            self.skip()
            if self.peek() == ",":
                self.pos += 1
            elif self.peek() == "}":
                self.pos += 1
                break
            else:
                raise self.error("expected ',' or '}'")
        # The last of duplicate keys wins, as in VS Code and JSON.parse.
        return Node("object", start, self.pos, {m.key: m.value.value for m in members}, members)

    def array(self) -> Node:
        start = self.pos
        self.pos += 1
        items = []
        while True:
            self.skip()
            if self.peek() == "]":
                self.pos += 1
                break
            items.append(self.value().value)
            self.skip()
            if self.peek() == ",":
                self.pos += 1
            elif self.peek() == "]":
                self.pos += 1
                break
            else:
                raise self.error("expected ',' or ']'")
        return Node("array", start, self.pos, items)


def parse(text: str) -> Node | None:
    """The document's top value with positions; None for an empty document (VS Code reads it as {})."""
    parser = _Parser(text)
    parser.skip()
    if parser.pos == len(text):
        return None
    node = parser.value()
    parser.skip()
    if parser.pos != len(text):
        raise parser.error("unexpected text after the end")
    return node


def leaves(settings: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(path of keys, value) for each non-mapping value of `settings`, depth first."""
    for key, value in settings.items():
        if isinstance(value, Mapping) and value:
            yield from leaves(value, prefix + (str(key),))
        else:
            yield prefix + (str(key),), value


def _same(a: Any, b: Any) -> bool:
    # By their JSON, so false is not 0 and 1 is not true.
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _line_indent(text: str, pos: int) -> str:
    start = text.rfind("\n", 0, pos) + 1
    end = start
    while end < pos and text[end] in " \t":
        end += 1
    return text[start:end]


def _starts_line(text: str, pos: int) -> bool:
    return text[text.rfind("\n", 0, pos) + 1:pos].strip(" \t") == ""


def _render(value: Any, indent: str, unit: str, newline: str) -> str:
    if isinstance(value, (dict, list)) and value:
        return json.dumps(value, indent=unit, ensure_ascii=False).replace("\n", newline + indent)
    return json.dumps(value, ensure_ascii=False)


def _nest(path: tuple[str, ...], value: Any) -> Any:
    for key in reversed(path):
        value = {key: value}
    return value


class _Editor:
    def __init__(self, text: str, unit: str) -> None:
        self.text = text
        self.newline = "\r\n" if "\r\n" in text else "\n"
        self.unit = unit

    def set(self, path: tuple[str, ...], value: Any) -> None:
        root = parse(self.text)
        if root is None:
            # Blank, or comments only: they stay, the document follows them.
            head = self.text.rstrip()
            separator = self.newline if head.lstrip("\ufeff") else ""
            self.text = head + separator + _render(_nest(path, value), "", self.unit, self.newline) + self.newline
            return
        if root.kind != "object":
            raise JsoncError("the top level is not an object")
        node = root
        for depth, key in enumerate(path):
            member = next((m for m in reversed(node.members) if m.key == key), None)
            rest = path[depth + 1:]
            if member is None:
                self._insert(node, key, _nest(rest, value))
                return
            if not rest:
                if not _same(member.value.value, value):
                    self._replace(member, value)
                return
            if member.value.kind != "object":
                self._replace(member, _nest(rest, value))
                return
            node = member.value

    def _replace(self, member: Member, value: Any) -> None:
        indent = _line_indent(self.text, member.start)
        rendered = _render(value, indent, self.unit, self.newline)
        self.text = self.text[:member.value.start] + rendered + self.text[member.value.end:]

    def _insert(self, node: Node, key: str, value: Any) -> None:
        text, newline = self.text, self.newline
        close = node.end - 1
        if not node.members:
            outer = _line_indent(text, node.start)
            indent = outer + self.unit
            inner = text[node.start + 1:close].rstrip()
            member = json.dumps(key, ensure_ascii=False) + ": " + _render(value, indent, self.unit, newline)
            self.text = text[:node.start + 1] + inner + newline + indent + member + newline + outer + text[close:]
            return
        last = node.members[-1]
        # What follows the last value: at most one comma, comments and blanks.
        between = text[last.value.end:close]
        tail = last.value.end + len(between.rstrip())
        after = _Parser(text)
        after.pos = last.value.end
        after.skip()
        trailing_comma = after.peek() == ","
        if "\n" not in text[node.start:close]:
            # All on one line: stay on it.
            member = json.dumps(key, ensure_ascii=False) + ": " + json.dumps(value, ensure_ascii=False)
            if trailing_comma:
                self.text = text[:tail] + " " + member + "," + text[tail:]
            else:
                self.text = text[:last.value.end] + ", " + member + text[last.value.end:]
            return
        if "\n" in text[node.start:last.start]:
            indent = _line_indent(text, last.start)  # the last key's line, comments before it or not
        else:
            indent = _line_indent(text, node.start) + self.unit
        member = json.dumps(key, ensure_ascii=False) + ": " + _render(value, indent, self.unit, newline)
        if trailing_comma:
            self.text = text[:tail] + newline + indent + member + "," + text[tail:]
        else:
            self.text = (text[:last.value.end] + "," + text[last.value.end:tail] + newline + indent + member
                         + text[tail:])


def _indent_unit(text: str, default: str) -> str:
    """The indentation of the top level's first key when it starts a line, else `default`."""
    root = parse(text)
    if root is not None and root.kind == "object" and root.members:
        first = root.members[0]
        indent = _line_indent(text, first.start)
        if indent and _starts_line(text, first.start):
            return indent
    return default


def _expected(document: Any, settings: Mapping[str, Any]) -> Any:
    result = json.loads(json.dumps({} if document is None else document))
    for path, value in leaves(settings):
        target = result
        for key in path[:-1]:
            if not isinstance(target.get(key), dict):
                target[key] = {}
            target = target[key]
        target[path[-1]] = value
    return result


def update(text: str, settings: Mapping[str, Any], indent: int = 4) -> str:
    """`text` with every leaf of `settings` set. Raises JsoncError if `text` is not JSON with comments.

    The result is read back and must hold exactly the old document with the settings merged in.
    """
    root = parse(text)
    if root is not None and root.kind != "object":
        raise JsoncError("the top level is not an object")
    editor = _Editor(text, _indent_unit(text, " " * indent))
    for path, value in leaves(settings):
        editor.set(path, value)
    after = parse(editor.text)
    if not _same(None if after is None else after.value, _expected(None if root is None else root.value, settings)):
        raise AssertionError("the edited file does not read back as expected")  # a bug here, never the file
    return editor.text


def _can_replace(path: str) -> bool:
    """Whether this process may create or replace `path`: the nearest existing directory is writable."""
    directory = os.path.dirname(path)
    while directory and not os.path.isdir(directory) and os.path.dirname(directory) != directory:
        directory = os.path.dirname(directory)
    return os.access(directory or ".", os.W_OK | os.X_OK)


def _in_the_way(path: str) -> str | None:
    """What must move for `path` to be a file: the path itself when it is neither a file nor a link
    to one (a dangling link is followed, like one to a file), else the nearest existing directory
    up to it when that is not a directory. None when nothing is in the way."""
    if os.path.lexists(path):
        if os.path.isfile(path) or (os.path.islink(path) and not os.path.exists(path)):
            return None
        return path
    directory = os.path.dirname(path)
    while directory and not os.path.lexists(directory) and os.path.dirname(directory) != directory:
        directory = os.path.dirname(directory)
    return directory if directory and os.path.lexists(directory) and not os.path.isdir(directory) else None


def _missing_dirs(path: str) -> list[str]:
    missing = []
    directory = os.path.dirname(path)
    while directory and not os.path.exists(directory):
        missing.append(directory)
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    return list(reversed(missing))


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        supports_check_mode=True,
    )
    params = module.params
    keys = ", ".join(".".join(p) for p, _ in leaves(params["settings"]))
    blocking = _in_the_way(params["path"])
    moved: dict[str, str] = {}
    if blocking:
        if not _can_replace(blocking):
            module.warn(f"{params['path']} was left as it is: {blocking} is in its way and this account may not "
                        f"move it. Set {keys} by hand.")
            module.exit_json(changed=False, path=params["path"], created=False, moved=moved,
                             left_alone=f"{blocking} is in the way and may not be moved")
        moved[blocking] = aside_path(blocking)
        if not module.check_mode:
            os.rename(blocking, moved[blocking])
        what = ("not a file" if blocking == params["path"]
                else f"a file where a directory up to {params['path']} goes")
        module.warn(f"{blocking} was {what}: {'moved' if not module.check_mode else 'a real run moves it'} "
                    f"to {moved[blocking]}")
    # A link to a directory was moved itself, not its target: the file goes where the link was.
    path = os.path.realpath(params["path"]) if os.path.islink(params["path"]) and not moved else params["path"]
    created = bool(moved) or not os.path.exists(path)
    result: dict[str, Any] = {"path": path, "created": created, "left_alone": None, "moved": moved}

    def leave_alone(reason: str) -> None:
        module.warn(f"{path} was left as it is: {reason}. Set {keys} by hand.")
        module.exit_json(changed=False, **dict(result, left_alone=reason))

    text = ""
    problem = None
    if not created:
        try:
            with open(path, "rb") as handle:
                text = handle.read().decode("utf-8")
        except UnicodeDecodeError as error:
            problem = JsoncError(f"not UTF-8 ({error})")
        except OSError as error:
            module.fail_json(msg=f"cannot read {path}: {error}", **result)
    try:
        if problem:
            raise problem
        new_text = update(text, params["settings"], params["indent"])
    except JsoncError as error:
        leave_alone(f"it is not JSON (with comments) that can be edited safely ({error})")

    changed = created or new_text != text
    if changed and not _can_replace(path):
        leave_alone("this account may not write there (a read-only or managed file?)")
    if changed and module._diff:
        result["diff"] = {"before": text, "after": new_text, "before_header": path, "after_header": path}
    if module.check_mode and created:
        module.exit_json(changed=True, **result)

    if not module.check_mode:
        for directory in _missing_dirs(path):
            os.mkdir(directory)
            changed = module.set_owner_if_different(directory, params["owner"], changed)
            changed = module.set_group_if_different(directory, params["group"], changed)
            changed = module.set_mode_if_different(directory, params["dir_mode"], changed)
        if new_text != text or created:
            handle, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".llmfleet-")
            with os.fdopen(handle, "wb") as out:
                out.write(new_text.encode("utf-8"))
            os.chmod(temporary, 0o600)
            # An existing file keeps its mode and owner (atomic_move copies them onto the new one).
            module.atomic_move(temporary, path)
    changed = module.set_owner_if_different(path, params["owner"], changed)
    changed = module.set_group_if_different(path, params["group"], changed)
    # A new file is private unless mode says otherwise (atomic_move gives it the umask's mode).
    mode = params["mode"] if params["mode"] is not None else ("0600" if created else None)
    if mode is not None:
        changed = module.set_mode_if_different(path, mode, changed)
    module.exit_json(changed=changed, **result)


if __name__ == "__main__":
    main()
