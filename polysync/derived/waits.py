"""The derived Event, Condition and Barrier kernels: state in cells, waits in a parking lot."""

from __future__ import annotations

import functools
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from polysync import errors
from polysync.derived.header import HEADER, Block
from polysync.derived.parking import LOT_CAPACITY, ParkingLot, WaitStopped, park_and_wait
from polysync.errors import BrokenBarrierError
from polysync.kernel import ForeverAcquire, KernelState, SemaphoreKernel

if TYPE_CHECKING:
    from polysync.kernel import LockKernel


class Mutex(Protocol):
    """A primitive's short internal lock, as its kernel uses it.

    The floor's is a semaphore (a holder that dies inside a call wedges it). A backend
    may pass one that is taken over from a dead holder (posix: a word lock); it calls
    ``on_takeover`` (set by the kernel) while holding the mutex, so the kernel can mend
    what the dead holder left half-done, and then tells the user.
    """

    on_takeover: Callable[[], None] | None

    def __enter__(self) -> None: ...

    def __exit__(self, *exc: object) -> None: ...

    def release_save(self) -> object: ...

    def acquire_restore(self, state: object) -> None: ...


def _weakly(method: Callable[[], None]) -> Callable[[], None]:
    """*method*, called through a weak reference: a kernel and its mutex form no cycle,
    which would keep an anonymous object alive until the cyclic GC ran."""
    ref = weakref.WeakMethod(method)

    def call() -> None:
        bound = ref()
        if bound is not None:
            bound()

    return call


class SemaphoreMutex:
    """The floor's mutex: a semaphore of one."""

    __slots__ = ("_acquire", "_sem", "on_takeover")

    def __init__(self, sem: SemaphoreKernel) -> None:
        self._sem = sem
        self.on_takeover: Callable[[], None] | None = None
        self._acquire: Callable[[], object] = (
            sem.acquire_forever
            if isinstance(sem, ForeverAcquire)
            else functools.partial(sem.acquire, True, None)
        )

    def __enter__(self) -> None:
        self._acquire()

    def __exit__(self, *exc: object) -> None:
        self._sem.release()

    def release_save(self) -> object:
        self._sem.release()
        return None

    def acquire_restore(self, state: object) -> None:
        self.__enter__()


_FLAG = HEADER


class DerivedEvent:
    """A flag and a parking lot, guarded by an internal mutex."""

    __slots__ = ("__weakref__", "_block", "_cells", "_lot", "_mutex")

    def __init__(self, block: Block, mutex: Mutex | None = None) -> None:
        assert block.cells is not None
        self._block = block
        self._cells = block.cells
        self._mutex = mutex if mutex is not None else SemaphoreMutex(block.sems[0])
        self._mutex.on_takeover = _weakly(self._mend)
        self._lot = ParkingLot(block.backend, block.cells, HEADER + 1)

    def _mend(self) -> None:
        # A setter died before waking everyone: wake them now.
        if self._cells[_FLAG]:
            self._lot.unpark(LOT_CAPACITY)

    def set(self) -> None:
        with self._mutex:
            self._cells[_FLAG] = 1
            self._lot.unpark(LOT_CAPACITY)

    def clear(self) -> None:
        with self._mutex:
            self._cells[_FLAG] = 0

    def is_set(self) -> bool:
        return self._cells[_FLAG] == 1

    def statistics(self) -> KernelState:
        return KernelState(is_set=self.is_set(), waiting=self._lot.queued())

    def dead_waiters(self) -> int:
        """How many parked waiters' processes died (a snapshot: no mutex taken)."""
        return self._lot.count_dead()

    def prune(self) -> int:
        """Take the parked waiters whose process died off the queue, under the mutex; how many.

        They would be passed over at the next ``set()`` anyway; ``polysync gc`` calls this
        so that ``waiting`` counts the living.
        """
        with self._mutex:
            return len(self._lot.prune())

    def wait(self, timeout: float | None) -> bool:
        if self._cells[_FLAG]:
            return True
        if timeout == 0:
            return False
        with self._mutex:
            if self._cells[_FLAG]:
                return True
            return park_and_wait(
                self._lot, self._mutex.release_save, self._mutex.acquire_restore, timeout
            ) or bool(self._cells[_FLAG])

    def close(self) -> None:
        self._block.close()


