"""The four measurements (A, B1, B2, C); each function measures one system and returns figures.

Every function here runs inside a job of :mod:`_harness` (its own process group with a
deadline) and forks its own participants. Participants coordinate through an anonymous
shared ``mmap`` (inherited by fork, never visible in ``/dev/shm``), never through the
primitive under test. Every blocking call has a timeout of :data:`TIMEOUT` seconds
(section A's headline columns call ``acquire()`` bare: see ``README.md``).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import _timing as t
import posix_peers
from _timing import pin

#: Seconds any single blocking call may wait before the measurement fails.
TIMEOUT = t.TIMEOUT

_ns = time.perf_counter_ns


def _wait_cell(view: memoryview, index: int, value: int, timeout: float = TIMEOUT) -> None:
    """Spin until ``view[index] == value``; raise ``TimeoutError`` after *timeout* s."""
    end = time.perf_counter() + timeout
    while view[index] != value:
        if time.perf_counter() > end:
            raise TimeoutError(f"cell {index} did not reach {value} within {timeout} s")


def _sleep_until_cell(view: memoryview, index: int, value: int, timeout: float) -> None:
    """Poll ``view[index] == value`` with short sleeps (for many waiters on two CPUs)."""
    end = time.perf_counter() + timeout
    while view[index] != value:
        if time.perf_counter() > end:
            raise TimeoutError(f"cell {index} did not reach {value} within {timeout} s")
        time.sleep(0.0002)


def _join_all(procs: list[Any], timeout: float) -> None:
    """Join every participant; kill the rest and raise if one hangs or fails."""
    end = time.perf_counter() + timeout
    try:
        for p in procs:
            p.join(max(0.0, end - time.perf_counter()))
        hung = [p for p in procs if p.is_alive()]
        if hung:
            raise TimeoutError(f"{len(hung)} participant(s) still running after {timeout} s")
        failed = [p.exitcode for p in procs if p.exitcode != 0]
        if failed:
            raise RuntimeError(f"participant(s) exited with code(s) {failed}")
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(2.0)


# -- A. uncontended ----------------------------------------------------------------------

A_COLUMNS = ("Lock", "Lock timeout=", "RLock", "Semaphore", "Event", "Condition", "Barrier(1)")
A_SYSTEMS: dict[str, tuple[str, ...]] = {
    posix_peers.MP: A_COLUMNS,
    posix_peers.RAW: ("Lock", "Lock timeout=", "Semaphore"),
    posix_peers.POLYSYNC: A_COLUMNS,
}


def _a_batch(system: str, column: str) -> tuple[Callable[[int], int], list[Any]]:
    """The batch runner ``n -> ns`` of one cell, and the objects to keep alive meanwhile."""
    if column in ("Lock", "Lock timeout="):
        lock = posix_peers.make_lock(system)
        if column == "Lock":
            return functools.partial(t.loop2, lock.acquire, lock.release), [lock]
        if system == posix_peers.RAW:
            timed = functools.partial(lock.acquire, TIMEOUT)
        else:
            timed = functools.partial(lock.acquire, True, TIMEOUT)
        return functools.partial(t.loop2, timed, lock.release), [lock]
    if column == "RLock":
        rlock = posix_peers.make_rlock(system)
        return functools.partial(t.loop2, rlock.acquire, rlock.release), [rlock]
    if column == "Semaphore":
        sem = posix_peers.make_semaphore(system, 1)
        return functools.partial(t.loop2, sem.acquire, sem.release), [sem]
    if column == "Event":
        ev = posix_peers.make_event(system)
        return functools.partial(t.loop3, ev.set, ev.clear, ev.is_set), [ev]
    if column == "Condition":
        cond = posix_peers.make_condition(system)
        return functools.partial(t.loop3, cond.acquire, cond.notify, cond.release), [cond]
    if column == "Barrier(1)":
        barrier = posix_peers.make_barrier(system, 1)
        return functools.partial(t.loop1, functools.partial(barrier.wait, TIMEOUT)), [barrier]
    raise ValueError(column)


def uncontended(system: str, column: str, batch_seconds: float, trials: int) -> dict[str, Any]:
    """A: µs per operation group, median of *trials* self-calibrated batches."""
    run, keep = _a_batch(system, column)
    figures = t.calibrated(run, batch_seconds, trials, 16, 1 << 26)
    del keep
    return figures


# -- B1. hand-off to a parked waiter -----------------------------------------------------

B1_SYSTEMS = (posix_peers.MP, posix_peers.RAW, posix_peers.POLYSYNC)


def _b1_waiter(system: str, lock: Any, view: memoryview, rounds: int, cpu: int | None) -> None:
    pin(cpu)
    acquire = posix_peers.timed_acquire(system, lock, TIMEOUT)
    t.b1_waiter(view, rounds, acquire, lock.release, _wait_cell)


def handoff(
    system: str,
    samples: int,
    warmup: int,
    settle_us: float,
    phase_us: float,
    cpus: tuple[int, int] | None,
    seed: int,
) -> dict[str, Any]:
    """B1: latencies (µs) from A's ``release()`` call to B's ``acquire()`` return.

    A (this process) holds the lock for *settle_us* plus a random ``[0, phase_us)`` after
    B has announced it is calling ``acquire()``, spinning meanwhile; *cpus* pins A and B.
    """
    rounds = warmup + samples
    segment, view = t.shared(t.b1_cells(rounds))
    lock = posix_peers.make_lock(system)
    acquire = posix_peers.timed_acquire(system, lock, TIMEOUT)
    waiter = posix_peers.fork_process(
        _b1_waiter, system, lock, view, rounds, None if cpus is None else cpus[1]
    )
    pin(None if cpus is None else cpus[0])
    try:
        # The hold spins: A stays on its CPU, B is parked on the other.
        hold_us = (settle_us, phase_us, seed)
        released = t.b1_holder(view, rounds, acquire, lock.release, _wait_cell, t.spin, hold_us)
        _join_all([waiter], TIMEOUT)
        lat = t.b1_latencies(view, released, warmup)
    finally:
        if waiter.is_alive():
            waiter.kill()
            waiter.join(2.0)
        view.release()
        segment.close()
    return {"latencies_us": lat}


# -- B2. ping-pong -----------------------------------------------------------------------

B2_COLUMNS = ("Event", "Semaphore", "Condition", "Barrier(2)")
B2_SYSTEMS: dict[str, tuple[str, ...]] = {
    posix_peers.MP: B2_COLUMNS,
    posix_peers.RAW: ("Semaphore",),
    posix_peers.POLYSYNC: B2_COLUMNS,
}


def _pp_event_pong(ping: Any, pong: Any, rounds: int, cpu: int | None) -> None:
    pin(cpu)
    t.event_pong(ping, pong, rounds)


def _pp_semaphore_pong(system: str, ping: Any, pong: Any, rounds: int, cpu: int | None) -> None:
    pin(cpu)
    acquire = posix_peers.timed_acquire(system, ping, TIMEOUT)
    release = pong.release
    for _ in range(rounds):
        acquire()
        release()


def _pp_condition_pong(cond: Any, view: memoryview, rounds: int, cpu: int | None) -> None:
    pin(cpu)
    with cond:
        t.condition_pong(cond, view, rounds)


def _pp_barrier_pong(barrier: Any, rounds: int, cpu: int | None) -> None:
    pin(cpu)
    t.barrier_rounds(barrier, rounds)


def pingpong(
    system: str, column: str, rounds: int, warmup: int, cpus: tuple[int, int] | None
) -> dict[str, Any]:
    """B2: per-round one-way latencies (round trip / 2) in µs; Barrier(2): µs per cycle.

    This process and its partner bounce the signal *rounds* times (after *warmup* rounds
    that are not kept); *cpus* pins the two.
    """
    total = warmup + rounds
    mine, theirs = (None, None) if cpus is None else cpus
    segment, view = t.shared(8)
    stamps = [0] * (total + 1)
    keep: list[Any] = []
    other: Any = None
    try:
        if column == "Event":
            ping, pong = posix_peers.make_event(system), posix_peers.make_event(system)
            keep += [ping, pong]
            other = posix_peers.fork_process(_pp_event_pong, ping, pong, total, theirs)
            pin(mine)
            t.event_ping(ping, pong, stamps)
        elif column == "Semaphore":
            ping, pong = (
                posix_peers.make_semaphore(system, 0),
                posix_peers.make_semaphore(system, 0),
            )
            keep += [ping, pong]
            other = posix_peers.fork_process(_pp_semaphore_pong, system, ping, pong, total, theirs)
            pin(mine)
            t.signal_ping(ping.release, posix_peers.timed_acquire(system, pong, TIMEOUT), stamps)
        elif column == "Condition":
            cond = posix_peers.make_condition(system)
            keep.append(cond)
            other = posix_peers.fork_process(_pp_condition_pong, cond, view, total, theirs)
            pin(mine)
            with cond:
                t.condition_ping(cond, view, stamps)
        elif column == "Barrier(2)":
            barrier = posix_peers.make_barrier(system, 2)
            keep.append(barrier)
            other = posix_peers.fork_process(_pp_barrier_pong, barrier, total, theirs)
            pin(mine)
            t.barrier_ping(barrier, stamps)
        else:
            raise ValueError(column)
        _join_all([other], TIMEOUT)
    finally:
        if other is not None and other.is_alive():
            other.kill()
            other.join(2.0)
        view.release()
        segment.close()
    return t.one_way_us(stamps, warmup, column)


# -- C. contended ------------------------------------------------------------------------

C_SYSTEMS = (posix_peers.MP, posix_peers.RAW, posix_peers.POLYSYNC, posix_peers.NOLOCK)


def _c_worker(
    system: str, lock: Any, view: memoryview, me: int, iters: int, timeout: float
) -> None:
    calls = (
        None if lock is None else (posix_peers.timed_acquire(system, lock, TIMEOUT), lock.release)
    )
    t.c_worker(view, me, iters, calls, lambda: _sleep_until_cell(view, t.C_GO, 1, timeout))


def contended(system: str, procs: int, iters: int, timeout: float) -> dict[str, Any]:
    """C: *procs* processes x *iters* locked increments; throughput, exactness, owner changes."""
    segment, view = t.shared(t.c_cells(procs))
    lock = None if system == posix_peers.NOLOCK else posix_peers.make_lock(system)
    workers: list[Any] = []
    try:
        for me in range(1, procs + 1):
            workers.append(
                posix_peers.fork_process(_c_worker, system, lock, view, me, iters, timeout)
            )
        for me in range(1, procs + 1):
            _sleep_until_cell(view, t.c_slot(me), 1, TIMEOUT)
        view[t.C_GO] = 1
        _join_all(workers, timeout)
        figures = t.c_figures(view, procs, iters)
    finally:
        for w in workers:
            if w.is_alive():
                w.kill()
                w.join(2.0)
        view.release()
        segment.close()
    return figures
