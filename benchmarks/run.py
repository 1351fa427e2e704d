"""The benchmark suite's command line: runs the sections, reports tables, ratios, targets, JSON.

Usage: ``python benchmarks/run.py [--quick] [--json PATH] [--only A,B1,B2,C]``.
polysync's posix backend, multiprocessing (fork context) and a raw posix_ipc semaphore
are measured side by side in this one run; the ratios ``polysync / peer`` are the figures
to compare across machines (absolute figures drift). See ``benchmarks/README.md``.

Exit status: 0 when every measurement produced a figure and every contended counter was
exact; 1 when a counter was wrong (FAIL), a job hung or errored, or an object of this
suite was left in /dev/shm. Project targets are reported, never asserted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import _harness
import _measure
import _peers

SECTIONS = ("A", "B1", "B2", "C")
POLY, MP, RAW, NOLOCK = _peers.POLYSYNC, _peers.MP, _peers.RAW, _peers.NOLOCK
VS_MP = "polysync / multiprocessing"
VS_RAW = "polysync / raw posix_ipc"


@dataclass
class Config:
    """How much to measure: a full run or a --quick one."""

    quick: bool
    warmup_s: float
    a_batch_s: float
    a_trials: int
    b1_samples: int
    b1_warmup: int
    b1_settle_us: float
    b1_phase_us: float
    b2_rounds: int
    b2_warmup: int
    c_procs: tuple[int, ...]
    c_iters: int
    reps: int
    pin: tuple[int, int] | None


def pin_text(cfg: Config) -> str:
    if cfg.pin is None:
        return "not pinned"
    return f"the two processes pinned to CPUs {cfg.pin[0]} and {cfg.pin[1]}"


def choose_cpus(enabled: bool) -> tuple[int, int] | None:
    """Two distinct CPUs this process may run on, or ``None`` (pinning off or impossible)."""
    if not enabled:
        return None
    allowed = sorted(os.sched_getaffinity(0))
    return (allowed[0], allowed[1]) if len(allowed) >= 2 else None


def make_config(args: argparse.Namespace) -> Config:
    quick: bool = args.quick
    return Config(
        quick=quick,
        warmup_s=0.0 if quick else 2.0,
        a_batch_s=0.03 if quick else 0.1,
        a_trials=5,
        b1_samples=args.samples or (200 if quick else 900),
        b1_warmup=20,
        b1_settle_us=1000.0,
        b1_phase_us=1000.0,
        b2_rounds=600 if quick else 3000,
        b2_warmup=100 if quick else 300,
        c_procs=(2, 4, 8),
        c_iters=args.iters or (15_000 if quick else 50_000),
        reps=2 if quick else 5,
        pin=choose_cpus(not args.no_pin),
    )


# -- formatting --------------------------------------------------------------------------


def fmt_us(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value:.3f}"
    if value < 10:
        return f"{value:.2f}"
    if value < 100:
        return f"{value:.1f}"
    return f"{value:,.0f}"


def fmt_rate(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e3:
        return f"{value / 1e3:.0f}k"
    return f"{value:.0f}"


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or den == 0:
        return None
    return num / den


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    cols = list(zip(header, *rows, strict=True))
    widths = [max(len(c) for c in col) for col in cols]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest]).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([title, line(header), rule, *(line(r) for r in rows)])


def failure_notes(failures: dict[str, str]) -> str:
    return "".join(f"\n  ! {key}: {text}" for key, text in failures.items())


# -- running the jobs --------------------------------------------------------------------


@dataclass
class Cells:
    """Results of one section: per (system, column) the value of every repetition."""

    values: dict[str, dict[str, list[Any]]]
    failures: dict[str, str]
    statuses: dict[str, str]


#: Every process this run made (the job and its participants): polysync names its waiter
#: semaphores after the pid, which is how /dev/shm leftovers are told apart from other
#: programs' objects on a shared host.
_our_pids: set[int] = set()


def _job_with_pids(fn: Callable[..., Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """Inside a job: run *fn* and return its value with the pids of the job's processes."""
    return {"value": fn(**kwargs), "pids": _peers.started_pids()}


