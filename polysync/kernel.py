"""The contract between polysync and a backend: capabilities, kinds, names and kernel Protocols.

A *kernel* is what a backend hands the neutral layer (:mod:`polysync.primitives`) for one
open primitive. Each kind has one required Protocol (:class:`LockKernel`,
:class:`RLockKernel`, :class:`SemaphorePrimitiveKernel`, :class:`EventKernel`,
:class:`ConditionKernel`, :class:`BarrierKernel`). Everything optional is a named
Protocol of its own (:class:`ForeverAcquire`, :class:`TimedAcquire`,
:class:`RefusingRelease`, :class:`Discardable`, :class:`Fenced`, :class:`Leased`,
:class:`OwnerDeath`, :class:`Introspectable`, :class:`AsyncAcquire`,
:class:`AsyncRelease`): the neutral layer
checks a kernel against them once, when it attaches the kernel to a handle, and never
probes per call. A :class:`Capability` that a backend declares names the Protocol its
kernels must satisfy (:attr:`Capability.requires`); a kernel that falls short is
refused at that point.

The backend itself satisfies :class:`Backend`; what it may offer beyond that is a named
Protocol too (:class:`Findable`, :class:`Listable`, :class:`Collectable`). A capability
whose :class:`Requirement` names no kinds (``LISTING``, ``ORPHAN_COLLECTION``) requires
its Protocol of the backend itself, checked once when a context is made. The floor that
derives every kernel from counting semaphores (:class:`SemaphoreKernel`) and shared
cells (:class:`Cells`) is :mod:`polysync.derived`, whose backends satisfy
:class:`SemaphoreBackend` as well.

What a kernel may rely on: its inputs were validated (timeouts are ``None`` or finite
floats ``>= 0``; counts are positive ints; names are :class:`ObjectName` values the
backend made). What it must do: raise polysync's errors (:mod:`polysync.errors`), never
a library's; stay interruptible (a signal handler that raises propagates, with nothing
taken); be thread-safe.

This module is data and Protocols only: it imports no implementation.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

__all__ = [
    "AsyncAcquire",
    "AsyncRelease",
    "Backend",
    "BarrierKernel",
    "Capability",
    "Cells",
    "Collectable",
    "ConditionKernel",
    "Discardable",
    "EventKernel",
    "Fenced",
    "Findable",
    "ForeverAcquire",
    "Found",
    "Holder",
    "InlineCalls",
    "Introspectable",
    "KernelState",
    "Kind",
    "Leased",
    "Listable",
    "Listed",
    "LockBacked",
    "LockKernel",
    "ObjectName",
    "Orphan",
    "OwnerDeath",
    "RLockKernel",
    "RefusingRelease",
    "Requirement",
    "Scope",
    "SemaphoreBackend",
    "SemaphoreKernel",
    "SemaphorePrimitiveKernel",
    "StoppableBarrier",
    "TimedAcquire",
]


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


class Capability(str, enum.Enum):
    """What a backend guarantees; docs tables and the conformance suite key on these."""

    #: Objects are shared between processes (pickling, reopening by name).
    CROSS_PROCESS = "cross-process"
    #: Objects are shared between hosts: separate clients see one object.
    CROSS_HOST = "cross-host"
    #: Objects can be opened by a user-chosen name and persist until unlinked.
    NAMED = "named"
    #: ``Semaphore.get_value()`` reads the current count.
    READABLE_VALUE = "readable-value"
    #: The backend provides shared integer cells (``cells_kernel``).
    SHARED_CELLS = "shared-cells"
    #: A lock whose holder dies is recovered by the next acquirer, who learns it.
    OWNER_DEATH = "owner-death"
    #: Acquisitions carry a fencing token that strictly increases per object.
    FENCING = "fencing"
    #: Holds are leases, renewed while the holder lives; a handle learns it lost one.
    LEASES = "leases"
    #: The backend lists its named objects (:class:`Listable`: ``polysync ls``).
    LISTING = "listing"
    #: The backend finds and removes what dead processes left (:class:`Collectable`:
    #: ``polysync gc``), never what a live process uses.
    ORPHAN_COLLECTION = "orphan-collection"

    @property
    def requires(self) -> tuple[Requirement, ...]:
        """What the kernels of a backend declaring this capability must satisfy."""
        return _REQUIREMENTS.get(self, ())


@dataclass(frozen=True)
class Requirement:
    """The kernels of these *kinds* must satisfy *protocol* (a runtime-checkable Protocol).

    With no *kinds*, the backend itself must satisfy it.
    """

    kinds: frozenset[Kind]
    protocol: type


class Scope(enum.Enum):
    """Who chose an object's name: a user, or polysync for an anonymous object or a waiter."""

    NAMED = "n"
    ANONYMOUS = "a"
    WAITER = "w"


