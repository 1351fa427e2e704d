"""The harness shared by the stress and kill-trial tests and their full-size runners.

Two workloads, each usable from pytest (``tests/test_stress.py``,
``tests/test_kill_trials.py``) and from the command line (``benchmarks/stress_run.py``,
``benchmarks/kill_trials.py``). Nothing here imports pytest, and nothing waits without
a bound.

**Stress** (:func:`run_stress`): N workers (processes, or threads for the ``thread``
backend) each do K operations on one primitive. Inside every acquisition a worker marks
itself as a holder in a shared memory-mapped file, counts the holders it can see, and
does a non-atomic read-modify-write of a shared counter with a tiny sleep between the
read and the write. A holder that sees more holders than the primitive allows is a
violation; for exclusive primitives a lost update (the counter below N*K) is one too.
The ``no lock (control)`` variant runs the same loop without any primitive and must
show overlap: that proves the detector can fail.

**Kill trials** (:func:`run_trial`): a *victim* process uses a named primitive and is
SIGKILLed, either while it holds it (or waits inside ``Event.wait``,
``Condition.wait`` or ``Barrier.wait``), mode ``holding``, or at a random moment of a
tight loop of operations, mode ``random`` (then a *survivor* process loops on the same
primitive from other threads, so the victim may die as a queued waiter too). The
survivor then checks, with every blocking call bounded, that the primitive still
works: Lock and RLock are acquired, a Semaphore's permits all come back, a Condition
acquires, notifies and times out and wakes a live waiter, a Barrier passes fresh
parties (after a ``reset()`` if it reports broken), an Event wakes a waiter on
``set()``. Each trial records whether it recovered, how long that took (from the kill),
and whether the death was reported (an :class:`polysync.OwnerDiedWarning` or
``owner_died``). A survivor stuck in a call is killed when the step it announced
overruns, so a wedged primitive costs seconds, never a hang.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import dataclasses
import itertools
import mmap
import multiprocessing
import os
import random
import shutil
import signal
import statistics
import tempfile
import threading
import time
import traceback
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import polysync
from polysync import Capability

# -- shared ---------------------------------------------------------------------------------

#: The backends a context can be made for.
BACKENDS = ("posix", "thread", "redis")
#: Start method of every child process (fork is what keeps a trial cheap).
DEFAULT_METHOD = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
SHM = "/dev/shm"

_PR_SET_PDEATHSIG = 1
#: Every pid this process started here (victims, survivors, stress workers).
STARTED_PIDS: set[int] = set()


def make_context(
    backend: str, *, redis_url: str | None = None, lease: float | None = None
) -> polysync.Context:
    """A context for *backend* (one of :data:`BACKENDS`); redis needs *redis_url*."""
    if backend == "posix":
        return polysync.get_context("posix")
    if backend == "thread":
        return polysync.get_context("thread")
    if backend == "redis":
        if redis_url is None:
            raise ValueError("the redis backend needs redis_url=")
        options: dict[str, object] = {"url": redis_url, "prefix": "pstrials"}
        if lease is not None:
            options["lease"] = lease
        return polysync.get_context("redis", **options)
    raise ValueError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def die_with_parent() -> None:
    """In a child: have the kernel SIGKILL it when its parent dies (Linux; else nothing)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def shm_entries() -> set[str]:
    """polysync's names in /dev/shm now (empty where there is no /dev/shm)."""
    try:
        return {n for n in os.listdir(SHM) if "polysync" in n}
    except FileNotFoundError:
        return set()


def own_shm_entries(entries: Iterable[str], names: Iterable[str]) -> set[str]:
    """Those of *entries* that this harness made: its named objects (by *names*), the
    anonymous objects of this process's tracker, and waiter semaphores of its pids."""
    names = tuple(names)
    pids = {os.getpid(), *STARTED_PIDS}
    tracker_ids: set[str] = set()
    with contextlib.suppress(Exception):
        from polysync.backends.posix import tracker

        tracker_ids.add(tracker.own_tracker_id())
    mine = set()
    for entry in entries:
        bare = entry.removeprefix("sem.")
        named = any(f"-n-{n}" in bare for n in names)
        anonymous = any(bare.startswith(f"polysync-a-{t}-") for t in tracker_ids)
        waiter = bare.startswith("polysync-w-") and bare.split("-")[2] in {str(p) for p in pids}
        if named or anonymous or waiter:
            mine.add(entry)
    return mine


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def _reap(proc: Any, timeout: float = 5.0) -> None:
    """Kill *proc* (a multiprocessing process) if it still runs, and wait for it."""
    if proc is None or proc.pid is None:
        return
    if proc.is_alive():
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
    proc.join(timeout)


# -- kill trials ----------------------------------------------------------------------------

PRIMITIVES = ("Lock", "RLock", "Semaphore", "BoundedSemaphore", "Event", "Condition", "Barrier")
MODES = ("holding", "random")
#: Backends the kill trials run on (thread has no process to kill).
KILL_BACKENDS = ("posix", "redis")
#: Permits of the Semaphore and BoundedSemaphore under trial; the victim holds one.
SEM_VALUE = 2
#: Parties of the Barrier under trial.
PARTIES = 2
#: The random kill lands this long (uniformly at most) after the victim's first loop.
RANDOM_DELAY = 0.05
#: Seconds a child may take to get ready (start, open the object, first operation).
START_TIMEOUT = 20.0
#: Seconds a victim lives at most, should nothing kill it.
VICTIM_LIFETIME = 120.0
#: Slack on top of a survivor's announced step before it counts as stuck.
STEP_SLACK = 2.0
_WAITERS = ("Event", "Condition", "Barrier")
_LOCKS = ("Lock", "RLock")
_SEMAPHORES = ("Semaphore", "BoundedSemaphore")


