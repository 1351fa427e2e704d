"""The systems under comparison: how each one makes its primitives and names them in tables.

Three systems are measured side by side in one run:

* ``polysync``: ``polysync.get_context("posix")`` (anonymous objects, cleaned up by
  polysync's own tracker process);
* ``multiprocessing``: the default ``fork`` context's primitives;
* ``raw``: a bare ``posix_ipc.Semaphore`` (Lock = binary semaphore), only where a
  semaphore can stand in for the primitive.

Every raw posix_ipc semaphore is created under :data:`PREFIX` and unlinked at once:
the handle stays valid in this process and in forked children, so nothing is left in
``/dev/shm`` even when a job is killed.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import secrets
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from typing import Any

import posix_ipc

import polysync

POLYSYNC = "polysync"
MP = "multiprocessing"
RAW = "raw"
#: Pseudo-system of section C: the same loop with no lock at all (it must lose updates).
NOLOCK = "nolock"

LABELS: dict[str, str] = {
    POLYSYNC: "polysync posix",
    MP: "multiprocessing",
    RAW: "raw posix_ipc semaphore",
    NOLOCK: "no lock (control)",
}

#: Name prefix of every POSIX object this suite creates itself (``/dev/shm/sem.psbench-*``).
PREFIX = "/psbench-"

_FORK = multiprocessing.get_context("fork")


def polysync_context() -> polysync.Context:
    """The posix backend's context (the one polysync system measured here)."""
    return polysync.get_context("posix")


def start_polysync_tracker() -> polysync.Lock:
    """Start polysync's cleanup tracker in this process and keep it for the whole run.

    The tracker is a separate Python process started when a process tree makes its first
    anonymous object. Starting it here, before any timed job, keeps its start-up off the
    measurements and lets every forked job share it. Close the returned lock at the end.
    """
    return polysync_context().Lock()


def raw_semaphore(value: int) -> posix_ipc.Semaphore:
    """A fresh posix_ipc semaphore holding *value*, already unlinked (nothing to clean up)."""
    name = f"{PREFIX}{os.getpid()}-{secrets.token_hex(6)}"
    sem = posix_ipc.Semaphore(name, posix_ipc.O_CREX, 0o600, value)
    sem.unlink()
    return sem


def make_lock(system: str) -> Any:
    """A Lock of *system* (raw: a binary semaphore)."""
    if system == POLYSYNC:
        return polysync_context().Lock()
    if system == MP:
        return _FORK.Lock()
    if system == RAW:
        return raw_semaphore(1)
    raise ValueError(f"no Lock for {system!r}")


def make_rlock(system: str) -> Any:
    """An RLock of *system* (raw posix_ipc has none)."""
    if system == POLYSYNC:
        return polysync_context().RLock()
    if system == MP:
        return _FORK.RLock()
    raise ValueError(f"no RLock for {system!r}")


def make_semaphore(system: str, value: int) -> Any:
    """A Semaphore of *system* starting at *value*."""
    if system == POLYSYNC:
        return polysync_context().Semaphore(value)
    if system == MP:
        return _FORK.Semaphore(value)
    if system == RAW:
        return raw_semaphore(value)
    raise ValueError(f"no Semaphore for {system!r}")


def make_event(system: str) -> Any:
    """An Event of *system*."""
    if system == POLYSYNC:
        return polysync_context().Event()
    if system == MP:
        return _FORK.Event()
    raise ValueError(f"no Event for {system!r}")


def make_condition(system: str) -> Any:
    """A Condition of *system* over its default lock (an RLock in both)."""
    if system == POLYSYNC:
        return polysync_context().Condition()
    if system == MP:
        return _FORK.Condition()
    raise ValueError(f"no Condition for {system!r}")


def make_barrier(system: str, parties: int) -> Any:
    """A Barrier of *system* for *parties* parties."""
    if system == POLYSYNC:
        return polysync_context().Barrier(parties)
    if system == MP:
        return _FORK.Barrier(parties)
    raise ValueError(f"no Barrier for {system!r}")


def timed_acquire(system: str, obj: Any, timeout: float) -> Callable[[], None]:
    """A call that acquires *obj* within *timeout* seconds or raises ``TimeoutError``."""
    if system == RAW:
        raw_acquire = obj.acquire

        def acquire_raw() -> None:
            try:
                raw_acquire(timeout)
            except posix_ipc.BusyError:
                raise TimeoutError(f"acquire took more than {timeout} s") from None

        return acquire_raw
    acquire = obj.acquire

    def acquire_api() -> None:
        if not acquire(True, timeout):
            raise TimeoutError(f"acquire took more than {timeout} s")

    return acquire_api


_started: list[int] = []


def fork_process(target: Callable[..., object], *args: object) -> BaseProcess:
    """A started child process made by fork (primitives pass to it by inheritance)."""
    proc = _FORK.Process(target=target, args=args)
    proc.start()
    assert proc.pid is not None
    _started.append(proc.pid)
    return proc


def started_pids() -> list[int]:
    """This process and every participant it forked (their polysync waiters carry the pid)."""
    return [os.getpid(), *_started]


def polysync_tracker_id() -> str | None:
    """The id of the polysync tracker this process tree uses (set once one is running)."""
    return os.environ.get(_TRACKER_ENV)


_TRACKER_ENV = "POLYSYNC_POSIX_TRACKER"
_WAITER = re.compile(r"polysync-w-(\d+)-")


def shm_entries() -> set[str]:
    """Names in ``/dev/shm`` that belong to polysync or to this suite."""
    try:
        names = os.listdir("/dev/shm")
    except OSError:
        return set()
    own = PREFIX.strip("/")
    return {n for n in names if "polysync" in n or own in n}


def created_by_us(entry: str, tracker_id: str | None, pids: set[int]) -> bool:
    """Whether a ``/dev/shm`` *entry* was made by this run (other programs may share the host).

    Ours are: this suite's prefix; polysync's anonymous objects of our tracker
    (``polysync-a-<tracker>-...``); polysync's waiter semaphores of our processes
    (``polysync-w-<pid>-...``).
    """
    if PREFIX.strip("/") in entry:
        return True
    if tracker_id and f"polysync-a-{tracker_id}-" in entry:
        return True
    found = _WAITER.search(entry)
    return found is not None and int(found.group(1)) in pids
