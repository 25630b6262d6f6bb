#!/usr/bin/python
# -*- coding: utf-8 -*-
"""A per-host lock that keeps two llmfleet runs from working on one host at the same time."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: llm_host_lock
short_description: Take or release the host's llmfleet run lock
description:
  - >-
    One JSON file, C(<dir>/provision.lock), names the run that is working on the host. O(state=acquired)
    creates it, waiting up to O(wait) seconds while another run holds it, then fails naming that run (id,
    controller, user, play, since when) and saying how to clear a stale lock. The same O(id) taking it
    again succeeds at once (a run that re-enters). Another run's lock older than O(expiry) seconds is
    taken over, with a warning. O(state=released) removes the lock only when O(id) holds it.
  - >-
    Every change happens under an exclusive flock of C(<dir>/.guard), held for milliseconds, so two runs
    can never both win. The lock file is replaced atomically, so a reader never sees half a record.
  - >-
    The lock is bookkeeping of the run, not state of the host, so the module always reports
    C(changed=false).
author:
  - llmfleet maintainers
options:
  state:
    description:
      - V(acquired) takes the lock (waiting for it), V(released) gives it back.
    type: str
    choices: [acquired, released]
    default: acquired
  id:
    description:
      - The run's identity. The same id re-entering holds the lock; only this id releases it.
    type: str
    required: true
  owner:
    description:
      - >-
        What to record about the run (controller, user, play, mode), as strings; shown to a run that is
        refused.
    type: dict
    default: {}
  dirs:
    description:
      - >-
        The lock directory per operating system, keyed by the system's name as Python's platform module
        gives it (C(Linux), C(Darwin)), for example C({Linux: /run/llmfleet, Darwin: /var/run/llmfleet}).
        The module fails on a system that has no entry.
    type: dict
    required: true
  wait:
    description:
      - Seconds to wait for another run's lock before failing; V(0) fails at once.
    type: int
    default: 0
  expiry:
    description:
      - Age in seconds after which another run's lock counts as stale and is taken over.
    type: int
    default: 14400
  poll:
    description:
      - Seconds between two looks at a held lock while waiting.
    type: float
    default: 2
attributes:
  check_mode:
    description: >-
      Acts in check mode as in a real run: a drift check must not read a host that another run is
      changing.
    support: full
extends_documentation_fragment:
  - llmfleet.llmfleet.attributes.no_diff
  - llmfleet.llmfleet.attributes.posix
"""

EXAMPLES = r"""
- name: Take the host's run lock, waiting up to 5 minutes for another run
  llmfleet.llmfleet.llm_host_lock:
    id: "{{ __llm_host_lock['id'] }}"
    owner: {controller: admin-laptop, user: alice, play: Team server, mode: apply}
    dirs: {Linux: /run/llmfleet, Darwin: /var/run/llmfleet}
    wait: 300

- name: Give it back (a no-op when another run holds it)
  llmfleet.llmfleet.llm_host_lock:
    state: released
    id: "{{ __llm_host_lock['id'] }}"
    dirs: {Linux: /run/llmfleet, Darwin: /var/run/llmfleet}
"""

RETURN = r"""
path:
  description: The lock file.
  type: str
  returned: always
  sample: /run/llmfleet/provision.lock
acquired:
  description: Whether this run holds the lock now (O(state=acquired)).
  type: bool
  returned: always
reentered:
  description: Whether this run already held it.
  type: bool
  returned: always
waited:
  description: Seconds spent waiting for another run.
  type: float
  returned: always
since:
  description: When this run took the lock (ISO 8601, UTC).
  type: str
  returned: when acquired
  sample: "2026-01-05T10:31:02Z"
since_epoch:
  description: The same time, in seconds since the epoch.
  type: float
  returned: when acquired
took_over:
  description: The stale record that was replaced.
  type: dict
  returned: when a stale lock was taken over
released:
  description: Whether the lock was removed (O(state=released)).
  type: bool
  returned: always
holder:
  description: The record of the run that holds the lock, when this one could not take or release it.
  type: dict
  returned: when another run holds it
  sample: {id: 20260105T103102Z-ab12cd34, controller: admin-laptop, user: alice, play: Team server,
           mode: apply, since: "2026-01-05T10:31:02Z", since_epoch: 1767609062.0, host_pid: 4242}
"""

# The options as AnsibleModule takes them; DOCUMENTATION's options say the same (tests/test_module_docs.py).
ARGUMENT_SPEC = {
    "state": {"type": "str", "choices": ["acquired", "released"], "default": "acquired"},
    "id": {"type": "str", "required": True},
    "owner": {"type": "dict", "default": {}},
    "dirs": {"type": "dict", "required": True},
    "wait": {"type": "int", "default": 0},
    "expiry": {"type": "int", "default": 14400},
    "poll": {"type": "float", "default": 2},
}

LOCK_NAME = "provision.lock"
GUARD_NAME = ".guard"


class LockHeld(Exception):
    """Another run holds the lock and the wait is over."""

    def __init__(self, holder: dict, waited: float) -> None:
        super().__init__(holder.get("id", "?"))
        self.holder = holder
        self.waited = waited