@dataclass(frozen=True)
class ObjectName:
    """The name of a stored object, as polysync hands it to a backend.

    *key* is the user's name (``NAMED``) or an id the backend generated (``ANONYMOUS``)
    or polysync generated (``WAITER``). A primitive that is made of several stored
    objects (the derived ones: cells ``"c"``, semaphores ``"s0"`` and ``"s1"``) names
    each by *part*; a part is a short identifier without dots. ``str()`` gives the flat
    form ``"<scope>:<key>[.<part>]"``, which is injective for such parts, for a backend
    whose store wants one string.
    """

    scope: Scope
    key: str
    part: str = ""

    def child(self, part: str) -> ObjectName:
        """The stored object *part* of this primitive."""
        return ObjectName(self.scope, self.key, part)

    @property
    def primitive(self) -> ObjectName:
        """The primitive this object is part of (itself if it is one)."""
        return self if not self.part else ObjectName(self.scope, self.key)

    @property
    def is_anonymous(self) -> bool:
        """Whether polysync chose the name (an anonymous object or a waiter)."""
        return self.scope is not Scope.NAMED

    def describe(self) -> str:
        """How error messages name it: never a generated id, which means nothing to users."""
        if self.scope is Scope.NAMED:
            return f"the object named {self.key!r}"
        return "the anonymous object" if self.scope is Scope.ANONYMOUS else "a waiter"

    def __str__(self) -> str:
        flat = f"{self.scope.value}:{self.key}"
        return f"{flat}.{self.part}" if self.part else flat


@dataclass(frozen=True)
class Holder:
    """Who holds a lock, as far as the backend knows (``None``: not known)."""

    pid: int | None = None
    host: str | None = None
    thread: int | None = None


@dataclass(frozen=True)
class Found:
    """What a backend knows of an existing primitive before opening it (see :class:`Findable`).

    *parameter* is what an opener must pass to open it as its creator made it: a
    Semaphore's or BoundedSemaphore's initial value (the bound of a bounded one), a
    Barrier's parties; ``0`` for the other kinds.
    """

    kind: Kind
    parameter: int = 0


@dataclass(frozen=True)
class Listed:
    """One named object, as a backend lists it (see :class:`Listable`).

    *name* is the user's name, which :meth:`polysync.Context.open` takes; *kind* and
    *parameter* are what :class:`Found` would say (``kind`` is ``None`` when the backend
    could not tell, with *note* saying why). *note* is a short remark for people (an
    object its creator never finished, a name an older version did not record).
    """

    name: str
    kind: Kind | None
    parameter: int = 0
    note: str | None = None


@dataclass(frozen=True)
class Orphan:
    """Something a dead process left, found (and removed, unless a dry run) by a backend.

    *what* names it as the backend stores it (a POSIX name, a Redis key); *reason* says,
    in a few words, why nothing live can be using it.
    """

    what: str
    reason: str


@dataclass(frozen=True)
class KernelState:
    """A kernel's answer to ``statistics()``: a snapshot; ``None`` where it cannot know."""

    #: Callers blocked on it now (acquiring, or waiting for a notification).
    waiting: int | None = None
    #: The holder of a Lock or RLock.
    holder: Holder | None = None
    #: Whether a Lock or RLock is held.
    locked: bool | None = None
    #: A semaphore's count.
    value: int | None = None
    #: Whether an Event is set.
    is_set: bool | None = None
    #: Whether a Barrier is broken.
    broken: bool | None = None
    #: Seconds left of the lease *this handle* holds (leased kernels, while held).
    lease_remaining: float | None = None
    #: The fencing token of *this handle's* latest acquisition.
    fencing_token: int | None = None
    #: The latest fencing token granted on the object, to any holder in any process (a
    #: fresh handle sees the current holder's token; it stays after a release). ``None``
    #: before the first acquisition, or where the backend cannot tell.
    last_fencing_token: int | None = None
    #: Seconds left of the current holder's lease, whoever holds it (for a Semaphore, the
    #: holder whose lease runs out first). ``None`` while nobody holds it, and on backends
    #: without leases.
    holder_lease_remaining: float | None = None