def recovery_bound(backend: str, lease: float | None = None) -> float:
    """Seconds a survivor may wait for the primitive: posix 1 s, redis its lease plus 2 s."""
    if backend == "redis":
        return (30.0 if lease is None else lease) + 2.0
    return 1.0


def open_primitive(ctx: polysync.Context, primitive: str, name: str) -> Any:
    """Open (creating it if needed) the named *primitive* as the trials make it."""
    if primitive in _SEMAPHORES:
        return getattr(ctx, primitive)(SEM_VALUE, name=name)
    if primitive == "Barrier":
        return ctx.Barrier(PARTIES, name=name)
    return getattr(ctx, primitive)(name=name)


def unlink_primitive(ctx: polysync.Context, primitive: str, name: str) -> None:
    for used in (name, f"{name}.lock") if primitive == "Condition" else (name,):
        with contextlib.suppress(Exception):
            ctx.unlink(used)


@dataclass
class TrialResult:
    """One trial: did the primitive work again after its user was SIGKILLed?"""

    backend: str
    primitive: str
    mode: str
    index: int
    recovered: bool
    #: Seconds from the kill to the first successful use (``None``: never).
    seconds: float | None
    #: An OwnerDiedWarning was emitted, or ``owner_died`` read True, in the survivor.
    owner_died: bool
    #: What happened, in a few words (what failed, or how it recovered).
    detail: str
    #: Random mode: seconds between the victim's first loop and the kill.
    delay: float = 0.0
    #: Wall time of the whole trial, set-up and clean-up included.
    elapsed: float = 0.0

    def line(self) -> str:
        took = "-" if self.seconds is None else f"{self.seconds * 1000:.0f} ms"
        state = "recovered" if self.recovered else "NOT RECOVERED"
        died = ", owner death reported" if self.owner_died else ""
        return (
            f"{self.backend}/{self.primitive}/{self.mode} #{self.index}: {state} ({took}{died})"
            f" [{self.detail}]"
        )


class _CheckFailedError(Exception):
    """A check found the primitive not working; the message says how."""