def run_cells(
    section: str,
    jobs: Sequence[tuple[str, str]],
    reps: int,
    fn: Callable[..., Any],
    deadline: float,
    kwargs_of: Callable[[str, str, int], dict[str, Any]],
    verbose: bool,
) -> Cells:
    """Run one isolated job per (system, column) and repetition, the systems interleaved.

    Interleaving spreads slow drifts of the machine (another program waking up) over
    every system instead of charging them to whichever ran at that moment. A cell that
    fails once is not run again.
    """
    cells = Cells({}, {}, {})
    for rep in range(reps):
        for system, column in jobs:
            key = f"{_peers.LABELS[system]} / {column}"
            if key in cells.failures:
                continue
            if verbose:
                print(f"  [{section}] {key} #{rep + 1} ...", end="", file=sys.stderr, flush=True)
            outcome = _harness.run_job(
                _job_with_pids, deadline, fn=fn, kwargs=kwargs_of(system, column, rep)
            )
            if verbose:
                print(f" {outcome.brief()} ({outcome.seconds:.1f} s)", file=sys.stderr, flush=True)
            _our_pids.add(outcome.pid)
            if outcome.ok:
                _our_pids.update(outcome.value["pids"])
                value = outcome.value["value"]
                cells.values.setdefault(system, {}).setdefault(column, []).append(value)
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


def median_or_none(xs: Sequence[float]) -> float | None:
    return statistics.median(xs) if xs else None


def percentile(xs: Sequence[float], q: float) -> float | None:
    """The nearest-rank *q* quantile (0..1) of *xs*."""
    if not xs:
        return None
    ordered = sorted(xs)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def cell_text(cells: Cells, system: str, column: str, text: str) -> str:
    key = f"{_peers.LABELS[system]} / {column}"
    return cells.statuses.get(key, text)


# -- sections ----------------------------------------------------------------------------


def ratio_rows(ratios: dict[str, dict[str, float | None]], cols: Sequence[str]) -> list[list[str]]:
    return [[name] + [fmt_ratio(r[c]) for c in cols] for name, r in ratios.items()]


def section_a(cfg: Config, verbose: bool) -> dict[str, Any]:
    cols = _measure.A_COLUMNS
    jobs = [(s, c) for s, cs in _measure.A_SYSTEMS.items() for c in cs]
    # One trial per job, the trials of all cells interleaved (see run_cells).
    cells = run_cells(
        "A",
        jobs,
        cfg.a_trials,
        _measure.uncontended,
        60.0,
        lambda s, c, rep: {
            "system": s,
            "column": c,
            "batch_seconds": cfg.a_batch_s,
            "trials": 1,
        },
        verbose,
    )
    us = {
        s: {c: median_or_none(pooled(cells, s, c, "trials_us")) for c in cols}
        for s in _measure.A_SYSTEMS
    }
    ratios = {
        VS_MP: {c: ratio(us[POLY][c], us[MP][c]) for c in cols},
        VS_RAW: {c: ratio(us[POLY][c], us[RAW][c]) for c in cols},
    }
    header = [
        "system",
        "Lock",
        f"Lock(timeout={_measure.TIMEOUT:g})",
        "Semaphore",
        "Event set+clear+is_set",
        "Condition acq+notify+rel",
        "Barrier(1).wait",
    ]
    rows = [
        [_peers.LABELS[s]]
        + [
            cell_text(cells, s, c, fmt_us(us[s][c])) if c in _measure.A_SYSTEMS[s] else ""
            for c in cols
        ]
        for s in _measure.A_SYSTEMS
    ]
    title = (
        f"A. Uncontended, one process (µs per pair, median of {cfg.a_trials} trials "
        f"of ~{cfg.a_batch_s:g} s batches)"
    )
    print(table(title, header, rows + ratio_rows(ratios, cols)) + failure_notes(cells.failures))
    print()
    return {"us": us, "ratios": ratios, "failures": cells.failures, "runs": cells.values}