class DerivedCondition:
    """A parking lot guarded by the Condition's own lock (held by every caller)."""

    __slots__ = ("_block", "_lot")

    def __init__(self, block: Block) -> None:
        assert block.cells is not None
        self._block = block
        self._lot = ParkingLot(block.backend, block.cells, HEADER)

    def wait(self, lock: LockKernel, timeout: float | None) -> bool:
        return park_and_wait(self._lot, lock.release_save, lock.acquire_restore, timeout)

    def notify(self, n: int) -> None:
        self._lot.unpark(n)

    def notify_all(self) -> None:
        self._lot.unpark(LOT_CAPACITY)

    def statistics(self) -> KernelState:
        return KernelState(waiting=self._lot.queued())

    def close(self) -> None:
        self._block.close()


_STATE, _ARRIVED, _GEN, _HOLES, _OUTCOMES = HEADER, HEADER + 1, HEADER + 2, HEADER + 3, HEADER + 4
#: Outcomes of the latest generations, by generation modulo this.
_RING = 64
#: Then, by index, the identity of the waiting party that holds it (0: free).
_SLOTS = _OUTCOMES + _RING
#: The Barrier's state cells before its parking lot.
BARRIER_STATE_CELLS = 4 + _RING + LOT_CAPACITY
_FILLING, _BROKEN = 0, -2
_PENDING, _PASSED, _FAILED = 0, 1, 2


