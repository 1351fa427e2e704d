"""The demo's scenarios: the seed API's examples run on real workers, each checking its invariant.

Six scenarios (lock, rlock, semaphore, event, condition, barrier) run on one
:class:`polysync.Context`. Workers are processes (any start method; ``spawn`` proves that
every primitive pickles) when the backend crosses processes, else threads. Every
scenario keeps its shared data in :class:`SharedInts`, a file-backed shared mapping that
owes nothing to polysync, so a broken primitive shows up as a broken invariant rather
than being masked by the data structure. Every blocking call has a timeout, every worker
is joined with a deadline (a stuck process is killed), and shared memory and polysync
objects are removed even when a scenario fails.

The ``check_*`` functions judge what a scenario measured; they are pure so that tests
can feed them broken measurements. ``sabotage`` (the CLI's hidden ``--self-test-fail``)
breaks a scenario for real, to show that its check reports FAIL.
"""

from __future__ import annotations

import contextlib
import functools
import mmap
import multiprocessing
import os
import queue
import random
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from polysync.kernel import Capability

if TYPE_CHECKING:
    from multiprocessing.context import BaseContext
    from types import TracebackType

    from polysync.api import Context

__all__ = [
    "SCENARIOS",
    "DemoConfig",
    "Outcome",
    "ScenarioResult",
    "SharedInts",
    "run_demo",
    "worker_kind",
]

#: Extra seconds a worker group gets, beyond its timeouts, before stuck workers are killed.
_JOIN_GRACE = 5.0


# -- shared memory that owes nothing to polysync -----------------------------------------


def _shared_dir() -> str:
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        return "/dev/shm"
    return tempfile.gettempdir()


class SharedInts:
    """Signed 64-bit integers in a file-backed ``mmap`` shared by every process that opens it.

    Nothing here synchronizes: reads and writes of one aligned cell are single machine
    stores, and every read-modify-write in the demo is guarded by the primitive under test.
    Pickles by path, so a spawned child maps the same file.
    """

    def __init__(self, path: str, size: int, *, owner: bool = False) -> None:
        self.path = path
        self.size = size
        self._owner = owner
        with open(path, "r+b") as file:
            self._map = mmap.mmap(file.fileno(), size * 8)
        self._view: memoryview | None = memoryview(self._map).cast("q")

    @classmethod
    def create(cls, size: int) -> SharedInts:
        """A fresh zeroed block of *size* cells, removed by :meth:`destroy`."""
        if size < 1:
            raise ValueError(f"size must be >= 1, not {size}")
        fd, path = tempfile.mkstemp(prefix=f"polysync-demo-{os.getpid()}-", dir=_shared_dir())
        try:
            os.ftruncate(fd, size * 8)
        finally:
            os.close(fd)
        try:
            return cls(path, size, owner=True)
        except BaseException:
            os.unlink(path)
            raise

    def _cells(self) -> memoryview:
        if self._view is None:
            raise ValueError(f"the shared block {self.path} is closed")
        return self._view

    def __getitem__(self, index: int) -> int:
        return int(self._cells()[index])

    def __setitem__(self, index: int, value: int) -> None:
        self._cells()[index] = value

    def read(self, start: int, count: int) -> list[int]:
        """Cells ``[start, start + count)`` as a list."""
        view = self._cells()
        return [int(view[i]) for i in range(start, start + count)]

    def close(self) -> None:
        """Unmap this handle (idempotent)."""
        if self._view is not None:
            self._view.release()
            self._view = None
            self._map.close()

    def destroy(self) -> None:
        """Unmap and, in the creating process, remove the file."""
        self.close()
        if self._owner:
            self._owner = False
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (SharedInts, (self.path, self.size))


# -- workers: processes or threads, started together, joined with a deadline ------------


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


# -- configuration and results ------------------------------------------------------------


@dataclass(frozen=True)
class DemoConfig:
    """How to run the demo."""

    #: Workers per scenario (the semaphore scenario uses at least 8).
    workers: int = 4
    #: Seconds any single blocking call may take.
    timeout: float = 30.0
    #: ``multiprocessing`` start method for process workers.
    start_method: str = "spawn"
    #: ``"process"`` or ``"thread"`` (see :func:`worker_kind`).
    kind: str = "process"
    #: Scenario names to run (empty: all).
    only: tuple[str, ...] = ()
    #: Scenario names to break on purpose (their check must then report FAIL).
    sabotage: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Outcome:
    """A scenario's verdict: whether it passed, its key figure, and what went wrong."""

    passed: bool
    figure: str
    problems: tuple[str, ...] = ()

    def plus(self, problems: Sequence[str]) -> Outcome:
        """This outcome with more *problems* (any problem makes it fail)."""
        if not problems:
            return self
        return Outcome(False, self.figure, (*self.problems, *problems))