class _Reporter:
    """The survivor's side of its pipe: steps (each with its bound), then the result."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.lock = threading.Lock()

    def send(self, *message: object) -> None:
        with self.lock:
            self.conn.send(message)

    def step(self, what: str, seconds: float) -> None:
        """Announce a call that must return within *seconds* (else the parent kills us)."""
        self.send("step", what, seconds)


# The loops a victim (and the survivor's contenders) run in random mode. Each takes the
# handle and the iteration number, and returns True when it got the primitive (a
# contender's first success after the kill is a recovery), False when it did not, or
# None when the operation says nothing either way.


def _loop_lock(obj: Any, k: int, timeout: float | None) -> bool | None:
    got = obj.acquire() if timeout is None and k % 2 == 0 else obj.acquire(timeout=timeout or 5.0)
    if got:
        obj.release()
    return bool(got)


def _loop_rlock(obj: Any, k: int, timeout: float | None) -> bool | None:
    got = obj.acquire() if timeout is None and k % 2 == 0 else obj.acquire(timeout=timeout or 5.0)
    if got:
        obj.acquire()  # reentrant: never blocks
        obj.release()
        obj.release()
    return bool(got)


def _loop_event(obj: Any, k: int, timeout: float | None) -> bool | None:
    if k % 2 == 0:
        obj.set()
    else:
        obj.clear()
    obj.wait(0.001)
    return None


def _loop_condition(obj: Any, k: int, timeout: float | None) -> bool | None:
    got = obj.acquire() if timeout is None and k % 2 == 0 else obj.acquire(timeout=timeout or 5.0)
    if not got:
        return False
    try:
        obj.notify()
        obj.wait(0.002)
    finally:
        obj.release()
    return True


def _loop_barrier(obj: Any, k: int, timeout: float | None) -> bool | None:
    try:
        obj.wait(0.1)
    except polysync.BrokenBarrierError:
        if obj.broken:
            obj.reset()
    return None


_LOOPS: dict[str, Callable[[Any, int, float | None], bool | None]] = {
    "Lock": _loop_lock,
    "RLock": _loop_rlock,
    "Semaphore": _loop_lock,
    "BoundedSemaphore": _loop_lock,
    "Event": _loop_event,
    "Condition": _loop_condition,
    "Barrier": _loop_barrier,
}


def _victim_main(
    ctx: polysync.Context, primitive: str, mode: str, name: str, conn: Connection, life: float
) -> None:
    """The process to be killed: use *name*, say ``ready``, go on until killed."""
    die_with_parent()
    deadline = time.monotonic() + life
    try:
        obj = open_primitive(ctx, primitive, name)
        if mode == "random":
            loop = _LOOPS[primitive]
            loop(obj, 1, 5.0)
            conn.send(("ready",))
            for k in itertools.count():
                loop(obj, k, None)
                if time.monotonic() > deadline:
                    return
        if primitive in _LOCKS or primitive in _SEMAPHORES:
            if not obj.acquire(timeout=10.0):
                conn.send(("error", f"the victim could not acquire the fresh {primitive}"))
                return
            conn.send(("ready",))
            time.sleep(life)
        elif primitive == "Event":
            conn.send(("ready",))
            obj.wait(life)
        elif primitive == "Condition":
            if not obj.acquire(timeout=10.0):
                conn.send(("error", "the victim could not acquire the fresh Condition"))
                return
            conn.send(("ready",))
            obj.wait(life)
        else:
            conn.send(("ready",))
            obj.wait(life)
    except BaseException:
        conn.send(("error", traceback.format_exc()))


class _Contenders:
    """Random mode: threads of the survivor looping on the primitive during the kill."""

    def __init__(self, obj: Any, primitive: str, count: int, bound: float) -> None:
        self.obj = obj
        self.loop = _LOOPS[primitive]
        self.bound = bound
        self.stop = threading.Event()
        self.killed_at: float | None = None
        self.first_success: float | None = None
        self.failures: list[str] = []
        self.threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(count)
        ]
        for thread in self.threads:
            thread.start()

    def _run(self, i: int) -> None:
        try:
            for k in itertools.count():
                if self.stop.is_set():
                    return
                got = self.loop(self.obj, k, self.bound)
                now = time.monotonic()
                killed = self.killed_at
                if killed is None:
                    continue
                if got and self.first_success is None:
                    self.first_success = now
                if got is False:
                    self.failures.append(
                        f"a contender's acquire(timeout={self.bound:g}) failed after the kill"
                    )
                    return
        except BaseException as exc:
            self.failures.append(f"a contender raised {type(exc).__name__}: {exc}")

    def join(self, report: _Reporter) -> None:
        """Stop the loops; a loop stuck in a call past the bound is a failure."""
        self.stop.set()
        report.step("stopping the contenders", self.bound + 1.0)
        deadline = time.monotonic() + self.bound + 0.5
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in self.threads):
            self.failures.append(f"a contender was stuck in a call for over {self.bound:g} s")


def _check_lock(h: Any, primitive: str, bound: float, report: _Reporter) -> tuple[float, str]:
    report.step(f"{primitive}.acquire(timeout={bound:g})", bound)
    if not h.acquire(timeout=bound):
        raise _CheckFailedError(f"acquire(timeout={bound:g}) timed out")
    ok = time.monotonic()
    how = "acquired (owner_died)" if h.owner_died else "acquired"
    if primitive == "RLock":
        report.step("RLock.acquire() again (reentrant)", 1.0)
        if not h.acquire(timeout=1.0):
            raise _CheckFailedError("a reentrant acquire failed")
        h.release()
    report.step(f"{primitive}.release()", 1.0)
    h.release()
    report.step(f"{primitive}.acquire(timeout={bound:g}) once more", bound)
    if not h.acquire(timeout=bound):
        raise _CheckFailedError("acquired once, then a second acquire timed out")
    h.release()
    return ok, how


def _check_semaphore(h: Any, bound: float, report: _Reporter) -> tuple[float, str]:
    deadline = time.monotonic() + bound
    taken = 0
    try:
        for i in range(SEM_VALUE):
            left = max(0.0, deadline - time.monotonic())
            report.step(f"acquire permit {i + 1}/{SEM_VALUE} (timeout={left:.2f})", left)
            if not h.acquire(timeout=left):
                break
            taken += 1
        ok = time.monotonic()
    finally:
        report.step(f"release {taken} permit(s)", 1.0)
        if taken:
            h.release(taken)
    if taken < SEM_VALUE:
        raise _CheckFailedError(f"only {taken} of {SEM_VALUE} permits came back within {bound:g} s")
    if Capability.READABLE_VALUE in h.context.capabilities:
        report.step("get_value()", 1.0)
        value = h.get_value()
        if value != SEM_VALUE:
            raise _CheckFailedError(
                f"value {value} after all permits were released, not {SEM_VALUE}"
            )
    return ok, f"{SEM_VALUE}/{SEM_VALUE} permits"


def _in_thread(fn: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    """Run *fn* in a daemon thread; its result, or ``"raised <error>"``, lands in the list."""
    out: list[object] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as exc:
            out.append(f"raised {type(exc).__name__}: {exc}")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def _waiting(h: Any) -> int | None:
    waiting: int | None = h.statistics().waiting
    return waiting


def _await_one_more_waiter(h: Any, before: int | None, report: _Reporter) -> None:
    """Until *h* counts one waiter more than *before* (or a short pause where unknown)."""
    report.step("statistics() until the waiter is queued", 2.0)
    if before is None:
        time.sleep(0.05)
        return
    wait_until(lambda: (_waiting(h) or 0) > before, 1.0, 0.005)


def _check_event(h: Any, bound: float, report: _Reporter) -> tuple[float, str]:
    report.step("Event.clear()", 1.0)
    h.clear()
    report.step("Event.wait(0)", 1.0)
    if h.wait(0):
        raise _CheckFailedError("wait(0) returned True right after clear()")
    report.step("statistics()", 1.0)
    before = _waiting(h)
    waiter, out = _in_thread(lambda: h.wait(bound))
    _await_one_more_waiter(h, before, report)
    report.step("Event.set()", 1.0)
    h.set()
    report.step(f"the waiter's wait({bound:g}) returns", bound + 0.5)
    waiter.join(bound + 0.5)
    if waiter.is_alive():
        raise _CheckFailedError("a waiter stayed blocked after set()")
    if out != [True]:
        raise _CheckFailedError(f"a waiter's wait() returned {out} after set()")
    ok = time.monotonic()
    report.step("Event.is_set() and clear()", 1.0)
    if not h.is_set():
        raise _CheckFailedError("is_set() is False after set()")
    h.clear()
    return ok, "set() woke a waiter"


def _check_condition(h: Any, bound: float, report: _Reporter) -> tuple[float, str]:
    report.step(f"Condition.acquire(timeout={bound:g})", bound)
    if not h.acquire(timeout=bound):
        raise _CheckFailedError(f"its lock was not acquired within {bound:g} s")
    try:
        report.step("Condition.notify() and notify_all()", 1.0)
        h.notify()
        h.notify_all()
        report.step("Condition.wait(0.05)", 1.05)
        if h.wait(0.05):
            raise _CheckFailedError("wait(0.05) returned True though nothing notified it")
    finally:
        report.step("Condition.release()", 1.0)
        h.release()
    # A live waiter must be woken by one notify(), whatever the dead one left queued.
    inside = threading.Event()

    def waiter() -> object:
        if not h.acquire(timeout=bound):
            return "lock not acquired"
        try:
            inside.set()
            return h.wait(bound)
        finally:
            h.release()

    thread, out = _in_thread(waiter)
    report.step("the live waiter takes the lock", bound)
    if not inside.wait(bound):
        thread.join(bound)
        raise _CheckFailedError(f"a second thread could not take the lock: {out}")
    report.step(f"Condition.acquire(timeout={bound:g}) while the waiter waits", bound)
    if not h.acquire(timeout=bound):
        raise _CheckFailedError("the lock was not given back by a waiter inside wait()")
    try:
        report.step("Condition.notify()", 1.0)
        h.notify()
    finally:
        h.release()
    report.step(f"the waiter's wait({bound:g}) returns", bound + 0.5)
    thread.join(bound + 0.5)
    if thread.is_alive() or out == [False]:
        raise _CheckFailedError(
            "notify() did not wake the live waiter (did it go to the dead one?)"
        )
    if out != [True]:
        raise _CheckFailedError(f"the live waiter got {out}")
    return time.monotonic(), "notify() woke a live waiter"


def _barrier_round(h: Any, bound: float, report: _Reporter) -> list[object]:
    """Two fresh parties (this thread and another) wait; their results."""

    def party() -> object:
        try:
            index: int = h.wait(bound)
        except polysync.BrokenBarrierError:
            return "broken"
        return index

    helper, out = _in_thread(party)
    report.step(f"two fresh parties wait({bound:g})", bound + 0.5)
    out.append(party())
    helper.join(bound + 0.5)
    if helper.is_alive():
        out.append("stuck")
    return out


def _check_barrier(h: Any, bound: float, report: _Reporter) -> tuple[float, str]:
    """Fresh parties pass, or the barrier says it is broken and passes them after reset().

    A fresh party that passes with the dead one (the dead party still counted) leaves
    its partner to time out: that is a failure, even though reset() mends it.
    """
    notes = []
    report.step("Barrier.broken", 1.0)
    if h.broken:
        notes.append("reported broken")
        report.step("Barrier.reset()", 1.0)
        h.reset()
    began = time.monotonic()
    first = _barrier_round(h, bound, report)
    if sorted(first, key=str) == [0, 1]:
        notes.append("fresh parties passed")
        return time.monotonic(), ", ".join(notes)
    if "stuck" in first:
        raise _CheckFailedError(f"a fresh party stayed stuck in wait() past its timeout: {first}")
    failed = True
    if any(isinstance(r, int) for r in first):
        notes.append("a fresh party passed with the dead one, the other timed out")
    elif time.monotonic() - began >= bound / 2:
        notes.append("fresh parties timed out")
    else:
        notes.append("fresh parties were told it is broken")
        failed = False
    report.step("Barrier.reset()", 1.0)
    h.reset()
    second = _barrier_round(h, bound, report)
    if sorted(second, key=str) != [0, 1]:
        raise _CheckFailedError(f"{', '.join(notes)}; after reset() fresh parties got {second}")
    notes.append("passed after reset()")
    if failed:
        raise _CheckFailedError(", ".join(notes))
    return time.monotonic(), ", ".join(notes)


def _survivor_main(
    ctx: polysync.Context, primitive: str, mode: str, name: str, bound: float, conn: Connection
) -> None:
    """The process that outlives the victim: contend (random mode), then check recovery."""
    die_with_parent()
    report = _Reporter(conn)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _survive(ctx, primitive, mode, name, bound, report, caught)
    except BaseException:
        report.send("error", traceback.format_exc())


def _survive(
    ctx: polysync.Context,
    primitive: str,
    mode: str,
    name: str,
    bound: float,
    report: _Reporter,
    caught: list[warnings.WarningMessage],
) -> None:
    contenders: _Contenders | None = None
    obj = open_primitive(ctx, primitive, name)
    if mode == "random":
        # One more looper than the primitive admits, so that somebody queues.
        count = (
            SEM_VALUE if primitive in _SEMAPHORES else PARTIES - 1 if primitive == "Barrier" else 1
        )
        contenders = _Contenders(obj, primitive, count, bound)
    report.send("ready")
    if not conn_poll(report.conn, START_TIMEOUT + 30.0):
        report.send("error", "no word from the parent")
        return
    report.conn.recv()  # "killed"
    killed = time.monotonic()
    failures: list[str] = []
    first_success: float | None = None
    if contenders is not None:
        contenders.killed_at = killed
        contenders.join(report)
        failures += contenders.failures
        first_success = contenders.first_success
    report.step("open the primitive by name again", bound)
    fresh = open_primitive(ctx, primitive, name)
    checks: dict[str, Callable[[], tuple[float, str]]] = {
        "Lock": lambda: _check_lock(fresh, primitive, bound, report),
        "RLock": lambda: _check_lock(fresh, primitive, bound, report),
        "Semaphore": lambda: _check_semaphore(fresh, bound, report),
        "BoundedSemaphore": lambda: _check_semaphore(fresh, bound, report),
        "Event": lambda: _check_event(fresh, bound, report),
        "Condition": lambda: _check_condition(fresh, bound, report),
        "Barrier": lambda: _check_barrier(fresh, bound, report),
    }
    detail = ""
    ok_at: float | None = None
    try:
        ok_at, detail = checks[primitive]()
    except _CheckFailedError as exc:
        failures.append(str(exc))
    if primitive in _LOCKS and first_success is not None:
        ok_at = first_success if ok_at is None else min(ok_at, first_success)
    if not failures and ok_at is not None and ok_at - killed > bound:
        failures.append(
            f"worked again only {ok_at - killed:.2f} s after the kill (bound {bound:g} s)"
        )
    died = any(issubclass(w.category, polysync.OwnerDiedWarning) for w in caught)
    with contextlib.suppress(Exception):
        died = died or bool(fresh.owner_died) or bool(getattr(obj, "owner_died", False))
    report.step("close the handles", bound)
    for handle in (fresh, obj):
        with contextlib.suppress(Exception):
            handle.close()
    recovered = not failures and ok_at is not None
    report.send(
        "result",
        {
            "recovered": recovered,
            "seconds": None if ok_at is None else ok_at - killed,
            "owner_died": died,
            "detail": "; ".join(failures) if failures else detail,
        },
    )


def conn_poll(conn: Connection, timeout: float) -> bool:
    try:
        return conn.poll(timeout)
    except (EOFError, OSError):
        return True  # recv() will say what happened


def _expect_ready(conn: Connection, who: str, proc: Any) -> str | None:
    """Wait for *who*'s ``ready``; the problem in words, or None."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if conn.poll(0.05):
            try:
                message = conn.recv()
            except EOFError:
                return f"the {who} exited (code {proc.exitcode}) before it was ready"
            if message[0] == "ready":
                return None
            return f"the {who} failed: {str(message[-1]).strip().splitlines()[-1]}"
        if not proc.is_alive():
            return f"the {who} exited (code {proc.exitcode}) before it was ready"
    return f"the {who} was not ready within {START_TIMEOUT:g} s"