def section_b1(cfg: Config, verbose: bool) -> dict[str, Any]:
    systems = _measure.B1_SYSTEMS
    per_rep = math.ceil(cfg.b1_samples / cfg.reps)
    per_sample_s = (cfg.b1_settle_us + cfg.b1_phase_us) / 1e6 + 0.002
    deadline = 20.0 + (per_rep + cfg.b1_warmup) * per_sample_s * 3
    cells = run_cells(
        "B1",
        [(s, "Lock") for s in systems],
        cfg.reps,
        _measure.handoff,
        deadline,
        lambda s, c, rep: {
            "system": s,
            "samples": per_rep,
            "warmup": cfg.b1_warmup,
            "settle_us": cfg.b1_settle_us,
            "phase_us": cfg.b1_phase_us,
            "cpus": cfg.pin,
            "seed": 1000 + rep,
        },
        verbose,
    )
    fields = ("median", "p99")
    lat = {s: pooled(cells, s, "Lock", "latencies_us") for s in systems}
    us = {s: {"median": median_or_none(lat[s]), "p99": percentile(lat[s], 0.99)} for s in systems}
    ratios = {
        VS_MP: {f: ratio(us[POLY][f], us[MP][f]) for f in fields},
        VS_RAW: {f: ratio(us[POLY][f], us[RAW][f]) for f in fields},
    }
    names = {MP: "multiprocessing Lock", RAW: "raw posix_ipc semaphore", POLY: "polysync Lock"}
    rows = [
        [names[s]]
        + [cell_text(cells, s, "Lock", fmt_us(us[s][f])) for f in fields]
        + [str(len(lat[s]))]
        for s in systems
    ]
    rows += [[*row, ""] for row in ratio_rows(ratios, fields)]
    title = (
        "B1. Hand-off to a parked waiter (µs from A's release() call to B's acquire() "
        f"return; hold {cfg.b1_settle_us / 1e3:g} ms + random 0-{cfg.b1_phase_us / 1e3:g} ms; "
        f"{pin_text(cfg)})"
    )
    header = ["system", "median", "p99", "samples"]
    print(table(title, header, rows) + failure_notes(cells.failures) + "\n")
    return {"us": us, "ratios": ratios, "failures": cells.failures, "samples": lat}


def section_b2(cfg: Config, verbose: bool) -> dict[str, Any]:
    cols = _measure.B2_COLUMNS
    jobs = [(s, c) for s, cs in _measure.B2_SYSTEMS.items() for c in cs]
    per_rep = math.ceil(cfg.b2_rounds / cfg.reps)
    cells = run_cells(
        "B2",
        jobs,
        cfg.reps,
        _measure.pingpong,
        30.0,
        lambda s, c, rep: {
            "system": s,
            "column": c,
            "rounds": per_rep,
            "warmup": cfg.b2_warmup,
            "cpus": cfg.pin,
        },
        verbose,
    )
    us = {
        s: {c: median_or_none(pooled(cells, s, c, "us")) for c in cols} for s in _measure.B2_SYSTEMS
    }
    ratios = {
        VS_MP: {c: ratio(us[POLY][c], us[MP][c]) for c in cols},
        VS_RAW: {c: ratio(us[POLY][c], us[RAW][c]) for c in cols},
    }
    header = ["system", "Event", "Semaphore", "Condition", "Barrier(2) cycle"]
    rows = [
        [_peers.LABELS[s]]
        + [
            cell_text(cells, s, c, fmt_us(us[s][c])) if c in _measure.B2_SYSTEMS[s] else ""
            for c in cols
        ]
        for s in _measure.B2_SYSTEMS
    ]
    title = (
        "B2. Ping-pong between two busy processes (µs one-way = round trip / 2; Barrier: µs "
        f"per cycle; median of {per_rep * cfg.reps} rounds; {pin_text(cfg)})"
    )
    print(table(title, header, rows + ratio_rows(ratios, cols)) + failure_notes(cells.failures))
    print()
    return {"us": us, "ratios": ratios, "failures": cells.failures}


