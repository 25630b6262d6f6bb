#!/usr/bin/python
# -*- coding: utf-8 -*-
"""One look at the paths a role manages; whatever stands where the role puts something else is moved aside."""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import stat
from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmfleet.llmfleet.plugins.module_utils.backups import aside_path

DOCUMENTATION = r"""
module: llm_host_paths
short_description: Look at the paths a role manages, and move aside what is in their way
description:
  - >-
    Reports what each path is (its type, mode, owner and group, a link's target, and on request a regular
    file's sha256 or its text), in one module call instead of one stat per path.
  - >-
    A path with a C(type) is where the role puts a file, a directory or a symbolic link. What stands there
    and would make the role's own task fail or misbehave is renamed to C(<path>.<pid>.<date>@<time>~)
    (Ansible's backup naming) in the same directory, with a warning that names it; nothing is deleted.
  - >-
    In the way of a C(file) (which template or copy write; they replace a link to a file, but would write
    into a directory) are a directory, a link to a directory, a socket, a FIFO and a device. In the way
    of a C(directory) is anything but a directory or a link to one (a data directory moved elsewhere
    stays where its link points). In the way of a C(link) (which the file module's C(state=link) with
    C(force=true) would make by deleting a file, and refuses to make over a directory) is a regular
    file, a directory or anything else that is not a link.
  - >-
    An entry that gives C(mode), C(owner) or C(group) is listed in RV(differs) when it exists and any of
    them is different. They are compared, not changed: the role's own task sets them.
  - >-
    Paths are handled in the order given; one below a path that is moved (in check mode, would be) is
    reported absent.
author:
  - llmfleet maintainers
options:
  paths:
    description:
      - >-
        The paths, each a mapping with C(path) (required); C(type), what the role puts there (C(file),
        C(directory) or C(link); when omitted the path is only looked at); C(checksum) (true for the
        sha256 of a regular file, following links); C(read) (true for the text of a regular file of at
        most 64 KiB); and C(mode) (an octal string), C(owner) and C(group) (names or ids) to compare
        (RV(differs)).
    type: list
    elements: dict
    required: true
attributes:
  check_mode:
    description: Reports what it would move, moves nothing.
    support: full
  diff_mode:
    description: Shows what was in the way and where it was moved.
    support: full
extends_documentation_fragment:
  - llmfleet.llmfleet.attributes.posix
"""

EXAMPLES = r"""
- name: Look at Ollama's files, moving aside what is in their way
  llmfleet.llmfleet.llm_host_paths:
    paths:
      - {path: /etc/ollama, type: directory, mode: "0750", owner: root, group: ollama}
      - {path: /etc/ollama/ollama.env, type: file}
      - {path: /usr/local/bin/ollama, type: link}
      - {path: /opt/llmfleet/ollama/0.32.15/bin/ollama, checksum: true}
      - {path: /opt/llmfleet/ollama/0.32.15/.llmfleet-bin.sha256, read: true}
  register: __ollama_look
"""

RETURN = r"""
paths:
  description:
    - >-
      Per path as given, what is there after the moves (absent for a path moved aside, or in check mode
      one that would be): C(exists); for an existing path C(type) (C(directory), C(file), C(link) or
      C(other)), C(mode) (a string such as C(0755)), C(uid), C(gid), C(owner) and C(group) (names, null
      when unknown); for a link C(target) (as written) and C(points_to) (the type it resolves to, C(absent)
      when dangling); C(checksum) and C(content) when asked for and readable.
  type: dict
  returned: always
  sample: {/etc/ollama: {exists: true, type: directory, mode: "0750", uid: 0, gid: 998, owner: root,
                         group: ollama}}
differs:
  description: The entries with C(mode), C(owner) or C(group) that exist and differ in any of them.
  type: list
  elements: str
  returned: always
moved:
  description: Each path moved aside (in check mode, that would be), mapped to where.
  type: dict
  returned: always
affected:
  description:
    - >-
      The entries moved aside and those below them (in check mode, that would be): there a role's own
      task would meet what is in the way, or in check mode a missing directory above it.
  type: list
  elements: str
  returned: always
"""

# The options as AnsibleModule takes them; DOCUMENTATION's options say the same (tests/test_module_docs.py).
ARGUMENT_SPEC = {
    "paths": {"type": "list", "elements": "dict", "required": True},
}

TYPES = ("file", "directory", "link")
READ_LIMIT = 64 * 1024


def kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISLNK(mode):
        return "link"
    return "other"


