"""Runs one measurement in its own forked process group under a deadline, and warms the CPUs.

A job that overruns its deadline is killed with its whole process group (the job and
every participant it forked) and reported as a hang; a job that raises is reported as
an error with its traceback. Neither ever stops the run.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
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
