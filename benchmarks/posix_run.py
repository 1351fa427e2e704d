"""The benchmark suite's command line: runs the sections, reports tables, ratios, targets, JSON.

Usage: ``python benchmarks/posix_run.py [--quick] [--json PATH] [--only A,B1,B2,C]
[--against multiprocessing,raw] [--plot FILE]``.
polysync's posix backend, multiprocessing (fork context) and a raw posix_ipc semaphore
are measured side by side in this one run; the ratios ``polysync / peer`` are the figures
to compare across machines (absolute figures drift). See ``benchmarks/README.md``.

Exit status: 0 when every measurement produced a figure and every contended counter was
exact; 1 when a counter was wrong (FAIL), a job hung or errored, or an object of this
suite was left in /dev/shm. Project targets are reported, never asserted.
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import _cli
import _harness
import _plot
import _report
import posix_measure
import posix_peers
from _cli import SECTIONS, Config
from _report import pin_text as _pin_text

POLY, MP, RAW, NOLOCK = posix_peers.POLYSYNC, posix_peers.MP, posix_peers.RAW, posix_peers.NOLOCK
VS_MP = "polysync / multiprocessing"
VS_RAW = "polysync / raw posix_ipc"


def pin_text(cfg: Config) -> str:
    return _pin_text(cfg.pin, "the two processes ")


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
        pin=_harness.choose_cpus(not args.no_pin),
        peers=args.peers,
    )


def chosen(cfg: Config, systems: Sequence[str]) -> tuple[str, ...]:
    """*systems* less the peers ``--against`` left out (polysync and the control stay)."""
    return tuple(s for s in systems if cfg.runs(s, (POLY, NOLOCK)))


def chosen_plan(cfg: Config, plan: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    return {s: cols for s, cols in plan.items() if cfg.runs(s, (POLY, NOLOCK))}


# -- running the jobs --------------------------------------------------------------------

#: Every process this run made (the job and its participants): polysync names its waiter
#: semaphores after the pid, which is how /dev/shm leftovers are told apart from other
#: programs' objects on a shared host.
_our_pids: set[int] = set()


def _job_with_pids(fn: Callable[..., Any], /, **kwargs: Any) -> dict[str, Any]:
    """Inside a job: run *fn* and return its value with the pids of the job's processes."""
    return {"value": fn(**kwargs), "pids": posix_peers.started_pids()}


def _unwrap(outcome: _harness.Outcome) -> Any:
    """Record the pids of a job's processes; its measured value when it succeeded."""
    _our_pids.add(outcome.pid)
    if not outcome.ok:
        return None
    _our_pids.update(outcome.value["pids"])
    return outcome.value["value"]


def with_pids(fn: Callable[..., Any]) -> Callable[..., dict[str, Any]]:
    """The job that runs *fn* and also reports the pids of its processes (see ``_unwrap``)."""
    return functools.partial(_job_with_pids, fn)


#: :func:`_harness.run_cells` with this suite's labels, collecting the pids of every job.
run_cells = functools.partial(_harness.run_cells, labels=posix_peers.LABELS, unwrap=_unwrap)


# -- sections ----------------------------------------------------------------------------


def vs_peers(us: dict[str, dict[str, float | None]], cols: Sequence[str]) -> dict[str, Any]:
    """The ratios ``polysync / multiprocessing`` and ``polysync / raw posix_ipc`` per column
    (for the peers that ran)."""
    names = {MP: VS_MP, RAW: VS_RAW}
    return {
        name: {c: _report.ratio(us[POLY][c], us[peer][c]) for c in cols}
        for peer, name in names.items()
        if peer in us
    }