# -- the floor: what polysync.derived builds every primitive from ---------------------


class Cells(Protocol):
    """A fixed-size block of shared signed 64-bit integers, indexed from 0.

    A single read or write of one cell must be atomic; read-modify-write sequences are
    made safe by the derived kernels, which hold a semaphore around them.
    """

    def __getitem__(self, index: int, /) -> int: ...

    def __setitem__(self, index: int, value: int, /) -> None: ...

    def __len__(self) -> int:
        """How many cells the block has: at least its creator's size (a backend may round
        up), the same for every opener, whatever size the opener asked for."""


class SemaphoreKernel(Protocol):
    """A counting semaphore: the one kernel every derived backend must supply."""

    def acquire(self, blocking: bool, timeout: float | None) -> bool:
        """Decrement, waiting while the count is zero; ``False`` on timeout.

        Must stay interruptible: a signal handler that raises (Ctrl-C) propagates, and
        the count is unchanged in that case. A signal whose handler returns does not
        end the wait early.
        """

    def release(self, n: int = 1) -> None:
        """Increment by *n*, waking up to *n* waiters."""

    def get_value(self) -> int:
        """The current count (a snapshot)."""

    def close(self) -> None:
        """Drop this handle; the object lives on for other handles."""


# -- the kernels, one Protocol per kind -------------------------------------------------


class LockKernel(Protocol):
    """Mutual exclusion without an owner (any process may release)."""

    def acquire(self, blocking: bool, timeout: float | None) -> bool:
        """Take the lock, waiting at most *timeout* seconds (``None``: forever)."""

    def release(self) -> None:
        """Release; raise :class:`~polysync.errors.NotHeldError` if not held."""

    def locked(self) -> bool:
        """Whether anyone holds it (a snapshot)."""

    def release_save(self) -> object:
        """Release fully for a Condition wait; returns what ``acquire_restore`` needs."""

    def acquire_restore(self, state: object) -> None:
        """Take the lock back after a Condition wait, as ``release_save`` left it."""

    def is_owned(self) -> bool:
        """Best knowledge that the caller holds it (a Lock only knows it is held)."""

    def close(self) -> None:
        """Drop this handle; the object lives on for other handles."""


class RLockKernel(LockKernel, Protocol):
    """A reentrant lock owned by (process, thread)."""

    def recursion_level(self) -> int:
        """How many times the calling thread holds it (0: not its owner)."""


class SemaphorePrimitiveKernel(Protocol):
    """Semaphore and BoundedSemaphore."""

    def acquire(self, blocking: bool, timeout: float | None) -> bool:
        """Take one permit, waiting at most *timeout* seconds (``None``: forever)."""

    def release(self, n: int = 1) -> None:
        """Release *n*; a bounded one raises NotHeldError past its initial value."""

    def get_value(self) -> int:
        """The current count (a snapshot)."""

    def close(self) -> None:
        """Drop this handle; the object lives on for other handles."""


class EventKernel(Protocol):
    """A flag that wakes every waiter when set."""

    def set(self) -> None: ...

    def clear(self) -> None: ...

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None) -> bool:
        """Wait until set; ``False`` on timeout."""

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
    """``threading.Barrier``'s state machine, shared."""

    @property
    def parties(self) -> int: ...

    def wait(self, timeout: float | None, action: Callable[[], object] | None) -> int:
        """Wait for all parties; return this party's index; run *action* if last."""

    def reset(self) -> None: ...

    def abort(self) -> None: ...

    def n_waiting(self) -> int: ...

    def broken(self) -> bool: ...

    def close(self) -> None: ...


# -- optional features, each a named Protocol, checked once at attach -------------------


@runtime_checkable
class ForeverAcquire(Protocol):
    """``acquire(True, None)`` as the cheapest call the kernel has (the hot path).

    It returns once acquired (any value) and raises only what ``acquire`` would raise.
    Without it, ``acquire()`` calls ``acquire(True, None)``.
    """

    def acquire_forever(self) -> object: ...


@runtime_checkable
class TimedAcquire(Protocol):
    """The kernel's raw timed wait: ``acquire(True, timeout)`` for a finite *timeout*.

    It returns ``True`` or ``False`` like ``acquire`` and raises only what it would: a
    backend whose raw wait is one C call binds that call here, so ``acquire(timeout=…)``
    reaches it without a Python frame of the backend's in between.
    """

    def acquire_within(self, timeout: float, /) -> bool: ...


