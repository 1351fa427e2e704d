"""The contract a backend implements: kernel protocols, capabilities and ``BaseBackend``.

A backend must supply two things, and may supply a third:

* :meth:`BaseBackend.semaphore_kernel`: open (or create) a named counting semaphore
  satisfying :class:`SemaphoreKernel`;
* :meth:`BaseBackend.unlink`: remove one object by its object name;
* optionally :meth:`BaseBackend.cells_kernel`: a block of shared 64-bit integer cells
  (:class:`Cells`) under a name.

From those, :class:`BaseBackend` derives every primitive (see :mod:`polysync._derived`).
A backend that can do better overrides one ``open_<kind>`` method with a native kernel;
the neutral layer (:mod:`polysync.primitives`) never knows the difference. Inputs reaching
a kernel have been validated: timeouts are ``None`` or finite floats ``>= 0``, counts are
positive ints, names are the backend's own.
"""

from __future__ import annotations

import enum
import os
import secrets
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Protocol

__all__ = [
    "BarrierKernel",
    "BaseBackend",
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


class BaseBackend:
    """Base class of every backend: supply the kernels, inherit the derived primitives.

    Subclasses set :attr:`name`, :attr:`capabilities` and :attr:`options`, implement
    :meth:`semaphore_kernel` and :meth:`unlink`, and usually :meth:`cells_kernel`.
    Object names handed to these methods are already in the backend's namespace
    (:meth:`object_name` maps a user's name; :meth:`anonymous_name` makes a fresh one).
    """

    #: The name users pass to :func:`polysync.get_context`.
    name: ClassVar[str] = ""
    #: What the backend guarantees.
    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    #: Accepted options and their defaults; anything else is a ``TypeError``.
    options: ClassVar[Mapping[str, object]] = {}
    #: Options a single primitive accepts (``ctx.Lock(name="x", lease=5)``).
    primitive_options: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, **options: Any) -> None:
        self.settings: dict[str, object] = {**self.options, **options}

    # -- what a backend supplies -------------------------------------------------

    def semaphore_kernel(self, name: str, value: int, *, create: bool) -> SemaphoreKernel:
        """Open the counting semaphore *name*; with *create*, make it (at *value*) if missing.

        Raise :class:`~polysync.errors.NotFoundError` when it is missing and not *create*.
        """
        raise NotImplementedError

    def cells_kernel(self, name: str, size: int, *, create: bool) -> tuple[Cells, bool]:
        """Open *size* shared cells under *name*; return them and whether this call created them.

        Freshly created cells read 0. The default says the backend has none.
        """
        raise NotImplementedError(f"the {self.name!r} backend has no shared cells")

    def unlink(self, name: str) -> bool:
        """Remove the object (semaphore or cells) called *name*; ``False`` if there was none."""
        raise NotImplementedError

    def hold_for_transfer(self, name: str) -> None:
        """Primitive *name* is being pickled: keep it alive until the receiver can open it.

        The default does nothing (objects that live until unlinked need no help).
        """

    def close_cells(self, cells: Cells) -> None:
        """Drop a handle returned by :meth:`cells_kernel` (default: nothing to do)."""

    # -- names ---------------------------------------------------------------------

    def object_name(self, user_name: str) -> str:
        """Map a validated user name into the backend's namespace (identity by default)."""
        return "n:" + user_name

    def anonymous_name(self) -> str:
        """A fresh name for an anonymous object, unique across processes and hosts."""
        return f"a:{os.getpid()}:{secrets.token_hex(8)}"

    def is_anonymous(self, name: str) -> bool:
        return name.startswith("a:")

    def unlink_primitive(self, name: str) -> bool:
        """Remove every object making up the primitive *name*; ``True`` if any existed."""
        from polysync import _derived

        return _derived.unlink_block(self, name)

    # -- the derived primitives: override one to supply a native kernel -----------

    def open_lock(self, name: str, *, create: bool) -> LockKernel:
        from polysync import _derived

        return _derived.open_lock(self, name, create=create)

    def open_rlock(self, name: str, *, create: bool) -> RLockKernel:
        from polysync import _derived

        return _derived.open_rlock(self, name, create=create)

    def open_semaphore(
        self, name: str, value: int, *, bounded: bool, create: bool
    ) -> SemaphorePrimitiveKernel:
        from polysync import _derived

        return _derived.open_semaphore(self, name, value, bounded=bounded, create=create)

    def open_event(self, name: str, *, create: bool) -> EventKernel:
        from polysync import _derived

        return _derived.open_event(self, name, create=create)

    def open_condition(self, name: str, *, create: bool) -> ConditionKernel:
        from polysync import _derived

        return _derived.open_condition(self, name, create=create)

    def open_barrier(self, name: str, parties: int, *, create: bool) -> BarrierKernel:
        from polysync import _derived

        return _derived.open_barrier(self, name, parties, create=create)

    def configure_primitive(self, kernel: Any, options: Mapping[str, Any]) -> None:
        """Apply per-primitive *options* to a freshly opened kernel.

        The default accepts none. Names outside :attr:`primitive_options` never get here.
        """
        raise TypeError(f"the {self.name!r} backend takes no per-primitive options")

    def picklable_settings(self) -> dict[str, Any]:
        """The options that recreate this backend in another process (no live objects)."""
        return dict(self.settings)

    def describe(self) -> str:
        """A one-line, secret-free description for reprs and error messages."""
        return self.name

    def close(self) -> None:
        """Release backend-wide resources (connections); primitives stay usable until closed."""
