"""Every primitive derived from a backend's counting semaphores and shared cells.

Each primitive is a *block*: one cell array (a header, then the primitive's state) and
up to two semaphores, all named after the primitive. The header makes creation race-free
(the creator writes ``MAGIC`` last; openers wait for it) and lets an opener detect a name
that belongs to another kind.

Waiting for a notification (Event, Condition, Barrier) goes through a :class:`ParkingLot`:
a FIFO of waiters kept in the cells, each waiter parked on its own per-thread semaphore.
A notification posts exactly the waiters it takes off the queue, so ``notify(n)`` wakes
at most *n*, no waiter can consume another's wake-up, and a timed-out waiter knows for
certain whether it was notified. This is the futex/ParkingLot shape (trio, Linux), built
from nothing but semaphores.
"""

from __future__ import annotations

import functools
import os
import secrets
import threading
import time
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from polysync import _liveness
from polysync.errors import (
    BackendUnavailableError,
    BrokenBarrierError,
    KindMismatchError,
    NotFoundError,
    NotHeldError,
    OwnerDiedWarning,
)
from polysync.kernel import Capability, Cells, Kind, SemaphoreKernel

if TYPE_CHECKING:
    from polysync.kernel import BaseBackend, LockKernel

MAGIC = 0x70_6F_6C_79_73_79_6E_63  # "polysync"
HEADER = 4  # magic, kind code, parameter, reserved
_OPEN_WAIT = 5.0  # seconds an opener waits for a concurrent creator to finish
MAX_SEMS = 2
#: Waiters one primitive can queue at once.
LOT_CAPACITY = 512
_LOT_CELLS = 1 + 2 * LOT_CAPACITY  # count, then (identity, nonce) pairs

_pid = os.getpid()


def _after_fork() -> None:
    global _pid
    _pid = os.getpid()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_after_fork)


def current_pid() -> int:
    """``os.getpid()`` without a system call on the hot path."""
    return _pid


@dataclass
class Block:
    """The objects making up one primitive."""

    backend: BaseBackend
    sems: list[SemaphoreKernel]
    cells: Cells | None
    closed: bool = field(default=False)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for sem in self.sems:
            sem.close()
        if self.cells is not None:
            self.backend.close_cells(self.cells)


def _has_cells(backend: BaseBackend) -> bool:
    return type(backend).cells_kernel is not _base_cells_kernel()


def _base_cells_kernel() -> object:
    from polysync.kernel import BaseBackend

    return BaseBackend.cells_kernel


def open_block(
    backend: BaseBackend,
    name: str,
    kind: Kind,
    param: int,
    sem_values: tuple[int, ...],
    state_cells: int,
    *,
    create: bool,
    param_must_match: bool = False,
    param_label: Callable[[int], str] = str,
) -> Block:
    """Open (or create) the block for primitive *name*; see the module docstring."""
    if not _has_cells(backend):
        if state_cells:
            raise BackendUnavailableError(
                f"the {backend.name!r} backend has no shared cells, which a {kind.value} "
                "needs; its author must supply cells_kernel() or open_"
                f"{kind.value}()"
            )
        return Block(
            backend,
            [
                backend.semaphore_kernel(f"{name}.s{i}", v, create=create)
                for i, v in enumerate(sem_values)
            ],
            None,
        )
    cells, created = backend.cells_kernel(f"{name}.c", HEADER + state_cells, create=create)
    sems: list[SemaphoreKernel] = []
    try:
        if created:
            for i, v in enumerate(sem_values):
                sems.append(_create_fresh_semaphore(backend, f"{name}.s{i}", v))
            cells[1] = kind.code
            cells[2] = param
            cells[0] = MAGIC
        else:
            _wait_ready(cells, name)
            if cells[1] != kind.code:
                found = _kind_of(cells[1])
                raise KindMismatchError(
                    f"{_display(name)} already exists as a {found} (asked for a "
                    f"{kind.value}): choose another name, or unlink the existing object"
                )
            if param_must_match and cells[2] != param:
                raise KindMismatchError(
                    f"{_display(name)} already exists as a {kind.value} of "
                    f"{param_label(cells[2])} (asked for {param_label(param)}): open it "
                    "the same way, or unlink it first"
                )
            for i in range(len(sem_values)):
                sems.append(backend.semaphore_kernel(f"{name}.s{i}", 0, create=False))
    except BaseException:
        for sem in sems:
            sem.close()
        backend.close_cells(cells)
        if created:
            unlink_block(backend, name)
        raise
    return Block(backend, sems, cells)