@runtime_checkable
class RefusingRelease(Protocol):
    """A Lock kernel whose ``release`` raises *release_refusal* (not NotHeldError) when unheld.

    For a release that is one C call with an exception of its own (posix: CPython's
    SemLock raises ``ValueError``): the neutral layer turns that exception into
    :class:`~polysync.errors.NotHeldError`, so the kernel needs no frame of its own.
    """

    @property
    def release_refusal(self) -> type[Exception]: ...


@runtime_checkable
class Discardable(Protocol):
    """Dropping a handle that the garbage collector collected without ``close()``.

    The GC runs finalizers in whichever thread allocates, at any point, even inside the
    backend's client while it holds its locks: ``discard`` must neither block nor talk
    to a server through a connection that thread may be using. A kernel whose
    ``close()`` does either provides ``discard`` and hands that work to a thread of its
    own. Without it, the finalizer calls ``close()``.
    """

    def discard(self) -> None: ...


@runtime_checkable
class Fenced(Protocol):
    """Each acquisition carries a fencing token, strictly increasing per object.

    Required of Lock, RLock, Semaphore and BoundedSemaphore kernels by
    :attr:`Capability.FENCING`.
    """

    @property
    def fencing_token(self) -> int | None:
        """The token of this handle's latest acquisition (``None`` before the first)."""


@runtime_checkable
class Leased(Fenced, Protocol):
    """Holds are leases: renewed while the holder lives, lost if they cannot be.

    Required of Lock, RLock, Semaphore and BoundedSemaphore kernels by
    :attr:`Capability.LEASES`. ``on_lost`` (set through the backend's per-primitive
    options) is called, from the backend's own thread, when a lease is lost.
    """

    @property
    def lost(self) -> bool:
        """Whether the lease of what this handle holds could not be renewed."""

    on_lost: Callable[[], object] | None


@runtime_checkable
class OwnerDeath(Protocol):
    """A lock whose holder died is taken over by the next acquirer, who is told.

    Required of RLock kernels by :attr:`Capability.OWNER_DEATH`. The takeover emits
    :class:`~polysync.errors.OwnerDiedWarning` through
    :func:`polysync.errors.warn_owner_died`, which gives the lock back if the warning
    was made an error.
    """

    @property
    def owner_died(self) -> bool:
        """Whether this handle holds the lock because it took it over from a dead holder."""


@runtime_checkable
class Introspectable(Protocol):
    """``statistics()``: a snapshot of the kernel's state for users and tools.

    Without it, a primitive's ``statistics()`` reports its kind and name and leaves
    every state field ``None``.
    """

    def statistics(self) -> KernelState: ...


@runtime_checkable
class StoppableBarrier(Protocol):
    """A Barrier kernel whose wait another thread can stop, the party leaving unbroken.

    :mod:`polysync.aio` waits at a barrier in one of its threads; a cancelled task stops
    that wait through this. A stopped party leaves as an interrupted wait does: it no
    longer counts, and the barrier is not broken. Without it, a cancelled async wait
    leaves its thread waiting as a party until the barrier passes, breaks or times out
    (see docs/asyncio.md).
    """

    def wait_stoppable(
        self,
        timeout: float | None,
        action: Callable[[], object] | None,
        stopped: Callable[[], bool],
    ) -> int | None:
        """As ``wait``; ``None`` once ``stopped()`` is true (checked at least every 50 ms)."""


@runtime_checkable
class LockBacked(Protocol):
    """An RLock kernel whose exclusion is a Lock kernel that any thread may release, its
    recursion counted apart (as ``polysync.derived.locks.DepthOverLock`` does: the redis
    and postgres RLocks).

    :mod:`polysync.aio` then takes :attr:`lock_kernel` for a task and counts the task's
    recursion itself, so a held async RLock pins no thread; a sync holder of the same
    RLock goes through the same Lock kernel, so the two still exclude each other. An
    RLock kernel owned by a thread (a kernel mutex) does not declare it.
    """

    @property
    def lock_kernel(self) -> LockKernel: ...


