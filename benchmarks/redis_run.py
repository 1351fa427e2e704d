"""The Redis benchmarks: polysync's redis backend side by side with the Python Redis locks.

Usage: ``python benchmarks/redis_run.py [--quick] [--json PATH] [--only A,B1,B2,C]``.

The suite starts a private ``redis-server`` on a free loopback port (never the machine's
own :6379) and measures, in this one run and against that one server: polysync's redis
backend (``polysync.get_context("redis", url=...)``), redis-py's ``Lock``,
python-redis-lock, pottery's ``Redlock`` (one master), sherlock's ``RedisLock`` and a bare
LPUSH/BLPOP token through redis-py (the floor of a wake-up through this client). When the
polysync backend is not there yet, the peers are measured alone. The ratios
``polysync / peer`` are the figures to compare across machines. See ``benchmarks/README.md``.

Exit status: 0 when every measurement produced a figure and every contended counter was
exact; 1 when a counter was wrong (FAIL) or a job hung or raised; 2 when the server could
not be started. Project targets are reported, never asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.metadata
import json
import math
import os
import platform
import signal
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import _harness
import redis_measure as rm
import redis_peers as rp
from redis_peers import LABELS, NOLOCK, PEERS, POLL_INTERVAL, POLYSYNC, PRL, REDIS_PY, TOKEN
from run import (
    choose_cpus,
    failure_notes,
    fmt_rate,
    fmt_ratio,
    fmt_us,
    median_or_none,
    percentile,
    ratio,
    table,
)

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # for tests.redis_support (the private server)

SECTIONS = ("A", "B1", "B2", "C")

#: The peers' distributions (what to pip install) by the module each one imports.
PEER_MODULES: dict[str, tuple[str, str]] = {
    REDIS_PY: ("redis", "redis"),
    rp.REDIS_PY_1MS: ("redis", "redis"),
    PRL: ("redis_lock", "python-redis-lock"),
    rp.POTTERY: ("pottery", "pottery"),
    rp.SHERLOCK: ("sherlock", "sherlock"),
    TOKEN: ("redis", "redis"),
}


@dataclass
class Config:
    """How much to measure: a full run or a --quick one."""

    quick: bool
    warmup_s: float
    a_batch_s: float
    a_trials: int
    b1_samples: int
    b1_poll_samples: int
    b1_warmup: int
    b1_settle_us: float
    b1_phase_us: float
    b2_rounds: int
    b2_warmup: int
    c_procs: tuple[int, ...]
    c_iters: int
    reps: int
    pin: tuple[int, int] | None


def make_config(args: argparse.Namespace) -> Config:
    quick: bool = args.quick
    samples = args.samples or (60 if quick else 300)
    return Config(
        quick=quick,
        warmup_s=0.0 if quick else 2.0,
        a_batch_s=0.03 if quick else 0.1,
        a_trials=3 if quick else 5,
        b1_samples=samples,
        b1_poll_samples=max(6, samples // 3),
        b1_warmup=2 if quick else 5,
        b1_settle_us=2000.0,
        b1_phase_us=2000.0,
        b2_rounds=400 if quick else 2000,
        b2_warmup=50 if quick else 200,
        c_procs=(2, 4, 8),
        c_iters=args.iters or (150 if quick else 600),
        reps=1 if quick else 3,
        pin=choose_cpus(args.pin),
    )


def pin_text(cfg: Config) -> str:
    if cfg.pin is None:
        return "not pinned"
    return f"pinned to CPUs {cfg.pin[0]} and {cfg.pin[1]}"


# -- running the jobs --------------------------------------------------------------------


@dataclass
class Cells:
    """Results of one section: per (system, column) the value of every repetition."""

    values: dict[str, dict[str, list[Any]]]
    failures: dict[str, str]
    statuses: dict[str, str]


def run_cells(
    section: str,
    jobs: Sequence[tuple[str, str]],
    reps: int,
    fn: Callable[..., Any],
    deadline_of: Callable[[str, str], float],
    kwargs_of: Callable[[str, str, int], dict[str, Any]],
    verbose: bool,
) -> Cells:
    """One isolated job per (system, column) and repetition, the systems interleaved.

    A cell that fails once is not run again (its other repetitions would fail the same way).
    """
    cells = Cells({}, {}, {})
    for rep in range(reps):
        for system, column in jobs:
            key = f"{LABELS[system]} / {column}"
            if key in cells.failures:
                continue
            if verbose:
                print(f"  [{section}] {key} #{rep + 1} ...", end="", file=sys.stderr, flush=True)
            outcome = _harness.run_job(
                fn, deadline_of(system, column), **kwargs_of(system, column, rep)
            )
            if verbose:
                print(f" {outcome.brief()} ({outcome.seconds:.1f} s)", file=sys.stderr, flush=True)
            if outcome.ok:
                cells.values.setdefault(system, {}).setdefault(column, []).append(outcome.value)
                continue
            cells.failures[key] = outcome.brief()
            cells.statuses[key] = outcome.status.upper()
            cells.values.get(system, {}).pop(column, None)
            if outcome.status == "error":
                print(f"\n[{section}] {key} raised:\n{outcome.error}", file=sys.stderr)
    return cells


def pooled(cells: Cells, system: str, column: str, field: str) -> list[float]:
    """Every repetition's list *field* of one cell, concatenated (empty if it failed)."""
    return [x for rep in cells.values.get(system, {}).get(column, []) for x in rep[field]]