def look(path: str, checksum: bool = False, read: bool = False) -> dict[str, Any]:
    """What is at `path`, without following a link at the path itself (its target's type is `points_to`)."""
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return {"exists": False}
    info: dict[str, Any] = {
        "exists": True, "type": kind(st.st_mode), "mode": "%04o" % stat.S_IMODE(st.st_mode),
        "uid": st.st_uid, "gid": st.st_gid, "owner": _name(st.st_uid, True), "group": _name(st.st_gid, False)}
    resolved = st
    if info["type"] == "link":
        info["target"] = os.readlink(path)
        try:
            resolved = os.stat(path)
            info["points_to"] = kind(resolved.st_mode)
        except OSError:
            info["points_to"] = "absent"
            return info
    if stat.S_ISREG(resolved.st_mode):
        try:
            if checksum:
                digest = hashlib.sha256()
                with open(path, "rb") as handle:
                    for block in iter(lambda: handle.read(1 << 20), b""):
                        digest.update(block)
                info["checksum"] = digest.hexdigest()
            if read and resolved.st_size <= READ_LIMIT:
                with open(path, "rb") as handle:
                    info["content"] = handle.read().decode("utf-8", errors="replace")
        except OSError:
            pass  # unreadable: reported without them, as stat does
    return info


def _name(number: int, user: bool) -> str | None:
    try:
        return pwd.getpwuid(number).pw_name if user else grp.getgrgid(number).gr_name
    except (KeyError, OverflowError):
        return None


def in_the_way(info: dict[str, Any], wanted: str | None) -> bool:
    """Whether what `info` describes must move for the role to put a `wanted` there."""
    if not wanted or not info["exists"]:
        return False
    found = info["type"]
    resolved = info.get("points_to") if found == "link" else found
    if wanted == "file":
        return resolved not in ("file", "absent")
    if wanted == "directory":
        return resolved != "directory"
    return found != "link"


def differs(info: dict[str, Any], entry: dict[str, Any]) -> bool:
    """Whether an existing path's mode, owner or group differs from the entry's (those it names)."""
    if not info["exists"]:
        return False
    wanted_mode = entry.get("mode")
    if wanted_mode is not None and int(str(wanted_mode), 8) != int(info["mode"], 8):
        return True
    for key, number in (("owner", "uid"), ("group", "gid")):
        wanted = entry.get(key)
        if wanted is not None and str(wanted) not in (str(info[key]), str(info[number])):
            return True
    return False


def describe(info: dict[str, Any]) -> str:
    if info["type"] == "link":
        return f"a link to {info['target']} ({info['points_to']})"
    return {"directory": "a directory", "file": "a file"}.get(info["type"], "a special file")


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        supports_check_mode=True,
    )
    entries = module.params["paths"]
    for entry in entries:
        if not entry.get("path"):
            module.fail_json(msg=f"every entry needs a path: {entry!r}")
        if entry.get("type") not in (None,) + TYPES:
            module.fail_json(msg=f"{entry['path']}: type must be one of {', '.join(TYPES)}, not {entry['type']!r}")

    paths: dict[str, dict[str, Any]] = {}
    moved: dict[str, str] = {}
    different: list[str] = []
    affected: list[str] = []  # moved, or below what moved
    gone: list[str] = []  # the normalised paths moved aside
    before: list[str] = []
    after: list[str] = []
    for entry in entries:
        path = os.path.normpath(entry["path"])
        if any(path.startswith(top.rstrip("/") + "/") for top in gone):
            paths[entry["path"]] = {"exists": False}
            affected.append(entry["path"])
            continue
        info = look(path, bool(entry.get("checksum")), bool(entry.get("read")))
        if in_the_way(info, entry.get("type")):
            destination = aside_path(path)
            what = describe(info)
            if not module.check_mode:
                try:
                    os.rename(path, destination)
                except OSError as error:
                    module.fail_json(msg=f"{path} is {what}, in the way of the {entry['type']} llmfleet puts there, "
                                         f"and could not be moved to {destination}: {error}", paths=paths, moved=moved)
            module.warn(f"{path} was {what}, in the way of the {entry['type']} llmfleet puts there: "
                        f"{'moved' if not module.check_mode else 'a real run moves it'} to {destination}")
            moved[entry["path"]] = destination
            affected.append(entry["path"])
            gone.append(path)
            before.append(f"{path}: {what}")
            after.append(f"{path}: moved to {destination}, a {entry['type']} in its place")
            info = {"exists": False}
        if differs(info, entry):
            different.append(entry["path"])
        paths[entry["path"]] = info

    result: dict[str, Any] = {"changed": bool(moved), "paths": paths, "differs": different, "moved": moved,
                              "affected": affected}
    if moved and module._diff:
        result["diff"] = {"before": "\n".join(before) + "\n", "after": "\n".join(after) + "\n",
                          "before_header": "what is in the way", "after_header": "moved aside"}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
