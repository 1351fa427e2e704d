"""Cross-process asyncio hand-off on redis: polysync.aio beside the polling asyncio locks.

Usage: python benchmarks/aio_peers.py [--trials N] [--only NAME,...]

One run, one private redis-server (benchmarks/_redis_server.py, never the machine's own).
For each contender a holder in this process and a waiter in a spawned process use one
lock of the same name: the holder takes it, tells the waiter to ask for it, waits 20 ms
(the waiter is then blocked) and a random 0-100 ms more (so that a polling waiter is met
at any point of its period, as in real use), and releases; the hand-off is the time from just before
the release to the waiter's return (``time.perf_counter``, CLOCK_MONOTONIC, the same
clock in both processes). Reported per contender: median and p90 in microseconds, and
how many times polysync.aio's median it is.

The contenders, each with its defaults and with its polling tightened:

* ``polysync.aio``: the redis backend's async Lock; ``polysync sync``: its sync Lock
  (the waiter blocks its own loop, which is alone in that process);
* ``redis.asyncio`` (redis-py's asyncio Lock): polls every ``sleep`` seconds, 0.1 by
  default, and 0.001;
* ``aioredlock``: retries after a random 0.1-0.3 s by default (``retry_count`` raised to
  100 so that a waiter does not give up), and after 1-2 ms.

aioredlock is optional (``pip install aioredlock``, in the ``bench`` extra); without it
its rows say so. Small by default; ``--trials 200`` for real figures.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

#: How long the holder keeps the lock after the waiter was told to ask for it, at least.
WAITER_SETTLES = 0.02
#: And at most this much more, drawn at random (seeded: every contender gets the same).
PHASE = 0.1

Step = Callable[[], Awaitable[object]]


async def _opened(kind: str, url: str) -> tuple[Step, Step, Step]:
    """``(acquire, release, close)`` of contender *kind*'s lock, in this process."""
    name = f"bench-aio-peers-{kind}"
    if kind == "polysync.aio":
        import polysync.aio

        lock = polysync.aio.get_context("redis", url=url).Lock(name=name)

        async def close() -> None:
            lock.close()

        return lock.acquire, lock.release, close
    if kind == "polysync sync":
        import polysync

        sync = polysync.get_context("redis", url=url).Lock(name=name)

        async def acquire() -> bool:
            return sync.acquire()

        async def release() -> None:
            sync.release()

        async def close_sync() -> None:
            sync.close()

        return acquire, release, close_sync
    if kind.startswith("redis.asyncio"):
        import redis.asyncio as aredis

        client = aredis.Redis.from_url(url)
        peer = client.lock(name, sleep=0.001 if kind.endswith("1 ms") else 0.1, timeout=60)

        async def close_client() -> None:
            await client.aclose()

        return peer.acquire, peer.release, close_client
    if kind.startswith("aioredlock"):
        from aioredlock import Aioredlock

        fast = kind.endswith("1 ms")
        manager = Aioredlock(
            [url],
            retry_count=3000 if fast else 100,
            retry_delay_min=0.001 if fast else 0.1,
            retry_delay_max=0.002 if fast else 0.3,
        )
        held: list[Any] = []

        async def take() -> None:
            held.append(await manager.lock(name, lock_timeout=60))

        async def give() -> None:
            await manager.unlock(held.pop())

        async def close_manager() -> None:
            await manager.destroy()

        return take, give, close_manager
    raise ValueError(f"unknown contender {kind!r}")


def _waiter(kind: str, url: str, conn: Connection) -> None:
    """The spawned waiter: on each ``go`` it asks for the lock and reports when it got it."""

    async def main() -> None:
        acquire, release, close = await _opened(kind, url)
        conn.send("ready")
        while conn.recv() == "go":
            await acquire()
            got = time.perf_counter()
            await release()
            conn.send(got)
        await close()

    asyncio.run(main())


async def _trial_run(kind: str, url: str, trials: int) -> list[float]:
    """Hand-off times of *trials* hand-offs to a waiter in another process, in seconds."""
    acquire, release, close = await _opened(kind, url)
    mine, theirs = multiprocessing.Pipe()
    child = multiprocessing.get_context("spawn").Process(
        target=_waiter, args=(kind, url, theirs), daemon=True
    )
    child.start()
    loop = asyncio.get_running_loop()
    samples: list[float] = []
    phases = random.Random(7)
    try:
        if await loop.run_in_executor(None, mine.recv) != "ready":
            raise RuntimeError(f"{kind}: the waiter did not start")
        for _ in range(trials):
            await acquire()
            mine.send("go")
            await asyncio.sleep(WAITER_SETTLES + phases.uniform(0, PHASE))
            released = time.perf_counter()
            await release()
            got = await loop.run_in_executor(None, mine.recv)
            samples.append(got - released)
        mine.send("stop")
    finally:
        child.join(10)
        if child.is_alive():
            child.kill()
        await close()
    return samples


def _available(kind: str) -> bool:
    if not kind.startswith("aioredlock"):
        return True
    try:
        import aioredlock  # noqa: F401
    except ImportError:
        return False
    return True


CONTENDERS = (
    "polysync.aio",
    "polysync sync",
    "redis.asyncio, sleep 0.1 s",
    "redis.asyncio, sleep 1 ms",
    "aioredlock, retry 0.1-0.3 s",
    "aioredlock, retry 1 ms",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--only", default="", help="comma-separated contender name prefixes")
    args = parser.parse_args()
    wanted = [c for c in CONTENDERS if not args.only or c.startswith(tuple(args.only.split(",")))]
    from benchmarks._redis_server import RedisServer

    medians: dict[str, float] = {}
    print(f"cross-process hand-off on redis, {args.trials} trials each (microseconds)")
    with RedisServer() as server:
        for kind in wanted:
            if not _available(kind):
                print(f"  {kind:<30} not installed")
                continue
            samples = sorted(asyncio.run(_trial_run(kind, server.url, args.trials)))
            median = statistics.median(samples) * 1e6
            p90 = samples[int(0.9 * (len(samples) - 1))] * 1e6
            medians[kind] = median
            ours = medians.get("polysync.aio")
            ratio = f"{median / ours:8.1f}x polysync.aio" if ours else ""
            print(f"  {kind:<30} median {median:10.0f}   p90 {p90:10.0f}   {ratio}")


if __name__ == "__main__":
    main()
