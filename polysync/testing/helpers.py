"""What the conformance suite's tests share: bounds, capability gates, threads and children.

Nothing here waits without a bound: threads are daemons joined against one deadline,
child processes are daemons killed when they overrun, and waits poll with a deadline.
"""

from __future__ import annotations

import multiprocessing
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import polysync
from polysync import Capability

__all__ = [
    "PROMPT",
    "SHORT",
    "Child",
    "SuiteBase",
    "eventually",
    "in_thread",
    "join_all",
    "require",
]

#: Generous bound for anything that should happen "promptly".
PROMPT = 10.0
#: A short timeout for waits that are expected to time out.
SHORT = 0.05


def require(context: polysync.Context, capability: Capability) -> None:
    """Skip the calling test unless *context*'s backend declares *capability*."""
    if capability not in context.capabilities:
        pytest.skip(f"the {context.name!r} backend does not declare {capability.value!r}")


def _child_entry(results: Any, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    try:
        results.put(("ok", fn(*args)))
    except BaseException as exc:  # report everything to the parent
        results.put(("error", f"{type(exc).__name__}: {exc}"))


class Child:
    """``fn(*args)`` in a child process (spawn by default), with a bounded wait for its result."""

    def __init__(self, fn: Callable[..., Any], *args: Any, method: str = "spawn") -> None:
        mp: Any = multiprocessing.get_context(method)
        self._results = mp.Queue()
        # A daemon: a child still stuck when the run ends is terminated, never waited for.
        self.process = mp.Process(target=_child_entry, args=(self._results, fn, args), daemon=True)
        self.process.start()

    def result(self, timeout: float = PROMPT * 3) -> Any:
        try:
            status, value = self._results.get(timeout=timeout)
        except queue.Empty:
            self.process.kill()
            self.process.join(PROMPT)
            pytest.fail(f"child {self.process.name} gave no result within {timeout} s")
        self.process.join(PROMPT)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(PROMPT)
        if status != "ok":
            pytest.fail(f"child raised {value}")
        return value


class SuiteBase:
    """Fixtures shared by every test class of the suite."""

    @pytest.fixture
    def context(self) -> polysync.Context:
        raise pytest.UsageError(
            "override the 'context' fixture in your BackendSuite subclass to return "
            "polysync.get_context('<your backend>', ...)"
        )

    @pytest.fixture
    def name(self, context: polysync.Context) -> Iterator[str]:
        """A fresh object name, unlinked (with its derived names) after the test."""
        value = f"pstest-{uuid.uuid4().hex[:12]}"
        yield value
        for used in (value, f"{value}.lock"):
            if Capability.NAMED in context.capabilities:
                context.unlink(used)


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def run() -> None:
        out.append(fn())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def eventually(predicate: Callable[[], bool], what: str, timeout: float = PROMPT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting until {what}")
        time.sleep(0.002)


def join_all(threads: list[threading.Thread], timeout: float = PROMPT * 3) -> None:
    """Join *threads* against one deadline; fail the test naming any still running."""
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    stuck = [t.name for t in threads if t.is_alive()]
    if stuck:
        pytest.fail(f"{len(stuck)} thread(s) still running after {timeout} s: {stuck}")
