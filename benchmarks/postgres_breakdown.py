"""Where the postgres Lock's uncontended pair spends its time: the same pair, part by part.

Usage: ``python benchmarks/postgres_breakdown.py [--pairs N] [--rounds R] [--url URL]``.

Without ``--url`` it starts a private PostgreSQL cluster (``tests/pg_servers``, never the
machine's own 5432). On one psycopg 3 connection (prepared statements, as polysync's
are after five runs) it times, round-robin over *R* rounds of *N* pairs so that every
variant sees the same machine, the pair that polysync's Lock runs and the same pair
with parts taken away:

1. ``pg_try_advisory_lock`` / ``pg_advisory_unlock`` as plain statements (the floor);
2. the same inside two plpgsql functions (the cost of a function call);
3. plus ``nextval()`` of the token sequence (the fencing token, no write);
4. plus ``txid_current()`` (an xid and a commit record, and nothing written);
5. polysync's ``lock_acquire`` (holder record and token: an unlogged-table update and its
   commit) with a bare unlock;
6. ``lock_acquire`` / ``lock_release`` (the release's holder-record update too): the pair
   polysync's Lock runs, without its Python.

Reports microseconds per pair (wall) and the ratio to the floor, and the backend's CPU
time per pair (``/proc``, in clock ticks: coarse, on Linux only).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks._postgres_server import server  # noqa: E402

SCHEMA = "breakdown"
Step = tuple[bytes, Sequence[object]]


def _backend_cpu(pid: int) -> float:
    """Seconds of CPU the server process *pid* used (0 where /proc is not there)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _functions(db: Any) -> None:
    s = SCHEMA
    db.execute(
        f"CREATE OR REPLACE FUNCTION {s}.try_only(p_id integer, p_class integer) "
        "RETURNS bigint LANGUAGE plpgsql AS $$ BEGIN "
        "IF NOT pg_try_advisory_lock(p_class, p_id) THEN RETURN NULL; END IF; "
        "RETURN 1; END $$"
    )
    db.execute(
        f"CREATE OR REPLACE FUNCTION {s}.try_token(p_id integer, p_class integer) "
        "RETURNS bigint LANGUAGE plpgsql AS $$ BEGIN "
        "IF NOT pg_try_advisory_lock(p_class, p_id) THEN RETURN NULL; END IF; "
        f"RETURN nextval('{s}.fence'); END $$"
    )
    db.execute(
        f"CREATE OR REPLACE FUNCTION {s}.try_token_xid(p_id integer, p_class integer) "
        "RETURNS bigint LANGUAGE plpgsql AS $$ BEGIN "
        "IF NOT pg_try_advisory_lock(p_class, p_id) THEN RETURN NULL; END IF; "
        f"PERFORM txid_current(); RETURN nextval('{s}.fence'); END $$"
    )
    db.execute(
        f"CREATE OR REPLACE FUNCTION {s}.unlock_only(p_id integer, p_class integer) "
        "RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN "
        "RETURN pg_advisory_unlock(p_class, p_id); END $$"
    )


def variants(oid: int, classid: int) -> dict[str, list[Step]]:
    s, key = SCHEMA, (oid, classid)
    unlock = (f"SELECT {s}.unlock_only(%s, %s)".encode(), key)
    acquire = (f"SELECT {s}.lock_acquire(%s, %s, 0, '1:host:2')".encode(), key)
    return {
        "1 plain try / unlock": [
            (b"SELECT pg_try_advisory_lock(%s, %s)", (classid, oid)),
            (b"SELECT pg_advisory_unlock(%s, %s)", (classid, oid)),
        ],
        "2 in plpgsql": [(f"SELECT {s}.try_only(%s, %s)".encode(), key), unlock],
        "3 + nextval (token)": [(f"SELECT {s}.try_token(%s, %s)".encode(), key), unlock],
        "4 + an xid and commit": [(f"SELECT {s}.try_token_xid(%s, %s)".encode(), key), unlock],
        "5 lock_acquire / unlock": [acquire, unlock],
        "6 lock_acquire / lock_release": [
            acquire,
            (f"SELECT {s}.lock_release(%s, %s)".encode(), key),
        ],
    }


def measure(db: Any, steps: dict[str, list[Step]], pairs: int, rounds: int) -> None:
    pid = db.info.backend_pid
    for pair in steps.values():  # warm up: plans prepared, caches filled
        for _ in range(20):
            for sql, params in pair:
                db.execute(sql, params, prepare=True).fetchone()
    wall = dict.fromkeys(steps, 0.0)
    cpu = dict.fromkeys(steps, 0.0)
    for _ in range(rounds):
        for name, pair in steps.items():
            began, used = time.perf_counter(), _backend_cpu(pid)
            for _ in range(pairs):
                for sql, params in pair:
                    db.execute(sql, params, prepare=True).fetchone()
            wall[name] += time.perf_counter() - began
            cpu[name] += _backend_cpu(pid) - used
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
            with lock:  # creates the holder record
                pass
            kernel: Any = lock._kernel
            _functions(db)
            measure(db, variants(kernel._oid, kernel._server.classid), args.pairs, args.rounds)
        finally:
            lock.close()
            ctx.backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
