"""Where the postgres Lock's uncontended pair spends its time: the same pair, part by part.

Usage: ``python benchmarks/postgres_breakdown.py [--pairs N] [--rounds R] [--url URL]``.

Without ``--url`` it starts a private PostgreSQL cluster (``tests/pg_servers``, never the
machine's own 5432). On one connection it times, round-robin over *R* rounds of *N*
pairs so that every variant sees the same machine, the pair that polysync's Lock runs
and the same pair with parts taken away or added:

1. ``pg_try_advisory_lock`` / ``pg_advisory_unlock`` as plain statements, through
   psycopg's cursors (``execute``, prepared after five runs): the floor;
2. the same inside two plpgsql functions (the cost of a function call);
3. plus a ``nextval()`` of the lock's counter in each (what the Lock's pair adds);
4. polysync's ``lock_acquire`` / ``lock_release`` through cursors: its server side;
5. the same, with the acquire writing who the session acts for each time (an xid and a
   commit: what a pair cost before the counters, twice);
6. ``lock_acquire`` / ``lock_release`` prepared and run through ``psycopg.pq``, as the
   Lock's kernel runs them (``PostgresServer.value``);
7. polysync's ``Lock.acquire()`` / ``release()``: the whole pair.

Reports microseconds per pair (wall) and the ratio to the floor, and the backend's CPU
time per pair (``/proc``, in clock ticks: coarse, on Linux only).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks._postgres_server import server  # noqa: E402

SCHEMA = "breakdown"


def _backend_cpu(pid: int) -> float:
    """Seconds of CPU the server process *pid* used (0 where /proc is not there)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _functions(db: Any, counter: str) -> None:
    s = SCHEMA
    db.execute(
        f"CREATE OR REPLACE FUNCTION {s}.try_only(p_id integer, p_class integer) "
        "RETURNS bigint LANGUAGE plpgsql AS $$ BEGIN "
        "IF NOT pg_try_advisory_lock(p_class, p_id) THEN RETURN NULL; END IF; "
        "RETURN 1; END $$"
    )
    db.execute(
        f"CREATE OR REPLACE FUNCTION {s}.unlock_only(p_id integer, p_class integer) "
        "RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN "
        "RETURN pg_advisory_unlock(p_class, p_id); END $$"
    )
    db.execute(
        f"CREATE OR REPLACE FUNCTION {s}.try_count(p_id integer, p_class integer) "
        "RETURNS bigint LANGUAGE plpgsql AS $$ BEGIN "
        "IF NOT pg_try_advisory_lock(p_class, p_id) THEN RETURN NULL; END IF; "
        f"RETURN nextval('{counter}'); END $$"
    )
    db.execute(
        f"CREATE OR REPLACE FUNCTION {s}.unlock_count(p_id integer, p_class integer) "
        "RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN "
        f"PERFORM nextval('{counter}'); RETURN pg_advisory_unlock(p_class, p_id); END $$"
    )


def variants(db: Any, lock: Any) -> dict[str, list[Callable[[], object]]]:
    """Each variant's two calls (acquire, release)."""
    from polysync.backends.postgres.server import Prepared

    kernel = lock._kernel
    server, oid, classid = kernel._server, kernel._oid, kernel._server.classid
    s, key = SCHEMA, (oid, classid)

    def cursor(sql: str, params: Sequence[object]) -> Callable[[], object]:
        statement = sql.encode()
        return lambda: db.execute(statement, params, prepare=True).fetchone()

    acquire = Prepared(b"bd_acquire", f"SELECT {s}.lock_acquire($1, $2, 0, NULL)".encode())
    release = Prepared(b"bd_release", f"SELECT {s}.lock_release($1, $2)".encode())
    who = iter(range(1, 1 << 62))
    return {
        "1 plain try / unlock": [
            cursor("SELECT pg_try_advisory_lock(%s, %s)", (classid, oid)),
            cursor("SELECT pg_advisory_unlock(%s, %s)", (classid, oid)),
        ],
        "2 in plpgsql": [
            cursor(f"SELECT {s}.try_only(%s, %s)", key),
            cursor(f"SELECT {s}.unlock_only(%s, %s)", key),
        ],
        "3 + the counter": [
            cursor(f"SELECT {s}.try_count(%s, %s)", key),
            cursor(f"SELECT {s}.unlock_count(%s, %s)", key),
        ],
        "4 lock_acquire / release": [
            cursor(f"SELECT {s}.lock_acquire(%s, %s, 0, NULL)", key),
            cursor(f"SELECT {s}.lock_release(%s, %s)", key),
        ],
        "5 + who written each time": [
            lambda: db.execute(
                f"SELECT {s}.lock_acquire(%s, %s, 0, %s)".encode(),
                (oid, classid, f"1:host:{next(who)}"),
                prepare=True,
            ).fetchone(),
            cursor(f"SELECT {s}.lock_release(%s, %s)", key),
        ],
        "6 the same through psycopg.pq": [
            lambda: server.value(db, acquire, key, 10.0),
            lambda: server.value(db, release, key, 10.0),
        ],
        "7 polysync Lock": [lock.acquire, lock.release],
    }


def measure(db: Any, steps: dict[str, list[Callable[[], object]]], pairs: int, rounds: int) -> None:
    pids = [db.info.backend_pid]
    for pair in steps.values():  # warm up: plans prepared, caches filled
        for _ in range(20):
            for call in pair:
                call()
    wall = dict.fromkeys(steps, 0.0)
    cpu = dict.fromkeys(steps, 0.0)
    for _ in range(rounds):
        for name, pair in steps.items():
            began, used = time.perf_counter(), sum(_backend_cpu(p) for p in pids)
            for _ in range(pairs):
                for call in pair:
                    call()
            wall[name] += time.perf_counter() - began
            cpu[name] += sum(_backend_cpu(p) for p in pids) - used
    total = pairs * rounds
    floor = wall["1 plain try / unlock"]
    print(f"{'pair':32s} {'us/pair':>8s} {'x floor':>8s} {'server CPU us':>14s}")
    for name in steps:
        print(
            f"{name:32s} {wall[name] / total * 1e6:8.1f} {wall[name] / floor:8.2f} "
            f"{cpu[name] / total * 1e6:14.1f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=200, help="pairs per variant and round")
    parser.add_argument("--rounds", type=int, default=15, help="rounds over the variants")
    parser.add_argument("--url", default=None, help="a server to use instead of a private one")
    args = parser.parse_args(argv)
    import psycopg

    import polysync

    with server(args.url) as url, psycopg.connect(url, autocommit=True) as db:
        ctx = polysync.get_context("postgres", url=url, schema=SCHEMA)
        lock = ctx.Lock(name="breakdown")
        try:
            with lock:  # the session records who it acts for, once
                pass
            kernel: Any = lock._kernel
            _functions(db, f"{SCHEMA}.lock_{kernel._oid}")
            measure(db, variants(db, lock), args.pairs, args.rounds)
        finally:
            lock.close()
            ctx.backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
