"""The command line both suites share: their options, the sections chosen, the run's sizes.

``posix_run.py`` and ``redis_run.py`` take the same options (``--quick``, ``--json``,
``--only``, ``--samples``, ``--iters``, ``-v``), differ only in their pinning switch and
defaults, and size a run with the same :class:`Config` fields.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SECTIONS = ("A", "B1", "B2", "C")


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
    #: The peers to run beside polysync (``--against``); ``None``: every peer.
    peers: frozenset[str] | None

    def runs(self, system: str, always: Sequence[str]) -> bool:
        """Whether *system* is measured: one of *always* (polysync, controls) or a chosen peer."""
        return system in always or self.peers is None or system in self.peers

    # The arguments of each section's job function, besides the system (and server url).

    def uncontended_job(self, column: str) -> dict[str, Any]:
        """A: one trial per job, the trials of all cells interleaved."""
        return {"column": column, "batch_seconds": self.a_batch_s, "trials": 1}

    def handoff_job(self, samples: int, phase_us: float, rep: int) -> dict[str, Any]:
        return {
            "samples": samples,
            "warmup": self.b1_warmup,
            "settle_us": self.b1_settle_us,
            "phase_us": phase_us,
            "cpus": self.pin,
            "seed": 1000 + rep,
        }

    def pingpong_job(self, column: str, rounds: int) -> dict[str, Any]:
        return {"column": column, "rounds": rounds, "warmup": self.b2_warmup, "cpus": self.pin}

    def contended_job(self, column: str, timeout: float) -> dict[str, Any]:
        """C: *column* is ``N=<processes>``."""
        return {"procs": int(column[2:]), "iters": self.c_iters, "timeout": timeout}


def parse_args(
    argv: Sequence[str] | None,
    doc: str,
    samples: tuple[int, int],
    iters: tuple[int, int],
    pin: tuple[str, str],
    peers: Sequence[str],
) -> argparse.Namespace:
    """Parse *argv*: *samples* and *iters* are the (full, quick) defaults the help shows,
    *pin* the suite's pinning switch and its help, *peers* what ``--against`` may name.
    ``args.sections``: ``--only``, in run order; ``args.peers``: ``--against`` (``None``: all).
    """
    parser = argparse.ArgumentParser(description=doc.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="smaller samples, no warm-up")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    parser.add_argument(
        "--only", metavar="LIST", default=",".join(SECTIONS), help="sections, e.g. A,B1"
    )
    parser.add_argument(
        "--samples",
        type=int,
        metavar="N",
        help=f"B1 hand-off samples (default {samples[0]}; quick {samples[1]})",
    )
    parser.add_argument(
        "--iters",
        type=int,
        metavar="K",
        help=f"C iterations per process (default {iters[0]}; quick {iters[1]})",
    )
    parser.add_argument(pin[0], action="store_true", help=pin[1])
    parser.add_argument(
        "--against",
        metavar="LIST",
        help=f"the peers to measure beside polysync (default: all of {','.join(peers)})",
    )
    parser.add_argument(
        "--plot",
        metavar="FILE",
        help="also draw hand-off latencies (B1) and contended throughput (C) into FILE "
        "(.png or .svg; needs matplotlib, in the bench extra)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per job")
    args = parser.parse_args(argv)
    args.peers = None
    if args.against is not None:
        chosen = [p.strip() for p in args.against.split(",") if p.strip()]
        strangers = [p for p in chosen if p not in peers]
        if strangers or not chosen:
            parser.error(
                f"unknown peer(s) {', '.join(strangers) or repr(args.against)}; "
                f"choose from {','.join(peers)}"
            )
        args.peers = frozenset(chosen)
    if args.plot is not None:
        import _plot

        problem = _plot.cannot_draw(args.plot)
        if problem:
            parser.error(problem)
    wanted = [s.strip().upper() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {','.join(SECTIONS)}")
    args.sections = [s for s in SECTIONS if s in wanted]
    return args
