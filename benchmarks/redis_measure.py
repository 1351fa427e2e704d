"""The Redis measurements (A, B1, B2, C); each function measures one system inside one job.

Every function runs inside a job of :mod:`_harness` (its own process group with a
deadline) and forks its own participants. Participants coordinate through an anonymous
shared ``mmap`` (inherited by fork), never through the lock under test or the server.
Every blocking call has a timeout of :data:`redis_peers.TIMEOUT` seconds.

Unlike ``posix_measure``, the participants here never busy-wait for each other outside
the timed window: the Redis server is a third process that needs a CPU too, so waits
between rounds sleep in short steps.
"""

from __future__ import annotations

import contextlib
import faulthandler
import functools
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import _timing as t
import redis_peers as rp
from _timing import check, pin
from redis_peers import POLYSYNC, TIMEOUT

_ns = time.perf_counter_ns


def _await(view: memoryview, index: int, value: int, timeout: float = TIMEOUT) -> None:
    """Wait until ``view[index] == value``: spin ~20 µs, then sleep in 100 µs steps."""
    spin_until = _ns() + 20_000
    while view[index] != value:
        if _ns() > spin_until:
            break
    else:
        return
    end = time.perf_counter() + timeout
    while view[index] != value:
        if time.perf_counter() > end:
            raise TimeoutError(f"cell {index} did not reach {value} within {timeout} s")
        time.sleep(0.0001)


def _fork(target: Callable[..., object], *args: object) -> Any:
    import posix_peers

    return posix_peers.fork_process(target, *args)


def diagnosable() -> None:
    """In a participant: dump every thread's stack to stderr on SIGUSR1 (see _join_all)."""
    faulthandler.register(signal.SIGUSR1, all_threads=True)


def _kill_all(procs: list[Any], dump: bool = False) -> None:
    """Kill the participants still running; with *dump*, have them print their stacks first."""
    alive = [p for p in procs if p.is_alive()]
    if dump:
        for p in alive:  # one at a time, so the stacks do not interleave on stderr
            print(f"--- stack of the participant pid {p.pid} still running:", file=sys.stderr)
            sys.stderr.flush()
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGUSR1)
            time.sleep(0.1)
    for p in alive:
        p.kill()
        p.join(2.0)


def _join_all(procs: list[Any], timeout: float) -> None:
    """Wait for every participant; as soon as one fails or time is up, stop all and raise.

    The participants still running then print their stacks on stderr (SIGUSR1, see
    :func:`diagnosable`): that is where a call without a timeout is stuck.
    """
    end = time.perf_counter() + timeout
    while True:
        failed = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
        if failed:
            stuck = sum(p.is_alive() for p in procs)
            _kill_all(procs, dump=True)
            raise RuntimeError(
                f"participant(s) exited with code(s) {failed}; {stuck} still running were "
                "stopped (their stacks are on stderr)"
            )
        if all(p.exitcode == 0 for p in procs):
            return
        if time.perf_counter() > end:
            hung = sum(p.is_alive() for p in procs)
            _kill_all(procs, dump=True)
            raise TimeoutError(
                f"{hung} participant(s) still running after {timeout} s (stacks on stderr)"
            )
        time.sleep(0.01)


# -- A. uncontended ----------------------------------------------------------------------

#: Section A's columns; ``PING`` is the round-trip floor (its own rows).
A_COLUMNS = ("Lock", "Semaphore", "Event", "Condition", "Barrier(1)", "PING")


def _checked(call: Callable[[], object], what: str) -> Callable[[], None]:
    def run() -> None:
        if not call():
            raise TimeoutError(f"{what} timed out after {TIMEOUT} s")

    return run


