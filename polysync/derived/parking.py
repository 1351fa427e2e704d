"""The parking lot: per-thread waiter semaphores and a FIFO of parked waiters kept in cells.

A notification posts exactly the waiters it takes off the queue, so ``notify(n)`` wakes
at most *n*, no waiter can consume another's wake-up, and a timed-out waiter knows for
certain whether it was notified. This is the futex/ParkingLot shape (trio, Linux), built
from nothing but semaphores.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable

from polysync.derived import liveness
from polysync.derived.liveness import current_pid
from polysync.errors import NotFoundError
from polysync.kernel import Cells, ObjectName, Scope, SemaphoreBackend, SemaphoreKernel

#: Waiters one primitive can queue at once.
LOT_CAPACITY = 512
LOT_CELLS = 1 + 2 * LOT_CAPACITY  # count, then (identity, nonce) pairs
#: A waiter's nonce: its process's start time (clock ticks, see derived.liveness) above
#: this many random bits, so that a parked waiter whose process died is told from a
#: process that reuses its PID.
_NONCE_RANDOM_BITS = 24
_NONCE_START_MASK = (1 << (62 - _NONCE_RANDOM_BITS)) - 1


# -- waiters ---------------------------------------------------------------------------


class _Waiter:
    """One thread's own wake-up semaphore, registered under a unique name."""

    __slots__ = ("__weakref__", "ident", "nonce", "sem")

    def __init__(self, ident: int, nonce: int, sem: SemaphoreKernel) -> None:
        self.ident = ident
        self.nonce = nonce
        self.sem = sem


def waiter_object_name(ident: int, nonce: int) -> ObjectName:
    """The name of waiter (*ident*, *nonce*): its process, its index there, its nonce."""
    return ObjectName(Scope.WAITER, f"{ident >> 24}:{ident & 0xFFFFFF}:{nonce:x}")


def _retire_waiter(
    backend: SemaphoreBackend, sem: SemaphoreKernel, name: ObjectName, pid: int
) -> None:
    """A waiter's thread ended (or its process exits): drop its semaphore."""
    sem.close()
    if pid == current_pid():  # in a forked child the parent's waiter is still the parent's
        backend.unlink(name)


class WaiterRegistry:
    """Per backend instance: this thread's waiter, and a cache of other waiters' handles.

    A thread's waiter lives in a ``threading.local``; when the thread ends, the local
    is dropped and a finalizer unlinks the waiter's semaphore, so a process that keeps
    starting threads does not accumulate them.
    """

    _CACHE = 256

    def __init__(self, backend: SemaphoreBackend) -> None:
        self._backend = backend
        self._local = threading.local()
        self._next_index = 0
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[int, int], SemaphoreKernel] = OrderedDict()
        self._cache_pid = current_pid()

    def current(self) -> _Waiter:
        waiter: _Waiter | None = getattr(self._local, "waiter", None)
        if waiter is not None and waiter.ident >> 24 == current_pid():
            return waiter
        with self._lock:
            self._next_index += 1
            ident = (current_pid() << 24) | (self._next_index & 0xFFFFFF)
        start = liveness.started() & _NONCE_START_MASK
        nonce = (start << _NONCE_RANDOM_BITS) | secrets.randbits(_NONCE_RANDOM_BITS)
        name = waiter_object_name(ident, nonce)
        sem = self._backend.semaphore_kernel(name, 0, create=True)
        waiter = _Waiter(ident, nonce, sem)
        weakref.finalize(waiter, _retire_waiter, self._backend, sem, name, current_pid())
        self._local.waiter = waiter
        return waiter

    @staticmethod
    def alive(ident: int, nonce: int) -> bool:
        """Whether the process of waiter (*ident*, *nonce*) still runs (unknown: yes)."""
        return liveness.is_running(ident >> 24, nonce >> _NONCE_RANDOM_BITS)

    def bury(self, ident: int, nonce: int) -> None:
        """Waiter (*ident*, *nonce*) died parked: drop its semaphore, here and by name.

        A killed process never unlinks its own waiter semaphore (posix: its tracker does,
        in its own time), and a handle cached here would still take posts.
        """
        with self._lock:
            sem = self._cache.pop((ident, nonce), None)
        if sem is not None:
            sem.close()
        with contextlib.suppress(Exception):  # gone already, or never made: nothing left
            self._backend.unlink(waiter_object_name(ident, nonce))

    def wake(self, ident: int, nonce: int) -> bool:
        """Post waiter (*ident*, *nonce*); ``False`` if it no longer exists."""
        key = (ident, nonce)
        with self._lock:
            if self._cache_pid != current_pid():  # forked: start a cache of our own
                self._cache, self._cache_pid = OrderedDict(), current_pid()
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


def waiters_of(backend: SemaphoreBackend) -> WaiterRegistry:
    reg = _registries.get(id(backend))
    if reg is None:
        with _registries_lock:
            reg = _registries.get(id(backend))
            if reg is None:
                reg = _registries[id(backend)] = WaiterRegistry(backend)
                # The registry keeps its backend alive, so ids are never reused.
    return reg