def section_a(cfg: Config, verbose: bool) -> dict[str, Any]:
    cols = posix_measure.A_COLUMNS
    plan = chosen_plan(cfg, posix_measure.A_SYSTEMS)
    jobs = [(s, c) for s, cs in plan.items() for c in cs]
    # One trial per job, the trials of all cells interleaved (see run_cells).
    cells = run_cells(
        "A",
        jobs,
        cfg.a_trials,
        with_pids(posix_measure.uncontended),
        lambda s, c: 60.0,
        lambda s, c, rep: {"system": s, **cfg.uncontended_job(c)},
        verbose,
    )
    us = {
        s: {c: _report.median_or_none(cells.pooled(s, c, "trials_us")) for c in cols} for s in plan
    }
    ratios = vs_peers(us, cols)
    header = [
        "system",
        "Lock",
        f"Lock(timeout={posix_measure.TIMEOUT:g})",
        "RLock",
        "Semaphore",
        "Event set+clear+is_set",
        "Condition acq+notify+rel",
        "Barrier(1).wait",
    ]
    rows = _report.grid_rows(cells, plan, cols, us, posix_peers.LABELS)
    title = (
        f"A. Uncontended, one process (µs per pair, median of {cfg.a_trials} trials "
        f"of ~{cfg.a_batch_s:g} s batches)"
    )
    print(
        _report.table(title, header, rows + _report.ratio_rows(ratios, cols))
        + _report.failure_notes(cells.failures)
    )
    print()
    return {"us": us, "ratios": ratios, "failures": cells.failures, "runs": cells.values}


def section_b1(cfg: Config, verbose: bool) -> dict[str, Any]:
    systems = chosen(cfg, posix_measure.B1_SYSTEMS)
    per_rep = math.ceil(cfg.b1_samples / cfg.reps)
    per_sample_s = (cfg.b1_settle_us + cfg.b1_phase_us) / 1e6 + 0.002
    deadline = 20.0 + (per_rep + cfg.b1_warmup) * per_sample_s * 3
    cells = run_cells(
        "B1",
        [(s, "Lock") for s in systems],
        cfg.reps,
        with_pids(posix_measure.handoff),
        lambda s, c: deadline,
        lambda s, c, rep: {"system": s, **cfg.handoff_job(per_rep, cfg.b1_phase_us, rep)},
        verbose,
    )
    fields = ("median", "p99")
    lat, us = _report.handoff_figures(cells, systems)
    ratios = vs_peers(us, fields)
    names = {MP: "multiprocessing Lock", RAW: "raw posix_ipc semaphore", POLY: "polysync Lock"}
    rows = [
        [names[s]]
        + [cells.text(s, "Lock", _report.fmt_us(us[s][f])) for f in fields]
        + [str(len(lat[s]))]
        for s in systems
    ]
    rows += [[*row, ""] for row in _report.ratio_rows(ratios, fields)]
    title = (
        "B1. Hand-off to a parked waiter (µs from A's release() call to B's acquire() "
        f"return; hold {cfg.b1_settle_us / 1e3:g} ms + random 0-{cfg.b1_phase_us / 1e3:g} ms; "
        f"{pin_text(cfg)})"
    )
    header = ["system", "median", "p99", "samples"]
    print(_report.table(title, header, rows) + _report.failure_notes(cells.failures) + "\n")
    return {"us": us, "ratios": ratios, "failures": cells.failures, "samples": lat}


def section_b2(cfg: Config, verbose: bool) -> dict[str, Any]:
    cols = posix_measure.B2_COLUMNS
    plan = chosen_plan(cfg, posix_measure.B2_SYSTEMS)
    jobs = [(s, c) for s, cs in plan.items() for c in cs]
    per_rep = math.ceil(cfg.b2_rounds / cfg.reps)
    cells = run_cells(
        "B2",
        jobs,
        cfg.reps,
        with_pids(posix_measure.pingpong),
        lambda s, c: 30.0,
        lambda s, c, rep: {"system": s, **cfg.pingpong_job(c, per_rep)},
        verbose,
    )
    us = {s: {c: _report.median_or_none(cells.pooled(s, c, "us")) for c in cols} for s in plan}
    ratios = vs_peers(us, cols)
    header = ["system", "Event", "Semaphore", "Condition", "Barrier(2) cycle"]
    rows = _report.grid_rows(cells, plan, cols, us, posix_peers.LABELS)
    title = (
        "B2. Ping-pong between two busy processes (µs one-way = round trip / 2; Barrier: µs "
        f"per cycle; median of {per_rep * cfg.reps} rounds; {pin_text(cfg)})"
    )
    print(
        _report.table(title, header, rows + _report.ratio_rows(ratios, cols))
        + _report.failure_notes(cells.failures)
    )
    print()
    return {"us": us, "ratios": ratios, "failures": cells.failures}