def _outcome(figure: str, problems: list[str]) -> Outcome:
    return Outcome(not problems, figure, tuple(problems))


@dataclass(frozen=True)
class ScenarioResult:
    """One scenario's outcome and how long it took."""

    name: str
    outcome: Outcome
    elapsed_ms: float

    @property
    def passed(self) -> bool:
        return self.outcome.passed


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


def worker_kind(ctx: Context, requested: str = "auto") -> str:
    """``"process"`` or ``"thread"``: processes need a backend with CROSS_PROCESS."""
    crosses = Capability.CROSS_PROCESS in ctx.capabilities
    if requested == "auto":
        return "process" if crosses else "thread"
    if requested == "process" and not crosses:
        raise ValueError(
            f"the {ctx.name!r} backend does not share objects between processes "
            "(no cross-process capability); run its demo with threads"
        )
    if requested not in ("process", "thread"):
        raise ValueError(f"worker kind must be auto, process or thread, not {requested!r}")
    return requested


# -- small helpers used by workers ----------------------------------------------------------


class _Acquirable(Protocol):
    def acquire(self, block: bool = True, timeout: float | None = None) -> bool: ...

    def release(self) -> None: ...


class _NoLock:
    """A lock that excludes nothing: the sabotaged lock scenario's stand-in."""

    def acquire(self, block: bool = True, timeout: float | None = None) -> bool:
        return True

    def release(self) -> None:
        pass


def _take(lock: _Acquirable, timeout: float, what: str) -> None:
    if not lock.acquire(timeout=timeout):
        raise TimeoutError(f"{what} not acquired within {timeout:g}s")