def _await_survivor(conn: Connection, proc: Any) -> dict[str, Any]:
    """Follow the survivor's steps until its result; kill it when a step overruns."""
    step, deadline = "starting the check", time.monotonic() + 10.0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            _reap(proc)
            return {"recovered": False, "detail": f"stuck in {step} (killed)"}
        if not conn.poll(min(left, 0.1)):
            if not proc.is_alive() and not conn.poll(0):
                return {"recovered": False, "detail": f"survivor died during {step}"}
            continue
        try:
            message = conn.recv()
        except EOFError:
            return {"recovered": False, "detail": f"survivor exited during {step}"}
        if message[0] == "step":
            step, deadline = message[1], time.monotonic() + float(message[2]) + STEP_SLACK
        elif message[0] == "result":
            result: dict[str, Any] = message[1]
            return result
        else:
            lines = str(message[-1]).strip().splitlines()
            return {"recovered": False, "detail": f"survivor raised: {lines[-1] if lines else ''}"}


def run_trial(
    ctx: polysync.Context,
    backend: str,
    primitive: str,
    mode: str,
    *,
    bound: float,
    rng: random.Random,
    index: int = 0,
    method: str = DEFAULT_METHOD,
    names: list[str] | None = None,
) -> TrialResult:
    """One kill trial of *primitive* on *ctx* (see the module docstring).

    Every child is killed and reaped, and the object (a fresh name, appended to *names*
    if given) is closed and unlinked before this returns, whatever happened.
    """
    if primitive not in PRIMITIVES or mode not in MODES:
        raise ValueError(f"unknown primitive {primitive!r} or mode {mode!r}")
    started = time.monotonic()
    name = unique_name("pstrial")
    if names is not None:
        names.append(name)
    mp: Any = multiprocessing.get_context(method)
    delay = 0.0
    result: dict[str, Any] = {"recovered": False, "detail": "not run"}
    procs: list[Any] = []
    conns: list[Connection] = []
    victim: Any = None
    before: int | None = None
    handle = open_primitive(ctx, primitive, name)
    try:
        mine, theirs = mp.Pipe()
        conns.append(mine)
        survivor = mp.Process(
            target=_survivor_main,
            args=(ctx, primitive, mode, name, bound, theirs),
            daemon=True,
            name=f"survivor-{primitive}",
        )
        survivor.start()
        procs.append(survivor)
        STARTED_PIDS.add(survivor.pid)
        theirs.close()
        problem = _expect_ready(mine, "survivor", survivor)
        if problem is None:
            from_victim, to_parent = mp.Pipe(duplex=False)
            conns.append(from_victim)
            victim = mp.Process(
                target=_victim_main,
                args=(ctx, primitive, mode, name, to_parent, VICTIM_LIFETIME),
                daemon=True,
                name=f"victim-{primitive}",
            )
            before = _waiting(handle) if primitive in _WAITERS and mode == "holding" else None
            victim.start()
            procs.append(victim)
            STARTED_PIDS.add(victim.pid)
            to_parent.close()
            problem = _expect_ready(from_victim, "victim", victim)
        if problem is not None:
            result = {"recovered": False, "detail": f"set-up: {problem}"}
        else:
            if mode == "holding" and primitive in _WAITERS:
                # Inside the wait, not merely about to call it.
                if before is None:
                    time.sleep(0.1)
                else:
                    wait_until(lambda: (_waiting(handle) or 0) > before, 5.0, 0.005)
                    time.sleep(0.01)
            if mode == "random":
                delay = rng.uniform(0.0, RANDOM_DELAY)
                time.sleep(delay)
            os.kill(victim.pid, signal.SIGKILL)
            victim.join(10.0)
            mine.send("killed")
            result = _await_survivor(mine, survivor)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.join(1.0)
            _reap(proc)
        for conn in conns:
            conn.close()
        with contextlib.suppress(Exception):
            handle.close()
        unlink_primitive(ctx, primitive, name)
    seconds = result.get("seconds")
    return TrialResult(
        backend=backend,
        primitive=primitive,
        mode=mode,
        index=index,
        recovered=bool(result.get("recovered")),
        seconds=None if seconds is None else float(seconds),
        owner_died=bool(result.get("owner_died", False)),
        detail=str(result.get("detail", "")),
        delay=delay,
        elapsed=time.monotonic() - started,
    )


