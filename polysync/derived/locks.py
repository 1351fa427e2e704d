"""The derived Lock, RLock, Semaphore and BoundedSemaphore kernels, over one block each.

Each passes on its semaphore's optional fast paths (:class:`~polysync.kernel.ForeverAcquire`,
:class:`~polysync.kernel.TimedAcquire`) where the semaphore has them and nothing stands
between (a Lock that records its holder must run its own code on every acquire).
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Callable
from threading import get_ident
from typing import Generic, Protocol, TypeVar

from polysync import errors
from polysync.derived import liveness
from polysync.derived.header import HEADER, Block
from polysync.derived.owner import OwnerWatch
from polysync.kernel import (
    Capability,
    ForeverAcquire,
    Holder,
    KernelState,
    SemaphoreKernel,
    TimedAcquire,
)

__all__ = [
    "ConditionHooksOfALock",
    "DepthOverLock",
    "DerivedBoundedSemaphore",
    "DerivedLock",
    "DerivedRLock",
    "DerivedSemaphore",
    "RecoverableLock",
    "local_holder",
]


def local_holder(identity: int, thread: int | None = None) -> Holder | None:
    """The holder recorded as *identity* (a :mod:`~polysync.derived.liveness` identity)."""
    if not identity:
        return None
    return Holder(pid=liveness.pid_of(identity), host=socket.gethostname(), thread=thread or None)


class _Fast:
    """The semaphore's own fast paths, bound on the kernel when the semaphore has them.

    They live in the instance's ``__dict__``, not in slots: a slot would make the class
    answer to the optional Protocol even on an instance that never set it.
    """

    __slots__ = ()  # the subclass has the __dict__: two bases with slots cannot combine
    acquire_forever: Callable[[], object]
    acquire_within: Callable[[float], bool]

    def _take_fast_paths(self, sem: SemaphoreKernel) -> None:
        if isinstance(sem, ForeverAcquire):
            self.acquire_forever = sem.acquire_forever
        if isinstance(sem, TimedAcquire):
            self.acquire_within = sem.acquire_within


class _PlainLock(Protocol):
    def acquire(self, blocking: bool, timeout: float | None) -> bool: ...
    def release(self) -> None: ...
    def locked(self) -> bool: ...


class ConditionHooksOfALock:
    """What a non-recursive Lock kernel answers to a Condition, from its own methods.

    A Condition over a plain Lock releases it whole before waiting and takes it again
    after (there is no depth to save), and "owned" can only mean "locked" for a Lock
    that any thread or process may release. Native Lock kernels (windows, redis) mix
    this in.
    """

    __slots__ = ()

    def release_save(self: _PlainLock) -> object:
        self.release()
        return None

    def acquire_restore(self: _PlainLock, state: object) -> None:
        self.acquire(True, None)

    def is_owned(self: _PlainLock) -> bool:
        return self.locked()


class _StoreLock(_PlainLock, Protocol):
    """A remote store's Lock kernel, as :class:`DepthOverLock` passes it through."""

    on_lost: Callable[[], object] | None

    @property
    def fencing_token(self) -> int | None: ...
    @property
    def lost(self) -> bool: ...
    @property
    def owner_died(self) -> bool: ...
    def statistics(self) -> KernelState: ...
    def close(self) -> None: ...
    def discard(self) -> None: ...


_L = TypeVar("_L", bound=_StoreLock)


