"""Instructions per uncontended acquire+release pair, counted by valgrind's callgrind.

Usage: ``python benchmarks/callgrind_pairs.py [--n N] [--warmup W] [--listener] [--json PATH]``.

Timings on a shared VM drift from run to run; an instruction count does not. For each
system a tiny Python child runs under ``valgrind --tool=callgrind`` twice: both runs do the
same imports, set-up and W warm-up pairs, then one does N pairs and the other 2N. The
figure is ``(I(2N) - I(N)) / N``, the instructions of one pair, with the start-up, set-up
and shut-down cancelled out. The systems are polysync's posix Lock, RLock and Semaphore,
multiprocessing's Lock, RLock and Semaphore (fork context), a raw posix_ipc semaphore (a binary
semaphore as a Lock), and, awaited in an event loop, asyncio's in-process Lock, two
no-op coroutine awaits (what the awaits alone cost), coroutines that only call the sync
posix Lock (the floor of any async wrapper of it), coroutines that only call that Lock's
kernel (the floor of any coroutine pair around the kernel) and polysync.aio's posix Lock. Every
call is the bare ``acquire()`` then ``release()``, as in section A's ``Lock`` column of
``posix_run.py``; the last two rows are the same pair as a block, polysync's posix Lock in
``with`` and polysync.aio's in ``async with``. With ``--listener``, the polysync
children subscribe a no-op :mod:`polysync.instrument` listener first: the cost of being
observed (without it, nobody listens, which must cost nothing). See ``benchmarks/README.md``.

Exit status: 0 when every system was counted; 1 when a child failed; 2 when valgrind is
missing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import _report
import posix_peers

RAW = "raw"
MP_LOCK, POLY_LOCK = "mp-lock", "polysync-lock"
MP_RLOCK, POLY_RLOCK = "mp-rlock", "polysync-rlock"
MP_SEM, POLY_SEM = "mp-semaphore", "polysync-semaphore"
#: Coroutine pairs (``await acquire()``, then release): asyncio's own in-process Lock;
#: the bare cost of two awaits (no-op coroutine methods); the floor of an async wrapper
#: (coroutine methods that only call the sync polysync posix Lock's acquire and release);
#: and polysync.aio's posix Lock.
ASYNCIO_LOCK, AIO_LOCK = "asyncio-lock", "polysync-aio-lock"
COROUTINE_PAIR, COROUTINE_FLOOR = "coroutine-pair", "coroutine-floor"
#: Coroutine methods that only call the posix Lock's kernel (C calls): the least any
#: coroutine pair around this kernel costs, with no check of anything.
COROUTINE_KERNEL = "coroutine-kernel"
#: The same pair as a block: ``with lock: pass`` and ``async with lock: pass``.
POLY_LOCK_WITH, AIO_LOCK_WITH = "polysync-lock-with", "polysync-aio-lock-with"
#: Table order; each polysync row is compared with the multiprocessing row of its primitive.
SYSTEMS = (
    RAW,
    MP_LOCK,
    POLY_LOCK,
    MP_RLOCK,
    POLY_RLOCK,
    MP_SEM,
    POLY_SEM,
    ASYNCIO_LOCK,
    COROUTINE_PAIR,
    COROUTINE_FLOOR,
    COROUTINE_KERNEL,
    AIO_LOCK,
    POLY_LOCK_WITH,
    AIO_LOCK_WITH,
)
LABELS = {
    RAW: "raw posix_ipc semaphore",
    MP_LOCK: "multiprocessing Lock",
    POLY_LOCK: "polysync posix Lock",
    MP_RLOCK: "multiprocessing RLock",
    POLY_RLOCK: "polysync posix RLock",
    MP_SEM: "multiprocessing Semaphore",
    POLY_SEM: "polysync posix Semaphore",
    ASYNCIO_LOCK: "asyncio.Lock (in-process)",
    COROUTINE_PAIR: "two no-op coroutine awaits",
    COROUTINE_FLOOR: "coroutines over sync Lock",
    COROUTINE_KERNEL: "coroutines over its kernel",
    AIO_LOCK: "polysync.aio posix Lock",
    POLY_LOCK_WITH: "polysync posix Lock, with",
    AIO_LOCK_WITH: "polysync.aio posix Lock, async with",
}
#: Each polysync.aio row is also compared with the sync row of the same form.
SAME_FORM_IN_SYNC = {AIO_LOCK: POLY_LOCK, AIO_LOCK_WITH: POLY_LOCK_WITH}
SAME_PRIMITIVE_IN_MP = {
    MP_LOCK: MP_LOCK,
    POLY_LOCK: MP_LOCK,
    MP_RLOCK: MP_RLOCK,
    POLY_RLOCK: MP_RLOCK,
    MP_SEM: MP_SEM,
    POLY_SEM: MP_SEM,
}

#: The child run under callgrind: ``python -c CHILD <system> <pairs> <warmup>``. Both runs
#: of a system execute exactly the same code but for the pair count of the last loop.
CHILD = f"""
import sys