def run_trials(
    ctx: polysync.Context,
    backend: str,
    primitive: str,
    mode: str,
    trials: int,
    *,
    bound: float,
    seed: int | None = None,
    stop_on_failure: bool = False,
    method: str = DEFAULT_METHOD,
    names: list[str] | None = None,
) -> list[TrialResult]:
    """*trials* trials of one variant (stopping at the first failure if asked)."""
    rng = random.Random(seed)
    results: list[TrialResult] = []
    for index in range(trials):
        trial = run_trial(
            ctx,
            backend,
            primitive,
            mode,
            bound=bound,
            rng=rng,
            index=index,
            method=method,
            names=names,
        )
        results.append(trial)
        if stop_on_failure and not trial.recovered:
            break
    return results


@dataclass
class TrialSummary:
    """The trials of one (backend, primitive, mode)."""

    backend: str
    primitive: str
    mode: str
    total: int
    recovered: int
    median: float | None
    maximum: float | None
    owner_died: int
    failures: dict[str, int] = field(default_factory=dict)


def summarize(results: Sequence[TrialResult]) -> list[TrialSummary]:
    """One summary per variant, in the order the variants first appear."""
    groups: dict[tuple[str, str, str], list[TrialResult]] = {}
    for r in results:
        groups.setdefault((r.backend, r.primitive, r.mode), []).append(r)
    out = []
    for (backend, primitive, mode), group in groups.items():
        times = [r.seconds for r in group if r.recovered and r.seconds is not None]
        failures: dict[str, int] = {}
        for r in group:
            if not r.recovered:
                failures[r.detail] = failures.get(r.detail, 0) + 1
        out.append(
            TrialSummary(
                backend=backend,
                primitive=primitive,
                mode=mode,
                total=len(group),
                recovered=sum(r.recovered for r in group),
                median=statistics.median(times) if times else None,
                maximum=max(times) if times else None,
                owner_died=sum(r.owner_died for r in group),
                failures=failures,
            )
        )
    return out


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"