def cell_text(cells: Cells, system: str, column: str, text: str) -> str:
    return cells.statuses.get(f"{LABELS[system]} / {column}", text)


def vs(peer: str) -> str:
    return f"polysync / {LABELS[peer]}"


def ratio_block(
    title: str,
    cols: Sequence[str],
    header: Sequence[str],
    ratios: dict[str, dict[str, float | None]],
) -> str:
    rows = [[name] + [fmt_ratio(r.get(c)) for c in cols] for name, r in ratios.items()]
    return table(title, ["ratio", *header], rows)


# -- sections ----------------------------------------------------------------------------


def section_a(cfg: Config, url: str, systems: list[str], verbose: bool) -> dict[str, Any]:
    cols = rm.A_COLUMNS
    plan: dict[str, tuple[str, ...]] = {}
    if POLYSYNC in systems:
        plan[POLYSYNC] = ("Lock", "Semaphore", "Event", "Condition", "Barrier(1)")
    for s in systems:
        if s != POLYSYNC and s != rp.REDIS_PY_1MS:  # same uncontended path as redis-py
            plan[s] = ("Lock",)
    if REDIS_PY in systems or TOKEN in systems:
        plan[rp.PING_PY] = ("PING",)
    plan[rp.PING_RAW] = ("PING",)
    cells = run_cells(
        "A",
        [(s, c) for s, cs in plan.items() for c in cs],
        cfg.a_trials,  # one trial per job, the trials of all cells interleaved
        rm.uncontended,
        lambda s, c: 60.0,
        lambda s, c, rep: {
            "system": s,
            "column": c,
            "url": url,
            "batch_seconds": cfg.a_batch_s,
            "trials": 1,
        },
        verbose,
    )
    us = {s: {c: median_or_none(pooled(cells, s, c, "trials_us")) for c in cols} for s in plan}
    header = [
        "Lock acq+rel",
        "Semaphore acq+rel",
        "Event set+clear+is_set",
        "Condition acq+notify+rel",
        "Barrier(1).wait",
        "PING",
    ]
    rows = [
        [LABELS[s]]
        + [cell_text(cells, s, c, fmt_us(us[s][c])) if c in plan[s] else "" for c in cols]
        for s in plan
    ]
    title = (
        "A. Uncontended, one process (µs per operation group, median of "
        f"{cfg.a_trials} batches of ~{cfg.a_batch_s:g} s)"
    )
    print(table(title, ["system", *header], rows) + failure_notes(cells.failures) + "\n")
    ratios: dict[str, dict[str, float | None]] = {}
    if POLYSYNC in plan:
        for s in plan:
            if s not in (POLYSYNC, rp.PING_PY, rp.PING_RAW):
                ratios[vs(s)] = {"Lock": ratio(us[POLYSYNC]["Lock"], us[s]["Lock"])}
        for s in (rp.PING_PY, rp.PING_RAW):
            if s in plan:
                ratios[f"polysync Lock / {LABELS[s]}"] = {
                    "Lock": ratio(us[POLYSYNC]["Lock"], us[s]["PING"])
                }
        print(ratio_block("A. ratios (Lock)", ["Lock"], ["Lock acq+rel"], ratios) + "\n")
    return {"us": us, "ratios": ratios, "failures": cells.failures}


