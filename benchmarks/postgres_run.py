"""The PostgreSQL benchmarks: polysync's postgres backend beside raw advisory locks and tooz.

Usage: ``python benchmarks/postgres_run.py [--pairs N] [--handoffs N] [--procs P]
[--iters N] [--trials T] [--rounds R] [--url URL]``.

Without ``--url`` it starts a private PostgreSQL 15 cluster on a free loopback port (the
test suite's ``tests/pg_servers``: initdb into a temporary directory, never the machine's
own 5432; ``fsync=off``, ``synchronous_commit=off`` for every contender alike). In this one
run, against that one server, it measures:

* **A, the uncontended pair**: ``acquire()`` + ``release()`` of one lock, per pair (the
  best of *T* trials, the contenders taking turns pair by pair in each), for
  polysync's Lock, the raw ``SELECT pg_advisory_lock(1, n)`` / ``pg_advisory_unlock``
  through psycopg 3 (the floor), and tooz's PostgreSQL driver (psycopg2), when installed;
* **B, the hand-off**: a holder releases while a waiter is blocked in the server; the time
  from just before the release to the waiter's return (median and p90; the contenders
  take turns, one hand-off each);
* **C, contention**: *P* processes each take the lock *N* times around an increment of a
  shared counter (``multiprocessing.Value``, no lock of its own): acquisitions per second,
  and whether the counter is exact (FAIL if not), timed from the start signal to the end
  of the last loop. The contenders take turns, one run each per round, for *R* rounds:
  it reports each one's best, and the median over the rounds of each round's ratio to
  raw (two runs side by side share the machine's mood of the moment, which moves the
  rates by a fifth between rounds on a shared 2-core VM).

Reports the ratios ``polysync / raw`` (the issue's targets: A <= 1.2, B <= 1.5, C >= 0.8
of raw); targets are reported, never asserted. Exit status 1 if a counter was wrong.
The defaults are small (a quick run on a shared machine); raise them for real figures.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks._postgres_server import server  # noqa: E402

RAW = "raw pg_advisory_lock (psycopg 3)"
POLYSYNC = "polysync postgres Lock"
TOOZ = "tooz pgsql driver (psycopg2)"


# -- the contenders: each makes a (acquire, release) pair on its own connections --------


class Raw:
    """``pg_advisory_lock(1, key)`` / ``pg_advisory_unlock`` on one autocommit connection."""

    def __init__(self, url: str, key: int) -> None:
        import psycopg

        self.conn = psycopg.connect(url, autocommit=True)
        self.key = key

    def acquire(self) -> None:
        self.conn.execute("SELECT pg_advisory_lock(1, %s)", (self.key,))

    def release(self) -> None:
        self.conn.execute("SELECT pg_advisory_unlock(1, %s)", (self.key,))

    def close(self) -> None:
        self.conn.close()


class Polysync:
    def __init__(self, url: str, key: int) -> None:
        import polysync

        self.ctx = polysync.get_context("postgres", url=url, schema="bench")
        self.lock = self.ctx.Lock(name=f"bench-{key}")

    def acquire(self) -> None:
        self.lock.acquire()

    def release(self) -> None:
        self.lock.release()

    def close(self) -> None:
        self.lock.close()


class Tooz:
    def __init__(self, url: str, key: int) -> None:
        from tooz import coordination

        self.coord = coordination.get_coordinator(url, f"bench-{os.getpid()}-{key}".encode())
        self.coord.start()
        self.lock = self.coord.get_lock(f"bench-{key}".encode())

    def acquire(self) -> None:
        self.lock.acquire(blocking=True)

    def release(self) -> None:
        self.lock.release()

    def close(self) -> None:
        self.coord.stop()


def contenders() -> dict[str, type[Any]]:
    found: dict[str, type[Any]] = {RAW: Raw, POLYSYNC: Polysync}
    try:
        import psycopg2  # noqa: F401
        import tooz.drivers.pgsql  # noqa: F401
    except ImportError as exc:
        print(f"tooz not measured ({exc}): pip install tooz psycopg2-binary", file=sys.stderr)
    else:
        found[TOOZ] = Tooz
    return found


# -- A: the uncontended pair ---------------------------------------------------------------


def uncontended(
    makers: dict[str, Callable[[], Any]], pairs: dict[str, int], trials: int
) -> dict[str, float]:
    """Microseconds per acquire+release pair of each contender: the best of *trials*
    runs of its *pairs*. Within a trial the contenders take turns pair by pair, so that
    a load that comes and goes on a shared machine (or a CPU that sleeps between round
    trips, and sometimes not) weighs on each alike; a contender given fewer pairs
    (tooz) takes its turn only that often."""
    locks = {name: make() for name, make in makers.items()}
    most = max(pairs.values())
    every = {name: max(1, most // count) for name, count in pairs.items()}
    clock = time.perf_counter
    try:
        for name, lock in locks.items():
            for _ in range(min(50, pairs[name])):  # warm up (psycopg prepares after 5)
                lock.acquire()
                lock.release()
        best = dict.fromkeys(locks, float("inf"))
        for _ in range(trials):
            spent = dict.fromkeys(locks, 0.0)
            done = dict.fromkeys(locks, 0)
            for i in range(most):
                for name, lock in locks.items():
                    if i % every[name]:
                        continue
                    start = clock()
                    lock.acquire()
                    lock.release()
                    spent[name] += clock() - start
                    done[name] += 1
            for name in locks:
                best[name] = min(best[name], spent[name] / done[name] * 1e6)
        return best
    finally:
        for lock in locks.values():
            lock.close()


# -- B: the hand-off -------------------------------------------------------------------


def _one_handoff(holder: Any, waiter: Any) -> float:
    """Microseconds from *holder*'s release to the return of *waiter*, blocked meanwhile."""
    holder.acquire()
    got = threading.Event()
    stamp: list[float] = []

    def wait() -> None:
        waiter.acquire()
        stamp.append(time.perf_counter())
        got.set()

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    time.sleep(0.005)  # the waiter is blocked in the server by now
    start = time.perf_counter()
    holder.release()
    if not got.wait(10):
        raise RuntimeError("the waiter was not woken within 10 s")
    thread.join(10)
    waiter.release()
    return (stamp[0] - start) * 1e6


