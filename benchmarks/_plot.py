"""The picture of a run (``--plot FILE``): hand-off latency distributions and contended throughput.

``python benchmarks/_plot.py RUN.json FILE`` draws it again from a run's ``--json`` file,
with the provenance that run recorded.

Two panels, drawn with matplotlib from the figures the run just printed: B1's hand-off
latencies as one cumulative distribution per system (log scale: polling peers sit two
orders of magnitude to the right), and C's acquisitions per second per system and process
count. The footer says what was measured where: polysync's version and commit, the
machine, the date and the run's size, so a picture in the docs carries its provenance.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

#: The title of each suite's picture.
TITLES = {"posix": "polysync posix against its peers", "redis": "polysync redis against its peers"}

_FORMATS = (".png", ".svg")


def cannot_draw(path: str) -> str | None:
    """Why *path* cannot be drawn (a message for the user), or ``None`` if it can."""
    if Path(path).suffix.lower() not in _FORMATS:
        return f"--plot {path!r}: the file must end in {' or '.join(_FORMATS)}"
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return "--plot needs matplotlib: pip install -e '.[bench]'"
    parent = Path(path).resolve().parent
    if not parent.is_dir():
        return f"--plot {path!r}: the folder {str(parent)!r} does not exist"
    return None


def provenance(quick: bool) -> str:
    """polysync's version and commit, the machine and the date, on one line."""
    import polysync

    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=10"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        commit = "no git checkout"
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    size = "quick run" if quick else "full run"
    return (
        f"polysync {polysync.__version__} ({commit}); {platform.platform(terse=True)}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}; {today}; {size}"
    )


def recorded(meta: Mapping[str, Any]) -> str:
    """The provenance line of a run's JSON written before runs recorded one (no commit)."""
    when = datetime.datetime.fromtimestamp(float(meta["unix_time"]), datetime.timezone.utc)
    size = "quick run" if meta["quick"] else "full run"
    return (
        f"polysync (commit not recorded); {meta['platform']}, {meta['cpus']} CPUs, Python "
        f"{meta['python']}; {when:%Y-%m-%d %H:%M} UTC; {size}"
    )


def draw(
    path: str,
    title: str,
    results: Mapping[str, Any],
    labels: Mapping[str, str],
    skip: Sequence[str],
    footer: str,
) -> None:
    """Draw the B1 and C results of a run into *path*; *skip*: systems left out of C (controls);
    *footer*: the run's :func:`provenance`."""
    import matplotlib

    matplotlib.use("Agg")  # no display: a file only
    import matplotlib.pyplot as plt

    panels = [s for s in ("B1", "C") if s in results]
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(6.5 * max(1, len(panels)), 5.8))
    axes_list = list(axes) if len(panels) > 1 else [axes]
    for ax, section in zip(axes_list, panels, strict=False):
        if section == "B1":
            _handoff_panel(ax, results["B1"].get("samples", {}), labels)
        else:
            _throughput_panel(ax, results["C"].get("acq_per_s", {}), labels, skip)
    if not panels:
        axes_list[0].text(0.5, 0.5, "no B1 or C section in this run", ha="center")
    fig.suptitle(title)
    fig.text(0.5, 0.01, footer, ha="center", fontsize=8, color="0.35")
    fig.tight_layout(rect=(0, 0.04, 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"picture written to {path}")


def _handoff_panel(
    ax: Any, samples: Mapping[str, Sequence[float]], labels: Mapping[str, str]
) -> None:
    for system, values in samples.items():
        if not values:
            continue
        ordered = sorted(values)
        share = [(i + 1) / len(ordered) for i in range(len(ordered))]
        ax.step(
            ordered, share, where="post", label=f"{labels.get(system, system)} (n={len(ordered)})"
        )
    ax.set_xscale("log")
    ax.set_xlabel("hand-off latency, µs (release() to the waiter's acquire() return)")
    ax.set_ylabel("share of hand-offs at or below")
    ax.set_title("B1. Hand-off to a parked waiter")
    ax.grid(True, which="both", alpha=0.3)
    _legend_below(ax)


def _throughput_panel(
    ax: Any,
    rates: Mapping[str, Mapping[str, float | None]],
    labels: Mapping[str, str],
    skip: Sequence[str],
) -> None:
    systems = [s for s in rates if s not in skip]
    columns = sorted({c for s in systems for c in rates[s]}, key=lambda c: int(c[2:]))
    width = 0.8 / max(1, len(systems))
    for i, system in enumerate(systems):
        xs = [j + i * width for j in range(len(columns))]
        ys = [rates[system].get(c) or 0.0 for c in columns]
        ax.bar(xs, ys, width, label=labels.get(system, system))
    ax.set_xticks([j + width * (len(systems) - 1) / 2 for j in range(len(columns))], columns)
    ax.set_xlabel("contending processes")
    ax.set_ylabel("acquisitions per second (median)")
    ax.set_title("C. Contended lock, every acquisition counted")
    ax.grid(True, axis="y", alpha=0.3)
    _legend_below(ax)


def _legend_below(ax: Any) -> None:
    # Below the axes: inside, seven peers would cover the curves and bars.
    ax.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)


def main(argv: Sequence[str]) -> int:
    """Draw *argv[1]* (a picture file) from *argv[0]* (a run's JSON)."""
    if len(argv) != 2:
        print("usage: python benchmarks/_plot.py RUN.json FILE.png|FILE.svg", file=sys.stderr)
        return 2
    problem = cannot_draw(argv[1])
    if problem:
        print(problem, file=sys.stderr)
        return 2
    import posix_peers
    import redis_peers

    document = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    suite = "redis" if "redis_server" in document["meta"] else "posix"
    labels = posix_peers.LABELS if suite == "posix" else redis_peers.LABELS
    nolock = posix_peers.NOLOCK if suite == "posix" else redis_peers.NOLOCK
    footer = document["meta"].get("provenance") or recorded(document["meta"])
    draw(argv[1], TITLES[suite], document["results"], labels, (nolock,), footer)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