def _create_fresh_semaphore(backend: BaseBackend, name: str, value: int) -> SemaphoreKernel:
    # The cells were just created, so a semaphore already under this name is a leftover
    # of a creator that died half-way: replace it.
    backend.unlink(name)
    return backend.semaphore_kernel(name, value, create=True)


def _wait_ready(cells: Cells, name: str) -> None:
    deadline = time.monotonic() + _OPEN_WAIT
    while cells[0] != MAGIC:
        if time.monotonic() > deadline:
            raise NotFoundError(
                f"{_display(name)} exists but was never finished by its creator "
                "(it probably died while creating it): unlink it and open it again"
            )
        time.sleep(0.001)


def _kind_of(code: int) -> str:
    for kind in Kind:
        if kind.code == code:
            return kind.value
    return f"object of unknown kind {code}"


def _display(name: str) -> str:
    tag, _, rest = name.partition(":")
    return f"the object named {rest!r}" if tag == "n" else "the anonymous object"


def unlink_block(backend: BaseBackend, name: str) -> bool:
    """Remove the cells and semaphores of primitive *name*; ``True`` if any existed."""
    found = backend.unlink(f"{name}.c")
    for i in range(MAX_SEMS):
        found = backend.unlink(f"{name}.s{i}") or found
    return found


# -- waiters ---------------------------------------------------------------------------


class _Waiter:
    """One thread's own wake-up semaphore, registered under a unique name."""

    __slots__ = ("__weakref__", "ident", "nonce", "sem")

    def __init__(self, ident: int, nonce: int, sem: SemaphoreKernel) -> None:
        self.ident = ident
        self.nonce = nonce
        self.sem = sem


def waiter_object_name(ident: int, nonce: int) -> str:
    return f"w:{ident >> 24}:{ident & 0xFFFFFF}:{nonce:x}"


def _retire_waiter(backend: BaseBackend, sem: SemaphoreKernel, name: str, pid: int) -> None:
    """A waiter's thread ended (or its process exits): drop its semaphore."""
    sem.close()
    if pid == _pid:  # in a forked child the parent's waiter is still the parent's
        backend.unlink(name)


class WaiterRegistry:
    """Per backend instance: this thread's waiter, and a cache of other waiters' handles.

    A thread's waiter lives in a ``threading.local``; when the thread ends, the local
    is dropped and a finalizer unlinks the waiter's semaphore, so a process that keeps
    starting threads does not accumulate them.
    """

    _CACHE = 256

    def __init__(self, backend: BaseBackend) -> None:
        self._backend = backend
        self._local = threading.local()
        self._next_index = 0
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[int, int], SemaphoreKernel] = OrderedDict()
        self._cache_pid = _pid

    def current(self) -> _Waiter:
        waiter: _Waiter | None = getattr(self._local, "waiter", None)
        if waiter is not None and waiter.ident >> 24 == _pid:
            return waiter
        with self._lock:
            self._next_index += 1
            ident = (_pid << 24) | (self._next_index & 0xFFFFFF)
        nonce = secrets.randbits(62)
        name = waiter_object_name(ident, nonce)
        sem = self._backend.semaphore_kernel(name, 0, create=True)
        waiter = _Waiter(ident, nonce, sem)
        weakref.finalize(waiter, _retire_waiter, self._backend, sem, name, _pid)
        self._local.waiter = waiter
        return waiter

    def wake(self, ident: int, nonce: int) -> bool:
        """Post waiter (*ident*, *nonce*); ``False`` if it no longer exists."""
        key = (ident, nonce)
        with self._lock:
            if self._cache_pid != _pid:  # forked: start a cache of our own
                self._cache, self._cache_pid = OrderedDict(), _pid
            sem = self._cache.get(key)
            if sem is not None:
                self._cache.move_to_end(key)
        if sem is None:
            try:
                sem = self._backend.semaphore_kernel(
                    waiter_object_name(ident, nonce), 0, create=False
                )
            except NotFoundError:
                return False
            with self._lock:
                self._cache[key] = sem
                while len(self._cache) > self._CACHE:
                    _, old = self._cache.popitem(last=False)
                    old.close()
        sem.release()
        return True


_registries: dict[int, WaiterRegistry] = {}
_registries_lock = threading.Lock()


