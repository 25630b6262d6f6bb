#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Look up the developers' accounts: home, primary group, and whether the home exists."""

from __future__ import annotations

import os
import pwd
import stat
from collections.abc import Callable
from typing import Any

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: continue_accounts
short_description: Find each developer's account, home directory and primary group
description:
  - Asks the system's account database for each name, the way C(id) does: local files, LDAP or
    other directory services on Linux, Directory Services on macOS. Names are looked up one by one,
    so a directory that does not enumerate its accounts still answers.
  - Reports each account's home and primary group id, whether the home is an existing directory,
    the names with no account and the accounts whose home is missing.
  - Reads only; changes nothing, in check mode or not.
options:
  users:
    description: Account names.
    type: list
    elements: str
    required: true
"""

RETURN = r"""
accounts:
  description: Per name with an account, C(uid), C(group) (the primary group id), C(home) and C(home_exists).
  type: dict
  returned: always
missing:
  description: Names with no account, in the order given.
  type: list
  returned: always
no_home:
  description: Names whose home is not an existing directory, in the order given.
  type: list
  returned: always
"""


def is_dir(path: str) -> bool:
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except OSError:
        return False


def look_up(
    users: list[str],
    getpwnam: Callable[[str], Any] = pwd.getpwnam,
    home_exists: Callable[[str], bool] = is_dir,
) -> dict[str, Any]:
    accounts: dict[str, dict[str, Any]] = {}
    missing: list[str] = []
    for name in dict.fromkeys(users):
        try:
            entry = getpwnam(name)
        except KeyError:
            missing.append(name)
            continue
        accounts[name] = {
            "uid": entry.pw_uid,
            "group": entry.pw_gid,
            "home": entry.pw_dir,
            "home_exists": home_exists(entry.pw_dir),
        }
    no_home = [name for name, account in accounts.items() if not account["home_exists"]]
    return {"accounts": accounts, "missing": missing, "no_home": no_home}


def main() -> None:
    module = AnsibleModule(
        argument_spec={"users": {"type": "list", "elements": "str", "required": True}},
        supports_check_mode=True,
    )
    module.exit_json(changed=False, **look_up(module.params["users"]))


if __name__ == "__main__":
    main()
