"""The timed loops both suites' workloads share: A's batches, B1, B2 and C's rounds.

``posix_measure`` and ``redis_measure`` make their systems' objects and participants
differently, but time them with the same loops, kept here: section A's self-calibrated
batches, B1's hand-off rounds, B2's ping-pong rounds, and C's worker loop and the tally
of the workers' stamps.
Participants coordinate through cells of an anonymous shared ``mmap`` (:func:`shared`).
"""

from __future__ import annotations

import mmap
import os
import random
import statistics
import time
from collections.abc import Callable
from typing import Any, Protocol

#: Seconds any single blocking call may wait before the measurement fails.
TIMEOUT = 5.0

_ns = time.perf_counter_ns


class AwaitCell(Protocol):
    """Wait until ``view[index] == value`` (raising ``TimeoutError`` after a while)."""

    def __call__(self, view: memoryview, index: int, value: int, /) -> None: ...


def shared(cells: int) -> tuple[mmap.mmap, memoryview]:
    """*cells* zeroed int64 cells in anonymous shared memory (kept by forked children)."""
    segment = mmap.mmap(-1, 8 * cells)
    return segment, memoryview(segment).cast("q")


def pin(cpu: int | None) -> None:
    """Bind the calling process to *cpu* (``None``: leave the scheduler free)."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def check(ok: object, what: str) -> None:
    """Raise ``TimeoutError`` when a timed wait returned false."""
    if not ok:
        raise TimeoutError(f"{what} timed out after {TIMEOUT} s")


# -- A. uncontended ----------------------------------------------------------------------


def loop1(a: Callable[[], object], n: int) -> int:
    t0 = _ns()
    for _ in range(n):
        a()
    return _ns() - t0


def loop2(a: Callable[[], object], b: Callable[[], object], n: int) -> int:
    t0 = _ns()
    for _ in range(n):
        a()
        b()
    return _ns() - t0


def loop3(a: Callable[[], object], b: Callable[[], object], c: Callable[[], object], n: int) -> int:
    t0 = _ns()
    for _ in range(n):
        a()
        b()
        c()
    return _ns() - t0


def calibrated(
    run: Callable[[int], int], batch_seconds: float, trials: int, n: int, most: int
) -> dict[str, Any]:
    """µs per call of ``run(n) -> ns``: *trials* batches of about *batch_seconds* each.

    The batch grows from *n* (by 4x, up to *most*) until it is long enough to scale from.
    """
    while True:
        took = run(n)
        if took >= batch_seconds * 1e9 / 4 or n >= most:
            break
        n *= 4
    n = max(1, int(n * batch_seconds * 1e9 / max(took, 1)))
    per_op = [run(n) / n / 1e3 for _ in range(trials)]
    return {"us": statistics.median(per_op), "trials_us": per_op, "batch": n}


# -- B1. hand-off to a parked waiter -----------------------------------------------------

B1_POSTED, B1_PARKING, B1_DONE, B1_STAMPS = 0, 1, 2, 8


def b1_cells(rounds: int) -> int:
    """How many shared cells a hand-off of *rounds* rounds needs."""
    return B1_STAMPS + rounds + 1


def b1_waiter(
    view: memoryview,
    rounds: int,
    acquire: Callable[[], object],
    release: Callable[[], object],
    await_cell: AwaitCell,
) -> None:
    """B's rounds: say it is parking, block in ``acquire()``, stamp its return, release."""
    for i in range(1, rounds + 1):
        await_cell(view, B1_POSTED, i)  # A holds the lock for round i
        view[B1_PARKING] = i
        acquire()  # parks: A releases only after the settle time
        view[B1_STAMPS + i] = _ns()
        release()
        view[B1_DONE] = i


def b1_holder(
    view: memoryview,
    rounds: int,
    acquire: Callable[[], object],
    release: Callable[[], object],
    await_cell: AwaitCell,
    hold: Callable[[int], None],
    hold_us: tuple[float, float, int],
) -> list[int]:
    """A's rounds: hold the lock for ``settle + random [0, phase)`` µs once B is parking.

    *hold_us* is ``(settle_us, phase_us, seed)``; returns the stamp of each ``release()``.
    """
    settle_us, phase_us, seed = hold_us
    rng = random.Random(seed)
    released = [0] * (rounds + 1)
    for i in range(1, rounds + 1):
        acquire()
        view[B1_POSTED] = i
        await_cell(view, B1_PARKING, i)
        hold(int((settle_us + rng.random() * phase_us) * 1e3))
        released[i] = _ns()
        release()
        await_cell(view, B1_DONE, i)
    return released


def b1_latencies(view: memoryview, released: list[int], warmup: int) -> list[float]:
    """µs from each kept round's ``release()`` call to B's ``acquire()`` return."""
    rounds = len(released) - 1
    return [(view[B1_STAMPS + i] - released[i]) / 1e3 for i in range(warmup + 1, rounds + 1)]


def spin(ns: int) -> None:
    """Busy-wait *ns* nanoseconds (the caller stays on its CPU)."""
    until = _ns() + ns
    while _ns() < until:
        pass