def waiters_of(backend: BaseBackend) -> WaiterRegistry:
    reg = _registries.get(id(backend))
    if reg is None:
        with _registries_lock:
            reg = _registries.get(id(backend))
            if reg is None:
                reg = _registries[id(backend)] = WaiterRegistry(backend)
                # Keep the backend alive with its registry: ids must not be reused.
                reg.backend_ref = backend  # type: ignore[attr-defined]
    return reg


class ParkingLot:
    """A FIFO of parked waiters stored in cells ``[base, base + _LOT_CELLS)``.

    Every method must be called while holding the primitive's guard (its lock).
    """

    __slots__ = ("_base", "_cells", "_reg")

    def __init__(self, backend: BaseBackend, cells: Cells, base: int) -> None:
        self._reg = waiters_of(backend)
        self._cells = cells
        self._base = base

    def park(self) -> _Waiter:
        waiter = self._reg.current()
        c, b = self._cells, self._base
        n = c[b]
        if n >= LOT_CAPACITY:
            raise RuntimeError(f"more than {LOT_CAPACITY} waiters on one primitive")
        c[b + 1 + 2 * n] = waiter.ident
        c[b + 2 + 2 * n] = waiter.nonce
        c[b] = n + 1
        return waiter

    def unpark(self, n: int) -> int:
        """Wake up to *n* waiters, oldest first; return how many were woken."""
        c, b = self._cells, self._base
        queued = c[b]
        woken = taken = 0
        while taken < queued and woken < n:
            ident, nonce = c[b + 1 + 2 * taken], c[b + 2 + 2 * taken]
            taken += 1
            if self._reg.wake(ident, nonce):
                woken += 1
        if taken:
            for i in range(taken, queued):
                c[b + 1 + 2 * (i - taken)] = c[b + 1 + 2 * i]
                c[b + 2 + 2 * (i - taken)] = c[b + 2 + 2 * i]
            c[b] = queued - taken
        return woken

    def cancel(self, waiter: _Waiter) -> bool:
        """Take *waiter* off the queue; ``False`` if a wake-up already took it off."""
        c, b = self._cells, self._base
        queued = c[b]
        for i in range(queued):
            if c[b + 1 + 2 * i] == waiter.ident and c[b + 2 + 2 * i] == waiter.nonce:
                for j in range(i + 1, queued):
                    c[b + 1 + 2 * (j - 1)] = c[b + 1 + 2 * j]
                    c[b + 2 + 2 * (j - 1)] = c[b + 2 + 2 * j]
                c[b] = queued - 1
                return True
        return False

    def queued(self) -> int:
        return self._cells[self._base]


_POSTED_WAIT = 5.0


def park_and_wait(
    lot: ParkingLot,
    release_guard: Callable[[], object],
    reacquire_guard: Callable[[object], None],
    timeout: float | None,
) -> bool:
    """Park, drop the guard, sleep until woken or *timeout*, retake the guard.

    Returns whether this waiter was woken. On Ctrl-C the waiter leaves the queue (or
    consumes its wake-up) before the exception propagates with the guard held again.
    """
    waiter = lot.park()
    saved = release_guard()
    woken = False
    try:
        woken = waiter.sem.acquire(True, timeout)
    finally:
        reacquire_guard(saved)
        if not woken and not lot.cancel(waiter):
            # Notified between the timeout and retaking the guard: the notifier posted
            # before dequeuing us, so the post is there; the bound only guards against a
            # notifier that died in between.
            waiter.sem.acquire(True, _POSTED_WAIT)
            woken = True
    return woken


# -- the primitives ----------------------------------------------------------------------


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


#: Seconds between checks, by a blocked acquirer, that the holder is still alive.
RECOVERY_INTERVAL = 0.25