def handoff(makers: dict[str, Callable[[], Any]], rounds: int) -> dict[str, tuple[float, float]]:
    """Median and p90 microseconds from a release to the blocked waiter's return, for
    each contender, the contenders taking turns, one hand-off each per round."""
    pairs = {name: (make(), make()) for name, make in makers.items()}
    samples: dict[str, list[float]] = {name: [] for name in pairs}
    try:
        for _ in range(rounds):
            for name, (holder, waiter) in pairs.items():
                samples[name].append(_one_handoff(holder, waiter))
    finally:
        for holder, waiter in pairs.values():
            holder.close()
            waiter.close()
    found = {}
    for name, taken in samples.items():
        taken.sort()
        found[name] = (statistics.median(taken), taken[int(len(taken) * 0.9) - 1])
    return found


# -- C: contention -----------------------------------------------------------------------


def _worker(kind: str, url: str, counter: Any, iters: int, start: Any, ends: Any, i: int) -> None:
    lock = contenders()[kind](url, 0)
    try:
        start.wait()
        for _ in range(iters):
            lock.acquire()
            counter.value += 1
            lock.release()
        ends[i] = time.perf_counter()  # CLOCK_MONOTONIC: one clock for every process
    finally:
        lock.close()


def contention(kind: str, url: str, procs: int, iters: int) -> tuple[float, bool]:
    """Acquisitions per second with *procs* processes, and whether the counter is exact.

    The time runs from the start signal to the end of the last worker's loop: a
    worker's set-up before the start and its exit after its loop are not counted.
    """
    mp = multiprocessing.get_context("spawn")
    counter = mp.RawValue("q", 0)
    ends = mp.RawArray("d", procs)
    start = mp.Event()
    workers = [
        mp.Process(target=_worker, args=(kind, url, counter, iters, start, ends, i), daemon=True)
        for i in range(procs)
    ]
    for w in workers:
        w.start()
    time.sleep(1.0 + 0.2 * procs)  # every worker connected and waiting at the start line
    began = time.perf_counter()
    start.set()
    for w in workers:
        w.join(600)
    elapsed = max(ends) - began
    ok = all(w.exitcode == 0 for w in workers) and counter.value == procs * iters
    return procs * iters / elapsed, ok