class DerivedBarrier:
    """threading.Barrier's semantics over cells, by generations, with a parking lot.

    Each cycle is a generation. The last party to arrive ends it (outcome passed); a
    timeout, an abort, a failed action or a reset ends it too (outcome failed). Waiters
    sleep until the generation number moves on, then read their generation's outcome.
    Nothing waits for the parties of an ended generation to leave.

    A party killed while it waits no longer counts: the arrival that would pass the
    barrier first takes the waiting parties whose process died off the parking lot
    (``n_waiting`` leaves them out too), tells the user with an
    :class:`~polysync.OwnerDiedWarning`, and waits if the barrier is no longer full.
    Each waiting party holds its index in a slot, so an index freed by a party that
    died (or left on Ctrl-C) is given again: the parties that pass hold
    ``0 .. parties - 1``, each once.
    """

    __slots__ = ("__weakref__", "_block", "_cells", "_lot", "_mutex", "_slots", "parties")

    def __init__(self, block: Block, parties: int, mutex: Mutex | None = None) -> None:
        assert block.cells is not None
        self._block = block
        self._cells = block.cells
        self._mutex = mutex if mutex is not None else SemaphoreMutex(block.sems[0])
        self._mutex.on_takeover = _weakly(self._mend)
        self._lot = ParkingLot(block.backend, block.cells, HEADER + BARRIER_STATE_CELLS)
        self.parties = parties
        # Indices a waiting party may hold (the last party never waits).
        self._slots = range(_SLOTS, _SLOTS + min(parties - 1, LOT_CAPACITY))

    def _end(self, outcome: int) -> None:
        """End the current generation with *outcome* and wake its waiters."""
        c = self._cells
        gen = c[_GEN]
        c[_OUTCOMES + (gen + 1) % _RING] = _PENDING
        c[_OUTCOMES + gen % _RING] = outcome
        c[_ARRIVED] = 0
        c[_HOLES] = 0
        for slot in self._slots:
            c[slot] = 0
        c[_GEN] = gen + 1
        self._lot.unpark(LOT_CAPACITY)

    def _break(self) -> None:
        self._cells[_STATE] = _BROKEN
        self._end(_FAILED)

    def _mend(self) -> None:
        # A party died inside a call, in the middle of an update: break the barrier, as
        # threading does when a party fails; reset() makes it usable again.
        self._break()

    def _index(self) -> int:
        """The smallest index no waiting party holds (call with the mutex held)."""
        c = self._cells
        arrived = c[_ARRIVED]
        if c[_HOLES] == 0:
            return arrived
        for index, slot in enumerate(self._slots):
            if index >= arrived:
                break
            if c[slot] == 0:
                c[_HOLES] -= 1
                return index
        c[_HOLES] = 0  # the indices left were the highest: none below ARRIVED is free
        return arrived

    def _free(self, index: int) -> None:
        """A waiting party that held *index* no longer counts (call with the mutex held)."""
        c = self._cells
        if index < len(self._slots):
            c[_SLOTS + index] = 0
        c[_ARRIVED] -= 1
        c[_HOLES] += 1

    def _prune(self) -> None:
        """Forget the waiting parties whose process died, and say so (mutex held)."""
        dead = self._lot.prune()
        if not dead:
            return
        c = self._cells
        gone = set(dead)
        for index, slot in enumerate(self._slots):
            if c[slot] in gone:
                self._free(index)
        pids = ", ".join(str(ident >> 24) for ident in dead)
        errors.warn_owner_died(
            f"process {pids} died waiting at this barrier: it no longer counts, and the "
            "barrier waits for another party in its place; check what it was to do",
            lambda: None,
        )

    def wait(self, timeout: float | None, action: Callable[[], object] | None) -> int:
        return self._wait(timeout, action, None)

    def wait_stoppable(
        self,
        timeout: float | None,
        action: Callable[[], object] | None,
        stopped: Callable[[], bool],
    ) -> int | None:
        """As :meth:`wait`; ``None`` once ``stopped()`` (the party left; not broken)."""
        try:
            return self._wait(timeout, action, stopped)
        except WaitStopped:
            return None

    def _wait(
        self,
        timeout: float | None,
        action: Callable[[], object] | None,
        stopped: Callable[[], bool] | None,
    ) -> int:
        c = self._cells
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._mutex:
            if c[_STATE] == _BROKEN:
                raise BrokenBarrierError("the barrier is broken")
            gen = c[_GEN]
            if c[_ARRIVED] + 1 >= self.parties or self._lot.queued() >= LOT_CAPACITY:
                self._prune()  # would pass (or find no room): not with parties that died
            index = self._index()
            if c[_ARRIVED] + 1 >= self.parties:
                try:
                    if action is not None:
                        action()
                except BaseException:
                    self._break()
                    raise
                self._end(_PASSED)
                return index
            c[_ARRIVED] += 1
            if index < len(self._slots):
                c[_SLOTS + index] = self._lot.waiter_ident()
            while c[_GEN] == gen:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    self._break()
                    raise BrokenBarrierError("the barrier timed out and is now broken")
                try:
                    park_and_wait(
                        self._lot,
                        self._mutex.release_save,
                        self._mutex.acquire_restore,
                        remaining,
                        stopped,
                    )
                except BaseException:
                    # Interrupted (Ctrl-C): this party leaves and no longer counts; the
                    # barrier is not broken, as an interrupted threading wait leaves it.
                    if c[_GEN] == gen and c[_ARRIVED] > 0:
                        self._free(index)
                    raise
            if c[_OUTCOMES + gen % _RING] != _PASSED:
                raise BrokenBarrierError("the barrier was aborted or reset")
            return index

    def reset(self) -> None:
        c = self._cells
        with self._mutex:
            broken = c[_STATE] == _BROKEN
            c[_STATE] = _FILLING
            if c[_ARRIVED] > 0 or broken:
                self._end(_FAILED)

    def abort(self) -> None:
        with self._mutex:
            self._break()

    def n_waiting(self) -> int:
        c = self._cells
        if c[_STATE] != _FILLING:
            return 0
        arrived = c[_ARRIVED]
        if arrived:  # parties that died waiting are not waiting (a snapshot, no mutex:
            arrived -= self._lot.count_dead()  # an action may read it)
        return max(0, arrived) if c[_STATE] == _FILLING else 0

    def broken(self) -> bool:
        return self._cells[_STATE] == _BROKEN

    def statistics(self) -> KernelState:
        return KernelState(broken=self.broken(), waiting=self.n_waiting())

    def close(self) -> None:
        self._block.close()