class DepthOverLock(Generic[_L]):
    """An RLock kernel over a store's Lock kernel: the depth per (process, thread) kept in
    this handle, the store's lock taken by the outermost acquire and released by the
    outermost release. The redis and postgres RLocks are this over their Lock.
    """

    def __init__(self, lock: _L) -> None:
        self._lock = lock
        self._depth: dict[tuple[int, int], int] = {}

    @property
    def lock_kernel(self) -> _L:
        """The Lock kernel under the depth (:class:`polysync.kernel.LockBacked`)."""
        return self._lock

    @property
    def fencing_token(self) -> int | None:
        return self._lock.fencing_token

    @property
    def lost(self) -> bool:
        return self._lock.lost

    @property
    def owner_died(self) -> bool:
        return self._lock.owner_died

    @property
    def on_lost(self) -> Callable[[], object] | None:
        return self._lock.on_lost

    @on_lost.setter
    def on_lost(self, callback: Callable[[], object] | None) -> None:
        self._lock.on_lost = callback

    def statistics(self) -> KernelState:
        return self._lock.statistics()

    @staticmethod
    def _me() -> tuple[int, int]:
        return os.getpid(), get_ident()

    def acquire(self, blocking: bool, timeout: float | None) -> bool:
        me = self._me()
        depth = self._depth.get(me, 0)
        if depth:
            self._depth[me] = depth + 1
            return True
        if not self._lock.acquire(blocking, timeout):
            return False
        self._depth[me] = 1
        return True

    def release(self) -> None:
        me = self._me()
        depth = self._depth.get(me, 0)
        if not depth:
            raise errors.rlock_not_owned()
        if depth > 1:
            self._depth[me] = depth - 1
            return
        del self._depth[me]
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()

    def release_save(self) -> object:
        depth = self._depth.pop(self._me(), 0)
        self._lock.release()
        return depth

    def acquire_restore(self, state: object) -> None:
        assert isinstance(state, int)
        self._lock.acquire(True, None)
        self._depth[self._me()] = state

    def is_owned(self) -> bool:
        return self._depth.get(self._me(), 0) > 0

    def recursion_level(self) -> int:
        return self._depth.get(self._me(), 0)

    def close(self) -> None:
        self._depth.clear()
        self._lock.close()

    def discard(self) -> None:
        self._lock.discard()


class _BinaryLock:
    """A binary semaphore used as a Lock: what every derived Lock shares."""

    __slots__ = ("_block", "_sem")

    def __init__(self, block: Block) -> None:
        self._block = block
        self._sem = block.sems[0]

    def release(self) -> None:
        if self._sem.get_value() >= 1:
            raise errors.lock_not_held()
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

    def statistics(self) -> KernelState:
        return KernelState(locked=self.locked())

    def close(self) -> None:
        self._block.close()


class DerivedLock(_Fast, _BinaryLock):
    """A binary semaphore; releasing it while unlocked raises. Its holder is not recorded."""

    __slots__ = ("__dict__", "acquire")

    def __init__(self, block: Block) -> None:
        super().__init__(block)
        self.acquire = self._sem.acquire
        self._take_fast_paths(self._sem)


def _watches_owner(block: Block) -> bool:
    return Capability.OWNER_DEATH in block.backend.capabilities


class RecoverableLock(_BinaryLock):
    """A Lock whose holder is recorded, so that a holder's death does not wedge it."""

    __slots__ = ("_watch", "acquire")

    def __init__(self, block: Block) -> None:
        assert block.cells is not None
        super().__init__(block)
        self._watch = OwnerWatch(block.sems[0], block.sems[1], block.cells, HEADER)
        self.acquire = self._watch.acquire  # every acquire records the holder

    @property
    def owner_died(self) -> bool:
        return self._watch.owner_died

    def release(self) -> None:
        if self._sem.get_value() >= 1:
            raise errors.lock_not_held()
        self._watch.clear_and_post()

    def acquire_restore(self, state: object) -> None:
        self._watch.acquire(True, None)

    def statistics(self) -> KernelState:
        cells = self._block.cells
        assert cells is not None
        return KernelState(locked=self.locked(), holder=local_holder(cells[HEADER]))


_OWNER, _OWNER_TID, _COUNT = HEADER, HEADER + 1, HEADER + 2