def _await_cell(cells: SharedInts, index: int, timeout: float) -> bool:
    """Poll until ``cells[index]`` is non-zero; ``False`` after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while not cells[index]:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


# -- (a) lock: a shared counter -------------------------------------------------------------

LOCK_ITERATIONS = 25


def _lock_worker(lock: _Acquirable, cells: SharedInts, iterations: int, timeout: float) -> None:
    for _ in range(iterations):
        _take(lock, timeout, "the lock")
        try:
            value = cells[0]
            time.sleep(0.001)  # let any other worker in, if the lock would let it
            cells[0] = value + 1
        finally:
            lock.release()


def check_lock(final: int, expected: int) -> Outcome:
    """The counter must end exactly at *expected*: no increment lost, none doubled."""
    problems = []
    if final != expected:
        problems.append(f"counter is {final}, expected {expected} ({expected - final} lost)")
    return _outcome(f"counter={final}/{expected}", problems)


def scenario_lock(h: Harness) -> Outcome:
    """Workers increment a counter in shared memory with a read, sleep, write under a Lock."""
    cells = h.shared(1)
    lock = h.track(h.ctx.Lock())
    used: _Acquirable = _NoLock() if h.sabotage else lock
    with h.crew() as crew:
        for i in range(h.workers):
            crew.start(f"worker-{i}", _lock_worker, used, cells, LOCK_ITERATIONS, h.timeout)
        crew.go()
        problems = crew.join()
    outcome = check_lock(cells[0], h.workers * LOCK_ITERATIONS)
    figure = f"{outcome.figure} ({h.workers} workers x {LOCK_ITERATIONS})"
    return Outcome(outcome.passed, figure, outcome.problems).plus(problems)


# -- (b) rlock: recursion in a child, ownership ---------------------------------------------

RLOCK_DEPTH = 4
_R_LEVEL, _R_HELD, _R_GO, _R_AFTER, _R_DONE = range(5)


def _rlock_child(rlock: Any, cells: SharedInts, depth: int, releases: int, timeout: float) -> None:
    for level in range(1, depth + 1):
        _take(rlock, timeout, f"the RLock at depth {level}")
        cells[_R_LEVEL] = rlock._recursion_count()
    cells[_R_HELD] = 1
    if not _await_cell(cells, _R_GO, timeout):
        raise TimeoutError("the parent never let the child go on")
    for _ in range(releases):
        rlock.release()
    cells[_R_AFTER] = rlock._recursion_count()
    cells[_R_DONE] = 1


@dataclass(frozen=True)
class RLockFacts:
    """What the rlock scenario observed."""

    depth: int
    depth_reached: int
    depth_after_release: int
    blocked_while_held: bool
    non_owner_release_refused: bool
    still_held_after_refusal: bool
    reacquired: bool
    reentered: bool
    over_release_refused: bool


def check_rlock(f: RLockFacts) -> Outcome:
    """Recursion reaches *depth*, only the owner may release, and the lock is free after."""
    problems = []
    if f.depth_reached != f.depth:
        problems.append(f"child's recursion level reached {f.depth_reached}, not {f.depth}")
    if f.depth_after_release != 0:
        problems.append(f"child still at recursion level {f.depth_after_release} after release")
    if not f.blocked_while_held:
        problems.append("parent acquired the RLock while the child held it")
    if not f.non_owner_release_refused:
        problems.append("a release by a non-owner did not raise ValueError")
    if not f.still_held_after_refusal:
        problems.append("the refused non-owner release freed the lock anyway")
    if not f.reacquired:
        problems.append("parent could not acquire the RLock after the child released it")
    elif not f.reentered:
        problems.append("parent could not re-enter the RLock it holds")
    elif not f.over_release_refused:
        problems.append("releasing an unheld RLock did not raise ValueError")
    figure = f"depth {f.depth_reached}/{f.depth} in child; non-owner release " + (
        "refused" if f.non_owner_release_refused else "ALLOWED"
    )
    return _outcome(figure, problems)


def scenario_rlock(h: Harness) -> Outcome:
    """A child takes an RLock recursively; the parent cannot release it, then can take it."""
    cells = h.shared(5)
    rlock = h.track(h.ctx.RLock())
    releases = RLOCK_DEPTH - 1 if h.sabotage else RLOCK_DEPTH
    with h.crew() as crew:
        crew.start("child", _rlock_child, rlock, cells, RLOCK_DEPTH, releases, h.timeout)
        crew.go()
        held = _await_cell(cells, _R_HELD, h.timeout)
        blocked = held and not _try_and_undo(rlock)
        refused = False
        try:
            rlock.release()
        except ValueError:
            refused = True
        still_held = held and not _try_and_undo(rlock)
        cells[_R_GO] = 1
        problems = crew.join()
    reacquired = rlock.acquire(timeout=h.timeout)
    reentered = over_refused = False
    if reacquired:
        reentered = rlock.acquire(timeout=h.timeout)
        if reentered:
            rlock.release()
        rlock.release()
        try:
            rlock.release()
        except ValueError:
            over_refused = True
    facts = RLockFacts(
        depth=RLOCK_DEPTH,
        depth_reached=cells[_R_LEVEL],
        depth_after_release=cells[_R_AFTER] if cells[_R_DONE] else -1,
        blocked_while_held=blocked,
        non_owner_release_refused=refused,
        still_held_after_refusal=still_held,
        reacquired=reacquired,
        reentered=reentered,
        over_release_refused=over_refused,
    )
    if not held:
        problems = [*problems, "the child never reported holding the RLock"]
    return check_rlock(facts).plus(problems)


def _try_and_undo(lock: Any) -> bool:
    """Whether a non-blocking acquire succeeds (undone at once if it does)."""
    if lock.acquire(block=False):
        lock.release()
        return True
    return False


# -- (c) semaphore: at most 3 inside --------------------------------------------------------

SEMAPHORE_VALUE = 3
SEMAPHORE_HOLD = 0.1
_S_INSIDE, _S_MAX, _S_ENTERED = range(3)


def _semaphore_worker(
    sem: _Acquirable, guard: _Acquirable, cells: SharedInts, hold: float, timeout: float
) -> None:
    _take(sem, timeout, "the semaphore")
    try:
        _take(guard, timeout, "the counting lock")
        try:
            inside = cells[_S_INSIDE] + 1
            cells[_S_INSIDE] = inside
            cells[_S_MAX] = max(cells[_S_MAX], inside)
            cells[_S_ENTERED] += 1
        finally:
            guard.release()
        time.sleep(hold)
        _take(guard, timeout, "the counting lock")
        try:
            cells[_S_INSIDE] -= 1
        finally:
            guard.release()
    finally:
        sem.release()


def check_semaphore(
    max_inside: int,
    limit: int,
    workers: int,
    entered: int,
    inside_at_end: int,
    value_at_end: int | None = None,
    bounded_refused: bool = True,
) -> Outcome:
    """At most *limit* inside at once, and the limit reached (no over-serialisation)."""
    problems = []
    if max_inside > limit:
        problems.append(f"{max_inside} workers were inside at once, limit {limit}")
    elif max_inside < min(limit, workers):
        problems.append(
            f"at most {max_inside} inside at once: the semaphore over-serialised (limit {limit})"
        )
    if entered != workers:
        problems.append(f"{entered} of {workers} workers got in")
    if inside_at_end != 0:
        problems.append(f"{inside_at_end} still counted inside at the end")
    if value_at_end is not None and value_at_end != limit:
        problems.append(f"the semaphore's value ended at {value_at_end}, not {limit}")
    if not bounded_refused:
        problems.append("a BoundedSemaphore accepted a release above its initial value")
    return _outcome(f"max inside={max_inside}/{limit} among {workers} workers", problems)


def scenario_semaphore(h: Harness) -> Outcome:
    """A Semaphore(3) caps 8+ workers; a BoundedSemaphore refuses an over-release."""
    workers = max(8, h.workers)
    cells = h.shared(3)
    sem = h.track(h.ctx.Semaphore(SEMAPHORE_VALUE + 1 if h.sabotage else SEMAPHORE_VALUE))
    guard = h.track(h.ctx.Lock())
    with h.crew() as crew:
        for i in range(workers):
            crew.start(
                f"worker-{i}", _semaphore_worker, sem, guard, cells, SEMAPHORE_HOLD, h.timeout
            )
        crew.go()
        problems = crew.join()
    value = sem.get_value() if Capability.READABLE_VALUE in h.ctx.capabilities else None
    bounded = h.track(h.ctx.BoundedSemaphore(2))
    refused = False
    if bounded.acquire(timeout=h.timeout) and bounded.acquire(timeout=h.timeout):
        bounded.release()
        bounded.release()
        try:
            bounded.release()
        except ValueError:
            refused = True
    else:
        problems = [*problems, "could not acquire a BoundedSemaphore(2) twice"]
    return check_semaphore(
        cells[_S_MAX],
        SEMAPHORE_VALUE,
        workers,
        cells[_S_ENTERED],
        cells[_S_INSIDE],
        value,
        refused,
    ).plus(problems)


# -- (d) event: set() releases every waiter ---------------------------------------------------

_E_PENDING, _E_TRUE, _E_FALSE = 0, 1, 2


def _event_waiter(event: Any, cells: SharedInts, index: int, count: int, timeout: float) -> None:
    result = event.wait(timeout)
    cells[count + index] = time.monotonic_ns()
    cells[index] = _E_TRUE if result else _E_FALSE


def check_event(results: Sequence[int], early: int, set_seen: bool, cleared: bool) -> Outcome:
    """Every waiter's ``wait(timeout)`` returned True, none before ``set()``."""
    problems = []
    released = sum(1 for r in results if r == _E_TRUE)
    if early:
        problems.append(f"{early} waiter(s) returned before the event was set")
    timed_out = sum(1 for r in results if r == _E_FALSE)
    if timed_out:
        problems.append(f"{timed_out} waiter(s) timed out: wait() returned False")
    missing = sum(1 for r in results if r == _E_PENDING)
    if missing:
        problems.append(f"{missing} waiter(s) never returned from wait()")
    if not set_seen:
        problems.append("is_set() was not True after set()")
    if not cleared:
        problems.append("is_set() was still True after clear()")
    return _outcome(f"{released}/{len(results)} waiters released", problems)