def b1_samples(cfg: Config, system: str) -> int:
    """Polling locks cost ~0.1-0.2 s per sample and their figure is their poll: fewer."""
    return cfg.b1_poll_samples if POLL_INTERVAL.get(system, 0) >= 0.05 else cfg.b1_samples


def b1_phase_us(cfg: Config, system: str) -> float:
    """The random part of the hold: the system's poll interval, at least the default."""
    return max(cfg.b1_phase_us, POLL_INTERVAL.get(system, 0.0) * 1e6)


def section_b1(cfg: Config, url: str, systems: list[str], verbose: bool) -> dict[str, Any]:
    per_rep = {s: math.ceil(b1_samples(cfg, s) / cfg.reps) for s in systems}

    def deadline(s: str, c: str) -> float:
        hold = (cfg.b1_settle_us + b1_phase_us(cfg, s)) / 1e6
        return 30.0 + (per_rep[s] + cfg.b1_warmup) * (hold + 2 * POLL_INTERVAL.get(s, 0) + 0.02)

    cells = run_cells(
        "B1",
        [(s, "Lock") for s in systems],
        cfg.reps,
        rm.handoff,
        deadline,
        lambda s, c, rep: {
            "system": s,
            "url": url,
            "samples": per_rep[s],
            "warmup": cfg.b1_warmup,
            "settle_us": cfg.b1_settle_us,
            "phase_us": b1_phase_us(cfg, s),
            "cpus": cfg.pin,
            "seed": 1000 + rep,
        },
        verbose,
    )
    fields = ("median", "p99")
    lat = {s: pooled(cells, s, "Lock", "latencies_us") for s in systems}
    us = {s: {"median": median_or_none(lat[s]), "p99": percentile(lat[s], 0.99)} for s in systems}
    rows = [
        [LABELS[s]]
        + [cell_text(cells, s, "Lock", fmt_us(us[s][f])) for f in fields]
        + [
            str(len(lat[s])),
            f"{cfg.b1_settle_us / 1e3:g} + 0-{b1_phase_us(cfg, s) / 1e3:g}",
        ]
        for s in systems
    ]
    title = (
        "B1. Hand-off to a parked waiter (µs from A's release() call to B's acquire() "
        f"return; {pin_text(cfg)})"
    )
    header = ["system", "median", "p99", "samples", "hold ms"]
    print(table(title, header, rows) + failure_notes(cells.failures) + "\n")
    ratios: dict[str, dict[str, float | None]] = {}
    if POLYSYNC in systems:
        ratios = {
            vs(p): {f: ratio(us[POLYSYNC][f], us[p][f]) for f in fields}
            for p in systems
            if p != POLYSYNC
        }
        print(ratio_block("B1. ratios", fields, fields, ratios) + "\n")
    return {"us": us, "ratios": ratios, "failures": cells.failures, "samples": lat}


def section_b2(cfg: Config, url: str, systems: list[str], verbose: bool) -> dict[str, Any]:
    cols = rm.B2_COLUMNS
    plan: dict[str, tuple[str, ...]] = {}
    if POLYSYNC in systems:
        plan[POLYSYNC] = cols
    if TOKEN in systems:
        plan[TOKEN] = ("Semaphore",)
    if not plan:
        print("B2. skipped: neither polysync redis nor redis-py is available\n")
        return {"us": {}, "ratios": {}, "failures": {}}
    per_rep = math.ceil(cfg.b2_rounds / cfg.reps)
    cells = run_cells(
        "B2",
        [(s, c) for s, cs in plan.items() for c in cs],
        cfg.reps,
        rm.pingpong,
        lambda s, c: 60.0,
        lambda s, c, rep: {
            "system": s,
            "column": c,
            "url": url,
            "rounds": per_rep,
            "warmup": cfg.b2_warmup,
            "cpus": cfg.pin,
        },
        verbose,
    )
    us = {s: {c: median_or_none(pooled(cells, s, c, "us")) for c in cols} for s in plan}
    labels = {POLYSYNC: "polysync redis", TOKEN: "bare LPUSH/BLPOP pair (redis-py)"}
    rows = [
        [labels[s]]
        + [cell_text(cells, s, c, fmt_us(us[s][c])) if c in plan[s] else "" for c in cols]
        for s in plan
    ]
    header = ["system", "Event", "Semaphore", "Condition", "Barrier(2) cycle"]
    title = (
        "B2. Ping-pong between two busy processes (µs one-way = round trip / 2; Barrier: µs "
        f"per cycle; median of {per_rep * cfg.reps} rounds; {pin_text(cfg)})"
    )
    print(table(title, header, rows) + failure_notes(cells.failures) + "\n")
    ratios: dict[str, dict[str, float | None]] = {}
    if POLYSYNC in plan and TOKEN in plan:
        floor = us[TOKEN]["Semaphore"]
        ratios = {
            "polysync / LPUSH/BLPOP pair one-way": {c: ratio(us[POLYSYNC][c], floor) for c in cols}
        }
        print(ratio_block("B2. ratios", cols, header[1:], ratios) + "\n")
    return {"us": us, "ratios": ratios, "failures": cells.failures}