system, pairs, warmup, listen = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
if system == {RAW!r}:
    import os, secrets, posix_ipc
    name = "{posix_peers.PREFIX}" + str(os.getpid()) + "-" + secrets.token_hex(6)
    lock = posix_ipc.Semaphore(name, posix_ipc.O_CREX, 0o600, 1)
    lock.unlink()
elif system in ({MP_LOCK!r}, {MP_RLOCK!r}, {MP_SEM!r}):
    import multiprocessing
    ctx = multiprocessing.get_context("fork")
    lock = {{{MP_LOCK!r}: ctx.Lock, {MP_RLOCK!r}: ctx.RLock, {MP_SEM!r}: ctx.Semaphore}}[system]()
elif system == {ASYNCIO_LOCK!r}:
    import asyncio
    lock = asyncio.Lock()
elif system == {COROUTINE_PAIR!r}:

    class NoOp:  # what two awaits cost, nothing else
        async def acquire(self):
            return True

        async def release(self):
            return None

    lock = NoOp()
elif system in (
    {POLY_LOCK!r}, {POLY_RLOCK!r}, {POLY_SEM!r}, {AIO_LOCK!r}, {COROUTINE_FLOOR!r},
    {POLY_LOCK_WITH!r}, {AIO_LOCK_WITH!r}, {COROUTINE_KERNEL!r},
):
    import polysync
    ctx = polysync.get_context("posix")
    if system in ({AIO_LOCK!r}, {AIO_LOCK_WITH!r}):
        import polysync.aio
        lock = polysync.aio.AsyncContext(ctx).Lock()
    elif system == {COROUTINE_FLOOR!r}:

        class Floor:  # the least an async wrapper of the sync handle can do
            def __init__(self, sync):
                self._sync = sync

            async def acquire(self):
                return self._sync.acquire()

            async def release(self):
                self._sync.release()

        lock = Floor(ctx.Lock())
    elif system == {COROUTINE_KERNEL!r}:

        class Bare:  # the least any coroutine pair around the kernel can do
            def __init__(self, sync):
                self._sync = sync  # kept: a collected handle closes its kernel
                self._kernel = sync._kernel

            async def acquire(self):
                return self._kernel.acquire(False, None)

            async def release(self):
                self._kernel.release()

        lock = Bare(ctx.Lock())
    else:
        lock = {{
            {POLY_LOCK!r}: ctx.Lock,
            {POLY_LOCK_WITH!r}: ctx.Lock,
            {POLY_RLOCK!r}: ctx.RLock,
            {POLY_SEM!r}: ctx.Semaphore,
        }}[system]()
    if listen == "1":
        import polysync.instrument
        polysync.instrument.subscribe(lambda observation: None)
else:
    raise SystemExit("unknown system " + system)


def run(acquire, release, n):
    for _ in range(n):
        acquire()
        release()


def run_with(lock, n):
    for _ in range(n):
        with lock:
            pass


