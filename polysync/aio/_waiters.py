"""The waiter threads: a bounded pool of polysync's own threads that runs kernel calls off the loop.

Kernel calls that may block or do I/O never run on an event loop's thread; they run here.
The pool is process-wide (every loop, every thread shares it), never the loop's default
executor, and has two kinds of work:

- *calls* (a release, a try-acquire, a read on a remote backend): run once, first in line;
- *jobs*: a wait cut into slices. A job's :meth:`Job.step` runs one bounded kernel wait
  (at most :data:`SLICE` seconds) and says whether it is finished; an unfinished job goes
  to the back of the line, so at most :data:`MAX_THREADS` threads serve any number of
  waiting primitives, taking turns. The price of taking turns is latency: with more
  waiting primitives than threads, a grant waits for its primitive's next turn.

A step may *pin* its thread (:meth:`WaiterPool.pin`): a kernel owned by the thread that
took it (an RLock) must be released, and waited on in a Condition, by that same thread.
A pinned thread leaves the pool's count, serves only calls sent to it through its
:class:`Pinned` handle until unpinned, then rejoins (or ends, if the pool is full).
Pinned threads are one per RLock held through polysync.aio (and per Barrier waiter),
not one per waiter.

Idle threads end after :data:`IDLE_SECONDS`; all are daemons.
"""

from __future__ import annotations

import collections
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Protocol, TypeVar

__all__ = ["IDLE_SECONDS", "MAX_THREADS", "SLICE", "Job", "Pinned", "WaiterPool", "pool"]

_T = TypeVar("_T")

#: The longest single kernel wait a job makes before it lets another job have the thread.
SLICE = 0.05
#: The most unpinned waiter threads (``POLYSYNC_AIO_THREADS`` overrides it).
MAX_THREADS = max(1, int(os.environ.get("POLYSYNC_AIO_THREADS", "16")))
#: An idle thread ends after this many seconds without work.
IDLE_SECONDS = 10.0


class Job(Protocol):
    """A wait cut into slices: each :meth:`step` waits at most :data:`SLICE` seconds."""

    def step(self) -> bool:
        """Run one slice in a waiter thread; ``True`` when the job is finished."""


class _Call:
    """A one-shot call whose outcome goes to a concurrent future."""

    __slots__ = ("fn", "future")

    def __init__(self, fn: Callable[[], object], future: Future[object]) -> None:
        self.fn = fn
        self.future = future

    def step(self) -> bool:
        if not self.future.set_running_or_notify_cancel():
            return True
        try:
            result = self.fn()
        except BaseException as exc:  # handed to whoever waits for it
            self.future.set_exception(exc)
        else:
            self.future.set_result(result)
        return True


class Pinned:
    """A waiter thread set aside for one holder: calls sent here run on that thread, in order."""

    __slots__ = ("_calls", "_ready", "thread_id")

    def __init__(self) -> None:
        self._calls: collections.deque[_Call | None] = collections.deque()
        self._ready = threading.Condition(threading.Lock())
        self.thread_id = threading.get_ident()

    def call(self, fn: Callable[[], _T]) -> Future[_T]:
        """Run *fn* on the pinned thread; its outcome arrives in the returned future."""
        future: Future[_T] = Future()
        with self._ready:
            self._calls.append(_Call(fn, future))  # type: ignore[arg-type]
            self._ready.notify()
        return future

    def unpin(self) -> None:
        """Give the thread back to the pool once the calls sent before this have run."""
        with self._ready:
            self._calls.append(None)
            self._ready.notify()

    def _serve(self) -> None:
        while True:
            with self._ready:
                while not self._calls:
                    self._ready.wait()
                call = self._calls.popleft()
            if call is None:
                return
            call.step()


class _PinThenRun:
    """Pin the thread, then (as the pinned thread's first call) run the long wait."""

    __slots__ = ("fn", "future", "pool")

    def __init__(self, pool: WaiterPool, fn: Callable[[Pinned], object], future: Future[object]):
        self.pool = pool
        self.fn = fn
        self.future = future

    def step(self) -> bool:
        pinned = self.pool.pin()
        fn = self.fn
        pinned._calls.append(_Call(lambda: fn(pinned), self.future))
        pinned._calls.append(None)
        return True