class OwnerWatch:
    """Waits for a lock's semaphore, and takes the lock over from a holder that died.

    The holder's identity (:mod:`polysync._liveness`) sits in one cell: written right
    after the semaphore is taken, cleared right before it is posted. So a non-zero
    identity of a dead process, with the semaphore at zero, can only mean that process
    died holding the lock. A blocked acquirer checks that every ``RECOVERY_INTERVAL``
    and, under a second semaphore used as a mutex, writes its own identity over the dead
    one: the lock changes hands without ever being free, so two waiters cannot both get it.
    """

    __slots__ = ("_cell", "_cells", "_mutex", "_sem", "owner_died")

    def __init__(self, sem: SemaphoreKernel, mutex: SemaphoreKernel, cells: Cells, cell: int):
        self._sem = sem
        self._mutex = mutex
        self._cells = cells
        self._cell = cell
        self.owner_died = False

    def acquire(self, blocking: bool, timeout: float | None) -> bool:
        """Take the semaphore (or the dead holder's place) and record this process as holder."""
        if not blocking or timeout == 0:
            got = self._sem.acquire(False, None)
        else:
            got = self._wait(timeout)
        if got:
            self._cells[self._cell] = _liveness.identity()
        return got

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
        if not holder or _liveness.is_alive(holder):
            return False
        if not self._mutex.acquire(True, 1.0):
            return False
        try:
            if self._cells[self._cell] != holder or self._sem.get_value() != 0:
                return False
            self._cells[self._cell] = _liveness.identity()
        finally:
            self._mutex.release()
        self.owner_died = True
        try:
            warnings.warn(
                OwnerDiedWarning(
                    f"process {_liveness.pid_of(holder)} died holding this lock; this "
                    "handle took it over: check the state it protects"
                ),
                stacklevel=5,
            )
        except BaseException:
            # The warning was turned into an error: the acquire fails, so give the lock
            # back rather than leave it held by a caller who does not know it holds it.
            self.clear_and_post()
            raise
        return True

    def clear_and_post(self) -> None:
        """Give the lock up: clear the holder first, so a recorded holder always holds it."""
        self._cells[self._cell] = 0
        self.owner_died = False
        self._sem.release()


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
        return c[_OWNER_TID] == threading.get_ident() and c[_OWNER] == _liveness.identity()

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
        self._cells[_OWNER] = _liveness.identity()
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


class _Mutex:
    """A semaphore used as a short internal lock."""

    __slots__ = ("_sem",)

    def __init__(self, sem: SemaphoreKernel) -> None:
        self._sem = sem

    def __enter__(self) -> None:
        try:
            self._sem.acquire_forever()
        except Exception:
            self._sem.acquire(True, None)

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

    def close(self) -> None:
        self._block.close()


# -- openers used by BaseBackend ---------------------------------------------------------


def lock_label(param: int) -> str:
    return "the recovering kind (recover_locks=True)" if param == 2 else "the plain kind"


def open_lock(backend: BaseBackend, name: str, *, create: bool) -> DerivedLock:
    return DerivedLock(
        open_block(
            backend,
            name,
            Kind.LOCK,
            1,
            (1,),
            0,
            create=create,
            param_must_match=True,
            param_label=lock_label,
        )
    )


def open_rlock(backend: BaseBackend, name: str, *, create: bool) -> DerivedRLock:
    return DerivedRLock(open_block(backend, name, Kind.RLOCK, 1, (1, 1), 3, create=create))


def open_recoverable_lock(backend: BaseBackend, name: str, *, create: bool) -> RecoverableLock:
    """A Lock that records its holder (the header's parameter 2 tells it from a plain Lock)."""
    block = open_block(
        backend,
        name,
        Kind.LOCK,
        2,
        (1, 1),
        1,
        create=create,
        param_must_match=True,
        param_label=lock_label,
    )
    return RecoverableLock(block)


def open_semaphore(
    backend: BaseBackend, name: str, value: int, *, bounded: bool, create: bool
) -> DerivedSemaphore:
    kind = Kind.BOUNDED_SEMAPHORE if bounded else Kind.SEMAPHORE
    block = open_block(
        backend, name, kind, value, (value,), 0, create=create, param_must_match=bounded
    )
    maxvalue = (block.cells[2] if block.cells is not None else value) if bounded else None
    return DerivedSemaphore(block, maxvalue)


def open_event(backend: BaseBackend, name: str, *, create: bool) -> DerivedEvent:
    return DerivedEvent(
        open_block(backend, name, Kind.EVENT, 0, (1,), 1 + _LOT_CELLS, create=create)
    )


def open_condition(backend: BaseBackend, name: str, *, create: bool) -> DerivedCondition:
    return DerivedCondition(
        open_block(backend, name, Kind.CONDITION, 0, (), _LOT_CELLS, create=create)
    )


def open_barrier(backend: BaseBackend, name: str, parties: int, *, create: bool) -> DerivedBarrier:
    block = open_block(
        backend,
        name,
        Kind.BARRIER,
        parties,
        (1,),
        2 + _LOT_CELLS,
        create=create,
        param_must_match=True,
    )
    return DerivedBarrier(block, parties)
