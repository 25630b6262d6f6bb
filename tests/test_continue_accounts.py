"""continue_accounts: each developer's account, home and group, looked up name by name."""

from __future__ import annotations

import getpass
import os
import pwd
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from _modules import load_module


@pytest.fixture(scope="module")
def accounts() -> ModuleType:
    return load_module("plugins/modules/continue_accounts.py")


def fake_passwd(entries: dict[str, tuple[int, int, str]]) -> Any:
    def getpwnam(name: str) -> SimpleNamespace:
        if name not in entries:
            raise KeyError(f"getpwnam(): name not found: {name!r}")
        uid, gid, home = entries[name]
        return SimpleNamespace(pw_uid=uid, pw_gid=gid, pw_dir=home)

    return getpwnam


def test_reports_home_group_and_whether_the_home_exists(accounts: ModuleType) -> None:
    found = accounts.look_up(
        ["alice", "bob"],
        getpwnam=fake_passwd({"alice": (1000, 100, "/home/alice"), "bob": (1001, 1001, "/srv/bob")}),
        home_exists=lambda path: path == "/home/alice",
    )
    assert found == {
        "accounts": {
            "alice": {"uid": 1000, "group": 100, "home": "/home/alice", "home_exists": True},
            "bob": {"uid": 1001, "group": 1001, "home": "/srv/bob", "home_exists": False},
        },
        "missing": [],
        "no_home": ["bob"],
    }


def test_names_without_an_account_are_missing_in_the_order_given(accounts: ModuleType) -> None:
    found = accounts.look_up(
        ["zed", "alice", "amy", "zed"],
        getpwnam=fake_passwd({"alice": (1000, 100, "/home/alice")}),
        home_exists=lambda path: True,
    )
    assert found["missing"] == ["zed", "amy"]
    assert list(found["accounts"]) == ["alice"]
    assert found["no_home"] == []


def test_looks_each_name_up_rather_than_listing_the_database(accounts: ModuleType) -> None:
    asked: list[str] = []

    def getpwnam(name: str) -> SimpleNamespace:
        asked.append(name)
        return SimpleNamespace(pw_uid=1, pw_gid=1, pw_dir="/")

    accounts.look_up(["a", "b", "a"], getpwnam=getpwnam, home_exists=lambda path: True)
    assert asked == ["a", "b"]


def test_real_account_database(accounts: ModuleType, tmp_path: Any) -> None:
    me = getpass.getuser()
    entry = pwd.getpwnam(me)
    found = accounts.look_up([me, "no-such-user-llmfleet"])
    assert found["accounts"][me] == {
        "uid": entry.pw_uid,
        "group": entry.pw_gid,
        "home": entry.pw_dir,
        "home_exists": os.path.isdir(entry.pw_dir),
    }
    assert found["missing"] == ["no-such-user-llmfleet"]


def test_a_file_where_the_home_should_be_is_no_home(accounts: ModuleType, tmp_path: Any) -> None:
    a_file = tmp_path / "home"
    a_file.write_text("")
    assert accounts.is_dir(str(tmp_path)) is True
    assert accounts.is_dir(str(a_file)) is False
    assert accounts.is_dir(str(tmp_path / "absent")) is False