@runtime_checkable
class AsyncAcquire(Protocol):
    """A Lock, Semaphore or BoundedSemaphore kernel's acquire as a coroutine (native asyncio).

    :mod:`polysync.aio` checks a kernel against it once, when an async handle wraps the
    sync one, and then awaits ``acquire_async`` on the event loop instead of running
    ``acquire`` in its waiter threads: a waiting task then costs no thread. Without it
    (every backend gets this for free), waits run in those threads, in 50 ms slices.

    The contract is ``acquire``'s, plus:

    - it runs on whichever loop awaits it, and on any number of loops (one after another,
      or in several threads at once): whatever it keeps per loop (connections) belongs
      to that loop, and what a finished loop leaves is released;
    - it never blocks the loop's thread (no blocking I/O, no waiting on thread locks
      another thread may hold long);
    - it ends within *timeout* (plus the backend's bounded clean-up) however the server
      behaves: one frozen or gone raises the backend's connection error, never hangs;
    - cancelled at any await, it raises ``CancelledError`` and holds nothing: a grant
      that raced the cancellation is given back (the backend may finish that after the
      coroutine has ended, from a thread of its own, but must finish it);
    - it records what ``acquire`` records (fencing token, lease renewal, ``lost``,
      ``owner_died``), so the sync handle's properties hold for either acquire.

    polysync.aio still queues the tasks of one loop on one handle locally: per handle and
    loop, at most two waiting ``acquire_async`` calls are out at once (that of the task
    which found nobody queued, and the queue's), besides tries (``blocking=False``).
    """

    def acquire_async(
        self, blocking: bool, timeout: float | None, /
    ) -> Coroutine[Any, Any, bool]: ...


@runtime_checkable
class AsyncRelease(Protocol):
    """A Lock, Semaphore or BoundedSemaphore kernel's release as a coroutine (native asyncio).

    As :class:`AsyncAcquire`, for ``release``: :mod:`polysync.aio` awaits
    ``release_async(n)`` on the loop (*n* is 1 for a Lock) instead of calling ``release``
    in its waiter threads. The contract is ``release``'s (its errors, its ``lost``
    report), the loop rules of :class:`AsyncAcquire`, and: polysync.aio runs it to its
    end even when the caller is cancelled (a release is never left half-done), so it
    must end within the backend's bounds.
    """

    def release_async(self, n: int, /) -> Coroutine[Any, Any, None]: ...


@runtime_checkable
class InlineCalls(Protocol):
    """An optional backend method: its kernels' calls that do not wait do no I/O.

    A try-acquire, a release, ``set``, ``clear``, ``notify`` and the reads then take
    microseconds, and :mod:`polysync.aio` makes them on the event loop's thread. Without
    it, every call of an async handle runs in polysync's waiter threads (right for a
    backend that talks to a server), but for the acquires of an :class:`AsyncAcquire`
    kernel. posix, thread and windows declare it.
    """

    def inline_calls(self) -> bool:
        """``True`` if calls that do not wait may run on an event loop's thread."""


_LEASED_KINDS = frozenset({Kind.LOCK, Kind.RLOCK, Kind.SEMAPHORE, Kind.BOUNDED_SEMAPHORE})


# -- backends -----------------------------------------------------------------------------


class Backend(Protocol):
    """What the neutral layer needs of a backend instance.

    :class:`polysync.derived.BaseBackend` implements all of it from a semaphore kernel,
    which a backend may override piece by piece.
    """

    #: The name users pass to :func:`polysync.get_context`.
    name: ClassVar[str]
    #: What the backend guarantees.
    capabilities: ClassVar[frozenset[Capability]]
    #: Accepted options and their defaults; anything else is a ``TypeError``.
    options: ClassVar[Mapping[str, object]]
    #: Options a single primitive accepts (``ctx.Lock(name="x", lease=5)``).
    primitive_options: ClassVar[frozenset[str]]
    #: The options this instance was made with, merged over the defaults.
    settings: dict[str, object]

    @property
    def cleanup_bound(self) -> float:
        """Seconds within which an anonymous object is gone once its last user closed it
        or exited (the conformance suite waits this long)."""

    def object_name(self, user_name: str) -> ObjectName: ...

    def anonymous_name(self) -> ObjectName: ...

    def open_lock(self, name: ObjectName, *, create: bool) -> LockKernel: ...

    def open_rlock(self, name: ObjectName, *, create: bool) -> RLockKernel: ...

    def open_semaphore(
        self, name: ObjectName, value: int, *, bounded: bool, create: bool
    ) -> SemaphorePrimitiveKernel: ...

    def open_event(self, name: ObjectName, *, create: bool) -> EventKernel: ...

    def open_condition(self, name: ObjectName, *, create: bool) -> ConditionKernel: ...

    def open_barrier(self, name: ObjectName, parties: int, *, create: bool) -> BarrierKernel: ...

    def configure_primitive(self, kernel: object, options: Mapping[str, object]) -> None:
        """Apply per-primitive *options* (names within :attr:`primitive_options`)."""

    def unlink_primitive(self, name: ObjectName) -> bool:
        """Remove every stored object of the primitive *name*; ``True`` if any existed."""

    def hold_for_transfer(self, name: ObjectName) -> None:
        """The anonymous primitive *name* is being pickled: keep it until the receiver opens it."""

    def picklable_settings(self) -> dict[str, object]:
        """The options that recreate this backend in another process (no live objects)."""

    def describe(self) -> str:
        """One secret-free line for reprs and error messages."""

    def close(self) -> None:
        """Release backend-wide resources that primitives do not need (idle connections);
        primitives already open stay usable until closed."""


