"""The llm_host host lock: acquire, re-entry, wait and refusal, stale takeover, release by its holder only."""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from pathlib import Path
from types import ModuleType

import pytest
from _modules import load_module

MODULE_PATH = "plugins/modules/llm_host_lock.py"
OWNER = {"controller": "admin-laptop", "user": "alice", "play": "Team server", "mode": "apply"}


@pytest.fixture(scope="module")
def lockmod() -> ModuleType:
    return load_module(MODULE_PATH)


class FakeClock:
    """Time that moves only when the lock sleeps (or a test says so)."""

    def __init__(self, start: float = 1_764_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _lock(lockmod: ModuleType, tmp_path: Path, clock: FakeClock):
    return lockmod.RunLock(str(tmp_path / "run" / "llmfleet"), clock=clock, sleep=clock.sleep)


def test_acquire_creates_the_directory_and_records_the_owner(lockmod: ModuleType, tmp_path: Path) -> None:
    clock = FakeClock()
    lock = _lock(lockmod, tmp_path, clock)
    result = lock.acquire("run-1", OWNER, wait=0, expiry=3600, poll=1)
    assert result["acquired"] and not result["reentered"] and result["waited"] == 0
    record = json.loads(Path(lock.path).read_text())
    assert record["id"] == "run-1" and record["since_epoch"] == clock.now
    assert record["since"] == "2025-11-24T16:00:00Z"
    assert {k: record[k] for k in OWNER} == OWNER
    assert oct(os.stat(lock.path).st_mode & 0o777) == "0o644"
    # Only the lock and its guard: the temporary file was renamed into place.
    assert sorted(os.listdir(lock.directory)) == [".guard", "provision.lock"]


def test_same_run_reenters_at_once_and_keeps_its_start(lockmod: ModuleType, tmp_path: Path) -> None:
    clock = FakeClock()
    lock = _lock(lockmod, tmp_path, clock)
    first = lock.acquire("run-1", OWNER, wait=0, expiry=3600, poll=1)
    clock.now += 120
    again = lock.acquire("run-1", OWNER, wait=0, expiry=3600, poll=1)
    assert again["acquired"] and again["reentered"]
    assert again["since_epoch"] == first["since_epoch"]
    assert clock.sleeps == []


def test_another_run_waits_then_fails_naming_the_holder(lockmod: ModuleType, tmp_path: Path) -> None:
    clock = FakeClock()
    lock = _lock(lockmod, tmp_path, clock)
    lock.acquire("run-1", OWNER, wait=0, expiry=3600, poll=1)
    with pytest.raises(lockmod.LockHeld) as held:
        lock.acquire("run-2", {"user": "bob"}, wait=10, expiry=3600, poll=3)
    assert held.value.holder["id"] == "run-1"
    assert held.value.waited == 10
    # Polled every 3 s, the last sleep cut to the end of the wait.
    assert clock.sleeps == [3, 3, 3, 1]
    assert json.loads(Path(lock.path).read_text())["id"] == "run-1"  # untouched
    text = lockmod.describe(held.value.holder, clock.now)
    assert text == ("run run-1 (alice@admin-laptop, apply run of play 'Team server')"
                    " since 2025-11-24T16:00:00Z (0 min 10 s ago)")


def test_zero_wait_fails_without_sleeping(lockmod: ModuleType, tmp_path: Path) -> None:
    clock = FakeClock()
    lock = _lock(lockmod, tmp_path, clock)
    lock.acquire("run-1", OWNER, wait=0, expiry=3600, poll=1)
    with pytest.raises(lockmod.LockHeld):
        lock.acquire("run-2", OWNER, wait=0, expiry=3600, poll=1)
    assert clock.sleeps == []


def test_waiting_run_gets_the_lock_once_released(lockmod: ModuleType, tmp_path: Path) -> None:
    clock = FakeClock()
    lock = _lock(lockmod, tmp_path, clock)
    lock.acquire("run-1", OWNER, wait=0, expiry=3600, poll=1)

    def sleep_then_release(seconds: float) -> None:
        clock.sleep(seconds)
        if len(clock.sleeps) == 2:
            assert lock.release("run-1") == {"released": True}

    lock.sleep = sleep_then_release
    result = lock.acquire("run-2", OWNER, wait=60, expiry=3600, poll=5)
    assert result["acquired"] and not result["reentered"]
    assert result["waited"] == 10
    assert json.loads(Path(lock.path).read_text())["id"] == "run-2"


def test_stale_lock_is_taken_over_and_reported(lockmod: ModuleType, tmp_path: Path) -> None:
    clock = FakeClock()
    lock = _lock(lockmod, tmp_path, clock)
    lock.acquire("run-1", OWNER, wait=0, expiry=3600, poll=1)
    clock.now += 3601
    result = lock.acquire("run-2", {"user": "bob"}, wait=0, expiry=3600, poll=1)
    assert result["acquired"] and result["took_over"]["id"] == "run-1"
    record = json.loads(Path(lock.path).read_text())
    assert record["id"] == "run-2" and record["user"] == "bob"


def test_lock_just_under_expiry_is_not_taken_over(lockmod: ModuleType, tmp_path: Path) -> None:
    clock = FakeClock()
    lock = _lock(lockmod, tmp_path, clock)
    lock.acquire("run-1", OWNER, wait=0, expiry=3600, poll=1)
    clock.now += 3600
    with pytest.raises(lockmod.LockHeld):
        lock.acquire("run-2", OWNER, wait=0, expiry=3600, poll=1)


def test_release_by_another_run_leaves_the_lock(lockmod: ModuleType, tmp_path: Path) -> None:
    clock = FakeClock()
    lock = _lock(lockmod, tmp_path, clock)
    lock.acquire("run-1", OWNER, wait=0, expiry=3600, poll=1)
    result = lock.release("run-2")
    assert result["released"] is False and result["holder"]["id"] == "run-1"
    assert json.loads(Path(lock.path).read_text())["id"] == "run-1"
    assert lock.release("run-1") == {"released": True}
    assert not Path(lock.path).exists()
    assert lock.release("run-1") == {"released": False}  # nothing left to release


def test_unreadable_lock_file_counts_as_held_since_its_mtime(lockmod: ModuleType, tmp_path: Path) -> None:
    clock = FakeClock()
    lock = _lock(lockmod, tmp_path, clock)
    Path(lock.directory).mkdir(parents=True)
    Path(lock.path).write_text("not json")
    os.utime(lock.path, (clock.now - 10, clock.now - 10))
    with pytest.raises(lockmod.LockHeld) as held:
        lock.acquire("run-2", OWNER, wait=0, expiry=3600, poll=1)
    assert held.value.holder["since_epoch"] == clock.now - 10
    clock.now += 3600
    assert lock.acquire("run-2", OWNER, wait=0, expiry=3600, poll=1)["took_over"]["id"].startswith("unknown")


def _contend(directory: str, run_id: str, start: float, queue: multiprocessing.Queue) -> None:
    module = load_module(MODULE_PATH)
    while time.time() < start:
        time.sleep(0.001)
    try:
        module.RunLock(directory).acquire(run_id, {}, wait=0, expiry=3600, poll=0.05)
        queue.put(run_id)
    except module.LockHeld as held:
        queue.put(f"refused by {held.holder['id']}")


def test_concurrent_processes_get_exactly_one_lock(tmp_path: Path) -> None:
    """Real processes racing on the real file system: the flock guard lets one win."""
    directory = str(tmp_path / "llmfleet")
    queue: multiprocessing.Queue = multiprocessing.Queue()
    start = time.time() + 0.5
    workers = [multiprocessing.Process(target=_contend, args=(directory, f"run-{i}", start, queue)) for i in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    outcomes = [queue.get(timeout=5) for _ in workers]
    winners = [o for o in outcomes if not o.startswith("refused")]
    assert len(winners) == 1
    assert outcomes.count(f"refused by {winners[0]}") == 7
    assert json.loads(Path(directory, "provision.lock").read_text())["id"] == winners[0]