def scenario_event(h: Harness) -> Outcome:
    """N waiters block on an Event; the parent sets it and every wait returns True."""
    n = h.workers
    cells = h.shared(2 * n)
    event = h.track(h.ctx.Event())
    with h.crew() as crew:
        for i in range(n):
            crew.start(f"waiter-{i}", _event_waiter, event, cells, i, n, h.timeout)
        crew.go()
        time.sleep(0.2)  # let the waiters block in wait()
        early = sum(1 for r in cells.read(0, n) if r != _E_PENDING)
        if event.is_set() or event.wait(0):
            problems_before = ["the event was set before set() was called"]
        else:
            problems_before = []
        set_at = time.monotonic_ns()
        if not h.sabotage:
            event.set()
        problems = problems_before + crew.join()
    set_seen = event.is_set() or h.sabotage
    event.clear()
    cleared = not event.is_set()
    outcome = check_event(cells.read(0, n), early, set_seen, cleared)
    woke = [t for r, t in zip(cells.read(0, n), cells.read(n, n), strict=True) if r == _E_TRUE]
    if woke:
        latest = max(0, max(woke) - set_at) / 1e6
        outcome = Outcome(
            outcome.passed, f"{outcome.figure}, last after {latest:.1f} ms", outcome.problems
        )
    return outcome.plus(problems)