class WaiterPool:
    """The process's waiter threads (see the module docstring)."""

    def __init__(self, max_threads: int = MAX_THREADS) -> None:
        self.max_threads = max_threads
        self._lock = threading.Condition(threading.Lock())
        self._calls: collections.deque[_Call] = collections.deque()
        self._jobs: collections.deque[Job] = collections.deque()
        self._threads = 0  # unpinned threads alive
        self._idle = 0
        self._pinned = 0
        self._local = threading.local()
        self._pid = os.getpid()

    # -- what the async primitives use ---------------------------------------------

    def call(self, fn: Callable[[], _T]) -> Future[_T]:
        """Run *fn* once in a waiter thread, ahead of the jobs waiting their turn."""
        future: Future[_T] = Future()
        self._put(_Call(fn, future), urgent=True)  # type: ignore[arg-type]
        return future

    def call_in_turn(self, fn: Callable[[], _T]) -> Future[_T]:
        """Run *fn* (one slice of a wait) once, in line with the jobs, not ahead of them."""
        future: Future[_T] = Future()
        self._put(_Call(fn, future), urgent=False)  # type: ignore[arg-type]
        return future

    def submit(self, job: Job) -> None:
        """Run *job* step by step until it says it is finished."""
        self._put(job, urgent=False)

    def pin(self) -> Pinned:
        """Set the calling waiter thread aside (call from a step): it serves the handle only."""
        pinned = Pinned()
        self._local.pinned = pinned
        return pinned

    def run_pinned(self, fn: Callable[[Pinned], _T]) -> Future[_T]:
        """Run ``fn(pinned)`` on a thread pinned for it first (a long wait that cannot be sliced).

        The thread leaves the pool's count before *fn* starts, so long waits never take
        the threads the sliced ones share.
        """
        future: Future[_T] = Future()
        self._put(_PinThenRun(self, fn, future), urgent=True)  # type: ignore[arg-type]
        return future

    @property
    def threads(self) -> int:
        """Waiter threads alive now, pinned ones included."""
        with self._lock:
            return self._threads + self._pinned

    # -- the threads -------------------------------------------------------------------

    def _put(self, work: Job, *, urgent: bool) -> None:
        with self._lock:
            if os.getpid() != self._pid:  # a forked child has none of its parent's threads
                self._reset_after_fork()
            (self._calls if urgent else self._jobs).append(work)  # type: ignore[arg-type]
            if self._idle:
                self._lock.notify()
            if len(self._calls) + len(self._jobs) <= self._idle:
                return  # an idle thread takes it
            if self._threads >= self.max_threads:
                return  # a busy thread takes it when its current step ends
            self._threads += 1
        thread = threading.Thread(target=self._run, name="polysync-aio-waiter", daemon=True)
        thread.start()

    def _reset_after_fork(self) -> None:
        self._calls.clear()  # the parent's work, for the parent's loops
        self._jobs.clear()
        self._threads = self._idle = self._pinned = 0
        self._pid = os.getpid()

    def _take(self) -> Job | None:
        """The next work, or ``None`` after IDLE_SECONDS without any (the thread ends)."""
        with self._lock:
            while True:
                if self._calls:
                    return self._calls.popleft()
                if self._jobs:
                    return self._jobs.popleft()
                self._idle += 1
                woken = self._lock.wait(IDLE_SECONDS)
                self._idle -= 1
                if not woken and not self._calls and not self._jobs:
                    self._threads -= 1
                    return None

    def _run(self) -> None:
        local = self._local
        while True:
            work = self._take()
            if work is None:
                return
            local.pinned = None
            try:
                finished = work.step()
            except BaseException:  # a job must not kill its thread; jobs report their own
                finished = True
            pinned: Pinned | None = local.pinned
            if not finished:
                with self._lock:
                    self._jobs.append(work)
            if pinned is not None:
                local.pinned = None
                if not self._serve_pinned(pinned):
                    return

    def _serve_pinned(self, pinned: Pinned) -> bool:
        """Serve *pinned* until unpinned; ``False`` if the thread should then end."""
        with self._lock:
            self._threads -= 1
            self._pinned += 1
            replace = bool(self._calls or self._jobs) and self._threads < self.max_threads
            if replace:
                self._threads += 1
        if replace:
            threading.Thread(target=self._run, name="polysync-aio-waiter", daemon=True).start()
        pinned._serve()
        with self._lock:
            self._pinned -= 1
            if self._threads >= self.max_threads:
                return False
            self._threads += 1
        return True


_pool: WaiterPool | None = None
_pool_lock = threading.Lock()


def pool() -> WaiterPool:
    """The process's waiter pool, made on first use."""
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = WaiterPool()
    return _pool
