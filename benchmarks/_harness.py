"""Runs the measurements: each job in its own forked process group under a deadline.

A job that overruns its deadline is killed with its whole process group (the job and
every participant it forked) and reported as a hang; a job that raises is reported as
an error with its traceback. Neither ever stops the run. :func:`run_cells` runs a
section's jobs (one per cell and repetition, the systems interleaved) and collects their
values into :class:`Cells`; :func:`warm_up` warms the CPUs before the first one, and
:func:`choose_cpus` picks the two CPUs B1 and B2 pin their processes to.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

_FORK = multiprocessing.get_context("fork")


@dataclass
class Outcome:
    """What one job produced: ``status`` is ``ok``, ``error`` or ``hang``."""

    status: str
    value: Any = None
    error: str = ""
    seconds: float = 0.0
    pid: int = 0

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def brief(self) -> str:
        """One line for a table cell or a failure list."""
        if self.ok:
            return "ok"
        last = self.error.strip().splitlines()[-1] if self.error.strip() else ""
        return f"{self.status.upper()}: {last}" if last else self.status.upper()


def _job_main(conn: Connection, fn: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    try:
        value = fn(**kwargs)
    except BaseException:
        conn.send(("error", traceback.format_exc()))
    else:
        conn.send(("ok", value))
    finally:
        conn.close()


def run_job(fn: Callable[..., Any], deadline: float, /, **kwargs: Any) -> Outcome:
    """Run ``fn(**kwargs)`` in a forked child in its own process group, within *deadline* s."""
    receiver, sender = _FORK.Pipe(duplex=False)
    proc = _FORK.Process(target=_job_main, args=(sender, fn, kwargs))
    started = time.perf_counter()
    proc.start()
    sender.close()
    pgid = proc.pid
    assert pgid is not None
    with contextlib.suppress(OSError):
        os.setpgid(pgid, pgid)  # also done by the child: whichever runs first wins the race
    try:
        if receiver.poll(deadline):
            try:
                status, payload = receiver.recv()
            except EOFError:
                proc.join(5.0)
                return Outcome(
                    "error",
                    error=f"the job died without a result (exit code {proc.exitcode})",
                    seconds=time.perf_counter() - started,
                    pid=pgid,
                )
            elapsed = time.perf_counter() - started
            proc.join(10.0)
            if status == "ok":
                return Outcome("ok", value=payload, seconds=elapsed, pid=pgid)
            return Outcome("error", error=str(payload), seconds=elapsed, pid=pgid)
        return Outcome(
            "hang",
            error=f"no result within the {deadline:.0f} s deadline; process group killed",
            seconds=time.perf_counter() - started,
            pid=pgid,
        )
    finally:
        if proc.is_alive():
            # Still ours (not yet reaped), so its pid is still its process group's id.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
            proc.join(5.0)
        receiver.close()


def _spin(until: float) -> None:
    x = 0
    while time.perf_counter() < until:
        x += 1


def warm_up(seconds: float) -> None:
    """Keep both CPUs busy for *seconds* (frequency scaling and caches settle first)."""
    until = time.perf_counter() + seconds
    helper = _FORK.Process(target=_spin, args=(until,))
    helper.start()
    try:
        _spin(until)
    finally:
        helper.join(seconds + 5.0)
        if helper.is_alive():
            helper.kill()
            helper.join()


def choose_cpus(enabled: bool) -> tuple[int, int] | None:
    """Two distinct CPUs this process may run on, or ``None`` (pinning off or impossible)."""
    if not enabled:
        return None
    allowed = sorted(os.sched_getaffinity(0))
    return (allowed[0], allowed[1]) if len(allowed) >= 2 else None


# -- the cells of a section --------------------------------------------------------------


@dataclass
class Cells:
    """Results of one section: per (system, column) the value of every repetition."""

    labels: Mapping[str, str]
    values: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    statuses: dict[str, str] = field(default_factory=dict)

    def key(self, system: str, column: str) -> str:
        return f"{self.labels[system]} / {column}"

    def text(self, system: str, column: str, text: str) -> str:
        """*text*, or the cell's status (``HANG``, ``ERROR``) when its job failed."""
        return self.statuses.get(self.key(system, column), text)

    def pooled(self, system: str, column: str, name: str) -> list[float]:
        """Every repetition's list *name* of one cell, concatenated (empty if it failed)."""
        return [x for rep in self.values.get(system, {}).get(column, []) for x in rep[name]]


def _value(outcome: Outcome) -> Any:
    return outcome.value


def run_cells(
    section: str,
    jobs: Sequence[tuple[str, str]],
    reps: int,
    fn: Callable[..., Any],
    deadline_of: Callable[[str, str], float],
    kwargs_of: Callable[[str, str, int], dict[str, Any]],
    verbose: bool,
    labels: Mapping[str, str],
    unwrap: Callable[[Outcome], Any] = _value,
) -> Cells:
    """Run one isolated job per (system, column) and repetition, the systems interleaved.

    Interleaving spreads slow drifts of the machine (another program waking up) over
    every system instead of charging them to whichever ran at that moment. A cell that
    fails once is not run again (its other repetitions would fail the same way).
    *unwrap* sees every outcome and gives the value to keep of a successful one.
    """
    cells = Cells(labels)
    for rep in range(reps):
        for system, column in jobs:
            key = cells.key(system, column)
            if key in cells.failures:
                continue
            if verbose:
                print(f"  [{section}] {key} #{rep + 1} ...", end="", file=sys.stderr, flush=True)
            outcome = run_job(fn, deadline_of(system, column), **kwargs_of(system, column, rep))
            if verbose:
                print(f" {outcome.brief()} ({outcome.seconds:.1f} s)", file=sys.stderr, flush=True)
            value = unwrap(outcome)
            if outcome.ok:
                cells.values.setdefault(system, {}).setdefault(column, []).append(value)
                continue
            cells.failures[key] = outcome.brief()
            cells.statuses[key] = outcome.status.upper()
            cells.values.get(system, {}).pop(column, None)
            if outcome.status == "error":
                print(f"\n[{section}] {key} raised:\n{outcome.error}", file=sys.stderr)
    return cells