def _a_batch(system: str, column: str, url: str) -> tuple[Callable[[int], int], list[Any]]:
    """The batch runner ``n -> ns`` of one cell, and the objects to close afterwards."""
    if column == "PING":
        if system == rp.PING_RAW:
            raw = rp.RawPing(url)
            return functools.partial(t.loop1, raw.ping), [raw]
        client = rp.redis_client(url)
        return functools.partial(t.loop1, client.ping), [client]
    if column == "Lock":
        spec = rp.lock_spec(system, url)
        lock = spec.open()
        return functools.partial(t.loop2, lock.acquire, lock.release), [spec, *lock.keep]
    if system != POLYSYNC:
        raise ValueError(f"{system} has no {column}")
    ctx = rp.polysync_context(url)
    if column == "Semaphore":
        sem = ctx.Semaphore(1)
        acquire = _checked(functools.partial(sem.acquire, True, TIMEOUT), "Semaphore.acquire")
        return functools.partial(t.loop2, acquire, sem.release), [sem]
    if column == "Event":
        ev = ctx.Event()
        return functools.partial(t.loop3, ev.set, ev.clear, ev.is_set), [ev]
    if column == "Condition":
        cond = ctx.Condition()
        acquire = _checked(functools.partial(cond.acquire, True, TIMEOUT), "Condition.acquire")
        return functools.partial(t.loop3, acquire, cond.notify, cond.release), [cond]
    if column == "Barrier(1)":
        barrier = ctx.Barrier(1)
        return functools.partial(t.loop1, functools.partial(barrier.wait, TIMEOUT)), [barrier]
    raise ValueError(column)


def uncontended(
    system: str, column: str, url: str, batch_seconds: float, trials: int
) -> dict[str, Any]:
    """A: µs per operation group, median of *trials* self-calibrated batches."""
    run, keep = _a_batch(system, column, url)
    try:
        run(8)  # connect, load scripts: not part of the figure
        return t.calibrated(run, batch_seconds, trials, 8, 1 << 20)
    finally:
        for obj in keep:
            rp.close_quietly(obj)


# -- B1. hand-off to a parked waiter -----------------------------------------------------


def _b1_waiter(spec: rp.LockSpec, view: memoryview, rounds: int, cpu: int | None) -> None:
    diagnosable()
    pin(cpu)
    lock = spec.open()
    t.b1_waiter(view, rounds, lock.acquire, lock.release, _await)


def _hold(ns: int) -> None:
    """Keep the lock for *ns*: sleep the bulk, spin the last 1.5 ms (a precise release)."""
    until = _ns() + ns
    coarse = ns - 1_500_000
    if coarse > 0:
        time.sleep(coarse / 1e9)
    while _ns() < until:
        pass


def handoff(
    system: str,
    url: str,
    samples: int,
    warmup: int,
    settle_us: float,
    phase_us: float,
    cpus: tuple[int, int] | None,
    seed: int,
) -> dict[str, Any]:
    """B1 through the server at *url*, as :func:`posix_measure.handoff`: latencies in µs.

    A sleeps through the bulk of its hold (see :func:`_hold`) instead of spinning.
    """
    rounds = warmup + samples
    segment, view = t.shared(t.b1_cells(rounds))
    spec = rp.lock_spec(system, url)
    waiter = _fork(_b1_waiter, spec, view, rounds, None if cpus is None else cpus[1])
    pin(None if cpus is None else cpus[0])
    try:
        lock = spec.open()
        hold_us = (settle_us, phase_us, seed)
        released = t.b1_holder(view, rounds, lock.acquire, lock.release, _await, _hold, hold_us)
        _join_all([waiter], TIMEOUT)
        lat = t.b1_latencies(view, released, warmup)
    finally:
        _kill_all([waiter], dump=True)
        spec.close()
        view.release()
        segment.close()
    return {"latencies_us": lat}


# -- B2. ping-pong -----------------------------------------------------------------------

B2_COLUMNS = ("Event", "Semaphore", "Condition", "Barrier(2)")


@contextlib.contextmanager
def _held(cond: Any) -> Iterator[None]:
    """Hold *cond* (acquired with the timeout) for the block."""
    check(cond.acquire(True, TIMEOUT), "Condition.acquire")
    try:
        yield
    finally:
        cond.release()


def _pp_event_pong(ping: Any, pong: Any, rounds: int, cpu: int | None) -> None:
    diagnosable()
    pin(cpu)
    t.event_pong(ping, pong, rounds)


def _pp_semaphore_pong(ping: Any, pong: Any, rounds: int, cpu: int | None) -> None:
    diagnosable()
    pin(cpu)
    for _ in range(rounds):
        check(ping.acquire(True, TIMEOUT), "Semaphore.acquire")
        pong.release()


def _pp_token_pong(ping: rp.TokenQueue, pong: rp.TokenQueue, rounds: int, cpu: int | None) -> None:
    diagnosable()
    pin(cpu)
    take, give = ping.open().acquire, pong.open().release
    for _ in range(rounds):
        take()
        give()