def section_c(
    cfg: Config, url: str, systems: list[str], verbose: bool
) -> tuple[dict[str, Any], list[str]]:
    systems = [*systems, NOLOCK]
    cols = [f"N={n}" for n in cfg.c_procs]
    worker_timeout = 30.0 if cfg.quick else 60.0
    cells = run_cells(
        "C",
        [(s, c) for s in systems for c in cols],
        cfg.reps,
        rm.contended,
        lambda s, c: worker_timeout + 30.0,
        lambda s, c, rep: {
            "system": s,
            "url": url,
            "procs": int(c[2:]),
            "iters": cfg.c_iters,
            "timeout": worker_timeout,
        },
        verbose,
    )
    runs = {s: {c: cells.values.get(s, {}).get(c, []) for c in cols} for s in systems}
    rate = {
        s: {c: median_or_none([r["acq_per_s"] for r in runs[s][c]]) for c in cols} for s in systems
    }
    owner = {
        s: {
            c: statistics.fmean([r["changed_owner"] for r in runs[s][c]]) if runs[s][c] else None
            for c in cols
        }
        for s in systems
    }
    exact = {
        s: {c: all(r["exact"] for r in runs[s][c]) if runs[s][c] else None for c in cols}
        for s in systems
    }
    fails: list[str] = []
    rows: list[list[str]] = []
    for s in systems:
        lost_counts = []
        for c in cols:
            for r in runs[s][c]:
                lost = r["expected"] - r["counter"]
                if s == NOLOCK:
                    lost_counts.append(lost)
                elif lost:
                    fails.append(
                        f"FAIL: {LABELS[s]} {c}: counter ended at {r['counter']:,}, "
                        f"expected {r['expected']:,}"
                    )
        if s == NOLOCK:
            counter = (
                f"lost {min(lost_counts):,}-{max(lost_counts):,} (no lock)" if lost_counts else "-"
            )
        elif any(exact[s][c] is False for c in cols):
            counter = "FAIL"
        else:
            counter = "exact" if any(runs[s].values()) else "-"
        shares = "/".join(
            "?" if owner[s][c] is None else f"{owner[s][c]:.2f}".lstrip("0") for c in cols
        )
        rows.append(
            [LABELS[s]]
            + [cell_text(cells, s, c, fmt_rate(rate[s][c])) for c in cols]
            + [shares, counter]
        )
    title = (
        f"C. Contended: N processes x {cfg.c_iters:,} locked read-modify-writes of a "
        f"shared-memory counter (acquisitions/s, median of {cfg.reps} run(s))"
    )
    header = ["system", *cols, "changed owner " + "/".join(str(n) for n in cfg.c_procs), "counter"]
    print(table(title, header, rows) + failure_notes(cells.failures))
    print("".join(f"{f}\n" for f in fails))
    ratios: dict[str, dict[str, float | None]] = {}
    if POLYSYNC in systems:
        ratios = {
            vs(p): {c: ratio(rate[POLYSYNC][c], rate[p][c]) for c in cols}
            for p in systems
            if p not in (POLYSYNC, NOLOCK)
        }
        print(
            ratio_block(
                "C. ratios (acquisitions/s: above 1.00x polysync is ahead)", cols, cols, ratios
            )
            + "\n"
        )
    data = {
        "acq_per_s": rate,
        "changed_owner": owner,
        "counter_exact": exact,
        "ratios": ratios,
        "failures": cells.failures,
        "counter_failures": fails,
        "runs": runs,
    }
    return data, fails


