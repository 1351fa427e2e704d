"""Server sessions of the postgres backend: how they grow with blocked Lock waiters.

Usage: ``python benchmarks/postgres_sessions.py [--waiters 1,8,32] [--url URL]``.

Without ``--url`` it starts a private PostgreSQL cluster (``tests/pg_servers``, never the
machine's own 5432). One context holds a Lock; then *N* waiters block on it, first as
threads of that context, then as processes with a context each, and it counts the
client sessions in ``pg_stat_activity`` (its own counting session left out) once all *N*
are blocked in the server (the idle sessions the threads gave back to the pool are
closed before the processes start). The lock is then handed down the queue until every
waiter has had it. The private server allows 40 connections: keep *N* at most 32.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import threading
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks._postgres_server import server  # noqa: E402

SCHEMA = "sessions"
#: Seconds the waiters have to block in the server (the spawned ones import polysync).
SETTLE = 60.0


def _sessions(db: Any) -> int:
    row = db.execute(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
    ).fetchone()
    return int(row[0])


def _blocked(db: Any) -> int:
    row = db.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    ).fetchone()
    return int(row[0])


def _settle(db: Any, n: int) -> None:
    deadline = time.monotonic() + SETTLE
    while _blocked(db) < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {_blocked(db)} of {n} waiters blocked within {SETTLE:g} s")
        time.sleep(0.05)


def _process_waiter(url: str) -> None:
    import polysync

    ctx = polysync.get_context("postgres", url=url, schema=SCHEMA)
    with ctx.Lock(name="held"):
        pass
    ctx.backend.close()


def threads(url: str, db: Any, holder: Any, ctx: Any, n: int) -> int:
    """Sessions with *n* threads of the holder's context blocked on its lock."""
    locks = [ctx.Lock(name="held") for _ in range(n)]
    got = threading.Semaphore(0)

    def wait(lock: Any) -> None:
        lock.acquire()
        got.release()

    workers = [threading.Thread(target=wait, args=(lock,), daemon=True) for lock in locks]
    for w in workers:
        w.start()
    _settle(db, n)
    seen = _sessions(db)
    holder.release()
    for _ in range(n):  # whoever got it passes it on (any thread may release a Lock)
        got.acquire(timeout=SETTLE)
        for lock in locks:
            if lock._kernel._conn is not None:
                lock.release()
                break
    for w in workers:
        w.join(SETTLE)
    holder.acquire()
    return seen


def processes(url: str, db: Any, holder: Any, n: int) -> int:
    """Sessions with *n* processes (a context each) blocked on the held lock."""
    mp = multiprocessing.get_context("spawn")
    workers = [mp.Process(target=_process_waiter, args=(url,), daemon=True) for _ in range(n)]
    for w in workers:
        w.start()
    try:
        _settle(db, n)
        seen = _sessions(db)
        holder.release()
        for w in workers:
            w.join(SETTLE)
    finally:
        for w in workers:
            if w.is_alive():
                w.kill()
    holder.acquire()
    return seen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waiters", default="1,8,32", help="waiter counts, comma-separated")
    parser.add_argument("--url", default=None, help="a server to use instead of a private one")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.waiters.split(",")]
    import psycopg

    import polysync

    with server(args.url) as url, psycopg.connect(url, autocommit=True) as db:
        ctx = polysync.get_context("postgres", url=url, schema=SCHEMA)
        holder = ctx.Lock(name="held")
        print(f"one context, nothing held: {_sessions(db)} session(s)")
        holder.acquire()
        print(f"one context holding the lock: {_sessions(db)} session(s)")
        print("waiters  as threads  as processes   (client sessions while all are blocked)")
        for n in counts:
            in_threads = threads(url, db, holder, ctx, n)
            ctx.backend.server._flush()  # the idle sessions the threads gave back
            in_processes = processes(url, db, holder, n)
            print(f"{n:7d}  {in_threads:10d}  {in_processes:12d}")
        holder.release()
        ctx.backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
