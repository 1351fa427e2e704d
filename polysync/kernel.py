"""The contract between polysync and a backend: capabilities, kinds and the kernel Protocols.

A kernel is what a backend hands the neutral layer (:mod:`polysync.primitives`) for one
primitive. The floor that derives every kernel from counting semaphores and shared
cells is :mod:`polysync.derived`. Inputs reaching a kernel have been validated:
timeouts are ``None`` or finite floats ``>= 0``, counts are positive ints, names are the
backend's own.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Protocol

__all__ = [
    "BarrierKernel",
    "Capability",
    "Cells",
    "ConditionKernel",
    "EventKernel",
    "Kind",
    "LockKernel",
    "RLockKernel",
    "SemaphoreKernel",
]


class Capability(str, enum.Enum):
    """What a backend guarantees; docs tables and the conformance suite key on these."""

    #: Objects are shared between processes (pickling, reopening by name).
    CROSS_PROCESS = "cross-process"
    #: Objects are shared between hosts.
    CROSS_HOST = "cross-host"
    #: Objects can be opened by a user-chosen name and persist until unlinked.
    NAMED = "named"
    #: ``Semaphore.get_value()`` reads the current count.
    READABLE_VALUE = "readable-value"
    #: The backend provides shared integer cells (``cells_kernel``).
    SHARED_CELLS = "shared-cells"
    #: A lock whose holder dies is recovered by the next acquirer.
    OWNER_DEATH = "owner-death"
    #: Acquisitions return a strictly increasing fencing token.
    FENCING = "fencing"


class Kind(str, enum.Enum):
    """The seven primitives; the value is the name used in pickles and headers."""

    LOCK = "lock"
    RLOCK = "rlock"
    SEMAPHORE = "semaphore"
    BOUNDED_SEMAPHORE = "bounded_semaphore"
    EVENT = "event"
    CONDITION = "condition"
    BARRIER = "barrier"

    @property
    def code(self) -> int:
        """A small integer naming the kind in shared headers."""
        return list(Kind).index(self) + 1


class Cells(Protocol):
    """A fixed-size block of shared signed 64-bit integers, indexed from 0.

    A single read or write of one cell must be atomic; read-modify-write sequences are
    made safe by the derived kernels, which hold a semaphore around them.
    """

    def __getitem__(self, index: int, /) -> int: ...

    def __setitem__(self, index: int, value: int, /) -> None: ...


class SemaphoreKernel(Protocol):
    """A counting semaphore: the one kernel every backend must supply."""

    def acquire(self, blocking: bool, timeout: float | None) -> bool:
        """Decrement, waiting while the count is zero; ``False`` on timeout.

        Must stay interruptible: a signal handler that raises (Ctrl-C) propagates, and
        the count is unchanged in that case.
        """

    def acquire_forever(self) -> object:
        """``acquire(True, None)`` as the cheapest call the backend has (the hot path).

        May raise any ``Exception``; the caller then retries through :meth:`acquire`.
        """

    # Optional, for a backend whose raw timed wait is one cheap call (posix has it):
    #   acquire_within(timeout) -> object: acquire within *timeout* seconds; on expiry
    #       return False or raise an Exception (anything else returned means acquired);
    #   acquire_failed(exc, timeout) -> bool: what that exception means (False: expired),
    #       retrying if the wait was cut short. The derived kernels pass them on.

    def release(self, n: int = 1) -> None:
        """Increment by *n*, waking up to *n* waiters."""

    def get_value(self) -> int:
        """The current count (a snapshot)."""

    def close(self) -> None:
        """Drop this handle; the object lives on for other handles.

        Also called when an unclosed handle is garbage-collected (see ``discard`` below),
        so it must not wait for a lock that the interrupted thread may hold.
        """

    # Optional, on this kernel or on any primitive's kernel:
    #   discard() -> None: drop a handle that was garbage-collected without close(). The
    #       GC runs finalizers in whichever thread allocates, at any point, even inside
    #       the backend's client while it holds its locks: discard must not block, nor
    #       talk to a server through a connection that thread may be using. A backend
    #       whose close() does either hands that work to a thread of its own here.


class LockKernel(Protocol):
    """Mutual exclusion without an owner (any process may release)."""

    def acquire_forever(self) -> object: ...

    def acquire(self, blocking: bool, timeout: float | None) -> bool: ...

    def release(self) -> None:
        """Release; raise :class:`~polysync.errors.NotHeldError` if not held."""

    def locked(self) -> bool: ...

    def release_save(self) -> object:
        """Release fully for a Condition wait; returns what ``acquire_restore`` needs."""

    def acquire_restore(self, state: object) -> None: ...

    def is_owned(self) -> bool:
        """Best knowledge that the caller holds it (a Lock only knows it is held)."""

    def close(self) -> None: ...


class RLockKernel(LockKernel, Protocol):
    """A reentrant lock owned by (process, thread)."""

    def recursion_level(self) -> int: ...


class SemaphorePrimitiveKernel(Protocol):
    """Semaphore and BoundedSemaphore."""

    def acquire_forever(self) -> object: ...

    def acquire(self, blocking: bool, timeout: float | None) -> bool: ...

    def release(self, n: int) -> None:
        """Release *n*; a bounded one raises NotHeldError past its initial value."""

    def get_value(self) -> int: ...

    def close(self) -> None: ...


class EventKernel(Protocol):
    def set(self) -> None: ...

    def clear(self) -> None: ...

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None) -> bool: ...

    def close(self) -> None: ...


class ConditionKernel(Protocol):
    """The waiting part of a Condition; the neutral layer owns the lock object."""

    def wait(self, lock: LockKernel, timeout: float | None) -> bool:
        """Release *lock*, wait for a notification, reacquire; ``False`` on timeout."""

    def notify(self, n: int) -> None:
        """Wake at most *n* waiters (the caller holds the lock)."""

    def notify_all(self) -> None: ...

    def close(self) -> None: ...


class BarrierKernel(Protocol):
    parties: int

    def wait(self, timeout: float | None, action: Callable[[], object] | None) -> int: ...

    def reset(self) -> None: ...

    def abort(self) -> None: ...

    def n_waiting(self) -> int: ...

    def broken(self) -> bool: ...

    def close(self) -> None: ...