def _pp_condition_pong(cond: Any, view: memoryview, rounds: int, cpu: int | None) -> None:
    diagnosable()
    pin(cpu)
    with _held(cond):
        t.condition_pong(cond, view, rounds)


def _pp_barrier_pong(barrier: Any, rounds: int, cpu: int | None) -> None:
    diagnosable()
    pin(cpu)
    t.barrier_rounds(barrier, rounds)


def pingpong(
    system: str, column: str, url: str, rounds: int, warmup: int, cpus: tuple[int, int] | None
) -> dict[str, Any]:
    """B2: per-round one-way latencies (round trip / 2) in µs; Barrier(2): µs per cycle.

    ``system`` is polysync (its Event, Semaphore, Condition, Barrier) or the bare token
    pair (``Semaphore`` only: two lists, LPUSH to signal, BLPOP to wait).
    """
    total = warmup + rounds
    mine, theirs = (None, None) if cpus is None else cpus
    segment, view = t.shared(8)
    stamps = [0] * (total + 1)
    keep: list[Any] = []
    other: Any = None
    try:
        if system == rp.TOKEN:
            if column != "Semaphore":
                raise ValueError(f"the token pair has no {column}")
            q_ping = rp.TokenQueue(url, rp.new_key("ping"))
            q_pong = rp.TokenQueue(url, rp.new_key("pong"))
            other = _fork(_pp_token_pong, q_ping, q_pong, total, theirs)
            pin(mine)
            t.signal_ping(q_ping.open().release, q_pong.open().acquire, stamps)
        elif column == "Event":
            ctx = rp.polysync_context(url)
            ping, pong = ctx.Event(), ctx.Event()
            keep += [ping, pong]
            other = _fork(_pp_event_pong, ping, pong, total, theirs)
            pin(mine)
            t.event_ping(ping, pong, stamps)
        elif column == "Semaphore":
            ctx = rp.polysync_context(url)
            s_ping, s_pong = ctx.Semaphore(0), ctx.Semaphore(0)
            keep += [s_ping, s_pong]
            other = _fork(_pp_semaphore_pong, s_ping, s_pong, total, theirs)
            pin(mine)
            acquire = s_pong.acquire

            def take() -> None:
                check(acquire(True, TIMEOUT), "Semaphore.acquire")

            t.signal_ping(s_ping.release, take, stamps)
        elif column == "Condition":
            cond = rp.polysync_context(url).Condition()
            keep.append(cond)
            other = _fork(_pp_condition_pong, cond, view, total, theirs)
            pin(mine)
            with _held(cond):
                t.condition_ping(cond, view, stamps)
        elif column == "Barrier(2)":
            barrier = rp.polysync_context(url).Barrier(2)
            keep.append(barrier)
            other = _fork(_pp_barrier_pong, barrier, total, theirs)
            pin(mine)
            t.barrier_ping(barrier, stamps)
        else:
            raise ValueError(column)
        _join_all([other], TIMEOUT)
    finally:
        if other is not None:
            _kill_all([other], dump=True)
        for obj in keep:
            rp.close_quietly(obj)
        view.release()
        segment.close()
    return t.one_way_us(stamps, warmup, column)


# -- C. contended ------------------------------------------------------------------------


def _c_worker(
    spec: rp.LockSpec | None, view: memoryview, me: int, iters: int, timeout: float
) -> None:
    diagnosable()
    lock = None if spec is None else spec.open()
    calls = None if lock is None else (lock.acquire, lock.release)
    t.c_worker(view, me, iters, calls, lambda: _await(view, t.C_GO, 1, timeout), gap=True)


def contended(system: str, url: str, procs: int, iters: int, timeout: float) -> dict[str, Any]:
    """C: *procs* processes x *iters* locked increments; throughput, exactness, owner changes."""
    segment, view = t.shared(t.c_cells(procs))
    spec = None if system == rp.NOLOCK else rp.lock_spec(system, url)
    workers: list[Any] = []
    try:
        for me in range(1, procs + 1):
            workers.append(_fork(_c_worker, spec, view, me, iters, timeout))
        for me in range(1, procs + 1):
            _await(view, t.c_slot(me), 1, 4 * TIMEOUT)  # 8 imports + connects on 2 CPUs
        view[t.C_GO] = 1
        _join_all(workers, timeout)
        figures = t.c_figures(view, procs, iters)
    finally:
        _kill_all(workers, dump=True)
        if spec is not None:
            spec.close()
        view.release()
        segment.close()
    return figures
