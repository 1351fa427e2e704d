"""What a scenario runs with: its context, shared cells, tracked primitives and worker crews.

Workers are processes (any start method; ``spawn`` proves that every primitive pickles)
when the backend crosses processes, else threads; a crew starts them together at a gate.
Every worker is joined with a deadline (a stuck process is killed), and shared memory and
polysync objects are removed even when a scenario fails.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from polysync.demo.shared import SharedInts

if TYPE_CHECKING:
    from multiprocessing.context import BaseContext
    from types import TracebackType

    from polysync.api import Context

#: Extra seconds a worker group gets, beyond its timeouts, before stuck workers are killed.
_JOIN_GRACE = 5.0


class _Sink(Protocol):
    def put(self, obj: str, /) -> None: ...


class _Gate:
    """Holds every worker until all have started, so that they really run concurrently."""

    def __init__(self, ready: Any, go: Any) -> None:
        self.ready = ready
        self.go = go

    def arrive(self, timeout: float) -> None:
        self.ready.release()
        if not self.go.wait(timeout):
            raise TimeoutError(f"the start signal did not come within {timeout:g}s")


def _run_worker(
    label: str,
    sink: _Sink,
    gate: _Gate,
    timeout: float,
    target: Callable[..., None],
    args: tuple[Any, ...],
) -> None:
    """A worker's body: wait at the gate, run *target*, report any exception to *sink*."""
    try:
        gate.arrive(timeout)
        target(*args)
    except BaseException as exc:
        sink.put(f"{label}: {type(exc).__name__}: {exc}"[:300])


class _Crew:
    """A group of workers (processes or threads) for one scenario."""

    def __init__(self, harness: Harness) -> None:
        self._timeout = harness.timeout
        self._mp = harness.mp
        if self._mp is not None:
            self._gate = _Gate(self._mp.Semaphore(0), self._mp.Event())
            self._sink: Any = self._mp.SimpleQueue()
        else:
            self._gate = _Gate(threading.Semaphore(0), threading.Event())
            self._sink = queue.SimpleQueue()
        self._workers: list[tuple[str, Any]] = []
        self._finished = False
        self.problems: list[str] = []

    def start(self, label: str, target: Callable[..., None], *args: Any) -> None:
        """Start one worker running ``target(*args)`` once the gate opens."""
        call = (label, self._sink, self._gate, self._timeout, target, args)
        worker: Any
        if self._mp is not None:
            process_class = getattr(self._mp, "Process")  # noqa: B009  (not in BaseContext)
            worker = process_class(
                target=_run_worker, args=call, name=f"polysync-demo-{label}", daemon=True
            )
        else:
            worker = threading.Thread(
                target=_run_worker, args=call, name=f"polysync-demo-{label}", daemon=True
            )
        worker.start()
        self._workers.append((label, worker))

    def go(self) -> bool:
        """Wait until every worker is at the gate, then open it; ``False`` if some never came."""
        deadline = time.monotonic() + self._timeout
        arrived = 0
        for _ in self._workers:
            if not self._gate.ready.acquire(timeout=max(0.0, deadline - time.monotonic())):
                break
            arrived += 1
        self._gate.go.set()
        if arrived < len(self._workers):
            self.problems.append(
                f"only {arrived} of {len(self._workers)} workers started within {self._timeout:g}s"
            )
            return False
        return True

    def join(self, budget: float | None = None) -> list[str]:
        """Join every worker within *budget* seconds, kill stuck processes; return problems."""
        if self._finished:
            return self.problems
        self._finished = True
        self._gate.go.set()  # never leave a worker at a closed gate
        deadline = time.monotonic() + (
            budget if budget is not None else 2 * self._timeout + _JOIN_GRACE
        )
        killed = set()
        for label, worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
            if not worker.is_alive():
                continue
            if self._mp is not None:
                worker.kill()
                worker.join(_JOIN_GRACE)
                killed.add(label)
                self.problems.append(f"{label}: stuck past the deadline, killed")
            else:
                self.problems.append(f"{label}: stuck past the deadline (thread left running)")
        messages: list[str] = []
        with contextlib.suppress(Exception):
            while not self._sink.empty():
                messages.append(str(self._sink.get()))
        self.problems.extend(messages)
        if self._mp is not None:
            for label, worker in self._workers:
                code = worker.exitcode
                reported = label in killed or any(m.startswith(label + ":") for m in messages)
                if code not in (0, None) and not reported:
                    self.problems.append(f"{label}: exited with code {code}")
            if hasattr(self._sink, "close"):
                self._sink.close()
        return self.problems

    def __enter__(self) -> _Crew:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.join(None if exc_type is None else 1.0)


@dataclass
class Harness:
    """What a scenario runs with: the context, its workers' kind and the cleanup stack."""

    ctx: Context
    mp: BaseContext | None
    workers: int
    timeout: float
    sabotage: bool
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def shared(self, size: int) -> SharedInts:
        """Zeroed shared cells, removed when the scenario ends."""
        cells = SharedInts.create(size)
        self.stack.callback(cells.destroy)
        return cells

    def track(self, primitive: Any) -> Any:
        """Unlink and close *primitive* when the scenario ends (after its workers are gone)."""

        def dispose() -> None:
            with contextlib.suppress(Exception):
                primitive.unlink()
            with contextlib.suppress(Exception):
                primitive.close()

        self.stack.callback(dispose)
        return primitive

    def crew(self) -> _Crew:
        """A worker group, joined (stuck ones killed) before anything else is cleaned up."""
        crew = _Crew(self)
        self.stack.callback(crew.join, 1.0)
        return crew
