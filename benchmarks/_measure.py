"""The four measurements (A, B1, B2, C); each function measures one system and returns figures.

Every function here runs inside a job of :mod:`_harness` (its own process group with a
deadline) and forks its own participants. Participants coordinate through an anonymous
shared ``mmap`` (inherited by fork, never visible in ``/dev/shm``), never through the
primitive under test. Every blocking call has a timeout of :data:`TIMEOUT` seconds
(section A's headline columns call ``acquire()`` bare: see ``README.md``).
"""

from __future__ import annotations

import functools
import mmap
import os
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import _peers

#: Seconds any single blocking call may wait before the measurement fails.
TIMEOUT = 5.0

_ns = time.perf_counter_ns


def _shared(cells: int) -> tuple[mmap.mmap, memoryview]:
    """*cells* zeroed int64 cells in anonymous shared memory (kept by forked children)."""
    segment = mmap.mmap(-1, 8 * cells)
    return segment, memoryview(segment).cast("q")


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


def pin(cpu: int | None) -> None:
    """Bind the calling process to *cpu* (``None``: leave the scheduler free)."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


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

A_COLUMNS = ("Lock", "Lock timeout=", "Semaphore", "Event", "Condition", "Barrier(1)")
A_SYSTEMS: dict[str, tuple[str, ...]] = {
    _peers.MP: A_COLUMNS,
    _peers.RAW: ("Lock", "Lock timeout=", "Semaphore"),
    _peers.POLYSYNC: A_COLUMNS,
}


def _loop1(a: Callable[[], object], n: int) -> int:
    t0 = _ns()
    for _ in range(n):
        a()
    return _ns() - t0


def _loop2(a: Callable[[], object], b: Callable[[], object], n: int) -> int:
    t0 = _ns()
    for _ in range(n):
        a()
        b()
    return _ns() - t0


def _loop3(
    a: Callable[[], object], b: Callable[[], object], c: Callable[[], object], n: int
) -> int:
    t0 = _ns()
    for _ in range(n):
        a()
        b()
        c()
    return _ns() - t0


def _a_batch(system: str, column: str) -> tuple[Callable[[int], int], list[Any]]:
    """The batch runner ``n -> ns`` of one cell, and the objects to keep alive meanwhile."""
    if column in ("Lock", "Lock timeout="):
        lock = _peers.make_lock(system)
        if column == "Lock":
            return functools.partial(_loop2, lock.acquire, lock.release), [lock]
        if system == _peers.RAW:
            timed = functools.partial(lock.acquire, TIMEOUT)
        else:
            timed = functools.partial(lock.acquire, True, TIMEOUT)
        return functools.partial(_loop2, timed, lock.release), [lock]
    if column == "Semaphore":
        sem = _peers.make_semaphore(system, 1)
        return functools.partial(_loop2, sem.acquire, sem.release), [sem]
    if column == "Event":
        ev = _peers.make_event(system)
        return functools.partial(_loop3, ev.set, ev.clear, ev.is_set), [ev]
    if column == "Condition":
        cond = _peers.make_condition(system)
        return functools.partial(_loop3, cond.acquire, cond.notify, cond.release), [cond]
    if column == "Barrier(1)":
        barrier = _peers.make_barrier(system, 1)
        return functools.partial(_loop1, functools.partial(barrier.wait, TIMEOUT)), [barrier]
    raise ValueError(column)


def uncontended(system: str, column: str, batch_seconds: float, trials: int) -> dict[str, Any]:
    """A: µs per operation group, median of *trials* self-calibrated batches."""
    run, keep = _a_batch(system, column)
    n = 16
    while True:  # grow the batch until it is long enough to scale from
        took = run(n)
        if took >= batch_seconds * 1e9 / 4 or n >= 1 << 26:
            break
        n *= 4
    n = max(1, int(n * batch_seconds * 1e9 / max(took, 1)))
    per_op = [run(n) / n / 1e3 for _ in range(trials)]
    del keep
    return {"us": statistics.median(per_op), "trials_us": per_op, "batch": n}


# -- B1. hand-off to a parked waiter -----------------------------------------------------

B1_SYSTEMS = (_peers.MP, _peers.RAW, _peers.POLYSYNC)
_B1_POSTED, _B1_PARKING, _B1_DONE, _B1_STAMPS = 0, 1, 2, 8


def _b1_waiter(system: str, lock: Any, view: memoryview, rounds: int, cpu: int | None) -> None:
    pin(cpu)
    acquire = _peers.timed_acquire(system, lock, TIMEOUT)
    release = lock.release
    for i in range(1, rounds + 1):
        _wait_cell(view, _B1_POSTED, i)  # A holds the lock for round i
        view[_B1_PARKING] = i
        acquire()  # parks: A releases only after the settle time
        view[_B1_STAMPS + i] = _ns()
        release()
        view[_B1_DONE] = i


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
    segment, view = _shared(_B1_STAMPS + rounds + 1)
    lock = _peers.make_lock(system)
    acquire = _peers.timed_acquire(system, lock, TIMEOUT)
    release = lock.release
    rng = random.Random(seed)
    released = [0] * (rounds + 1)
    waiter = _peers.fork_process(
        _b1_waiter, system, lock, view, rounds, None if cpus is None else cpus[1]
    )
    pin(None if cpus is None else cpus[0])
    try:
        for i in range(1, rounds + 1):
            acquire()
            view[_B1_POSTED] = i
            _wait_cell(view, _B1_PARKING, i)
            hold_ns = int((settle_us + rng.random() * phase_us) * 1e3)
            until = _ns() + hold_ns
            while _ns() < until:  # spin: A stays on its CPU, B is parked on the other
                pass
            released[i] = _ns()
            release()
            _wait_cell(view, _B1_DONE, i)
        _join_all([waiter], TIMEOUT)
        lat = [(view[_B1_STAMPS + i] - released[i]) / 1e3 for i in range(warmup + 1, rounds + 1)]
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
    _peers.MP: B2_COLUMNS,
    _peers.RAW: ("Semaphore",),
    _peers.POLYSYNC: B2_COLUMNS,
}
_TURN = 0


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise TimeoutError(f"{what} timed out after {TIMEOUT} s")


def _pp_event_pong(ping: Any, pong: Any, rounds: int, cpu: int | None) -> None:
    pin(cpu)
    for _ in range(rounds):
        _check(ping.wait(TIMEOUT), "Event.wait")
        ping.clear()
        pong.set()


def _pp_semaphore_pong(system: str, ping: Any, pong: Any, rounds: int, cpu: int | None) -> None:
    pin(cpu)
    acquire = _peers.timed_acquire(system, ping, TIMEOUT)
    release = pong.release
    for _ in range(rounds):
        acquire()
        release()


def _pp_condition_pong(cond: Any, view: memoryview, rounds: int, cpu: int | None) -> None:
    pin(cpu)
    with cond:
        for _ in range(rounds):
            while view[_TURN] != 1:
                _check(cond.wait(TIMEOUT), "Condition.wait")
            view[_TURN] = 0
            cond.notify()


def _pp_barrier_pong(barrier: Any, rounds: int, cpu: int | None) -> None:
    pin(cpu)
    for _ in range(rounds):
        barrier.wait(TIMEOUT)


def pingpong(
    system: str, column: str, rounds: int, warmup: int, cpus: tuple[int, int] | None
) -> dict[str, Any]:
    """B2: per-round one-way latencies (round trip / 2) in µs; Barrier(2): µs per cycle.

    This process and its partner bounce the signal *rounds* times (after *warmup* rounds
    that are not kept); *cpus* pins the two.
    """
    total = warmup + rounds
    mine, theirs = (None, None) if cpus is None else cpus
    segment, view = _shared(8)
    stamps = [0] * (total + 1)
    keep: list[Any] = []
    other: Any = None
    try:
        if column == "Event":
            ping, pong = _peers.make_event(system), _peers.make_event(system)
            keep += [ping, pong]
            other = _peers.fork_process(_pp_event_pong, ping, pong, total, theirs)
            pin(mine)
            stamps[0] = _ns()
            for i in range(1, total + 1):
                ping.set()
                _check(pong.wait(TIMEOUT), "Event.wait")
                pong.clear()
                stamps[i] = _ns()
        elif column == "Semaphore":
            ping, pong = _peers.make_semaphore(system, 0), _peers.make_semaphore(system, 0)
            keep += [ping, pong]
            other = _peers.fork_process(_pp_semaphore_pong, system, ping, pong, total, theirs)
            pin(mine)
            release, acquire = ping.release, _peers.timed_acquire(system, pong, TIMEOUT)
            stamps[0] = _ns()
            for i in range(1, total + 1):
                release()
                acquire()
                stamps[i] = _ns()
        elif column == "Condition":
            cond = _peers.make_condition(system)
            keep.append(cond)
            other = _peers.fork_process(_pp_condition_pong, cond, view, total, theirs)
            pin(mine)
            with cond:
                stamps[0] = _ns()
                for i in range(1, total + 1):
                    view[_TURN] = 1
                    cond.notify()
                    while view[_TURN] != 0:
                        _check(cond.wait(TIMEOUT), "Condition.wait")
                    stamps[i] = _ns()
        elif column == "Barrier(2)":
            barrier = _peers.make_barrier(system, 2)
            keep.append(barrier)
            other = _peers.fork_process(_pp_barrier_pong, barrier, total, theirs)
            pin(mine)
            wait = barrier.wait
            stamps[0] = _ns()
            for i in range(1, total + 1):
                wait(TIMEOUT)
                stamps[i] = _ns()
        else:
            raise ValueError(column)
        _join_all([other], TIMEOUT)
    finally:
        if other is not None and other.is_alive():
            other.kill()
            other.join(2.0)
        view.release()
        segment.close()
    scale = 1e3 if column == "Barrier(2)" else 2e3  # one way = round trip / 2
    return {"us": [(stamps[i] - stamps[i - 1]) / scale for i in range(warmup + 1, total + 1)]}


# -- C. contended ------------------------------------------------------------------------

C_SYSTEMS = (_peers.MP, _peers.RAW, _peers.POLYSYNC, _peers.NOLOCK)
_C_COUNTER, _C_OWNER, _C_GO, _C_SLOTS = 0, 1, 2, 8  # then per worker: ready, start, end, changes


def _noop() -> None:
    pass


def _c_worker(
    system: str, lock: Any, view: memoryview, me: int, iters: int, timeout: float
) -> None:
    if lock is None:
        acquire: Callable[[], None] = _noop
        release: Callable[[], object] = _noop
    else:
        acquire = _peers.timed_acquire(system, lock, TIMEOUT)
        release = lock.release
    slot = _C_SLOTS + 4 * me
    view[slot] = 1
    _sleep_until_cell(view, _C_GO, 1, timeout)
    changes = 0
    start = _ns()
    for _ in range(iters):
        acquire()
        value = view[_C_COUNTER]  # non-atomic read-modify-write: only the lock protects it
        view[_C_COUNTER] = value + 1
        if view[_C_OWNER] != me:
            changes += 1
            view[_C_OWNER] = me
        release()
    end = _ns()
    view[slot + 1], view[slot + 2], view[slot + 3] = start, end, changes


def contended(system: str, procs: int, iters: int, timeout: float) -> dict[str, Any]:
    """C: *procs* processes x *iters* locked increments; throughput, exactness, owner changes."""
    segment, view = _shared(_C_SLOTS + 4 * (procs + 1))
    lock = None if system == _peers.NOLOCK else _peers.make_lock(system)
    workers: list[Any] = []
    try:
        for me in range(1, procs + 1):
            workers.append(_peers.fork_process(_c_worker, system, lock, view, me, iters, timeout))
        for me in range(1, procs + 1):
            _sleep_until_cell(view, _C_SLOTS + 4 * me, 1, TIMEOUT)
        view[_C_GO] = 1
        _join_all(workers, timeout)
        slots = [_C_SLOTS + 4 * me for me in range(1, procs + 1)]
        start = min(view[s + 1] for s in slots)
        end = max(view[s + 2] for s in slots)
        changes = sum(view[s + 3] for s in slots)
        counter = view[_C_COUNTER]
    finally:
        for w in workers:
            if w.is_alive():
                w.kill()
                w.join(2.0)
        view.release()
        segment.close()
    total = procs * iters
    return {
        "acq_per_s": total / ((end - start) / 1e9),
        "seconds": (end - start) / 1e9,
        "counter": counter,
        "expected": total,
        "exact": counter == total,
        "changed_owner": changes / total,
    }
