"""Recovery of a windows ``Lock`` or semaphore permit from a killed holder: how soon it comes back.

Runs on Windows, or under Wine on Linux (the Windows leg's interpreter, see
``.ci/windows-tests.sh``)::

    export WINEPREFIX=~/.cache/polysync-wine/prefix WINEDEBUG=-all WINEARCH=win64
    PYTHONPATH="$(winepath -w "$PWD")" wine ~/.cache/polysync-wine/cp313/python.exe \\
        benchmarks/windows_recovery.py --trials 20 </dev/null | tr -d '\\r'

Mode ``holding``: a child process (``subprocess``) takes a named Lock and sleeps; a
thread of this process blocks in ``acquire()``; the child is killed with
``TerminateProcess``. The figure is the time from the kill to the waiter's acquire
returning. Mode ``random``: the child loops acquire/release in two threads and is killed
at a random moment (so inside ``acquire()`` or ``release()`` too), then this process
calls ``acquire()``; the figure is the time from the kill to that acquire returning, and
the reports count how the death was told (holding, inside a call, or not at all: it
held nothing at that instant).

``--kind semaphore`` runs the same two modes on a ``BoundedSemaphore(1)``: its one
permit, taken by the killed child, comes back (``--kind both``, the default, runs both).

Prints median and max per kind and mode. Exit status 1 if any trial did not get the lock within
5 s (a wedge); nothing is asserted on the timings.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import textwrap
import threading
import time
import uuid
import warnings
from collections import Counter

import polysync

_BOUND = 5.0

_CHILD = {
    "holding": """
        import time, polysync
        lock = polysync.get_context("windows").{make}(name={name!r})
        assert lock.acquire(timeout=10)
        print("ready", flush=True)
        time.sleep(60)
    """,
    "random": """
        import threading, time, polysync
        lock = polysync.get_context("windows").{make}(name={name!r})

        def loop():
            while True:
                if lock.acquire(timeout=10):
                    lock.release()

        for _ in range(2):
            threading.Thread(target=loop, daemon=True).start()
        print("ready", flush=True)
        time.sleep(60)
    """,
}


_MAKE = {"lock": "Lock", "semaphore": "BoundedSemaphore"}


def _trial(
    ctx: polysync.Context, kind: str, mode: str, rng: random.Random
) -> tuple[float | None, str]:
    name = f"psbench-{uuid.uuid4().hex[:12]}"
    lock = ctx.Lock(name=name) if kind == "lock" else ctx.BoundedSemaphore(1, name=name)
    code = _CHILD[mode].format(name=name, make=_MAKE[kind])
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    out: list[tuple[float, bool, str]] = []

    def waiter() -> None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got = lock.acquire(timeout=_BOUND + 5)
        stamp = time.perf_counter()
        told = [str(w.message) for w in caught if w.category is polysync.OwnerDiedWarning]
        how = "not told" if not told else ("inside a call" if "inside" in told[0] else "holding")
        out.append((stamp, got, how))

    try:
        assert child.stdout is not None
        if child.stdout.readline().strip() != "ready":
            return None, "child failed"
        thread = threading.Thread(target=waiter, daemon=True)
        if mode == "holding":
            thread.start()
            time.sleep(0.1)  # blocked, slice after slice, on a live holder
        else:
            time.sleep(rng.uniform(0.01, 0.2))
        killed = time.perf_counter()
        child.kill()  # TerminateProcess
        if mode == "random":
            thread.start()  # the next acquirer after the death
        thread.join(_BOUND + 10)
        if not out or not out[0][1]:
            return None, "wedged"
        stamp, _, how = out[0]
        lock.release()
        return max(0.0, stamp - killed), how
    finally:
        child.kill()
        child.communicate(timeout=10)
        lock.close()
        ctx.unlink(name)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=20, help="trials per mode (default 20)")
    p.add_argument("--mode", choices=["holding", "random", "both"], default="both")
    p.add_argument("--kind", choices=["lock", "semaphore", "both"], default="both")
    p.add_argument("--seed", type=int, default=8)
    args = p.parse_args(argv)
    ctx = polysync.get_context("windows")
    rng = random.Random(args.seed)
    failed = False
    kinds = ("lock", "semaphore") if args.kind == "both" else (args.kind,)
    modes = ("holding", "random") if args.mode == "both" else (args.mode,)
    for kind, mode in [(k, m) for k in kinds for m in modes]:
        times: list[float] = []
        hows: Counter[str] = Counter()
        for _ in range(args.trials):
            seconds, how = _trial(ctx, kind, mode, rng)
            hows[how] += 1
            if seconds is None or seconds > _BOUND:
                failed = True
            else:
                times.append(seconds)
        line = f"{kind:9} {mode:8} {len(times)}/{args.trials} recovered"
        if times:
            line += (
                f"; from the kill: median {statistics.median(times) * 1000:.0f} ms, "
                f"max {max(times) * 1000:.0f} ms"
            )
        print(line + "; " + ", ".join(f"{k}: {v}" for k, v in sorted(hows.items())))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