class ParkingLot:
    """A FIFO of parked waiters stored in cells ``[base, base + LOT_CELLS)``.

    Every method must be called while holding the primitive's guard (its lock).
    """

    __slots__ = ("_base", "_cells", "_reg")

    def __init__(self, backend: SemaphoreBackend, cells: Cells, base: int) -> None:
        self._reg = waiters_of(backend)
        self._cells = cells
        self._base = base

    def park(self) -> _Waiter:
        waiter = self._reg.current()
        c, b = self._cells, self._base
        n = c[b]
        if n >= LOT_CAPACITY:
            self.prune()  # waiters that died parked take no place
            n = c[b]
            if n >= LOT_CAPACITY:
                raise RuntimeError(f"more than {LOT_CAPACITY} waiters on one primitive")
        c[b + 1 + 2 * n] = waiter.ident
        c[b + 2 + 2 * n] = waiter.nonce
        c[b] = n + 1
        return waiter

    def unpark(self, n: int) -> int:
        """Wake up to *n* live waiters, oldest first; return how many were woken.

        A waiter whose process died parked is passed over (and its semaphore removed), so
        a notification never goes to the dead while a live waiter is queued behind. Only
        then does liveness matter: when every waiter left will be posted anyway (an
        ``Event.set()``, a ``notify()`` with one waiter queued), none is checked, which
        saves a ``/proc`` read per wake-up on the hand-off path; a dead one's post is
        harmless and its semaphore goes with its process (posix: its tracker).
        """
        c, b = self._cells, self._base
        queued = c[b]
        woken = taken = 0
        reg = self._reg
        while taken < queued and woken < n:
            ident, nonce = c[b + 1 + 2 * taken], c[b + 2 + 2 * taken]
            taken += 1
            if queued - taken >= n - woken and not reg.alive(ident, nonce):
                reg.bury(ident, nonce)
            elif reg.wake(ident, nonce):
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

    def prune(self) -> list[int]:
        """Take the waiters whose process died off the queue; return their identities."""
        c, b = self._cells, self._base
        queued = c[b]
        dead: list[int] = []
        kept = 0
        for i in range(queued):
            ident, nonce = c[b + 1 + 2 * i], c[b + 2 + 2 * i]
            if not self._reg.alive(ident, nonce):
                self._reg.bury(ident, nonce)
                dead.append(ident)
                continue
            if kept != i:
                c[b + 1 + 2 * kept] = ident
                c[b + 2 + 2 * kept] = nonce
            kept += 1
        if dead:
            c[b] = kept
        return dead

    def count_dead(self) -> int:
        """How many queued waiters' processes died (a snapshot: needs no guard)."""
        c, b = self._cells, self._base
        alive = self._reg.alive
        queued = min(c[b], LOT_CAPACITY)
        return sum(not alive(c[b + 1 + 2 * i], c[b + 2 + 2 * i]) for i in range(queued))

    def queued(self) -> int:
        return self._cells[self._base]

    def waiter_ident(self) -> int:
        """The identity this thread parks under (never 0)."""
        return self._reg.current().ident


_POSTED_WAIT = 5.0


def park_and_wait(
    lot: ParkingLot,
    release_guard: Callable[[], object],
    reacquire_guard: Callable[[object], None],
    timeout: float | None,
    stopped: Callable[[], bool] | None = None,
) -> bool:
    """Park, drop the guard, sleep until woken or *timeout*, retake the guard.

    Returns whether this waiter was woken. On Ctrl-C the waiter leaves the queue (or
    consumes its wake-up) before the exception propagates with the guard held again.
    With *stopped*, the sleep is cut into slices of at most :data:`STOP_CHECK` seconds,
    and :class:`WaitStopped` leaves in the same way once ``stopped()`` is true.
    """
    waiter = lot.park()
    saved = release_guard()
    woken = False
    try:
        if stopped is None:
            woken = waiter.sem.acquire(True, timeout)
        else:
            woken = _sleep_until_stopped(waiter.sem, timeout, stopped)
    finally:
        reacquire_guard(saved)
        if not woken and not lot.cancel(waiter):
            # Notified between the timeout and retaking the guard: the notifier posted
            # before dequeuing us, so the post is there; the bound only guards against a
            # notifier that died in between.
            waiter.sem.acquire(True, _POSTED_WAIT)
            woken = True
    return woken


#: How often a stoppable wait checks whether it was stopped, in seconds.
STOP_CHECK = 0.05


class WaitStopped(BaseException):
    """A stoppable wait was stopped by another thread (see :func:`park_and_wait`)."""


def _sleep_until_stopped(
    sem: SemaphoreKernel, timeout: float | None, stopped: Callable[[], bool]
) -> bool:
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        remaining = STOP_CHECK if deadline is None else min(STOP_CHECK, deadline - time.monotonic())
        if sem.acquire(True, max(0.0, remaining)):
            return True
        if stopped():
            raise WaitStopped
        if deadline is not None and time.monotonic() >= deadline:
            return False