def format_summaries(rows: Sequence[TrialSummary]) -> str:
    """The trial table: one line per variant, then each failure kind and its count."""
    header = ("backend", "primitive", "mode", "recovered", "median", "max", "owner death")
    table = [header] + [
        (
            r.backend,
            r.primitive,
            r.mode,
            f"{r.recovered}/{r.total}",
            _ms(r.median),
            _ms(r.maximum),
            str(r.owner_died),
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in table
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = [
        f"  {r.backend}/{r.primitive}/{r.mode}: {count}x {why}"
        for r in rows
        for why, count in sorted(r.failures.items(), key=lambda kv: -kv[1])
    ]
    if notes:
        lines += ["", "failures:", *notes]
    return "\n".join(lines)


# -- stress ---------------------------------------------------------------------------------

#: Variant -> (primitive, value, holders allowed at once). ``None``: the no-lock control.
STRESS_VARIANTS: dict[str, tuple[str | None, int | None, int]] = {
    "Lock": ("Lock", None, 1),
    "RLock": ("RLock", None, 1),
    "Semaphore(1)": ("Semaphore", 1, 1),
    "Semaphore(3)": ("Semaphore", 3, 3),
    "BoundedSemaphore(2)": ("BoundedSemaphore", 2, 2),
    "Condition": ("Condition", None, 1),
    "no lock (control)": (None, None, 1),
}
CONTROL = "no lock (control)"

# Cells of the shared file (int64 each): the gate, the counter, the Condition's turn, the
# abort flag; then one holder flag per worker; then each worker's statistics.
_GO, _COUNTER, _TURN, _ABORT = 0, 1, 2, 3
_HOLD = 8
_READY, _DONE, _OPS, _VIOL, _MAX, _TIMEOUTS, _ERRORS, _END = range(8)
_STRIDE = 8


def _stats_base(n: int, i: int) -> int:
    return _HOLD + n + i * _STRIDE


@dataclass
class StressResult:
    """One stress run: N workers x K operations on one primitive."""

    backend: str
    variant: str
    workers: int
    ops: int
    threads: bool
    allowed: int
    completed: int = 0
    counter: int = 0
    violations: int = 0
    max_concurrent: int = 0
    timeouts: int = 0
    hung: int = 0
    errors: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    @property
    def expected(self) -> int:
        return self.workers * self.ops

    @property
    def exclusive(self) -> bool:
        return self.allowed == 1

    @property
    def lost_updates(self) -> int:
        """Increments of the counter lost to overlap (exclusive primitives only)."""
        return max(0, self.completed - self.counter) if self.exclusive else 0

    @property
    def overlap_detected(self) -> bool:
        return self.violations > 0 or self.lost_updates > 0

    @property
    def throughput(self) -> float:
        return self.completed / self.seconds if self.seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        """No overlap, every operation done, nothing timed out, raised or hung."""
        return (
            not self.overlap_detected
            and self.completed == self.expected
            and not self.timeouts
            and not self.hung
            and not self.errors
        )

    def describe(self) -> str:
        return (
            f"{self.backend} {self.variant} {self.workers}x{self.ops}"
            f" ({'threads' if self.threads else 'processes'}): completed {self.completed}/"
            f"{self.expected}, counter {self.counter}, lost updates {self.lost_updates},"
            f" violations {self.violations}, max holders {self.max_concurrent}/{self.allowed},"
            f" timeouts {self.timeouts}, hung {self.hung}, errors {self.errors[:3]},"
            f" {self.seconds:.2f} s"
        )


def _pause(hold_s: float) -> None:
    if hold_s > 0:
        time.sleep(hold_s)
    else:
        os.sched_yield()


def _critical(cells: memoryview, i: int, n: int, allowed: int, hold_s: float, st: int) -> None:
    """Inside the primitive: mark, count the holders, read-pause-write the counter."""
    cells[_HOLD + i] = 1
    seen = sum(cells[_HOLD : _HOLD + n])
    value = cells[_COUNTER]
    _pause(hold_s)
    cells[_COUNTER] = value + 1
    seen = max(seen, sum(cells[_HOLD : _HOLD + n]))
    cells[_HOLD + i] = 0
    if seen > cells[st + _MAX]:
        cells[st + _MAX] = seen
    if seen > allowed:
        cells[st + _VIOL] += 1


def _exclusive_loop(
    cells: memoryview,
    prim: Any,
    reentrant: bool,
    i: int,
    n: int,
    ops: int,
    allowed: int,
    hold_s: float,
) -> None:
    timeout = _STRESS_TIMEOUT
    st = _stats_base(n, i)
    for _ in range(ops):
        if cells[_ABORT]:
            return
        if prim is None:
            _critical(cells, i, n, allowed, hold_s, st)
            cells[st + _OPS] += 1
            continue
        if not prim.acquire(timeout=timeout):
            cells[st + _TIMEOUTS] += 1
            cells[_ABORT] = 1
            return
        try:
            if reentrant and not prim.acquire(timeout=timeout):
                cells[st + _TIMEOUTS] += 1
                cells[_ABORT] = 1
                return
            try:
                _critical(cells, i, n, allowed, hold_s, st)
            finally:
                if reentrant:
                    prim.release()
        finally:
            prim.release()
        cells[st + _OPS] += 1


def _condition_loop(cells: memoryview, cond: Any, i: int, n: int, ops: int, hold_s: float) -> None:
    """Round-robin turns: worker *i* works only when ``turn % n == i``; notify_all after."""
    timeout = _STRESS_TIMEOUT
    st = _stats_base(n, i)
    for _ in range(ops):
        if not cond.acquire(timeout=timeout):
            cells[st + _TIMEOUTS] += 1
            cells[_ABORT] = 1
            return
        try:
            ok = cond.wait_for(lambda: cells[_ABORT] or cells[_TURN] % n == i, timeout)
            if cells[_ABORT]:
                return
            if not ok:
                cells[st + _TIMEOUTS] += 1
                cells[_ABORT] = 1
                cond.notify_all()
                return
            _critical(cells, i, n, 1, hold_s, st)
            cells[_TURN] += 1
            cond.notify_all()
        finally:
            cond.release()
        cells[st + _OPS] += 1


#: Seconds any one acquire (or wait) of a stress worker may take before it counts as stuck.
_STRESS_TIMEOUT = 20.0


def _stress_worker(
    path: str,
    i: int,
    n: int,
    variant: str,
    prim: Any,
    ops: int,
    hold_s: float,
    process: bool,
) -> None:
    if process:
        die_with_parent()
    with open(path, "r+b") as f:
        mm = mmap.mmap(f.fileno(), 0)
    cells = memoryview(mm).cast("q")
    st = _stats_base(n, i)
    try:
        kind, _value, allowed = STRESS_VARIANTS[variant]
        cells[st + _READY] = 1
        deadline = time.monotonic() + START_TIMEOUT + 10.0
        while not cells[_GO]:
            if cells[_ABORT] or time.monotonic() > deadline:
                return
            time.sleep(0.0005)
        if kind == "Condition":
            _condition_loop(cells, prim, i, n, ops, hold_s)
        else:
            _exclusive_loop(cells, prim, kind == "RLock", i, n, ops, allowed, hold_s)
    except BaseException:
        cells[st + _ERRORS] += 1
        cells[_ABORT] = 1
        with contextlib.suppress(OSError), open(f"{path}.err{i}", "w") as err:
            err.write(traceback.format_exc())
    finally:
        cells[st + _END] = time.monotonic_ns()
        cells[st + _DONE] = 1
        cells.release()
        mm.close()


def make_stress_primitive(ctx: polysync.Context, variant: str) -> Any:
    """The anonymous primitive a stress *variant* runs on (``None`` for the control)."""
    kind, value, _allowed = STRESS_VARIANTS[variant]
    if kind is None:
        return None
    if value is not None:
        return getattr(ctx, kind)(value)
    return getattr(ctx, kind)()


@contextlib.contextmanager
def _shared_file(n: int) -> Iterator[str]:
    where = tempfile.mkdtemp(prefix="psstress-")
    path = os.path.join(where, "cells")
    try:
        with open(path, "wb") as f:
            f.write(b"\0" * 8 * _stats_base(n, n))
        yield path
    finally:
        shutil.rmtree(where, ignore_errors=True)


def run_stress(
    ctx: polysync.Context | None,
    backend: str,
    variant: str,
    workers: int,
    ops: int,
    *,
    threads: bool = False,
    hold_s: float = 0.00002,
    deadline: float = 120.0,
    method: str = DEFAULT_METHOD,
) -> StressResult:
    """N *workers* x K *ops* on one fresh primitive (see the module docstring).

    Processes (``threads=False``) are killed if they overrun *deadline* seconds and
    counted as hung; threads are daemons and are only counted.
    """
    allowed = STRESS_VARIANTS[variant][2]
    result = StressResult(backend, variant, workers, ops, threads, allowed)
    prim = None if ctx is None else make_stress_primitive(ctx, variant)
    mp: Any = multiprocessing.get_context(method)
    try:
        with _shared_file(workers) as path:
            with open(path, "r+b") as f:
                mm = mmap.mmap(f.fileno(), 0)
            cells = memoryview(mm).cast("q")
            runners: list[Any] = []
            try:
                for i in range(workers):
                    args = (path, i, workers, variant, prim, ops, hold_s, not threads)
                    if threads:
                        runner: Any = threading.Thread(
                            target=_stress_worker, args=args, daemon=True
                        )
                    else:
                        runner = mp.Process(target=_stress_worker, args=args, daemon=True)
                    runner.start()
                    if not threads:
                        STARTED_PIDS.add(runner.pid)
                    runners.append(runner)
                bases = [_stats_base(workers, i) for i in range(workers)]
                if not wait_until(
                    lambda: all(cells[b + _READY] or cells[b + _DONE] for b in bases),
                    START_TIMEOUT,
                    0.005,
                ):
                    result.errors.append("workers not ready in time")
                    cells[_ABORT] = 1
                go = time.monotonic_ns()
                cells[_GO] = 1
                end_by = time.monotonic() + deadline
                for runner in runners:
                    runner.join(max(0.0, end_by - time.monotonic()))
                for runner in runners:
                    if runner.is_alive():
                        result.hung += 1
                        if not threads:
                            _reap(runner)
                ends = [cells[b + _END] for b in bases if cells[b + _DONE]]
                result.seconds = (max(ends) - go) / 1e9 if ends else 0.0
                result.counter = cells[_COUNTER]
                result.completed = sum(cells[b + _OPS] for b in bases)
                result.violations = sum(cells[b + _VIOL] for b in bases)
                result.max_concurrent = max(cells[b + _MAX] for b in bases)
                result.timeouts = sum(cells[b + _TIMEOUTS] for b in bases)
                for i in range(workers):
                    with contextlib.suppress(OSError), open(f"{path}.err{i}") as err:
                        lines = err.read().strip().splitlines()
                        result.errors.append(f"worker {i}: {lines[-1] if lines else '?'}")
                    if not threads and runners[i].exitcode not in (0, None):
                        result.errors.append(f"worker {i} exit code {runners[i].exitcode}")
            finally:
                cells[_ABORT] = 1
                for runner in runners:
                    if not threads:
                        _reap(runner)
                cells.release()
                mm.close()
    finally:
        if prim is not None:
            with contextlib.suppress(Exception):
                prim.close()
    return result


def format_stress(results: Sequence[StressResult]) -> str:
    """The stress table: one line per run."""
    header = (
        "backend",
        "variant",
        "workers x ops",
        "seconds",
        "ops/s",
        "max holders",
        "violations",
        "lost updates",
        "timeouts",
        "verdict",
    )
    table = [header]
    for r in results:
        if r.variant == CONTROL:
            verdict = "ok (overlap seen)" if r.overlap_detected else "FAIL (no overlap seen)"
        else:
            verdict = "ok" if r.ok else "FAIL"
        table.append(
            (
                r.backend,
                r.variant,
                f"{r.workers} x {r.ops}",
                f"{r.seconds:.2f}",
                f"{r.throughput:,.0f}",
                f"{r.max_concurrent}/{r.allowed}",
                str(r.violations),
                str(r.lost_updates),
                str(r.timeouts + r.hung),
                verdict,
            )
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in table
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    errors = [f"  {r.backend} {r.variant}: {e}" for r in results for e in r.errors]
    if errors:
        lines += ["", "errors:", *errors]
    return "\n".join(lines)