# -- (e) condition: producers and consumers -------------------------------------------------

CONDITION_QUOTA = 3
_C_HEAD, _C_TAIL, _C_WAITS, _C_BASE = range(4)


def _condition_layout(total: int) -> tuple[int, int, int]:
    """Cell offsets of the queue, the per-item consumption counts and the per-consumer tally."""
    queue_at = _C_BASE
    consumed_at = queue_at + total
    served_at = consumed_at + total
    return queue_at, consumed_at, served_at


def _producer(cond: Any, cells: SharedInts, items: list[int], total: int, timeout: float) -> None:
    queue_at, _, _ = _condition_layout(total)
    for item in items:
        time.sleep(random.uniform(0.0, 0.005))
        _take(cond, timeout, "the condition's lock")
        try:
            tail = cells[_C_TAIL]
            cells[queue_at + tail] = item
            cells[_C_TAIL] = tail + 1
            cond.notify()
        finally:
            cond.release()


def _consumer(
    cond: Any, cells: SharedInts, index: int, quota: int, total: int, timeout: float
) -> None:
    queue_at, consumed_at, served_at = _condition_layout(total)
    for _ in range(quota):
        _take(cond, timeout, "the condition's lock")
        try:
            deadline = time.monotonic() + timeout
            while cells[_C_HEAD] == cells[_C_TAIL]:
                cells[_C_WAITS] += 1
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not cond.wait(remaining):
                    raise TimeoutError(f"no item came within {timeout:g}s (lost notification?)")
            head = cells[_C_HEAD]
            item = cells[queue_at + head]
            cells[_C_HEAD] = head + 1
            cells[consumed_at + item] += 1
            cells[served_at + index] += 1
        finally:
            cond.release()


def check_condition(consumed: Sequence[int], served: Sequence[int], quota: int) -> Outcome:
    """Every item consumed exactly once, and every consumer served its quota."""
    problems = []
    lost = [i for i, c in enumerate(consumed) if c == 0]
    doubled = [i for i, c in enumerate(consumed) if c > 1]
    if lost:
        problems.append(f"item(s) never consumed: {lost}")
    if doubled:
        problems.append(f"item(s) consumed more than once: {doubled}")
    unserved = [i for i, s in enumerate(served) if s != quota]
    if unserved:
        problems.append(
            f"consumer(s) {unserved} got {[served[i] for i in unserved]} items, not {quota}"
        )
    once = sum(1 for c in consumed if c == 1)
    return _outcome(
        f"{once}/{len(consumed)} items consumed once, {len(served)} consumers", problems
    )