# -- the run -----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2000, help="pairs per trial (A)")
    parser.add_argument("--trials", type=int, default=3, help="trials of A (best is kept)")
    parser.add_argument("--handoffs", type=int, default=200, help="hand-offs measured (B)")
    parser.add_argument("--procs", type=int, default=8, help="contending processes (C)")
    parser.add_argument("--iters", type=int, default=100, help="acquisitions per process (C)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of C (best is kept)")
    parser.add_argument("--url", default=None, help="a server to use instead of a private one")
    args = parser.parse_args(argv)
    found = contenders()
    failed = False
    with server(args.url) as url:
        print(f"server: {url.split('@')[-1]}; psycopg pairs={args.pairs} trials={args.trials}")
        # tooz connects anew for every acquisition (its release closes the connection):
        # a few dozen pairs tell its cost.
        a = uncontended(
            {name: (lambda cls=cls: cls(url, 1)) for name, cls in found.items()},
            {name: min(args.pairs, 50) if name == TOOZ else args.pairs for name in found},
            args.trials,
        )
        b = handoff(
            {name: (lambda cls=cls: cls(url, 2)) for name, cls in found.items()}, args.handoffs
        )
        per_round: dict[str, list[float]] = {name: [] for name in found}
        exact = dict.fromkeys(found, True)
        for _ in range(args.rounds):  # the contenders take turns
            for name in found:
                rate, ok = contention(name, url, args.procs, args.iters)
                per_round[name].append(rate)
                exact[name] = exact[name] and ok
    print("\nA. uncontended acquire+release pair (us per pair, best of trials)")
    for name, us in a.items():
        print(f"  {name:36s} {us:9.1f}   x{us / a[RAW]:.2f} of raw")
    print("\nB. hand-off: release -> blocked waiter returns (us, median / p90)")
    for name, (median, p90) in b.items():
        print(f"  {name:36s} {median:9.1f} / {p90:9.1f}   x{median / b[RAW][0]:.2f} of raw")
    print(
        f"\nC. {args.procs} processes x {args.iters} acquisitions (acquisitions/s, best of "
        f"{args.rounds} rounds; then the median of the rounds' ratios to raw)"
    )
    best = {name: max(rates) for name, rates in per_round.items()}
    paired: dict[str, float] = {}
    for name, rates in per_round.items():
        failed = failed or not exact[name]
        verdict = "exact" if exact[name] else "FAIL: the counter is wrong"
        ratios = [mine / raw for mine, raw in zip(rates, per_round[RAW], strict=True)]
        paired[name] = statistics.median(ratios)
        print(
            f"  {name:36s} {best[name]:9.0f}   x{best[name] / best[RAW]:.2f} of raw   "
            f"median x{paired[name]:.2f}   {verdict}"
        )
        print("  " + " " * 36 + " rounds: " + ", ".join(f"{r:.0f}" for r in rates))
    print(
        "\ntargets (issue 11): A <= 1.2x raw, B <= 1.5x raw, C >= 0.8x raw: "
        f"A x{a[POLYSYNC] / a[RAW]:.2f}, B x{b[POLYSYNC][0] / b[RAW][0]:.2f}, "
        f"C x{best[POLYSYNC] / best[RAW]:.2f} (best), x{paired[POLYSYNC]:.2f} (median of rounds)"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