# -- targets -----------------------------------------------------------------------------


def targets(results: dict[str, Any], polysync_ok: bool) -> list[dict[str, Any]]:
    """The project's Redis targets, each with its measured ratio and whether it is met."""
    out: list[dict[str, Any]] = []

    def add(name: str, value: float | None, limit: float, at_most: bool, extra: bool) -> None:
        met: bool | None = None
        if value is not None:
            met = (value <= limit if at_most else value >= limit) and extra
        out.append({"target": name, "ratio": value, "limit": limit, "met": met})

    def get(section: str, row: str, col: str) -> float | None:
        if not polysync_ok or section not in results:
            return None
        value: float | None = results[section]["ratios"].get(row, {}).get(col)
        return value

    if "B1" in results:
        add(
            "hand-off median <= 0.75x python-redis-lock",
            get("B1", vs(PRL), "median"),
            0.75,
            True,
            True,
        )
    if "A" in results:
        add(
            "uncontended Lock <= 1.0x redis-py Lock",
            get("A", vs(REDIS_PY), "Lock"),
            1.0,
            True,
            True,
        )
    if "C" in results:
        c = results["C"]
        share = c["changed_owner"].get(POLYSYNC, {}).get("N=8")
        exact = bool(c["counter_exact"].get(POLYSYNC, {}).get("N=8"))
        add(
            "8-process contended >= 1.5x python-redis-lock acq/s, >= 90% changed owner, exact",
            get("C", vs(PRL), "N=8"),
            1.5,
            False,
            share is not None and share >= 0.9 and exact,
        )
        out[-1]["changed_owner"] = share
    return out


def print_targets(found: list[dict[str, Any]], polysync_ok: bool) -> None:
    rows = []
    for t in found:
        if t["met"] is None:
            verdict = "UNKNOWN (no figure)" if polysync_ok else "UNKNOWN (polysync redis absent)"
        else:
            verdict = "met" if t["met"] else "NOT MET"
        extra = ""
        if t.get("changed_owner") is not None:
            extra = f" (changed owner {t['changed_owner']:.2f})"
        rows.append([t["target"], fmt_ratio(t["ratio"]) + extra, verdict])
    print(table("targets (reported, not asserted)", ["target", "polysync/peer", "verdict"], rows))
    print(
        "  note: per peer-numbers.md, hand-off and throughput differences under ~1.5x are "
        "within this machine's run-to-run noise.\n"
    )