class RunLock:
    """The lock file in `directory`; `clock` and `sleep` are replaceable for tests."""

    def __init__(self, directory: str, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.directory = directory
        self.path = os.path.join(directory, LOCK_NAME)
        self.clock = clock
        self.sleep = sleep

    def acquire(self, run_id: str, owner: dict, wait: float, expiry: float, poll: float) -> dict:
        """Take the lock for `run_id`, waiting up to `wait` seconds; raise LockHeld when it stays taken."""
        start = self.clock()
        while True:
            with self._guard():
                holder = self.read()
                now = self.clock()
                if holder is not None and holder.get("id") == run_id:
                    return {"acquired": True, "reentered": True, "waited": now - start, **_times(holder)}
                stale = holder is not None and now - holder.get("since_epoch", 0) > expiry
                if holder is None or stale:
                    record = {**owner, "id": run_id, "since": _iso(now), "since_epoch": now, "host_pid": os.getpid()}
                    self._write(record)
                    result = {"acquired": True, "reentered": False, "waited": now - start, **_times(record)}
                    if stale:
                        result["took_over"] = holder
                    return result
            if now - start >= wait:
                raise LockHeld(holder, now - start)
            self.sleep(max(0.0, min(poll, wait - (now - start))))

    def release(self, run_id: str) -> dict:
        """Remove the lock if `run_id` holds it; otherwise leave it (and say who holds it)."""
        with self._guard():
            holder = self.read()
            if holder is None:
                return {"released": False}
            if holder.get("id") != run_id:
                return {"released": False, "holder": holder}
            os.unlink(self.path)
            return {"released": True}

    def read(self) -> dict | None:
        """The holder's record, None when free. An unreadable file still counts as held, since its mtime."""
        try:
            with open(self.path, encoding="utf-8") as handle:
                text = handle.read()
            mtime = os.stat(self.path).st_mtime
        except FileNotFoundError:
            return None
        try:
            record = json.loads(text)
            if not isinstance(record, dict):
                raise ValueError(text)
        except ValueError:
            record = {"id": "unknown (unreadable lock file)", "since_epoch": mtime, "since": _iso(mtime)}
        return record

    def _write(self, record: dict) -> None:
        fd, tmp = tempfile.mkstemp(prefix=".provision.", dir=self.directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(record, handle, indent=2, sort_keys=True)
                handle.write("\n")
            os.chmod(tmp, 0o644)  # no secrets in it; people read it to see who holds the host
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        os.makedirs(self.directory, mode=0o755, exist_ok=True)
        fd = os.open(os.path.join(self.directory, GUARD_NAME), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing drops the flock


def describe(holder: dict, now: float) -> str:
    """One line about the run holding the lock, for people."""
    who = "@".join(part for part in (holder.get("user"), holder.get("controller")) if part)
    what = " ".join(part for part in (holder.get("mode"), "run of play", repr(holder["play"])) if part) \
        if holder.get("play") else ""
    details = ", ".join(part for part in (who, what) if part)
    age = int(now - holder.get("since_epoch", now))
    return (f"run {holder.get('id', '?')}{f' ({details})' if details else ''} since {holder.get('since', '?')}"
            f" ({age // 60} min {age % 60} s ago)")


def _times(record: dict) -> dict:
    return {"since": record.get("since"), "since_epoch": record.get("since_epoch")}


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        supports_check_mode=True,
    )
    params = module.params
    system = platform.system()
    if system not in params["dirs"]:
        module.fail_json(msg=f"no lock directory for {system} in dirs ({', '.join(params['dirs'])})")
    lock = RunLock(params["dirs"][system])
    base = {"changed": False, "path": lock.path, "acquired": False, "reentered": False, "waited": 0.0,
            "released": False}

    if params["state"] == "released":
        result = lock.release(params["id"])
        if "holder" in result:
            module.warn(f"{lock.path} was not released: it is held by {describe(result['holder'], time.time())},"
                        f" not by this run ({params['id']}); it was taken over as stale.")
        module.exit_json(**{**base, **result})

    owner = {key: str(value) for key, value in params["owner"].items()}
    try:
        result = lock.acquire(params["id"], owner, params["wait"], params["expiry"], params["poll"])
    except LockHeld as held:
        module.fail_json(
            **{**base, "waited": held.waited, "holder": held.holder},
            msg=(f"Another llmfleet run is working on this host: {describe(held.holder, time.time())}. "
                 f"Waited {int(held.waited)} s (llm_host_lock_wait). Try again when it has finished, or wait"
                 f" longer with -e llm_host_lock_wait=SECONDS. If that run is gone (killed, or this host was"
                 f" unreachable when it ended), remove the lock on this host: sudo rm {lock.path} ; it is"
                 f" taken over anyway once older than llm_host_lock_expiry ({params['expiry']} s)."),
        )
    if "took_over" in result:
        module.warn(f"Took over a stale lock (older than llm_host_lock_expiry, {params['expiry']} s):"
                    f" {describe(result['took_over'], time.time())}.")
    module.exit_json(**{**base, **result})


if __name__ == "__main__":
    main()