def scenario_condition(h: Harness) -> Outcome:
    """Producers queue items and notify(); consumers wait() on the Condition and take them."""
    consumers = max(1, h.workers // 2)
    producers = max(1, h.workers - consumers)
    total = consumers * CONDITION_QUOTA
    _, consumed_at, served_at = _condition_layout(total)
    cells = h.shared(served_at + consumers)
    cond = h.track(h.ctx.Condition())
    h.track(cond.lock)
    shares = [list(range(p, total, producers)) for p in range(producers)]
    if h.sabotage:
        shares[-1] = shares[-1][:-1]  # one item is never produced
    with h.crew() as crew:
        for c in range(consumers):
            crew.start(
                f"consumer-{c}", _consumer, cond, cells, c, CONDITION_QUOTA, total, h.timeout
            )
        for p in range(producers):
            crew.start(f"producer-{p}", _producer, cond, cells, shares[p], total, h.timeout)
        crew.go()
        problems = crew.join()
    outcome = check_condition(
        cells.read(consumed_at, total), cells.read(served_at, consumers), CONDITION_QUOTA
    )
    figure = f"{outcome.figure} ({cells[_C_WAITS]} waits)"
    return Outcome(outcome.passed, figure, outcome.problems).plus(problems)


# -- (f) barrier: phases with an action -----------------------------------------------------

BARRIER_PHASES = 3
_B_ACTIONS, _B_ACTION_EARLY, _B_VIOLATIONS, _B_BASE = range(4)


def _barrier_layout(parties: int) -> tuple[int, int]:
    """Cell offsets of each worker's phase, and of the indices wait() returned per phase."""
    return _B_BASE, _B_BASE + parties


def _barrier_action(cells: SharedInts, parties: int) -> None:
    """The barrier's action (module level, so it pickles): count one run per phase."""
    phase_at, _ = _barrier_layout(parties)
    done = cells[_B_ACTIONS]
    if any(cells[phase_at + j] != done for j in range(parties)):
        cells[_B_ACTION_EARLY] += 1
    cells[_B_ACTIONS] = done + 1


def _barrier_worker(
    barrier: Any,
    cells: SharedInts,
    index: int,
    parties: int,
    phases: int,
    skip: bool,
    timeout: float,
) -> None:
    phase_at, index_at = _barrier_layout(parties)
    for phase in range(phases):
        time.sleep(random.uniform(0.0, 0.02))
        cells[phase_at + index] = phase
        if skip and phase == 1:
            continue  # the sabotage: this worker does not wait at phase 1's barrier
        got = barrier.wait(timeout)
        cells[index_at + phase * parties + index] = got + 1
        others = cells.read(phase_at, parties)
        if any(p not in (phase, phase + 1) for p in others) or cells[_B_ACTIONS] != phase + 1:
            cells[_B_VIOLATIONS] += 1


def check_barrier(
    parties: int,
    phases: int,
    actions: int,
    action_early: int,
    violations: int,
    indices: Sequence[Sequence[int]],
) -> Outcome:
    """Each phase: everyone arrived before anyone left, distinct indices, one action run."""
    problems = []
    if actions != phases:
        problems.append(f"the action ran {actions} times for {phases} phases")
    if action_early:
        problems.append(f"the action ran {action_early} time(s) before every worker arrived")
    if violations:
        problems.append(f"{violations} time(s) a worker passed before all reached its phase")
    for phase, got in enumerate(indices):
        if sorted(got) != list(range(1, parties + 1)):
            problems.append(
                f"phase {phase}: wait() returned {[g - 1 for g in got]}, not a permutation of "
                f"range({parties})"
            )
    return _outcome(f"{parties} workers x {phases} phases, action ran {actions}x", problems)


def scenario_barrier(h: Harness) -> Outcome:
    """Workers meet at a Barrier each phase; its picklable action runs once per phase."""
    parties, phases = h.workers, BARRIER_PHASES
    _, index_at = _barrier_layout(parties)
    cells = h.shared(index_at + phases * parties)
    action = functools.partial(_barrier_action, cells, parties)
    barrier = h.track(h.ctx.Barrier(parties, action=action, timeout=h.timeout))
    with h.crew() as crew:
        for i in range(parties):
            skip = h.sabotage and i == 0
            crew.start(
                f"worker-{i}", _barrier_worker, barrier, cells, i, parties, phases, skip, h.timeout
            )
        crew.go()
        problems = crew.join()
    indices = [cells.read(index_at + p * parties, parties) for p in range(phases)]
    return check_barrier(
        parties,
        phases,
        cells[_B_ACTIONS],
        cells[_B_ACTION_EARLY],
        cells[_B_VIOLATIONS],
        indices,
    ).plus(problems)


# -- running them ----------------------------------------------------------------------------

#: Every scenario by name, in the order the demo runs them.
SCENARIOS: dict[str, Callable[[Harness], Outcome]] = {
    "lock": scenario_lock,
    "rlock": scenario_rlock,
    "semaphore": scenario_semaphore,
    "event": scenario_event,
    "condition": scenario_condition,
    "barrier": scenario_barrier,
}


def run_demo(
    ctx: Context,
    config: DemoConfig,
    on_result: Callable[[ScenarioResult], None] | None = None,
) -> list[ScenarioResult]:
    """Run the chosen scenarios on *ctx*; call *on_result* after each one."""
    if config.workers < 2:
        raise ValueError(f"the demo needs at least 2 workers, not {config.workers}")
    unknown = sorted((set(config.only) | config.sabotage) - set(SCENARIOS))
    if unknown:
        raise ValueError(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    mp = multiprocessing.get_context(config.start_method) if config.kind == "process" else None
    results = []
    for name, scenario in SCENARIOS.items():
        if config.only and name not in config.only:
            continue
        harness = Harness(ctx, mp, config.workers, config.timeout, name in config.sabotage)
        started = time.perf_counter()
        try:
            with harness.stack:
                outcome = scenario(harness)
        except Exception as exc:
            outcome = Outcome(False, "error", (f"{type(exc).__name__}: {exc}",))
        result = ScenarioResult(name, outcome, (time.perf_counter() - started) * 1000)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results