# -- main --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="smaller samples, no warm-up")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    parser.add_argument(
        "--only", metavar="LIST", default=",".join(SECTIONS), help="sections, e.g. A,B1"
    )
    parser.add_argument(
        "--samples", type=int, metavar="N", help="B1 hand-off samples (default 300; quick 60)"
    )
    parser.add_argument(
        "--iters", type=int, metavar="K", help="C iterations per process (default 600; quick 150)"
    )
    parser.add_argument(
        "--pin", action="store_true", help="B1/B2: pin the two processes to two CPUs"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per job")
    args = parser.parse_args(argv)
    wanted = [s.strip().upper() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {','.join(SECTIONS)}")
    args.sections = [s for s in SECTIONS if s in wanted]
    return args


def available_peers() -> tuple[list[str], list[str]]:
    """The peers whose library imports (imported here, so forked jobs inherit it), and notes."""
    found: list[str] = []
    notes: list[str] = []
    for system in PEERS:
        module, dist = PEER_MODULES[system]
        try:
            importlib.import_module(module)
        except ImportError as exc:
            notes.append(f"{LABELS[system]}: not installed ({exc}); pip install {dist}")
        else:
            found.append(system)
    return found, notes


def _probe_polysync(url: str) -> str:
    ctx = rp.polysync_context(url)
    return type(ctx).__name__


def probe_polysync(url: str) -> tuple[bool, str]:
    """Whether ``get_context("redis", url=...)`` works, tried in a job of its own."""
    outcome = _harness.run_job(_probe_polysync, 30.0, url=url)
    if outcome.ok:
        return True, str(outcome.value)
    lines = outcome.error.strip().splitlines()
    return False, lines[-1] if lines else outcome.status


def leftover_keys(server: Any) -> dict[str, Any]:
    """The keys still in the server: the peers' (``psbench``), others with and without TTL.

    polysync's anonymous objects expire a while after their last user is gone, so keys
    with a TTL are expected; a key of polysync's without one outlives every process.
    """
    with server.connect(timeout=10.0) as conn:
        keys = conn.command("KEYS", "*")
        other = [k for k in keys if rp.PREFIX not in k]
        persistent = sorted(k for k in other if conn.command("PTTL", k) == -1)
    return {
        "peers": len(keys) - len(other),
        "expiring": len(other) - len(persistent),
        "persistent": persistent,
    }


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally clauses: server stopped


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = make_config(args)
    started = time.perf_counter()
    signal.signal(signal.SIGTERM, _on_sigterm)
    from tests.redis_support import RedisServer, RedisSupportError, redis_version

    print(
        f"polysync Redis benchmarks ({'quick' if cfg.quick else 'full'} run): Python "
        f"{platform.python_version()}, {platform.system()} {platform.release()}, "
        f"{os.cpu_count()} CPUs, redis-server {redis_version() or '(not installed)'}; "
        f"sections {','.join(args.sections)}"
    )
    peers, notes = available_peers()
    for note in notes:
        print(note)
    versions = []
    for dist in ("redis", "hiredis", "python-redis-lock", "pottery", "sherlock"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions.append(f"{dist} {importlib.metadata.version(dist)}")
    print("peers: " + ", ".join(versions))

    server = RedisServer(name="redis-bench")
    try:
        try:
            server.start()
        except RedisSupportError as exc:
            print(f"cannot start the private redis-server: {exc}", file=sys.stderr)
            return 2
        url = server.url
        print(f"private redis-server on {url} (pid {server.pid})")
        polysync_ok, detail = probe_polysync(url)
        if polysync_ok:
            print(f"polysync redis: available ({detail})")
        else:
            print(f"polysync redis: not available ({detail})")
        print()
        systems = ([POLYSYNC] if polysync_ok else []) + peers
        if cfg.warmup_s:
            _harness.warm_up(cfg.warmup_s)
        results: dict[str, Any] = {}
        counter_fails: list[str] = []
        for section in args.sections:
            if section == "A":
                results["A"] = section_a(cfg, url, systems, args.verbose)
            elif section == "B1":
                results["B1"] = section_b1(cfg, url, systems, args.verbose)
            elif section == "B2":
                results["B2"] = section_b2(cfg, url, systems, args.verbose)
            else:
                results["C"], counter_fails = section_c(cfg, url, systems, args.verbose)
        found = targets(results, polysync_ok)
        if found:
            print_targets(found, polysync_ok)
        keys_left = leftover_keys(server)
    finally:
        server.stop()
    failures = {k: v for r in results.values() for k, v in r["failures"].items()}
    elapsed = time.perf_counter() - started
    status = 1 if counter_fails or failures else 0
    print(
        f"done in {elapsed:.1f} s: {len(failures)} hung/failed job(s), "
        f"{len(counter_fails)} counter FAIL(s); keys left in the private server (now "
        f"stopped): {keys_left['peers']} of the peers; {keys_left['expiring']} other with a "
        f"TTL; {len(keys_left['persistent'])} other without a TTL"
    )
    for key in keys_left["persistent"][:20]:
        print(f"  key without a TTL (not a peer's; a leak?): {key}")
    if args.json:
        document = {
            "meta": {
                "quick": cfg.quick,
                "python": platform.python_version(),
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "redis_server": redis_version(),
                "peers": versions,
                "polysync_redis": {"available": polysync_ok, "detail": detail},
                "sections": args.sections,
                "config": cfg.__dict__,
                "seconds": elapsed,
                "unix_time": time.time(),
            },
            "results": results,
            "targets": found,
            "keys_left": keys_left,
            "exit_status": status,
        }
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(document, fh, indent=2, default=str)
            fh.write("\n")
        print(f"JSON written to {args.json}")
    return status


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the jobs and the server are already stopped (finally)
        print("\ninterrupted: every job and the private redis-server are stopped", file=sys.stderr)
        sys.exit(130)
