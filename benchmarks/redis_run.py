"""The Redis benchmarks: polysync's redis backend side by side with the Python Redis locks.

Usage: ``python benchmarks/redis_run.py [--quick] [--json PATH] [--only A,B1,B2,C]
[--against redis-py,pottery,...] [--plot FILE]``.

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
import functools
import importlib
import importlib.metadata
import math
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

import _cli
import _harness
import _plot
import _report
import redis_measure as rm
import redis_peers as rp
from _redis_server import RedisServer, RedisServerError, redis_version
from redis_peers import LABELS, NOLOCK, PEERS, POLL_INTERVAL, POLYSYNC, PRL, REDIS_PY, TOKEN

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
class Config(_cli.Config):
    """How much to measure: a full run or a --quick one (polling locks: fewer B1 samples)."""

    b1_poll_samples: int


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
        pin=_harness.choose_cpus(args.pin),
        peers=args.peers,
    )


def pin_text(cfg: Config) -> str:
    return _report.pin_text(cfg.pin)


# -- running the jobs --------------------------------------------------------------------


#: :func:`_harness.run_cells` with the Redis systems' labels.
run_cells = functools.partial(_harness.run_cells, labels=LABELS)


def vs(peer: str) -> str:
    return f"polysync / {LABELS[peer]}"


def ratio_block(
    title: str,
    cols: Sequence[str],
    header: Sequence[str],
    ratios: dict[str, dict[str, float | None]],
) -> str:
    return _report.table(title, ["ratio", *header], _report.ratio_rows(ratios, cols))


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
        lambda s, c, rep: {"system": s, "url": url, **cfg.uncontended_job(c)},
        verbose,
    )
    us = {
        s: {c: _report.median_or_none(cells.pooled(s, c, "trials_us")) for c in cols} for s in plan
    }
    header = [
        "Lock acq+rel",
        "Semaphore acq+rel",
        "Event set+clear+is_set",
        "Condition acq+notify+rel",
        "Barrier(1).wait",
        "PING",
    ]
    rows = _report.grid_rows(cells, plan, cols, us, LABELS)
    title = (
        "A. Uncontended, one process (µs per operation group, median of "
        f"{cfg.a_trials} batches of ~{cfg.a_batch_s:g} s)"
    )
    print(
        _report.table(title, ["system", *header], rows)
        + _report.failure_notes(cells.failures)
        + "\n"
    )
    ratios: dict[str, dict[str, float | None]] = {}
    if POLYSYNC in plan:
        for s in plan:
            if s not in (POLYSYNC, rp.PING_PY, rp.PING_RAW):
                ratios[vs(s)] = {"Lock": _report.ratio(us[POLYSYNC]["Lock"], us[s]["Lock"])}
        for s in (rp.PING_PY, rp.PING_RAW):
            if s in plan:
                ratios[f"polysync Lock / {LABELS[s]}"] = {
                    "Lock": _report.ratio(us[POLYSYNC]["Lock"], us[s]["PING"])
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
            **cfg.handoff_job(per_rep[s], b1_phase_us(cfg, s), rep),
        },
        verbose,
    )
    fields = ("median", "p99")
    lat, us = _report.handoff_figures(cells, systems)
    rows = [
        [LABELS[s]]
        + [cells.text(s, "Lock", _report.fmt_us(us[s][f])) for f in fields]
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
    print(_report.table(title, header, rows) + _report.failure_notes(cells.failures) + "\n")
    ratios: dict[str, dict[str, float | None]] = {}
    if POLYSYNC in systems:
        ratios = {
            vs(p): {f: _report.ratio(us[POLYSYNC][f], us[p][f]) for f in fields}
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
        lambda s, c, rep: {"system": s, "url": url, **cfg.pingpong_job(c, per_rep)},
        verbose,
    )
    us = {s: {c: _report.median_or_none(cells.pooled(s, c, "us")) for c in cols} for s in plan}
    labels = {POLYSYNC: "polysync redis", TOKEN: "bare LPUSH/BLPOP pair (redis-py)"}
    rows = _report.grid_rows(cells, plan, cols, us, labels)
    header = ["system", "Event", "Semaphore", "Condition", "Barrier(2) cycle"]
    title = (
        "B2. Ping-pong between two busy processes (µs one-way = round trip / 2; Barrier: µs "
        f"per cycle; median of {per_rep * cfg.reps} rounds; {pin_text(cfg)})"
    )
    print(_report.table(title, header, rows) + _report.failure_notes(cells.failures) + "\n")
    ratios: dict[str, dict[str, float | None]] = {}
    if POLYSYNC in plan and TOKEN in plan:
        floor = us[TOKEN]["Semaphore"]
        ratios = {
            "polysync / LPUSH/BLPOP pair one-way": {
                c: _report.ratio(us[POLYSYNC][c], floor) for c in cols
            }
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
        lambda s, c, rep: {"system": s, "url": url, **cfg.contended_job(c, worker_timeout)},
        verbose,
    )
    summary = _report.summarize_contended(cells, systems, cols, NOLOCK)
    title = (
        f"C. Contended: N processes x {cfg.c_iters:,} locked read-modify-writes of a "
        f"shared-memory counter (acquisitions/s, median of {cfg.reps} run(s))"
    )
    print(
        _report.table(title, _report.contended_header(cfg.c_procs), summary.rows)
        + _report.failure_notes(cells.failures)
    )
    print("".join(f"{f}\n" for f in summary.fails))
    ratios: dict[str, dict[str, float | None]] = {}
    if POLYSYNC in systems:
        ratios = {
            vs(p): {c: _report.ratio(summary.rate[POLYSYNC][c], summary.rate[p][c]) for c in cols}
            for p in systems
            if p not in (POLYSYNC, NOLOCK)
        }
        print(
            ratio_block(
                "C. ratios (acquisitions/s: above 1.00x polysync is ahead)", cols, cols, ratios
            )
            + "\n"
        )
    return summary.data(ratios, cells), summary.fails


# -- targets -----------------------------------------------------------------------------


def targets(results: dict[str, Any], polysync_ok: bool) -> list[dict[str, Any]]:
    """The project's Redis targets, each with its measured ratio and whether it is met."""
    out: list[dict[str, Any]] = []

    def get(section: str, row: str, col: str) -> float | None:
        if not polysync_ok or section not in results:
            return None
        value: float | None = results[section]["ratios"].get(row, {}).get(col)
        return value

    if "B1" in results:
        median = get("B1", vs(PRL), "median")
        out.append(_report.target("hand-off median <= 0.75x python-redis-lock", median, 0.75, True))
    if "A" in results:
        lock = get("A", vs(REDIS_PY), "Lock")
        out.append(_report.target("uncontended Lock <= 1.0x redis-py Lock", lock, 1.0, True))
    if "C" in results:
        c = results["C"]
        share = c["changed_owner"].get(POLYSYNC, {}).get("N=8")
        exact = bool(c["counter_exact"].get(POLYSYNC, {}).get("N=8"))
        name = "8-process contended >= 1.5x python-redis-lock acq/s, >= 90% changed owner, exact"
        ok = share is not None and share >= 0.9 and exact
        out.append(_report.target(name, get("C", vs(PRL), "N=8"), 1.5, False, ok))
        out[-1]["changed_owner"] = share
    return out


