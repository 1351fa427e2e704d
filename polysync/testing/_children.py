"""Functions the conformance suite runs in child processes (importable under spawn)."""

from __future__ import annotations

import time
from typing import Any

import polysync


def try_acquire(lock: Any, timeout: float) -> bool:
    """Acquire *lock* within *timeout*; release it again if acquired."""
    got: bool = lock.acquire(timeout=timeout)
    if got:
        lock.release()
    return got


def hold_until(lock: Any, held: Any, go: Any, timeout: float) -> bool:
    """Acquire *lock*, set *held*, wait for *go*, release."""
    if not lock.acquire(timeout=timeout):
        return False
    held.set()
    ok: bool = go.wait(timeout)
    lock.release()
    return ok


def acquire_and_exit(lock: Any) -> bool:
    """Acquire *lock* and return without releasing it."""
    return bool(lock.acquire(timeout=5))


def release_foreign(rlock: Any) -> str:
    """Try to release an RLock this process does not own; return the error's type name."""
    try:
        rlock.release()
    except polysync.NotHeldError as exc:
        return type(exc).__name__
    return "no error"


def wait_event(event: Any, timeout: float) -> bool:
    return bool(event.wait(timeout))


def set_event_later(event: Any, delay: float) -> None:
    time.sleep(delay)
    event.set()


def take_permits(sem: Any, count: int, timeout: float) -> int:
    """Acquire up to *count* permits of *sem*; return how many were taken (kept)."""
    taken = 0
    for _ in range(count):
        if not sem.acquire(timeout=timeout):
            break
        taken += 1
    return taken


def condition_waiter(cond: Any, ready: Any, timeout: float) -> bool:
    """Wait on *cond* after announcing (under its lock) that it is about to wait."""
    with cond:
        ready.release()
        return bool(cond.wait(timeout))


def barrier_wait(barrier: Any, timeout: float) -> int:
    return int(barrier.wait(timeout))


def barrier_wait_broken(barrier: Any, timeout: float) -> str:
    try:
        barrier.wait(timeout)
    except polysync.BrokenBarrierError:
        return "broken"
    return "passed"


def open_named(ctx: polysync.Context, kind: str, name: str) -> Any:
    """Open *kind* by *name* in a fresh interpreter, as an unrelated process would.

    Only the context (backend and options, such as a server address) travels; the
    object itself is found by its name.
    """
    if kind == "Semaphore":
        return ctx.Semaphore(0, name=name)
    return getattr(ctx, kind)(name=name)


def named_lock_is_held(ctx: polysync.Context, name: str) -> bool:
    lock = open_named(ctx, "Lock", name)
    try:
        return not lock.acquire(False)
    finally:
        lock.close()


def named_event_wait(ctx: polysync.Context, name: str, timeout: float) -> bool:
    event = open_named(ctx, "Event", name)
    try:
        return bool(event.wait(timeout))
    finally:
        event.close()


def counter_work(lock: Any, counter: Any, iterations: int) -> None:
    """Increment a shared counter (a polysync-free mp.Value) under *lock*."""
    for _ in range(iterations):
        with lock:
            counter.value += 1


def acquire_token(lock: Any, timeout: float) -> int | None:
    """Acquire *lock*, note its fencing token, release; return the token."""
    if not lock.acquire(timeout=timeout):
        return None
    token: int | None = lock.fencing_token
    lock.release()
    return token


def hold_with_token(lock: Any, held: Any, go: Any, timeout: float) -> int | None:
    """Acquire *lock*, set *held*, wait for *go*, release; return the token it held."""
    if not lock.acquire(timeout=timeout):
        return None
    token: int | None = lock.fencing_token
    held.set()
    go.wait(timeout)
    lock.release()
    return token


def hold_and_report_loss(lock: Any, held: Any, go: Any, timeout: float) -> list[object]:
    """Hold *lock* until *go*; then wait to learn the lease was lost, and release.

    Returns ``[lost, the release's error type or "no error"]``.
    """
    if not lock.acquire(timeout=timeout):
        return [False, "not acquired"]
    held.set()
    go.wait(timeout)
    deadline = time.monotonic() + timeout
    while not lock.lost and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        lock.release()
    except polysync.NotHeldError as exc:
        return [lock.lost, type(exc).__name__]
    return [lock.lost, "no error"]