async def arun(lock, n):
    if system == {ASYNCIO_LOCK!r}:  # its release() is a plain call
        for _ in range(n):
            await lock.acquire()
            lock.release()
    elif system == {AIO_LOCK_WITH!r}:
        for _ in range(n):
            async with lock:
                pass
    else:
        for _ in range(n):
            await lock.acquire()
            await lock.release()


if system in ({ASYNCIO_LOCK!r}, {AIO_LOCK!r}, {COROUTINE_PAIR!r}, {COROUTINE_FLOOR!r},
              {COROUTINE_KERNEL!r}, {AIO_LOCK_WITH!r}):
    import asyncio

    async def both():
        await arun(lock, warmup)
        await arun(lock, pairs)

    asyncio.run(both())
elif system == {POLY_LOCK_WITH!r}:
    run_with(lock, warmup)
    run_with(lock, pairs)
else:
    run(lock.acquire, lock.release, warmup)  # the same in both runs: specialises the loop
    run(lock.acquire, lock.release, pairs)
print("ok", system, pairs)
"""

_TOTAL = re.compile(r"^(?:summary|totals):\s+(\d+)", re.MULTILINE)


def valgrind_version() -> str | None:
    path = shutil.which("valgrind")
    if path is None:
        return None
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip() or None


def total_instructions(out_file: Path) -> int:
    """The instruction total of a callgrind output file (its ``summary:``/``totals:`` line)."""
    found = _TOTAL.search(out_file.read_text(errors="replace"))
    if found is None:
        raise ValueError(f"no summary or totals line in {out_file}")
    return int(found.group(1))


def count(
    system: str, pairs: int, warmup: int, workdir: Path, timeout: float, listen: bool = False
) -> int:
    """Instructions callgrind counts for one child doing *warmup* + *pairs* pairs."""
    pattern = workdir / f"{system}-{pairs}.%p.out"
    argv = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={pattern}",
        "-q",
        sys.executable,
        "-c",
        CHILD,
        system,
        str(pairs),
        str(warmup),
        "1" if listen else "0",
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0"}  # the same dict layouts in both runs
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise TimeoutError(f"{system}: valgrind ran longer than {timeout:g} s") from None
    if proc.returncode != 0 or not out.startswith(b"ok"):
        tail = err.decode(errors="replace").strip().splitlines()[-5:]
        raise RuntimeError(f"{system}: child exited with {proc.returncode}: " + " | ".join(tail))
    return total_instructions(workdir / f"{system}-{pairs}.{proc.pid}.out")


def measure(
    systems: Sequence[str],
    n: int,
    warmup: int,
    timeout: float,
    verbose: bool,
    listen: bool = False,
) -> dict[str, dict[str, Any]]:
    """Per system: I(N), I(2N), instructions per pair, or the error that stopped it."""
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="psbench-callgrind-") as tmp:
        for system in systems:
            started = time.perf_counter()
            try:
                one = count(system, n, warmup, Path(tmp), timeout, listen)
                two = count(system, 2 * n, warmup, Path(tmp), timeout, listen)
            except (OSError, RuntimeError, ValueError) as exc:
                results[system] = {"error": str(exc)}
            else:
                results[system] = {"i_n": one, "i_2n": two, "per_pair": (two - one) / n}
            results[system]["seconds"] = time.perf_counter() - started
            if verbose:
                r = results[system]
                got = r.get("error") or f"I(N) {r['i_n']:,}, I(2N) {r['i_2n']:,}"
                print(f"  {LABELS[system]}: {got} ({r['seconds']:.1f} s)", file=sys.stderr)
    for system, r in results.items():
        per_pair = r.get("per_pair")
        raw = results.get(RAW, {}).get("per_pair")
        mp = results.get(SAME_PRIMITIVE_IN_MP.get(system, ""), {}).get("per_pair")
        sync = results.get(SAME_FORM_IN_SYNC.get(system, ""), {}).get("per_pair")
        r["vs_raw"] = _report.ratio(per_pair, raw)
        r["vs_mp"] = _report.ratio(per_pair, mp)
        r["vs_sync"] = _report.ratio(per_pair, sync)
    return results


def report(results: dict[str, dict[str, Any]], n: int) -> str:
    rows = []
    for system, r in results.items():
        per_pair = r.get("per_pair")
        figure = "ERROR" if per_pair is None else f"{per_pair:,.0f}"
        rows.append(
            [
                LABELS[system],
                figure,
                _report.fmt_ratio(r["vs_raw"]),
                _report.fmt_ratio(r["vs_mp"]),
                _report.fmt_ratio(r["vs_sync"]),
            ]
        )
    title = (
        "Instructions per uncontended acquire()+release() pair (callgrind, "
        f"(I(2N) - I(N)) / N, N = {n:,})"
    )
    header = ["system", "instructions/pair", "/ raw posix_ipc", "/ multiprocessing", "/ sync"]
    notes = "".join(f"\n  ! {LABELS[s]}: {r['error']}" for s, r in results.items() if "error" in r)
    return (
        _report.table(title, header, rows)
        + notes
        + "\n  '/ multiprocessing' divides by multiprocessing's same primitive"
        + " (Lock, RLock or Semaphore); '/ sync' divides a polysync.aio row by the sync"
        + " polysync row of the same form (calls or block)."
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--n", type=int, default=20_000, help="N, pairs of the shorter run")
    parser.add_argument(
        "--warmup", type=int, default=2_000, help="pairs before the counted loop (both runs)"
    )
    parser.add_argument(
        "--systems",
        metavar="LIST",
        default=",".join(SYSTEMS),
        help=f"comma-separated, from {','.join(SYSTEMS)}",
    )
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds one valgrind run may take"
    )
    parser.add_argument(
        "--json", metavar="PATH", help="also write the results as JSON ('-': stdout)"
    )
    parser.add_argument(
        "--listener",
        action="store_true",
        help="polysync children subscribe a no-op polysync.instrument listener first",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per system")
    args = parser.parse_args(argv)
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in args.systems if s not in SYSTEMS]
    if unknown:
        parser.error(f"unknown system(s) {', '.join(unknown)}; choose from {','.join(SYSTEMS)}")
    if args.n < 1 or args.warmup < 0:
        parser.error("--n must be at least 1 and --warmup at least 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    version = valgrind_version()
    if version is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    started = time.perf_counter()
    out = sys.stderr if args.json == "-" else sys.stdout  # --json -: only JSON on stdout
    print(
        f"polysync callgrind pairs: Python {platform.python_version()}, {version}, "
        f"N = {args.n:,}, warm-up {args.warmup:,} pairs"
        + (", a no-op polysync.instrument listener subscribed" if args.listener else ""),
        file=out,
        flush=True,
    )
    # polysync's cleanup tracker is started here, outside valgrind; the children find it
    # through the environment, so neither of a system's two runs starts one.
    tracker_lock = posix_peers.start_polysync_tracker()
    try:
        results = measure(
            args.systems, args.n, args.warmup, args.timeout, args.verbose, args.listener
        )
    finally:
        tracker_lock.close()
    elapsed = time.perf_counter() - started
    print(report(results, args.n), file=out)
    failed = [s for s, r in results.items() if "error" in r]
    status = 1 if failed else 0
    print(f"done in {elapsed:.1f} s: {len(failed)} system(s) failed", file=out)
    if args.json:
        document = {
            "meta": {
                "python": platform.python_version(),
                "platform": platform.platform(),
                "valgrind": version,
                "n": args.n,
                "warmup": args.warmup,
                "listener": args.listener,
                "seconds": elapsed,
                "unix_time": time.time(),
            },
            "results": results,
            "exit_status": status,
        }
        text = json.dumps(document, indent=2) + "\n"
        if args.json == "-":
            sys.stdout.write(text)
        else:
            Path(args.json).write_text(text, encoding="utf-8")
            print(f"JSON written to {args.json}", file=out)
    return status


if __name__ == "__main__":
    sys.exit(main())