def section_c(cfg: Config, verbose: bool) -> tuple[dict[str, Any], list[str]]:
    systems = chosen(cfg, posix_measure.C_SYSTEMS)
    cols = [f"N={n}" for n in cfg.c_procs]
    # Generous: a lock that hands over on every acquisition may run 50x slower than the peers.
    worker_timeout = 60.0 if not cfg.quick else 25.0
    cells = run_cells(
        "C",
        [(s, c) for s in systems for c in cols],
        cfg.reps,
        with_pids(posix_measure.contended),
        lambda s, c: worker_timeout + 15.0,
        lambda s, c, rep: {"system": s, **cfg.contended_job(c, worker_timeout)},
        verbose,
    )
    summary = _report.summarize_contended(cells, systems, cols, NOLOCK)
    ratios = vs_peers(summary.rate, cols)
    rows = summary.rows + [[*row, "", ""] for row in _report.ratio_rows(ratios, cols)]
    title = (
        f"C. Contended: N processes x {cfg.c_iters:,} locked read-modify-writes of a "
        f"shared-memory counter (acquisitions/s, median of {cfg.reps} runs)"
    )
    out = _report.table(title, _report.contended_header(cfg.c_procs), rows)
    out += _report.failure_notes(cells.failures)
    print(out + "".join(f"\n{f}" for f in summary.fails) + "\n")
    return summary.data(ratios, cells), summary.fails


# -- targets -----------------------------------------------------------------------------


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The project's targets that this run measured, each with its ratio and verdict."""
    out: list[dict[str, Any]] = []
    a, b1, b2, c = (results.get(s) for s in SECTIONS)
    if a is not None and VS_RAW in a["ratios"]:
        out.append(
            _report.target(
                "Lock uncontended <= 2.5x raw posix_ipc", a["ratios"][VS_RAW]["Lock"], 2.5, True
            )
        )
    if b1 is not None and VS_MP in b1["ratios"]:
        median = b1["ratios"][VS_MP]["median"]
        out.append(
            _report.target("hand-off median <= 1.0x multiprocessing Lock", median, 1.0, True)
        )
    if b2 is not None and VS_MP in b2["ratios"]:
        for column in ("Event", "Condition"):
            name = f"{column} ping-pong <= 0.5x multiprocessing"
            out.append(_report.target(name, b2["ratios"][VS_MP][column], 0.5, True))
    if c is not None and "N=8" in c["ratios"].get(VS_MP, {}):
        exact = bool(c["counter_exact"][POLY]["N=8"])
        name = "8-process contended >= 0.7x multiprocessing acq/s, counter exact"
        out.append(_report.target(name, c["ratios"][VS_MP]["N=8"], 0.7, False, exact))
    return out


# -- main --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    pin = ("--no-pin", "B1/B2: let the scheduler place the two processes")
    return _cli.parse_args(argv, __doc__, (900, 200), (50000, 15000), pin, (MP, RAW))


def wait_for_cleanup(before: set[str], tracker_id: str | None, seconds: float) -> list[str]:
    """Entries this run made that are still in /dev/shm after up to *seconds* of waiting."""
    end = time.monotonic() + seconds
    while True:
        left = sorted(
            n
            for n in posix_peers.shm_entries() - before
            if posix_peers.created_by_us(n, tracker_id, _our_pids)
        )
        if not left or time.monotonic() > end:
            return left
        time.sleep(0.05)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = make_config(args)
    started = time.perf_counter()
    before = posix_peers.shm_entries()
    print(
        f"{_report.banner('polysync benchmarks', cfg.quick)}; sections {','.join(args.sections)}\n"
    )
    tracker_lock = posix_peers.start_polysync_tracker()
    tracker_id = posix_peers.polysync_tracker_id()
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
        _report.print_targets(found)

    tracker_lock.close()
    leftovers = wait_for_cleanup(before, tracker_id, 5.0)
    for name in leftovers:
        print(f"LEFTOVER in /dev/shm: {name}")
    failures = _report.job_failures(results)
    elapsed = time.perf_counter() - started
    status = 1 if counter_fails or failures or leftovers else 0
    print(
        f"{_report.done_line(elapsed, failures, counter_fails)}, "
        f"{len(leftovers)} /dev/shm leftover(s)"
    )
    if args.plot:
        footer = _plot.provenance(cfg.quick)
        _plot.draw(args.plot, _plot.TITLES["posix"], results, posix_peers.LABELS, (NOLOCK,), footer)
    if args.json:
        tail = {"shm_leftovers": leftovers, "exit_status": status}
        _report.write_json(args.json, cfg, args.sections, elapsed, results, found, tail)
    return status


if __name__ == "__main__":
    sys.exit(main())
