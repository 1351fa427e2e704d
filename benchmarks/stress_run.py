"""Stress at full size: N workers x K operations per primitive, overlap violations, throughput.

Usage: ``python benchmarks/stress_run.py [--workers 8] [--ops 10000] [--backend
posix,thread,redis] [--variant Lock,...] [--hold-us 20] [--json PATH]``.

Runs the workload of ``tests/test_stress.py`` (``tests/_trials.py``) at full size: inside
every acquisition a worker marks itself a holder in a shared memory-mapped file, counts
the holders it sees, and does a non-atomic read-modify-write of a counter with a sleep of
``--hold-us`` microseconds in between. One row per (backend, variant): seconds, operations
per second, the most holders seen at once against what the primitive admits, violations
(a holder saw too many), lost updates (exclusive primitives: the counter below N*K), and
timeouts. ``no lock (control)`` runs once for processes and once for threads, and must
show overlap. posix and redis run processes, thread runs threads; redis runs against a
private ``redis-server`` on a free port (``_redis_server.py``).

Exit status: 0 when no primitive overlapped, every operation completed and every
control saw overlap; 1 otherwise; 2 when the server could not start.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
import time
from collections.abc import Sequence
from typing import Any

from _trials_cli import RedisServer, _trials, comma_list, private_server, write_json

STRESS_BACKENDS = ("posix", "thread", "redis")
PRIMITIVE_VARIANTS = [v for v in _trials.STRESS_VARIANTS if v != _trials.CONTROL]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, default=8, help="processes or threads (default 8)")
    p.add_argument("--ops", type=int, default=10_000, help="operations per worker (10,000)")
    p.add_argument(
        "--backend",
        type=comma_list(STRESS_BACKENDS, "backend"),
        default=list(STRESS_BACKENDS),
        help="comma-separated, of posix,thread,redis (default all)",
    )
    p.add_argument(
        "--variant",
        type=comma_list(list(_trials.STRESS_VARIANTS), "variant"),
        default=list(_trials.STRESS_VARIANTS),
        help=f"comma-separated, of {','.join(_trials.STRESS_VARIANTS)} (default all)",
    )
    p.add_argument(
        "--hold-us",
        type=float,
        default=20.0,
        help="sleep inside the read-modify-write, in µs (0: sched_yield; default 20)",
    )
    p.add_argument("--deadline", type=float, default=1800.0, help="seconds one run may take")
    p.add_argument("--method", default=_trials.DEFAULT_METHOD, help="start method of workers")
    p.add_argument("--json", metavar="PATH", help="also write every run as JSON")
    args = p.parse_args(argv)
    if args.workers < 2 or args.ops < 1:
        p.error("--workers must be at least 2 and --ops at least 1")
    return args


def _verdict_ok(result: _trials.StressResult) -> bool:
    if result.variant == _trials.CONTROL:
        return result.overlap_detected
    return result.ok


def run(args: argparse.Namespace) -> int:
    results: list[_trials.StressResult] = []
    started = time.monotonic()
    hold_s = args.hold_us / 1e6
    with contextlib.ExitStack() as stack:
        server: RedisServer | None = None
        if "redis" in args.backend and set(args.variant) - {_trials.CONTROL}:
            server = private_server(stack)
            if server is None:
                return 2
        print(
            f"stress: {args.workers} workers x {args.ops} operations, hold {args.hold_us:g} µs"
            + (f", redis {server.version}" if server else ""),
            flush=True,
        )
        plan: list[tuple[str, str, bool]] = []
        if _trials.CONTROL in args.variant:
            plan += [("processes", _trials.CONTROL, False), ("threads", _trials.CONTROL, True)]
        for backend in args.backend:
            for variant in args.variant:
                if variant != _trials.CONTROL:
                    plan.append((backend, variant, backend == "thread"))
        for label, variant, threads in plan:
            ctx: Any = None
            if variant != _trials.CONTROL:
                url = server.url if server is not None else None
                ctx = _trials.make_context(label, redis_url=url if label == "redis" else None)
            result = _trials.run_stress(
                ctx,
                label,
                variant,
                args.workers,
                args.ops,
                threads=threads,
                hold_s=hold_s,
                deadline=args.deadline,
                method=args.method,
            )
            results.append(result)
            print(
                f"  {label} {variant}: {'ok' if _verdict_ok(result) else 'FAIL'}"
                f" ({result.seconds:.1f} s)",
                file=sys.stderr,
                flush=True,
            )
    print()
    print(_trials.format_stress(results))
    print()
    print(f"{len(results)} runs in {time.monotonic() - started:.0f} s")
    if args.json:
        payload = {
            "runs": [
                dataclasses.asdict(r)
                | {"lost_updates": r.lost_updates, "throughput": r.throughput, "ok": r.ok}
                for r in results
            ]
        }
        write_json(args.json, payload, args)
    return 0 if all(_verdict_ok(r) for r in results) else 1


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
