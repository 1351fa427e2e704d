"""The demo's scenarios: the seed API's examples run on real workers, each checking its invariant.

Six scenarios (lock, rlock, semaphore, event, condition, barrier), each a function of a
:class:`~polysync.demo.harness.Harness` returning an
:class:`~polysync.demo.results.Outcome`. Every blocking call has a timeout.

The ``check_*`` functions judge what a scenario measured; they are pure so that tests
can feed them broken measurements. ``sabotage`` (the CLI's hidden ``--self-test-fail``)
breaks a scenario for real, to show that its check reports FAIL.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from polysync.demo.harness import Harness
from polysync.demo.results import Outcome, _outcome
from polysync.demo.shared import SharedInts
from polysync.kernel import Capability

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