# -- main --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    pin = ("--pin", "B1/B2: pin the two processes to two CPUs")
    return _cli.parse_args(argv, __doc__, (300, 60), (600, 150), pin, PEERS)


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


def leftover_keys(server: RedisServer) -> dict[str, Any]:
    """The keys still in the server: the peers' (``psbench``), others with and without TTL.

    polysync's anonymous objects expire a while after their last user is gone, so keys
    with a TTL are expected; a key of polysync's without one outlives every process.
    """
    with server.connect(timeout=10.0) as client:
        keys = [k.decode(errors="backslashreplace") for k in client.keys("*")]
        other = [k for k in keys if rp.PREFIX not in k]
        persistent = sorted(k for k in other if client.pttl(k) == -1)
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
    print(
        f"{_report.banner('polysync Redis benchmarks', cfg.quick)}, "
        f"redis-server {redis_version() or '(not installed)'}; "
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

    server = RedisServer()
    try:
        server.start()
    except RedisServerError as exc:
        print(f"cannot start the private redis-server: {exc}", file=sys.stderr)
        return 2
    with server:  # stopped on the way out, also after an error, Ctrl-C or SIGTERM
        url = server.url
        print(f"private redis-server {server.version} on {url} (pid {server.pid})")
        polysync_ok, detail = probe_polysync(url)
        if polysync_ok:
            print(f"polysync redis: available ({detail})")
        else:
            print(f"polysync redis: not available ({detail})")
        print()
        systems = ([POLYSYNC] if polysync_ok else []) + [p for p in peers if cfg.runs(p, ())]
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
            unknown = _report.NO_FIGURE if polysync_ok else "UNKNOWN (polysync redis absent)"
            _report.print_targets(found, unknown)
        keys_left = leftover_keys(server)
    failures = _report.job_failures(results)
    elapsed = time.perf_counter() - started
    status = 1 if counter_fails or failures else 0
    print(
        f"{_report.done_line(elapsed, failures, counter_fails)}; keys left in the private "
        f"server (now stopped): {keys_left['peers']} of the peers; {keys_left['expiring']} "
        f"other with a TTL; {len(keys_left['persistent'])} other without a TTL"
    )
    for key in keys_left["persistent"][:20]:
        print(f"  key without a TTL (not a peer's; a leak?): {key}")
    if args.plot:
        footer = _plot.provenance(cfg.quick)
        _plot.draw(args.plot, _plot.TITLES["redis"], results, LABELS, (NOLOCK,), footer)
    if args.json:
        meta = {
            "redis_server": server.version,
            "peers": versions,
            "polysync_redis": {"available": polysync_ok, "detail": detail},
        }
        tail = {"keys_left": keys_left, "exit_status": status}
        _report.write_json(args.json, cfg, args.sections, elapsed, results, found, tail, meta)
    return status


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the jobs and the server are already stopped (with/finally)
        print("\ninterrupted: every job and the private redis-server are stopped", file=sys.stderr)
        sys.exit(130)
