"""The derived Event, Condition and Barrier kernels: state in cells, waits in a parking lot."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from polysync.derived.header import HEADER, Block
from polysync.derived.parking import LOT_CAPACITY, ParkingLot, park_and_wait
from polysync.errors import BrokenBarrierError
from polysync.kernel import ForeverAcquire, KernelState, SemaphoreKernel

if TYPE_CHECKING:
    from polysync.kernel import LockKernel


class _Mutex:
    """A semaphore used as a short internal lock."""

    __slots__ = ("_acquire", "_sem")

    def __init__(self, sem: SemaphoreKernel) -> None:
        self._sem = sem
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

    __slots__ = ("_block", "_cells", "_lot", "_mutex")

    def __init__(self, block: Block) -> None:
        assert block.cells is not None
        self._block = block
        self._cells = block.cells
        self._mutex = _Mutex(block.sems[0])
        self._lot = ParkingLot(block.backend, block.cells, HEADER + 1)

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


_STATE, _ARRIVED = HEADER, HEADER + 1
_FILLING, _DRAINING, _RESETTING, _BROKEN = 0, 1, -1, -2


class DerivedBarrier:
    """threading.Barrier's state machine over cells, with a parking lot for the waits."""

    __slots__ = ("_block", "_cells", "_lot", "_mutex", "parties")

    def __init__(self, block: Block, parties: int) -> None:
        assert block.cells is not None
        self._block = block
        self._cells = block.cells
        self._mutex = _Mutex(block.sems[0])
        self._lot = ParkingLot(block.backend, block.cells, HEADER + 2)
        self.parties = parties

    def _wait_until(self, ready: Callable[[], bool], deadline: float | None) -> bool:
        while not ready():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            park_and_wait(
                self._lot, self._mutex.release_save, self._mutex.acquire_restore, remaining
            )
        return True

    def _notify_all(self) -> None:
        self._lot.unpark(LOT_CAPACITY)

    def wait(self, timeout: float | None, action: Callable[[], object] | None) -> int:
        c = self._cells
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._mutex:
            # Wait while the previous cycle drains or resets.
            self._wait_until(lambda: c[_STATE] not in (_DRAINING, _RESETTING), None)
            if c[_STATE] < 0:
                raise BrokenBarrierError("the barrier is broken")
            index = c[_ARRIVED]
            c[_ARRIVED] = index + 1
            try:
                if index + 1 == self.parties:
                    try:
                        if action is not None:
                            action()
                        c[_STATE] = _DRAINING
                        self._notify_all()
                    except BaseException:
                        self._break()
                        raise
                else:
                    if not self._wait_until(lambda: c[_STATE] != _FILLING, deadline):
                        self._break()
                        raise BrokenBarrierError("the barrier timed out and is now broken")
                    if c[_STATE] < 0:
                        raise BrokenBarrierError("the barrier was aborted or reset")
                return index
            finally:
                c[_ARRIVED] -= 1
                if c[_ARRIVED] == 0 and c[_STATE] in (_DRAINING, _RESETTING):
                    c[_STATE] = _FILLING
                    self._notify_all()

    def _break(self) -> None:
        self._cells[_STATE] = _BROKEN
        self._notify_all()

    def reset(self) -> None:
        c = self._cells
        with self._mutex:
            if c[_ARRIVED] > 0:
                if c[_STATE] in (_FILLING, _BROKEN):
                    c[_STATE] = _RESETTING
            else:
                c[_STATE] = _FILLING
            self._notify_all()

    def abort(self) -> None:
        with self._mutex:
            self._break()

    def n_waiting(self) -> int:
        c = self._cells
        return c[_ARRIVED] if c[_STATE] == _FILLING else 0

    def broken(self) -> bool:
        return self._cells[_STATE] == _BROKEN

    def statistics(self) -> KernelState:
        return KernelState(broken=self.broken(), waiting=self.n_waiting())

    def close(self) -> None:
        self._block.close()