class DerivedRLock:
    """A binary semaphore plus (owner process identity, owner thread, depth) in cells.

    On a backend declaring ``OWNER_DEATH`` a blocked acquirer takes the lock over from
    an owner process that died (see :class:`~polysync.derived.owner.OwnerWatch`). The
    uncontended acquire and release are written out in one frame each: they are the hot
    path of every RLock and every Condition.
    """

    __slots__ = ("_block", "_cells", "_post", "_sem", "_try", "_watch")

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
        sem = self._sem
        self._try: Callable[[], bool] = (
            functools.partial(sem.acquire_within, 0.0)
            if isinstance(sem, TimedAcquire)
            else functools.partial(sem.acquire, False, None)
        )
        #: Posts the semaphore once (a backend may bind a cheaper call here).
        self._post: Callable[[], object] = sem.release

    @property
    def owner_died(self) -> bool:
        return self._watch is not None and self._watch.owner_died

    def acquire(self, blocking: bool, timeout: float | None) -> bool:
        c = self._cells
        tid = get_ident()
        me = liveness.own
        if c[_OWNER_TID] == tid and c[_OWNER] == me:
            c[_COUNT] += 1
            return True
        if not self._try() and not (blocking and timeout != 0 and self._wait(timeout)):
            return False
        # Recorded right after the semaphore is taken: a recorded owner holds it.
        c[_OWNER] = me
        c[_OWNER_TID] = tid
        c[_COUNT] = 1
        return True

    def _wait(self, timeout: float | None) -> bool:
        if self._watch is not None:
            return self._watch.acquire(True, timeout)
        return self._sem.acquire(True, timeout)

    def _drop(self) -> None:
        c = self._cells
        c[_COUNT] = 0
        c[_OWNER_TID] = 0
        c[_OWNER] = 0  # cleared right before the post: a recorded owner holds it
        if self._watch is not None:
            self._watch.owner_died = False
        self._post()

    def release(self) -> None:
        c = self._cells
        if c[_OWNER_TID] != get_ident() or c[_OWNER] != liveness.own:
            raise errors.rlock_not_owned()
        depth = c[_COUNT] - 1
        if depth:
            c[_COUNT] = depth
            return
        c[_COUNT] = 0  # _drop(), without its frame
        c[_OWNER_TID] = 0
        c[_OWNER] = 0
        if self._watch is not None:
            self._watch.owner_died = False
        self._post()

    def locked(self) -> bool:
        return self._sem.get_value() == 0

    def release_save(self) -> object:
        depth = self._cells[_COUNT]
        self._drop()
        return depth

    def acquire_restore(self, state: object) -> None:
        assert isinstance(state, int)
        self.acquire(True, None)
        self._cells[_COUNT] = state

    def is_owned(self) -> bool:
        c = self._cells
        return c[_OWNER_TID] == get_ident() and c[_OWNER] == liveness.own

    def recursion_level(self) -> int:
        return self._cells[_COUNT] if self.is_owned() else 0

    def statistics(self) -> KernelState:
        c = self._cells
        return KernelState(locked=self.locked(), holder=local_holder(c[_OWNER], c[_OWNER_TID]))

    def close(self) -> None:
        self._block.close()


class _Counting(_Fast):
    """What both derived semaphores share: the count, statistics, closing."""

    __slots__ = ()
    _block: Block
    _sem: SemaphoreKernel

    def get_value(self) -> int:
        return self._sem.get_value()

    def statistics(self) -> KernelState:
        return KernelState(value=self._sem.get_value())

    def close(self) -> None:
        self._block.close()


class DerivedSemaphore(_Counting):
    """A semaphore: its release goes straight to the semaphore kernel (nothing to check)."""

    __slots__ = ("__dict__", "_block", "_sem", "acquire", "release")

    def __init__(self, block: Block) -> None:
        self._block = block
        self._sem = block.sems[0]
        self.acquire = self._sem.acquire
        self.release = self._sem.release
        self._take_fast_paths(self._sem)


class DerivedBoundedSemaphore(_Counting):
    """A semaphore whose release checks its bound (kept in the header)."""

    __slots__ = ("__dict__", "_block", "_max", "_sem", "acquire")

    def __init__(self, block: Block, maxvalue: int) -> None:
        self._block = block
        self._sem = block.sems[0]
        self._max = maxvalue
        self.acquire = self._sem.acquire
        self._take_fast_paths(self._sem)

    def release(self, n: int = 1) -> None:
        # Like multiprocessing, the bound is checked against a snapshot of the value.
        if self._sem.get_value() + n > self._max:
            raise errors.over_released(self._max)
        self._sem.release(n)
