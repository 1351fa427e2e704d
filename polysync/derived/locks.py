"""The derived Lock, RLock, Semaphore and BoundedSemaphore kernels, over one block each."""

from __future__ import annotations

import functools
import threading
from typing import Any

from polysync.derived import liveness
from polysync.derived.header import HEADER, Block
from polysync.derived.owner import OwnerWatch
from polysync.errors import NotHeldError
from polysync.kernel import Capability, SemaphoreKernel


def _timed_fast_path(kernel: Any, sem: SemaphoreKernel) -> None:
    """Pass on the semaphore's optional raw timed acquire (see ``SemaphoreKernel``)."""
    kernel.acquire_within = getattr(sem, "acquire_within", None)
    kernel.acquire_failed = getattr(sem, "acquire_failed", None)


class DerivedLock:
    """A binary semaphore; releasing it while unlocked raises."""

    __slots__ = ("_block", "_sem", "acquire", "acquire_failed", "acquire_forever", "acquire_within")

    def __init__(self, block: Block) -> None:
        self._block = block
        self._sem = block.sems[0]
        self.acquire = self._sem.acquire
        self.acquire_forever = self._sem.acquire_forever
        _timed_fast_path(self, self._sem)

    def release(self) -> None:
        if self._sem.get_value() >= 1:
            raise NotHeldError("release of an unlocked lock")
        self._sem.release()

    def locked(self) -> bool:
        return self._sem.get_value() == 0

    def release_save(self) -> object:
        self.release()
        return None

    def acquire_restore(self, state: object) -> None:
        self._sem.acquire(True, None)

    def is_owned(self) -> bool:
        return self.locked()

    def close(self) -> None:
        self._block.close()


def _watches_owner(block: Block) -> bool:
    return Capability.OWNER_DEATH in block.backend.capabilities


class RecoverableLock(DerivedLock):
    """A Lock whose holder is recorded, so that a holder's death does not wedge it."""

    __slots__ = ("_watch",)

    def __init__(self, block: Block) -> None:
        assert block.cells is not None
        super().__init__(block)
        self._watch = OwnerWatch(block.sems[0], block.sems[1], block.cells, HEADER)
        self.acquire = self._watch.acquire
        self.acquire_forever = functools.partial(self._watch.acquire, True, None)
        self.acquire_within = None  # every acquire must record the holder

    @property
    def owner_died(self) -> bool:
        return self._watch.owner_died

    def release(self) -> None:
        if self._sem.get_value() >= 1:
            raise NotHeldError("release of an unlocked lock")
        self._watch.clear_and_post()

    def acquire_restore(self, state: object) -> None:
        self._watch.acquire(True, None)


_OWNER, _OWNER_TID, _COUNT = HEADER, HEADER + 1, HEADER + 2


class DerivedRLock:
    """A binary semaphore plus (owner process identity, owner thread, depth) in cells.

    On a backend declaring ``OWNER_DEATH`` a blocked acquirer takes the lock over from
    an owner process that died (see :class:`OwnerWatch`).
    """

    __slots__ = ("_block", "_cells", "_sem", "_watch")

    def __init__(self, block: Block) -> None:
        assert block.cells is not None
        self._block = block
        self._sem = block.sems[0]
        self._cells = block.cells
        self._watch = (
            OwnerWatch(block.sems[0], block.sems[1], block.cells, _OWNER)
            if _watches_owner(block)
            else None
        )

    @property
    def owner_died(self) -> bool:
        return self._watch is not None and self._watch.owner_died

    def _mine(self) -> bool:
        c = self._cells
        return c[_OWNER_TID] == threading.get_ident() and c[_OWNER] == liveness.identity()

    def acquire(self, blocking: bool, timeout: float | None) -> bool:
        c = self._cells
        if self._mine():
            c[_COUNT] += 1
            return True
        if not self._take(blocking, timeout):
            return False
        c[_OWNER_TID] = threading.get_ident()
        c[_COUNT] = 1
        return True

    def _take(self, blocking: bool, timeout: float | None) -> bool:
        if self._watch is not None:
            return self._watch.acquire(blocking, timeout)
        if not self._sem.acquire(blocking, timeout):
            return False
        self._cells[_OWNER] = liveness.identity()
        return True

    def acquire_forever(self) -> object:
        return self.acquire(True, None)

    def _drop(self) -> None:
        c = self._cells
        c[_COUNT] = 0
        c[_OWNER_TID] = 0
        if self._watch is not None:
            self._watch.clear_and_post()
        else:
            c[_OWNER] = 0
            self._sem.release()

    def release(self) -> None:
        if not self._mine():
            raise NotHeldError("cannot release an RLock that this thread does not own")
        c = self._cells
        depth = c[_COUNT] - 1
        if depth:
            c[_COUNT] = depth
        else:
            self._drop()

    def locked(self) -> bool:
        return self._sem.get_value() == 0

    def release_save(self) -> object:
        depth = self._cells[_COUNT]
        self._drop()
        return depth

    def acquire_restore(self, state: object) -> None:
        assert isinstance(state, int)
        self._take(True, None)
        self._cells[_OWNER_TID] = threading.get_ident()
        self._cells[_COUNT] = state

    def is_owned(self) -> bool:
        return self._mine()

    def recursion_level(self) -> int:
        return self._cells[_COUNT] if self._mine() else 0

    def close(self) -> None:
        self._block.close()


class DerivedSemaphore:
    __slots__ = (
        "_block",
        "_max",
        "_sem",
        "acquire",
        "acquire_failed",
        "acquire_forever",
        "acquire_within",
        "release",
    )

    def __init__(self, block: Block, maxvalue: int | None) -> None:
        self._block = block
        self._sem = block.sems[0]
        self._max = maxvalue
        self.acquire = self._sem.acquire
        self.acquire_forever = self._sem.acquire_forever
        _timed_fast_path(self, self._sem)
        # Unbounded: nothing to check, so release goes straight to the kernel.
        self.release = self._sem.release if maxvalue is None else self._release_bounded

    def _release_bounded(self, n: int) -> None:
        # Like multiprocessing, the bound is checked against a snapshot of the value.
        if self._max is not None and self._sem.get_value() + n > self._max:
            raise NotHeldError(
                f"BoundedSemaphore released too many times (its bound is {self._max})"
            )
        self._sem.release(n)

    def get_value(self) -> int:
        return self._sem.get_value()

    def close(self) -> None:
        self._block.close()
