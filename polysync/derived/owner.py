"""Owner death: waiting for a lock's semaphore while watching that its recorded holder lives."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

from polysync import errors
from polysync.derived import liveness
from polysync.kernel import Cells, SemaphoreKernel, TimedAcquire

#: Seconds between checks, by a blocked acquirer, that the holder is still alive.
RECOVERY_INTERVAL = 0.25


def nonblocking(sem: SemaphoreKernel) -> Callable[[], bool]:
    """A call that takes *sem* if it can without waiting: its raw timed wait where it has one."""
    if isinstance(sem, TimedAcquire):
        return functools.partial(sem.acquire_within, 0.0)
    return functools.partial(sem.acquire, False, None)


class OwnerWatch:
    """Waits for a lock's semaphore, and takes the lock over from a holder that died.

    The holder's identity (:mod:`polysync.derived.liveness`) sits in one cell: written right
    after the semaphore is taken, cleared right before it is posted. So a non-zero
    identity of a dead process, with the semaphore at zero, can only mean that process
    died holding the lock. A blocked acquirer checks that every ``RECOVERY_INTERVAL``
    and, under a second semaphore used as a mutex, writes its own identity over the dead
    one: the lock changes hands without ever being free, so two waiters cannot both get it.
    """

    __slots__ = ("_cell", "_cells", "_mutex", "_sem", "_try", "owner_died")

    def __init__(self, sem: SemaphoreKernel, mutex: SemaphoreKernel, cells: Cells, cell: int):
        self._sem = sem
        self._mutex = mutex
        self._cells = cells
        self._cell = cell
        self.owner_died = False
        # The uncontended acquire tries first, by the semaphore's raw call where it has one.
        self._try = nonblocking(sem)

    def acquire(self, blocking: bool, timeout: float | None) -> bool:
        """Take the semaphore (or the dead holder's place) and record this process as holder."""
        if self._try() or (blocking and timeout != 0 and self._wait(timeout)):
            self._cells[self._cell] = liveness.identity()
            return True
        return False

    def _wait(self, timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = RECOVERY_INTERVAL
            if deadline is not None:
                step = min(step, max(0.0, deadline - time.monotonic()))
            if self._sem.acquire(True, step):
                return True
            if self._take_over():
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False

    def _take_over(self) -> bool:
        holder = self._cells[self._cell]
        if not holder or liveness.is_alive(holder):
            return False
        if not self._mutex.acquire(True, 1.0):
            return False
        try:
            if self._cells[self._cell] != holder or self._sem.get_value() != 0:
                return False
            self._cells[self._cell] = liveness.identity()
        finally:
            self._mutex.release()
        self.owner_died = True
        errors.warn_owner_died(
            f"process {liveness.pid_of(holder)} died holding this lock; this handle took "
            "it over: check the state it protects",
            self.clear_and_post,
        )
        return True

    def clear_and_post(self) -> None:
        """Give the lock up: clear the holder first, so a recorded holder always holds it."""
        self._cells[self._cell] = 0
        self.owner_died = False
        self._sem.release()