@runtime_checkable
class Findable(Protocol):
    """An optional backend method: the kind of an existing primitive, found by its name.

    :meth:`polysync.Context.open` (and ``polysync inspect``) use it to open an object
    whatever its kind, without creating it. :class:`polysync.derived.BaseBackend` supplies
    it from the block header for every backend with shared cells (posix, windows, thread);
    the redis backend reads its meta key. Without it, ``Context.open`` refuses with a
    :class:`~polysync.BackendError`.
    """

    def find_primitive(self, name: ObjectName) -> Found | None:
        """What the primitive *name* is, or ``None`` if it does not exist.

        Must not create, change or hold anything (no acquire, no renewal), and must
        leave no handle open. A store that holds something else under the name raises
        :class:`~polysync.KindMismatchError`; an unreachable server, the backend's
        connection error.
        """


@runtime_checkable
class Listable(Protocol):
    """An optional backend method: every named object it stores (``polysync ls``).

    Required by :attr:`Capability.LISTING`. The conformance suite checks that an object
    made by name is listed and that an unlinked one is not.
    """

    def list_primitives(self) -> Iterable[Listed]:
        """The named objects that exist now, in any order (a snapshot).

        Must not create, change or hold anything, and must scale: a server-backed store
        iterates (Redis: ``SCAN``, never ``KEYS``). Anonymous objects and waiters are not
        listed. An unreachable server raises the backend's connection error.
        """


@runtime_checkable
class Collectable(Protocol):
    """An optional backend method: remove what dead processes left (``polysync gc``).

    Required by :attr:`Capability.ORPHAN_COLLECTION`. What counts is up to the backend
    (anonymous objects nobody can reach any more, waiter objects of dead processes,
    queue entries of dead waiters), with one rule: never anything a live process uses
    or may still reach; when in doubt, keep it.
    """

    def collect_orphans(self, dry_run: bool) -> list[Orphan]:
        """Remove (with *dry_run*: only find) the orphans; return what was (would be) removed."""


_REQUIREMENTS: dict[Capability, tuple[Requirement, ...]] = {
    Capability.FENCING: (Requirement(_LEASED_KINDS, Fenced),),
    Capability.LEASES: (Requirement(_LEASED_KINDS, Leased),),
    Capability.OWNER_DEATH: (Requirement(frozenset({Kind.RLOCK}), OwnerDeath),),
    Capability.LISTING: (Requirement(frozenset(), Listable),),
    Capability.ORPHAN_COLLECTION: (Requirement(frozenset(), Collectable),),
}


class SemaphoreBackend(Backend, Protocol):
    """A backend of the floor: the stored objects :mod:`polysync.derived` builds from.

    ``cells_kernel`` and ``close_cells`` exist if and only if the backend declares
    :attr:`Capability.SHARED_CELLS`.
    """

    def semaphore_kernel(self, name: ObjectName, value: int, *, create: bool) -> SemaphoreKernel:
        """Open the semaphore *name*; with *create*, make it at *value* if it is missing.

        Raise :class:`~polysync.errors.NotFoundError` when it is missing and not *create*.
        """

    def cells_kernel(self, name: ObjectName, size: int, *, create: bool) -> tuple[Cells, bool]:
        """Open the cells *name*; with *create*, make *size* cells reading 0 if missing.

        Return them and whether this call created them. An existing block is returned
        whole, whatever *size* is asked: its header says what it holds. Raise
        :class:`~polysync.errors.NotFoundError` when it is missing and not *create*.
        """

    def close_cells(self, cells: Cells) -> None:
        """Drop a handle returned by :meth:`cells_kernel`."""

    def unlink(self, name: ObjectName) -> bool:
        """Remove the stored object *name* (a semaphore or cells); ``False`` if there was none."""