def section_c(cfg: Config, verbose: bool) -> tuple[dict[str, Any], list[str]]:
    systems = _measure.C_SYSTEMS
    cols = [f"N={n}" for n in cfg.c_procs]
    # Generous: a lock that hands over on every acquisition may run 50x slower than the peers.
    worker_timeout = 60.0 if not cfg.quick else 25.0
    cells = run_cells(
        "C",
        [(s, c) for s in systems for c in cols],
        cfg.reps,
        _measure.contended,
        worker_timeout + 15.0,
        lambda s, c, rep: {
            "system": s,
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
    ratios = {
        VS_MP: {c: ratio(rate[POLY][c], rate[MP][c]) for c in cols},
        VS_RAW: {c: ratio(rate[POLY][c], rate[RAW][c]) for c in cols},
    }
    fails: list[str] = []
    rows: list[list[str]] = []
    for s in systems:
        notes = []
        for c in cols:
            for r in runs[s][c]:
                lost = r["expected"] - r["counter"]
                if s == NOLOCK:
                    notes.append(lost)
                elif lost:
                    fails.append(
                        f"FAIL: {_peers.LABELS[s]} {c}: counter ended at {r['counter']:,}, "
                        f"expected {r['expected']:,}"
                    )
        if s == NOLOCK:
            counter = f"lost {min(notes):,}-{max(notes):,} (no lock)" if notes else "-"
        elif any(exact[s][c] is False for c in cols):
            counter = "FAIL"
        else:
            counter = "exact" if any(runs[s].values()) else "-"
        shares = "/".join(
            "?" if owner[s][c] is None else f"{owner[s][c]:.2f}".lstrip("0") for c in cols
        )
        rows.append(
            [_peers.LABELS[s]]
            + [cell_text(cells, s, c, fmt_rate(rate[s][c])) for c in cols]
            + [shares, counter]
        )
    rows += [[*row, "", ""] for row in ratio_rows(ratios, cols)]
    title = (
        f"C. Contended: N processes x {cfg.c_iters:,} locked read-modify-writes of a "
        f"shared-memory counter (acquisitions/s, median of {cfg.reps} runs)"
    )
    header = ["system", *cols, "changed owner " + "/".join(str(n) for n in cfg.c_procs), "counter"]
    out = table(title, header, rows) + failure_notes(cells.failures)
    print(out + "".join(f"\n{f}" for f in fails) + "\n")
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


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The project's targets, each with its measured ratio and whether it is met."""
    out: list[dict[str, Any]] = []

    def add(
        name: str, value: float | None, limit: float, at_most: bool, extra: bool = True
    ) -> None:
        if value is None:
            met: bool | None = None
        else:
            met = (value <= limit if at_most else value >= limit) and extra
        out.append({"target": name, "ratio": value, "limit": limit, "met": met})

    a, b1, b2, c = (results.get(s) for s in SECTIONS)
    if a is not None:
        add("Lock uncontended <= 2.5x raw posix_ipc", a["ratios"][VS_RAW]["Lock"], 2.5, True)
    if b1 is not None:
        add(
            "hand-off median <= 1.0x multiprocessing Lock",
            b1["ratios"][VS_MP]["median"],
            1.0,
            True,
        )
    if b2 is not None:
        add("Event ping-pong <= 0.5x multiprocessing", b2["ratios"][VS_MP]["Event"], 0.5, True)
        add(
            "Condition ping-pong <= 0.5x multiprocessing",
            b2["ratios"][VS_MP]["Condition"],
            0.5,
            True,
        )
    if c is not None and "N=8" in c["ratios"][VS_MP]:
        exact = bool(c["counter_exact"][POLY]["N=8"])
        add(
            "8-process contended >= 0.7x multiprocessing acq/s, counter exact",
            c["ratios"][VS_MP]["N=8"],
            0.7,
            False,
            exact,
        )
    return out


def print_targets(found: list[dict[str, Any]]) -> None:
    rows = []
    for t in found:
        verdict = "UNKNOWN (no figure)" if t["met"] is None else ("met" if t["met"] else "NOT MET")
        rows.append([t["target"], fmt_ratio(t["ratio"]), verdict])
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
        "--samples", type=int, metavar="N", help="B1 hand-off samples (default 900; quick 200)"
    )
    parser.add_argument(
        "--iters",
        type=int,
        metavar="K",
        help="C iterations per process (default 50000; quick 15000)",
    )
    parser.add_argument(
        "--no-pin", action="store_true", help="B1/B2: let the scheduler place the two processes"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per job")
    args = parser.parse_args(argv)
    wanted = [s.strip().upper() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {','.join(SECTIONS)}")
    args.sections = [s for s in SECTIONS if s in wanted]
    return args


def wait_for_cleanup(before: set[str], tracker_id: str | None, seconds: float) -> list[str]:
    """Entries this run made that are still in /dev/shm after up to *seconds* of waiting."""
    end = time.monotonic() + seconds
    while True:
        left = sorted(
            n
            for n in _peers.shm_entries() - before
            if _peers.created_by_us(n, tracker_id, _our_pids)
        )
        if not left or time.monotonic() > end:
            return left
        time.sleep(0.05)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = make_config(args)
    started = time.perf_counter()
    before = _peers.shm_entries()
    print(
        f"polysync benchmarks ({'quick' if cfg.quick else 'full'} run): Python "
        f"{platform.python_version()}, {platform.system()} {platform.release()}, "
        f"{os.cpu_count()} CPUs; sections {','.join(args.sections)}\n"
    )
    tracker_lock = _peers.start_polysync_tracker()
    tracker_id = _peers.polysync_tracker_id()
    if cfg.warmup_s:
        _harness.warm_up(cfg.warmup_s)
    results: dict[str, Any] = {}
    counter_fails: list[str] = []
    runners: dict[str, Callable[[Config, bool], Any]] = {
        "A": section_a,
        "B1": section_b1,
        "B2": section_b2,
    }
    for section in args.sections:
        if section == "C":
            results["C"], counter_fails = section_c(cfg, args.verbose)
        else:
            results[section] = runners[section](cfg, args.verbose)
    found = targets(results)
    if found:
        print_targets(found)

    tracker_lock.close()
    leftovers = wait_for_cleanup(before, tracker_id, 5.0)
    for name in leftovers:
        print(f"LEFTOVER in /dev/shm: {name}")
    failures = {k: v for r in results.values() for k, v in r["failures"].items()}
    elapsed = time.perf_counter() - started
    status = 1 if counter_fails or failures or leftovers else 0
    print(
        f"done in {elapsed:.1f} s: {len(failures)} hung/failed job(s), "
        f"{len(counter_fails)} counter FAIL(s), {len(leftovers)} /dev/shm leftover(s)"
    )
    if args.json:
        document = {
            "meta": {
                "quick": cfg.quick,
                "python": platform.python_version(),
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "sections": args.sections,
                "config": cfg.__dict__,
                "seconds": elapsed,
                "unix_time": time.time(),
            },
            "results": results,
            "targets": found,
            "shm_leftovers": leftovers,
            "exit_status": status,
        }
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(document, fh, indent=2, default=str)
            fh.write("\n")
        print(f"JSON written to {args.json}")
    return status


if __name__ == "__main__":
    sys.exit(main())
