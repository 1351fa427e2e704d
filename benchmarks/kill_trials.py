"""Kill trials at full size: SIGKILL a process using a primitive, then check it still works.

Usage: ``python benchmarks/kill_trials.py [--trials 100] [--backend posix,redis]
[--primitive Lock,...] [--mode holding,random] [--lease 1] [--json PATH] [-v]``.

For every (backend, primitive, mode) it runs ``--trials`` trials of
``tests/_trials.py`` (the harness ``tests/test_kill_trials.py`` runs at CI size): a
victim process holds the primitive (or waits inside Event/Condition/Barrier.wait), or
loops on it, and is SIGKILLed; a survivor process then checks, every call bounded, that
the primitive works again. It prints one row per variant: recovered/total, the recovery
time (from the kill) median and max, and how many trials reported the owner's death
(an OwnerDiedWarning or ``owner_died``), then every kind of failure with its count.

The redis backend runs against a private ``redis-server`` on a free port
(``_redis_server.py``), with a short lease (``--lease``, default 1 s).

Exit status: 0 when every trial recovered and nothing was left behind (in /dev/shm, or
keys without a TTL on the server); 1 otherwise; 2 when the server could not start.
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

DEFAULT_BACKENDS = ("posix", "redis")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=100, help="trials per variant (default 100)")
    p.add_argument(
        "--backend",
        type=comma_list(_trials.KILL_BACKENDS, "backend"),
        default=list(DEFAULT_BACKENDS),
        help=f"comma-separated, of {','.join(_trials.KILL_BACKENDS)} (default posix,redis)",
    )
    p.add_argument(
        "--primitive",
        type=comma_list(_trials.PRIMITIVES, "primitive"),
        default=list(_trials.PRIMITIVES),
        help="comma-separated (default: all seven)",
    )
    p.add_argument(
        "--mode",
        type=comma_list(_trials.MODES, "mode"),
        default=list(_trials.MODES),
        help="holding, random or both (default both)",
    )
    p.add_argument("--lease", type=float, default=1.0, help="redis lease in s (default 1)")
    p.add_argument("--seed", type=int, default=None, help="seed of the random kill moments")
    p.add_argument("--method", default=_trials.DEFAULT_METHOD, help="start method of children")
    p.add_argument("--json", metavar="PATH", help="also write every trial and row as JSON")
    p.add_argument("-v", "--verbose", action="store_true", help="one line per trial on stderr")
    args = p.parse_args(argv)
    if args.trials < 1:
        p.error("--trials must be at least 1")
    return args


def _keys_without_ttl(server: RedisServer) -> list[str]:
    """The trials' keys on the server that would never expire (a leak once unlinked)."""
    with server.connect() as client:
        return [
            key.decode()
            for key in client.scan_iter(match="pstrials:*", count=1000)
            if client.pttl(key) == -1
        ]


def run(args: argparse.Namespace) -> int:
    shm_before = _trials.shm_entries()
    names: list[str] = []
    results: list[_trials.TrialResult] = []
    problems: list[str] = []
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        server: RedisServer | None = None
        if "redis" in args.backend:
            server = private_server(stack)
            if server is None:
                return 2
        print(
            f"kill trials: {args.trials} per variant, start method {args.method}"
            + (f", redis {server.version} lease {args.lease:g} s" if server else ""),
            flush=True,
        )
        for backend in args.backend:
            lease = args.lease if backend == "redis" else None
            url = server.url if server is not None and backend == "redis" else None
            try:
                ctx = _trials.make_context(backend, redis_url=url, lease=lease)
            except Exception as exc:
                problems.append(f"no {backend} context: {type(exc).__name__}: {exc}")
                continue
            bound = _trials.recovery_bound(backend, lease)
            for primitive in args.primitive:
                for mode in args.mode:
                    began = time.monotonic()
                    batch = _trials.run_trials(
                        ctx,
                        backend,
                        primitive,
                        mode,
                        args.trials,
                        bound=bound,
                        seed=args.seed,
                        method=args.method,
                        names=names,
                    )
                    results += batch
                    if args.verbose:
                        for trial in batch:
                            print(trial.line(), file=sys.stderr)
                    row = _trials.summarize(batch)[0]
                    print(
                        f"  {backend}/{primitive}/{mode}: {row.recovered}/{row.total} recovered"
                        f" ({time.monotonic() - began:.1f} s)",
                        file=sys.stderr,
                        flush=True,
                    )
        if server is not None:
            problems += [f"redis key without a TTL: {k}" for k in _keys_without_ttl(server)]
    _trials.wait_until(
        lambda: not _trials.own_shm_entries(_trials.shm_entries() - shm_before, names), 10.0
    )
    left = _trials.own_shm_entries(_trials.shm_entries() - shm_before, names)
    problems += [f"left in /dev/shm: {entry}" for entry in sorted(left)]
    rows = _trials.summarize(results)
    print()
    print(_trials.format_summaries(rows))
    print()
    for line in problems:
        print(line if line.startswith("no ") else f"LEFTOVER {line}")
    bounds = ", ".join(
        f"{b} {_trials.recovery_bound(b, args.lease if b == 'redis' else None):g} s"
        for b in args.backend
    )
    print(f"recovery bounds: {bounds}; {len(results)} trials in {time.monotonic() - started:.0f} s")
    if args.json:
        payload: dict[str, Any] = {
            "trials": [dataclasses.asdict(r) for r in results],
            "rows": [dataclasses.asdict(r) for r in rows],
            "problems": problems,
        }
        write_json(args.json, payload, args)
    return 0 if all(r.recovered for r in results) and not problems else 1


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
