"""Reports the suites' results: figures, tables, ratios, contended summaries, targets, JSON.

Both command lines (``posix_run.py`` and ``redis_run.py``) print through these helpers, so
their tables, ratio rows, ``targets`` block, closing line and JSON document share one layout.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from _harness import Cells

#: The verdict of a target whose ratio could not be measured.
NO_FIGURE = "UNKNOWN (no figure)"

# -- figures -----------------------------------------------------------------------------


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


def median_or_none(xs: Sequence[float]) -> float | None:
    return statistics.median(xs) if xs else None


def percentile(xs: Sequence[float], q: float) -> float | None:
    """The nearest-rank *q* quantile (0..1) of *xs*."""
    if not xs:
        return None
    ordered = sorted(xs)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def pin_text(pin: tuple[int, int] | None, who: str = "") -> str:
    """How B1/B2 placed their two processes, for a section title."""
    if pin is None:
        return "not pinned"
    return f"{who}pinned to CPUs {pin[0]} and {pin[1]}"


# -- tables ------------------------------------------------------------------------------


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


def ratio_rows(ratios: dict[str, dict[str, float | None]], cols: Sequence[str]) -> list[list[str]]:
    """One row per ratio name: the name, then each column's ratio (``-`` when missing)."""
    return [[name] + [fmt_ratio(r.get(c)) for c in cols] for name, r in ratios.items()]


def grid_rows(
    cells: Cells,
    plan: Mapping[str, Sequence[str]],
    cols: Sequence[str],
    us: Mapping[str, Mapping[str, float | None]],
    labels: Mapping[str, str],
) -> list[list[str]]:
    """One row per system of *plan*: its µs per column, blank where it has no such column."""
    return [
        [labels[s]] + [cells.text(s, c, fmt_us(us[s][c])) if c in plan[s] else "" for c in cols]
        for s in plan
    ]


def handoff_figures(
    cells: Cells, systems: Sequence[str]
) -> tuple[dict[str, list[float]], dict[str, dict[str, float | None]]]:
    """B1's pooled latencies per system, and their median and p99."""
    lat = {s: cells.pooled(s, "Lock", "latencies_us") for s in systems}
    us = {s: {"median": median_or_none(lat[s]), "p99": percentile(lat[s], 0.99)} for s in systems}
    return lat, us


# -- section C ---------------------------------------------------------------------------


def contended_header(procs: Sequence[int]) -> list[str]:
    cols = [f"N={n}" for n in procs]
    return ["system", *cols, "changed owner " + "/".join(str(n) for n in procs), "counter"]


@dataclass
class Contended:
    """Section C aggregated: per system and ``N=`` column, over the repetitions."""

    runs: dict[str, dict[str, list[Any]]]
    rate: dict[str, dict[str, float | None]]
    owner: dict[str, dict[str, float | None]]
    exact: dict[str, dict[str, bool | None]]
    rows: list[list[str]]
    fails: list[str]

    def data(self, ratios: dict[str, dict[str, float | None]], cells: Cells) -> dict[str, Any]:
        """The section's JSON document."""
        return {
            "acq_per_s": self.rate,
            "changed_owner": self.owner,
            "counter_exact": self.exact,
            "ratios": ratios,
            "failures": cells.failures,
            "counter_failures": self.fails,
            "runs": self.runs,
        }


def summarize_contended(
    cells: Cells, systems: Sequence[str], cols: Sequence[str], nolock: str
) -> Contended:
    """Throughput, changed-owner share and counter check of every C cell, and its rows."""
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
                if s == nolock:
                    lost_counts.append(lost)
                elif lost:
                    fails.append(
                        f"FAIL: {cells.labels[s]} {c}: counter ended at {r['counter']:,}, "
                        f"expected {r['expected']:,}"
                    )
        if s == nolock:
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
            [cells.labels[s]]
            + [cells.text(s, c, fmt_rate(rate[s][c])) for c in cols]
            + [shares, counter]
        )
    return Contended(runs, rate, owner, exact, rows, fails)


# -- targets -----------------------------------------------------------------------------


def target(
    name: str, value: float | None, limit: float, at_most: bool, extra: bool = True
) -> dict[str, Any]:
    """One project target: its ratio, its limit and whether it is met (``None``: no figure)."""
    met: bool | None = None
    if value is not None:
        met = (value <= limit if at_most else value >= limit) and extra
    return {"target": name, "ratio": value, "limit": limit, "met": met}


def print_targets(found: list[dict[str, Any]], unknown: str = NO_FIGURE) -> None:
    """The ``targets`` block; *unknown* is the verdict of a target without a figure."""
    rows = []
    for t in found:
        verdict = unknown if t["met"] is None else ("met" if t["met"] else "NOT MET")
        extra = ""
        if t.get("changed_owner") is not None:
            extra = f" (changed owner {t['changed_owner']:.2f})"
        rows.append([t["target"], fmt_ratio(t["ratio"]) + extra, verdict])
    print(table("targets (reported, not asserted)", ["target", "polysync/peer", "verdict"], rows))
    print(
        "  note: per peer-numbers.md, hand-off and throughput differences under ~1.5x are "
        "within this machine's run-to-run noise.\n"
    )


# -- the run as a whole ------------------------------------------------------------------


def banner(what: str, quick: bool) -> str:
    """The start of the run's first line: the suite, the kind of run, the machine."""
    return (
        f"{what} ({'quick' if quick else 'full'} run): Python "
        f"{platform.python_version()}, {platform.system()} {platform.release()}, "
        f"{os.cpu_count()} CPUs"
    )


def job_failures(results: dict[str, Any]) -> dict[str, str]:
    """Every section's hung or failed jobs, by cell."""
    return {k: v for r in results.values() for k, v in r["failures"].items()}


def done_line(elapsed: float, failures: dict[str, str], counter_fails: list[str]) -> str:
    """The start of the run's closing line."""
    return (
        f"done in {elapsed:.1f} s: {len(failures)} hung/failed job(s), "
        f"{len(counter_fails)} counter FAIL(s)"
    )


def write_json(
    path: str,
    cfg: Any,
    sections: list[str],
    elapsed: float,
    results: dict[str, Any],
    found: list[dict[str, Any]],
    tail: dict[str, Any],
    meta: dict[str, Any] | None = None,
) -> None:
    """Write the run's JSON document to *path*.

    *cfg* is the suite's ``Config``; *meta* the suite's own ``meta`` keys; *tail* the
    document's last keys (the suite's clean-up check, then ``exit_status``).
    """
    import _plot

    document = {
        "meta": {
            "quick": cfg.quick,
            "provenance": _plot.provenance(cfg.quick),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            **(meta or {}),
            "sections": sections,
            "config": cfg.__dict__,
            "seconds": elapsed,
            "unix_time": time.time(),
        },
        "results": results,
        "targets": found,
        **tail,
    }
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(document, fh, indent=2, default=str)
        fh.write("\n")
    print(f"JSON written to {path}")