# -- B2. ping-pong -----------------------------------------------------------------------

#: The shared cell holding the Condition ping-pong's turn flag.
TURN = 0


def event_pong(ping: Any, pong: Any, rounds: int) -> None:
    """The partner's Event rounds: wait for *ping*, clear it, set *pong*."""
    for _ in range(rounds):
        check(ping.wait(TIMEOUT), "Event.wait")
        ping.clear()
        pong.set()


def event_ping(ping: Any, pong: Any, stamps: list[int]) -> None:
    """This side's Event rounds, stamping the end of each round trip."""
    stamps[0] = _ns()
    for i in range(1, len(stamps)):
        ping.set()
        check(pong.wait(TIMEOUT), "Event.wait")
        pong.clear()
        stamps[i] = _ns()


def signal_ping(give: Callable[[], object], take: Callable[[], object], stamps: list[int]) -> None:
    """This side's semaphore-like rounds (*give* the other, *take* one back), stamped."""
    stamps[0] = _ns()
    for i in range(1, len(stamps)):
        give()
        take()
        stamps[i] = _ns()


def condition_pong(cond: Any, view: memoryview, rounds: int) -> None:
    """The partner's Condition rounds (*cond* held): wait for its turn, hand it back."""
    for _ in range(rounds):
        while view[TURN] != 1:
            check(cond.wait(TIMEOUT), "Condition.wait")
        view[TURN] = 0
        cond.notify()


def condition_ping(cond: Any, view: memoryview, stamps: list[int]) -> None:
    """This side's Condition rounds (*cond* held), stamping the end of each round trip."""
    stamps[0] = _ns()
    for i in range(1, len(stamps)):
        view[TURN] = 1
        cond.notify()
        while view[TURN] != 0:
            check(cond.wait(TIMEOUT), "Condition.wait")
        stamps[i] = _ns()


def barrier_rounds(barrier: Any, rounds: int) -> None:
    """The partner's Barrier rounds."""
    for _ in range(rounds):
        barrier.wait(TIMEOUT)


def barrier_ping(barrier: Any, stamps: list[int]) -> None:
    """This side's Barrier rounds, stamping every cycle."""
    wait = barrier.wait
    stamps[0] = _ns()
    for i in range(1, len(stamps)):
        wait(TIMEOUT)
        stamps[i] = _ns()


def one_way_us(stamps: list[int], warmup: int, column: str) -> dict[str, Any]:
    """B2's figures: per kept round µs one-way (round trip / 2); Barrier(2): µs per cycle."""
    scale = 1e3 if column == "Barrier(2)" else 2e3
    return {"us": [(stamps[i] - stamps[i - 1]) / scale for i in range(warmup + 1, len(stamps))]}


# -- C. contended ------------------------------------------------------------------------

C_COUNTER, C_OWNER, C_GO, C_SLOTS = 0, 1, 2, 8  # then per worker: ready, start, end, changes


def c_cells(procs: int) -> int:
    """How many shared cells *procs* contended workers need."""
    return C_SLOTS + 4 * (procs + 1)


def c_slot(me: int) -> int:
    """The first of worker *me*'s cells (ready, start, end, changes)."""
    return C_SLOTS + 4 * me


def noop() -> None:
    pass


def c_worker(
    view: memoryview,
    me: int,
    iters: int,
    lock: tuple[Callable[[], object], Callable[[], object]] | None,
    await_go: Callable[[], None],
    gap: bool = False,
) -> None:
    """Worker *me*: once C_GO is set, *iters* times acquire, increment the counter, release.

    *lock* is ``(acquire, release)``, ``None`` for the no-lock control. With *gap* the
    control yields the CPU inside its read-modify-write (where a locked loop would wait on
    the network). The worker's start and end stamps and owner changes go to its cells.
    """
    acquire, release = (noop, noop) if lock is None else lock
    yield_cpu = gap and lock is None
    slot = c_slot(me)
    view[slot] = 1
    await_go()
    changes = 0
    start = _ns()
    for _ in range(iters):
        acquire()
        value = view[C_COUNTER]  # non-atomic read-modify-write: only the lock protects it
        if yield_cpu:
            time.sleep(0)  # the control: give the race a chance, as a network call would
        view[C_COUNTER] = value + 1
        if view[C_OWNER] != me:
            changes += 1
            view[C_OWNER] = me
        release()
    end = _ns()
    view[slot + 1], view[slot + 2], view[slot + 3] = start, end, changes


def c_figures(view: memoryview, procs: int, iters: int) -> dict[str, Any]:
    """C's figures from the workers' stamps: throughput, exactness, changed-owner share."""
    slots = [c_slot(me) for me in range(1, procs + 1)]
    start = min(view[s + 1] for s in slots)
    end = max(view[s + 2] for s in slots)
    changes = sum(view[s + 3] for s in slots)
    counter = view[C_COUNTER]
    total = procs * iters
    return {
        "acq_per_s": total / ((end - start) / 1e9),
        "seconds": (end - start) / 1e9,
        "counter": counter,
        "expected": total,
        "exact": counter == total,
        "changed_owner": changes / total,
    }
