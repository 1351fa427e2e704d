"""The seven primitives, each defined once over whatever kernels the backend supplies.

This layer owns everything users see: argument checks, timeouts, ownership errors,
context managers, pickling, reprs, statistics, ``close()`` and ``unlink()``. Kernels
below it trust their inputs. A kernel's optional features (:mod:`polysync.kernel`) are
taken once, when the kernel is attached to a handle, and bound on the handle: the hot
paths call them without looking anything up. Every class takes ``name=`` (``None`` for
an anonymous object) and ``ctx=`` (a :class:`polysync.Context`; ``None`` means the
default context), so ``polysync.Lock()`` works like ``multiprocessing.Lock()``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, NoReturn, Protocol, TypeVar

from polysync import _validate, errors, instrument
from polysync._attach import (
    Closed,
    ClosedBarrier,
    ClosedCondition,
    ClosedEvent,
    ClosedLock,
    ClosedSemaphore,
    check_kernel,
)
from polysync.errors import ClosedError, NotHeldError
from polysync.kernel import (
    BarrierKernel,
    Capability,
    ConditionKernel,
    Discardable,
    EventKernel,
    Fenced,
    Findable,
    ForeverAcquire,
    Found,
    Introspectable,
    KernelState,
    Kind,
    Leased,
    LockKernel,
    ObjectName,
    OwnerDeath,
    RefusingRelease,
    RLockKernel,
    SemaphorePrimitiveKernel,
    TimedAcquire,
)

if TYPE_CHECKING:
    from types import TracebackType

    from polysync.api import Context

__all__ = [
    "Barrier",
    "BoundedSemaphore",
    "Condition",
    "Event",
    "Lock",
    "RLock",
    "Semaphore",
    "Statistics",
]


class _Closable(Protocol):
    def close(self) -> None: ...


class _AcquirableKernel(_Closable, Protocol):
    def acquire(self, blocking: bool, timeout: float | None) -> bool: ...


class _ReleasableLock(_AcquirableKernel, Protocol):
    def release(self) -> None: ...

    def locked(self) -> bool: ...


_T = TypeVar("_T")
K = TypeVar("K", bound=_Closable)
AK = TypeVar("AK", bound=_AcquirableKernel)
LK = TypeVar("LK", bound=_ReleasableLock)
#: Float timeouts up to this take the fast path (larger ones wait forever: see _validate).
_MAX_TIMEOUT = _validate.MAX_TIMEOUT
#: Int timeouts up to this take the fast path (larger ones are checked in full).
_LARGEST_INT_TIMEOUT = int(_validate.MAX_TIMEOUT)
_MAX_VALUE = _validate.MAX_VALUE
#: What a primitive holding a lease is (``lease=`` and ``on_lost=`` apply to these).
_LEASED = frozenset({Kind.LOCK, Kind.RLOCK, Kind.SEMAPHORE, Kind.BOUNDED_SEMAPHORE})


def _context(ctx: object) -> Context:
    from polysync.api import Context, get_context

    if ctx is None:
        return get_context()
    if not isinstance(ctx, Context):
        raise TypeError(
            "ctx must be a polysync context from polysync.get_context(), "
            f"not {type(ctx).__name__} {ctx!r}"
        )
    return ctx


@dataclass(frozen=True, kw_only=True)
class Statistics(KernelState):
    """A snapshot of one primitive, from ``statistics()`` (``None``: not known here).

    The state a kernel reports (:class:`~polysync.kernel.KernelState`: ``waiting``,
    ``holder``, ``locked``, ``value``, ``is_set``, ``broken``, ``lease_remaining``,
    ``fencing_token``, ``last_fencing_token``, ``holder_lease_remaining``), with the
    primitive's ``kind``, ``name`` and ``backend``, a Barrier's ``parties``, and this
    handle's ``owner_died``. Every field is what the backend could tell at that moment;
    another process may have changed it since. ``waiting`` counts the callers blocked on
    it (for a Barrier, the parties waiting).

    Two pairs describe leases and tokens. ``lease_remaining`` and ``fencing_token`` are
    *this handle's*: ``None`` on a handle that holds nothing (such as the one
    ``polysync inspect`` opens). ``holder_lease_remaining`` and ``last_fencing_token``
    are *the object's*: the current holder's lease left and the latest token granted,
    whoever holds it, as any handle sees them.
    """

    kind: str
    name: str | None
    backend: str
    parties: int | None = None
    owner_died: bool | None = None

    def as_dict(self) -> dict[str, object]:
        """The fields as a dict (``holder`` as a dict too), for JSON and logs."""
        return dataclasses.asdict(self)


_STATE_FIELDS = tuple(field.name for field in dataclasses.fields(KernelState))


class _Primitive(Generic[K]):
    """What every primitive shares: identity, lifetime, pickling, repr and statistics."""

    __slots__ = (
        "__weakref__",
        "_ctx",
        "_finalizer",
        "_introspect",
        "_kernel",
        "_name",
        "_object_name",
        "_options",
    )
    _kind: ClassVar[Kind]

    _ctx: Context
    _kernel: K
    _name: str | None
    _object_name: ObjectName
    _introspect: Introspectable | None

    def _attach(
        self,
        ctx: Context,
        name: str | None,
        object_name: ObjectName,
        kernel: K,
        options: dict[str, object],
    ) -> None:
        backend = ctx.backend
        try:
            check_kernel(backend, self._kind, kernel)
            if options:
                backend.configure_primitive(kernel, options)
        except BaseException:
            _close_quietly(kernel)
            raise
        self._ctx = ctx
        self._name = name
        self._object_name = object_name
        self._kernel = kernel
        self._options = options
        # A handle nobody closed is dropped by its finalizer, which the GC may run in any
        # thread at any allocation, even one holding the backend client's locks: the
        # kernel's discard(), where it has one, is the variant that never blocks.
        self._finalizer = weakref.finalize(
            self, kernel.discard if isinstance(kernel, Discardable) else kernel.close
        )
        self._bind(kernel)
        self._track()

    def _track(self) -> None:
        """Register with :mod:`polysync.instrument` (handles that report override it)."""

    def _bind(self, kernel: K) -> None:
        """Take the kernel's optional features, checked once (never probed per call)."""
        self._introspect = kernel if isinstance(kernel, Introspectable) else None

    def _closed_kernel(self) -> K:
        raise NotImplementedError

    def _untrack(self) -> None:
        """Leave :mod:`polysync.instrument` (at close)."""

    def _open(
        self,
        ctx: Context | None,
        name: object,
        params: tuple[Any, ...],
        options: dict[str, object],
    ) -> None:
        """Check the arguments, open (or create) the kernel, attach it."""
        context = _context(ctx)
        user, object_name = self._names(context, name, options)
        kernel = self._open_kernel(context, object_name, params, True)
        self._attach(context, user, object_name, kernel, options)

    @classmethod
    def _open_kernel(
        cls, ctx: Context, object_name: ObjectName, params: tuple[Any, ...], create: bool
    ) -> K:
        raise NotImplementedError

    @classmethod
    def _names(
        cls, ctx: Context, name: object, options: dict[str, object]
    ) -> tuple[str | None, ObjectName]:
        user = _validate.name(name)
        backend = ctx.backend
        if options:
            cls._check_options(ctx, options)
        return user, backend.anonymous_name() if user is None else backend.object_name(user)

    @classmethod
    def _check_options(cls, ctx: Context, options: dict[str, object]) -> None:
        """Refuse unknown per-primitive options, and bad ``lease=`` / ``on_lost=`` values.

        ``lease=`` and ``on_lost=`` belong to the ``leases`` capability: they are checked
        here, before anything is stored, for every backend that accepts them.
        """
        backend = ctx.backend
        unknown = sorted(set(options) - backend.primitive_options)
        if unknown:
            accepted = ", ".join(sorted(backend.primitive_options)) or "none"
            raise TypeError(
                f"{cls.__name__}() got unknown option(s) {', '.join(unknown)} for the "
                f"{ctx.name!r} backend; accepted: {accepted}"
            )
        if Capability.LEASES not in backend.capabilities:
            return
        leased = {"lease", "on_lost"} & set(options)
        if leased and cls._kind not in _LEASED:
            raise TypeError(
                f"{' and '.join(f'{o}=' for o in sorted(leased))} apply to a Lock, RLock, "
                f"Semaphore or BoundedSemaphore (what holds a lease), not to {cls.__name__}"
            )
        lease = options.get("lease")
        if lease is not None:
            _validate.seconds_option(
                lease, "lease", _validate.MIN_SECONDS_OPTION, _validate.MAX_SECONDS_OPTION
            )
        on_lost = options.get("on_lost")
        if on_lost is not None and not callable(on_lost):
            raise TypeError(
                f"on_lost must be callable or None, not {type(on_lost).__name__} "
                f"{_validate.shown(on_lost)}"
            )

    @property
    def name(self) -> str | None:
        """The name this object was opened by, or ``None`` if it is anonymous."""
        return self._name

    @property
    def context(self) -> Context:
        """The context (backend and options) this object lives in."""
        return self._ctx

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called on this handle."""
        return isinstance(self._kernel, Closed)

    def close(self) -> None:
        """Drop this handle; the object lives on for other handles (named: until unlinked).

        A closed handle holds nothing: every operation raises
        :class:`~polysync.ClosedError`, ``lost`` and ``owner_died`` read ``False`` and
        ``fencing_token`` reads ``None``.
        """
        closer = self._detach_kernel()
        if closer is not None:
            closer()

    def _detach_kernel(self) -> Callable[[], None] | None:
        """Make this handle closed; return what closes the kernel (``None``: nothing to).

        polysync.aio calls it to close the kernel later, once its waiter threads are
        out of it.
        """
        if self.closed:
            return None
        kernel = self._kernel
        closed = self._closed_kernel()
        self._untrack()
        self._kernel = closed
        self._bind(closed)
        if self._finalizer.detach() is None:  # the finalizer already closed it
            return None
        return kernel.close

    def unlink(self) -> None:
        """Destroy the object's name: later opens of the name create a new object.

        Handles already open keep working on backends that allow it (posix does).
        """
        self._ctx.backend.unlink_primitive(self._object_name)

    def statistics(self) -> Statistics:
        """A snapshot of this object's state (see :class:`~polysync.Statistics`)."""
        if self.closed:
            raise ClosedError(f"this {type(self).__name__} is closed; open it again to use it")
        introspect = self._introspect
        state = introspect.statistics() if introspect is not None else KernelState()
        values: dict[str, Any] = {field: getattr(state, field) for field in _STATE_FIELDS}
        # What the kernel could not tell, the neutral layer may know (or ask it).
        for field, value in self._known_state().items():
            if values.get(field) is None:
                values[field] = value
        return Statistics(kind=self._kind.value, name=self._name, backend=self._ctx.name, **values)

    def _known_state(self) -> dict[str, object]:
        """State fields this layer can fill in for its kind."""
        return {}

    def _params(self) -> tuple[Any, ...]:
        return ()

    def _restore(self, params: tuple[Any, ...]) -> None:
        pass

    def __reduce__(self) -> tuple[object, ...]:
        if self.closed:
            raise ClosedError(f"cannot pickle a closed {type(self).__name__}")
        if self._name is None:
            self._ctx.backend.hold_for_transfer(self._object_name)
        # Callbacks stay behind: they belong to this process.
        options = {k: v for k, v in self._options.items() if not callable(v)}
        return (
            _rebuild,
            (self._ctx, type(self), self._name, self._object_name, self._params(), options),
        )

    def _state(self) -> str:
        return ""

    def __repr__(self) -> str:
        label = f"name={self._name!r}" if self._name is not None else "anonymous"
        if self.closed:
            state = "closed"
        else:
            try:
                state = self._state()
            except Exception:  # a repr must not raise (e.g. server gone)
                state = "?"
        extra = f" {state}" if state else ""
        return f"<polysync.{type(self).__name__} {label} backend={self._ctx.name!r}{extra}>"


def _close_quietly(kernel: _Closable) -> None:
    with contextlib.suppress(Exception):
        kernel.close()


def _rebuild(
    ctx: Context,
    cls: type[_Primitive[K]],
    name: str | None,
    object_name: ObjectName,
    params: tuple[Any, ...],
    options: dict[str, object],
) -> _Primitive[K]:
    """Reopen a pickled primitive: named ones by name, anonymous ones only if still alive."""
    self = cls.__new__(cls)
    create = name is not None
    kernel = cls._open_kernel(ctx, object_name, params, create)
    self._restore(params)
    self._attach(ctx, name, object_name, kernel, options)
    return self


class _NeverRaisedError(Exception):
    """The release refusal of kernels whose release raises NotHeldError itself."""


class _Acquirable(_Primitive[AK]):
    """The shared acquire() of locks and semaphores, with its allocation-free fast path."""

    __slots__ = (
        "_acquire",
        "_acquire_forever",
        "_acquire_within",
        "_fenced",
        "_leased",
        "_owner_death",
        "_probe",
        "_release",
    )
    _acquire: Callable[[bool, float | None], bool]
    _acquire_forever: Callable[[], object]
    _acquire_within: Callable[[float], bool] | None
    _fenced: Fenced | None
    _leased: Leased | None
    _owner_death: OwnerDeath | None
    _probe: instrument.Probe | None

    def _bind(self, kernel: AK) -> None:
        super()._bind(kernel)
        self._acquire = kernel.acquire
        self._acquire_forever = (
            kernel.acquire_forever
            if isinstance(kernel, ForeverAcquire)
            else functools.partial(kernel.acquire, True, None)
        )
        self._acquire_within = kernel.acquire_within if isinstance(kernel, TimedAcquire) else None
        self._fenced = kernel if isinstance(kernel, Fenced) else None
        self._leased = kernel if isinstance(kernel, Leased) else None
        self._owner_death = kernel if isinstance(kernel, OwnerDeath) else None

    # -- polysync.instrument: the timing stand-ins, bound only while someone listens -------

    def _track(self) -> None:
        self._probe = None
        instrument.track(self)
        if instrument.active:  # rebinding is idempotent: a subscribe meanwhile may have too
            self._rebind()

    def _untrack(self) -> None:
        instrument.forget(self)
        self._uninstrument()

    def _rebind(self) -> None:
        """Bind the kernel's calls again, timed or raw as :mod:`polysync.instrument` says."""
        if self.closed:
            return
        self._uninstrument()
        self._bind(self._kernel)
        if instrument.active:
            self._instrument()

    def _instrument(self) -> None:
        owner = self._owner_death
        probe = instrument.Probe(
            self._kind.value,
            self._name,
            self._ctx.name,
            self._depth(),
            None if owner is None else functools.partial(getattr, owner, "owner_died"),
        )
        self._acquire = probe.acquire(self._acquire)
        self._acquire_forever = probe.acquire_forever(self._acquire_forever)
        if self._acquire_within is not None:
            self._acquire_within = probe.acquire_within(self._acquire_within)
        self._time_release(probe)
        leased = self._leased
        if leased is not None:
            leased.on_lost = probe.on_lost(leased.on_lost)
        self._probe = probe

    def _time_release(self, probe: instrument.Probe) -> None:
        raise NotImplementedError

    def _depth(self) -> Callable[[], int] | None:
        """What tells a reentrant kernel's depth (``None``: each acquire is a hold)."""
        return None

    def _uninstrument(self) -> None:
        probe, self._probe = self._probe, None
        if probe is not None and self._leased is not None:
            self._leased.on_lost = probe.original_on_lost

    # blocking is not keyword-only: on CPython 3.11 a keyword-only default costs a third of
    # the uncontended acquire+release (it is filled from a dict at every call).
    def acquire(
        self, block: bool = True, timeout: float | None = None, blocking: bool | None = None
    ) -> bool:
        """Acquire, waiting at most *timeout* seconds (``None``: forever); ``True`` if acquired.

        ``block=False`` returns at once. ``blocking=`` is accepted, as a keyword, as in
        threading.
        """
        if block is True and blocking is None:
            # The common calls, checked without the general path, and straight to the
            # kernel's raw waits where it has them.
            if timeout is None:
                self._acquire_forever()
                return True
            if type(timeout) is float:
                if 0.0 <= timeout <= _MAX_TIMEOUT:
                    within = self._acquire_within
                    if within is not None:
                        return within(timeout)
                    return self._acquire(True, timeout)
            elif type(timeout) is int and 0 <= timeout <= _LARGEST_INT_TIMEOUT:
                seconds = float(timeout)
                within = self._acquire_within
                if within is not None:
                    return within(seconds)
                return self._acquire(True, seconds)
        flag, seconds_or_none = _validate.block_and_timeout(block, timeout, blocking)
        return self._acquire(flag, seconds_or_none)

    @property
    def fencing_token(self) -> int | None:
        """The fencing token of this handle's latest acquisition (``fencing`` capability).

        It strictly increases per object across all holders, lease expiries included:
        pass it to the resource you protect and have it refuse smaller ones. ``None``
        on backends without fencing, before the first acquisition, and once closed.
        """
        fenced = self._fenced
        return None if fenced is None else fenced.fencing_token

    @property
    def lost(self) -> bool:
        """Whether the lease of what this handle holds could not be renewed (it may be gone).

        Always ``False`` on backends without leases, and once closed.
        """
        leased = self._leased
        return leased is not None and leased.lost

    def _known_state(self) -> dict[str, object]:
        fenced = self._fenced
        owner = self._owner_death
        return {
            "owner_died": None if owner is None else owner.owner_died,
            "fencing_token": None if fenced is None else fenced.fencing_token,
        }


class _LockLike(_Acquirable[LK]):
    __slots__ = ("_refusal",)
    _refusal: type[Exception]

    def _bind(self, kernel: LK) -> None:
        super()._bind(kernel)
        self._release = kernel.release
        self._refusal = (
            kernel.release_refusal if isinstance(kernel, RefusingRelease) else _NeverRaisedError
        )

    def _time_release(self, probe: instrument.Probe) -> None:
        self._release = probe.release(self._release)

    def release(self) -> None:
        """Release; raises :class:`~polysync.NotHeldError` when the state does not allow it."""
        try:
            self._release()
        except self._refusal:
            raise self._not_held() from None

    @staticmethod
    def _not_held() -> NotHeldError:
        return errors.lock_not_held()

    def __enter__(self) -> bool:
        self._acquire_forever()
        return True

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:  # release(), without a frame of its own
            self._release()
        except self._refusal:
            raise self._not_held() from None

    def locked(self) -> bool:
        """Whether anyone holds it (a snapshot)."""
        return self._kernel.locked()

    @property
    def owner_died(self) -> bool:
        """Whether this handle holds the lock because it took it over from a dead holder.

        True from that acquire until this handle releases the lock; an
        :class:`~polysync.OwnerDiedWarning` is emitted at the takeover. Only backends with
        the ``owner-death`` capability detect it (posix, windows and redis: Lock and RLock).
        """
        owner = self._owner_death
        return owner is not None and owner.owner_died

    def _known_state(self) -> dict[str, object]:
        return {**super()._known_state(), "locked": self._kernel.locked()}

    def _state(self) -> str:
        return "locked" if self.locked() else "unlocked"


class Lock(_LockLike[LockKernel]):
    """A non-recursive lock: any process or thread may release it, once per acquire.

    Releasing it while unlocked raises :class:`~polysync.NotHeldError`, which is both the
    ``ValueError`` of multiprocessing and the ``RuntimeError`` of threading.
    """

    __slots__ = ()
    _kind = Kind.LOCK

    def __init__(
        self, *, name: str | None = None, ctx: Context | None = None, **options: object
    ) -> None:
        self._open(ctx, name, (), options)

    @classmethod
    def _open_kernel(
        cls, ctx: Context, object_name: ObjectName, params: tuple[Any, ...], create: bool
    ) -> LockKernel:
        return ctx.backend.open_lock(object_name, create=create)

    def _closed_kernel(self) -> LockKernel:
        return ClosedLock("this Lock")


class RLock(_LockLike[RLockKernel]):
    """A reentrant lock owned by one thread of one process.

    The owner may acquire it again; it is free once released as many times. A release by
    anyone else raises :class:`~polysync.NotHeldError`. A forked child does not inherit
    its parent's ownership.
    """

    __slots__ = ()
    _kind = Kind.RLOCK

    def __init__(
        self, *, name: str | None = None, ctx: Context | None = None, **options: object
    ) -> None:
        self._open(ctx, name, (), options)

    @classmethod
    def _open_kernel(
        cls, ctx: Context, object_name: ObjectName, params: tuple[Any, ...], create: bool
    ) -> RLockKernel:
        return ctx.backend.open_rlock(object_name, create=create)

    def _closed_kernel(self) -> RLockKernel:
        return ClosedLock("this RLock")

    def _depth(self) -> Callable[[], int] | None:
        return self._kernel.recursion_level

    @classmethod
    def _derived(cls, ctx: Context, name: str | None) -> RLock:
        """The RLock a primitive makes for itself, named after it (*name* may exceed the
        user's limit by its suffix: the primitive's name was checked, this one is derived)."""
        self = cls.__new__(cls)
        backend = ctx.backend
        object_name = backend.anonymous_name() if name is None else backend.object_name(name)
        self._attach(ctx, name, object_name, cls._open_kernel(ctx, object_name, (), True), {})
        return self

    @staticmethod
    def _not_held() -> NotHeldError:
        return errors.rlock_not_owned()

    def _is_owned(self) -> bool:
        """Whether the calling thread owns it (threading's private API, kept for drop-in use)."""
        return self._kernel.is_owned()

    def _recursion_count(self) -> int:
        """How many times the calling thread holds it (0 if it does not own it)."""
        return self._kernel.recursion_level()


class Semaphore(_Acquirable[SemaphorePrimitiveKernel]):
    """A counting semaphore, starting at *value*.

    ``release(n)`` adds *n*; ``acquire`` takes one, waiting while the count is zero.
    For a named semaphore the first opener's *value* wins; later *value*\\ s are ignored.
    """

    __slots__ = ("_initial",)
    _kind = Kind.SEMAPHORE
    _bounded: ClassVar[bool] = False
    _release: Callable[[int], None]

    def __init__(
        self,
        value: int = 1,
        *,
        name: str | None = None,
        ctx: Context | None = None,
        **options: object,
    ) -> None:
        _validate.count(value, "value", 0)
        self._initial = value
        self._open(ctx, name, (value,), options)

    @classmethod
    def _open_kernel(
        cls, ctx: Context, object_name: ObjectName, params: tuple[Any, ...], create: bool
    ) -> SemaphorePrimitiveKernel:
        return ctx.backend.open_semaphore(
            object_name, params[0], bounded=cls._bounded, create=create
        )

    def _closed_kernel(self) -> SemaphorePrimitiveKernel:
        return ClosedSemaphore(f"this {type(self).__name__}")

    def _bind(self, kernel: SemaphorePrimitiveKernel) -> None:
        super()._bind(kernel)
        self._release = kernel.release

    def _time_release(self, probe: instrument.Probe) -> None:
        self._release = probe.release_n(self._release)

    def _params(self) -> tuple[Any, ...]:
        return (self._initial,)

    def _restore(self, params: tuple[Any, ...]) -> None:
        self._initial = params[0]

    def release(self, n: int = 1) -> None:
        """Add *n* (default 1) to the count, waking up to *n* waiters.

        *n* is an int in ``1..MAX_VALUE``; a release that would take the value past
        :data:`polysync.MAX_VALUE` raises ``ValueError`` and releases nothing.
        """
        if type(n) is not int or n != 1:
            _validate.count(n, "n", 1)
            if not self._bounded:  # a bound (at most MAX_VALUE) is checked by the kernel
                self._check_headroom(n)
        try:
            self._release(n)
        except OSError as exc:
            _release_failed(exc, n)

    def _check_headroom(self, n: int) -> None:
        """Refuse a release of *n* past MAX_VALUE, against a snapshot of the value
        (where the backend can read it), before anything is posted."""
        if Capability.READABLE_VALUE in self._ctx.capabilities:
            value = self._kernel.get_value()
            if value + n > _MAX_VALUE:
                raise _validate.headroom(n, value)

    def get_value(self) -> int:
        """The current count (a snapshot)."""
        return self._kernel.get_value()

    @property
    def owner_died(self) -> bool:
        """Whether this handle holds a permit it took over from a holder that died.

        True from that acquire until this handle next releases, with an
        :class:`~polysync.OwnerDiedWarning` at the takeover, as a Lock's; backends whose
        semaphore permits outlive a dead holder's lease report it (redis).
        """
        owner = self._owner_death
        return owner is not None and owner.owner_died

    def __enter__(self) -> bool:
        self._acquire_forever()
        return True

    def __exit__(self, *exc: object) -> None:
        self._release(1)

    def _known_state(self) -> dict[str, object]:
        known = super()._known_state()
        if Capability.READABLE_VALUE in self._ctx.capabilities:
            known["value"] = self._kernel.get_value()
        return known

    def _state(self) -> str:
        return f"value={self.get_value()}"


def _release_failed(exc: OSError, n: int) -> NoReturn:
    """Raise what a Semaphore release of *n* that failed with *exc* raises (for
    polysync.aio too): posix's sem_post at SEM_VALUE_MAX (a release of 1) is past
    MAX_VALUE; any other error as it is."""
    if exc.errno != errno.EOVERFLOW:
        raise exc
    raise _validate.headroom(n, _MAX_VALUE) from exc


class BoundedSemaphore(Semaphore):
    """A semaphore that may never be released above its initial *value*.

    Over-releasing raises :class:`~polysync.NotHeldError` (a ``ValueError``). As in
    multiprocessing, the bound is checked against a snapshot of the count.
    """

    __slots__ = ()
    _kind = Kind.BOUNDED_SEMAPHORE
    _bounded = True


class Event(_Primitive[EventKernel]):
    """A flag that processes can wait for: ``set()`` wakes every waiter."""

    __slots__ = ()
    _kind = Kind.EVENT

    def __init__(
        self, *, name: str | None = None, ctx: Context | None = None, **options: object
    ) -> None:
        self._open(ctx, name, (), options)

    @classmethod
    def _open_kernel(
        cls, ctx: Context, object_name: ObjectName, params: tuple[Any, ...], create: bool
    ) -> EventKernel:
        return ctx.backend.open_event(object_name, create=create)

    def _closed_kernel(self) -> EventKernel:
        return ClosedEvent("this Event")

    def set(self) -> None:
        """Set the flag and wake every waiter."""
        self._kernel.set()

    def clear(self) -> None:
        """Reset the flag; later ``wait()`` calls block until the next ``set()``."""
        self._kernel.clear()

    def is_set(self) -> bool:
        """Whether the flag is set."""
        return self._kernel.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the flag is set; ``True`` if it was, ``False`` on timeout."""
        return self._kernel.wait(_validate.timeout(timeout))

    def _known_state(self) -> dict[str, object]:
        return {"is_set": self._kernel.is_set()}

    def _state(self) -> str:
        return "set" if self.is_set() else "unset"


class Condition(_Primitive[ConditionKernel]):
    """A condition variable over a polysync Lock or RLock (a new RLock by default).

    ``wait``, ``wait_for``, ``notify`` and ``notify_all`` require the lock to be held.
    ``notify(n)`` wakes at most *n* waiters, oldest first; a woken waiter cannot lose its
    wake-up to another. A named Condition without a *lock* uses the RLock named
    ``<name>.lock``.
    """

    __slots__ = ("_lock", "_owns_lock")
    _kind = Kind.CONDITION
    _lock: Lock | RLock

    def __init__(
        self,
        lock: Lock | RLock | None = None,
        *,
        name: str | None = None,
        ctx: Context | None = None,
        **options: object,
    ) -> None:
        if lock is not None and not isinstance(lock, (Lock, RLock)):
            raise TypeError(
                f"lock must be a polysync Lock or RLock, not {type(lock).__name__} {lock!r}"
            )
        context = _context(ctx if ctx is not None or lock is None else lock.context)
        user, object_name = self._names(context, name, options)
        self._owns_lock = lock is None
        if lock is None:
            lock = RLock._derived(context, None if user is None else f"{user}.lock")
        elif lock.context.backend is not context.backend:
            raise ValueError(
                f"the lock belongs to the {lock.context.name!r} context, "
                f"the Condition to {context.name!r}: they must share one context"
            )
        try:
            kernel = self._open_kernel(context, object_name, (lock,), True)
            self._lock = lock
            self._attach(context, user, object_name, kernel, options)
        except BaseException:
            if self._owns_lock:
                lock.close()
            raise

    @classmethod
    def _open_kernel(
        cls, ctx: Context, object_name: ObjectName, params: tuple[Any, ...], create: bool
    ) -> ConditionKernel:
        return ctx.backend.open_condition(object_name, create=create)

    def _closed_kernel(self) -> ConditionKernel:
        return ClosedCondition("this Condition")

    def _params(self) -> tuple[Any, ...]:
        return (self._lock,)

    def _restore(self, params: tuple[Any, ...]) -> None:
        self._lock = params[0]
        self._owns_lock = True  # the unpickled lock is this handle's own copy

    @property
    def lock(self) -> Lock | RLock:
        """The underlying lock."""
        return self._lock

    def acquire(
        self, block: bool = True, timeout: float | None = None, blocking: bool | None = None
    ) -> bool:
        """Acquire the underlying lock (the arguments are the lock's)."""
        return self._lock.acquire(block, timeout, blocking)

    def release(self) -> None:
        """Release the underlying lock."""
        self._lock.release()

    def __enter__(self) -> bool:
        return self._lock.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    def _check_owned(self, what: str) -> None:
        if not self._lock._kernel.is_owned():
            raise errors.condition_unowned(what)

    def wait(self, timeout: float | None = None) -> bool:
        """Release the lock, wait for a notification, reacquire; ``False`` on timeout."""
        seconds = _validate.timeout(timeout)
        self._check_owned("wait")
        return self._kernel.wait(self._lock._kernel, seconds)

    def wait_for(self, predicate: Callable[[], _T], timeout: float | None = None) -> _T:
        """Wait until ``predicate()`` is true (checked under the lock); return its last value."""
        seconds = _validate.timeout(timeout)
        deadline = None if seconds is None else time.monotonic() + seconds
        result = predicate()
        while not result:
            remaining = None
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
            self.wait(remaining)
            result = predicate()
        return result

    def notify(self, n: int = 1) -> None:
        """Wake at most *n* waiters (any int ``>= 0``)."""
        if type(n) is not int or n < 0:
            _validate.count(n, "n", 0, maximum=None)
        self._check_owned("notify")
        # No more than MAX_VALUE can wait: a larger n wakes them all, as notify_all does.
        self._kernel.notify(n if n <= _MAX_VALUE else _MAX_VALUE)

    def notify_all(self) -> None:
        """Wake every waiter."""
        self._check_owned("notify")
        self._kernel.notify_all()

    notifyAll = notify_all  # noqa: N815  threading's old spelling

    def close(self) -> None:
        """Drop this handle, and the handle of the lock it made for itself (if it did)."""
        super().close()
        if self._owns_lock:
            self._lock.close()

    def unlink(self) -> None:
        """Destroy the Condition's name, and its default lock's (``<name>.lock``) with it."""
        super().unlink()
        if self._name is not None and self._lock.name == f"{self._name}.lock":
            self._lock.unlink()


class Barrier(_Primitive[BarrierKernel]):
    """A meeting point for *parties* processes; ``wait()`` returns a distinct index.

    The last party to arrive runs *action* (if this handle has one) before the others
    are released. A timeout, ``abort()`` or ``reset()`` breaks the waiters with
    :class:`~polysync.BrokenBarrierError`.
    """

    __slots__ = ("_action", "_parties", "_timeout")
    _kind = Kind.BARRIER

    def __init__(
        self,
        parties: int,
        action: Callable[[], object] | None = None,
        timeout: float | None = None,
        *,
        name: str | None = None,
        ctx: Context | None = None,
        **options: object,
    ) -> None:
        _validate.count(parties, "parties", 1)
        if action is not None and not callable(action):
            raise TypeError(f"action must be callable or None, not {type(action).__name__}")
        seconds = _validate.timeout(timeout)
        self._restore((parties, action, seconds))
        self._open(ctx, name, (parties, action, seconds), options)

    @classmethod
    def _open_kernel(
        cls, ctx: Context, object_name: ObjectName, params: tuple[Any, ...], create: bool
    ) -> BarrierKernel:
        return ctx.backend.open_barrier(object_name, params[0], create=create)

    def _closed_kernel(self) -> BarrierKernel:
        return ClosedBarrier("this Barrier")

    def _params(self) -> tuple[Any, ...]:
        return (self._parties, self._action, self._timeout)

    def _restore(self, params: tuple[Any, ...]) -> None:
        self._parties, self._action, self._timeout = params

    def wait(self, timeout: float | None = None) -> int:
        """Wait for all parties; return this party's index in ``range(parties)``.

        *timeout* ``None`` uses the barrier's own default timeout.
        """
        seconds = self._timeout if timeout is None else _validate.timeout(timeout)
        return self._kernel.wait(seconds, self._action)

    def reset(self) -> None:
        """Return to the empty state; parties waiting now get BrokenBarrierError."""
        self._kernel.reset()

    def abort(self) -> None:
        """Break the barrier: current and future ``wait()`` calls raise BrokenBarrierError."""
        self._kernel.abort()

    @property
    def parties(self) -> int:
        """How many parties must call ``wait()`` to pass (known even once closed)."""
        parties: int = self._parties
        return parties

    @property
    def n_waiting(self) -> int:
        """How many parties are waiting now."""
        return self._kernel.n_waiting()

    @property
    def broken(self) -> bool:
        """Whether the barrier is broken."""
        return self._kernel.broken()

    def _known_state(self) -> dict[str, object]:
        kernel = self._kernel
        return {"parties": self._parties, "broken": kernel.broken(), "waiting": kernel.n_waiting()}

    def _state(self) -> str:
        return f"parties={self.parties} waiting={self.n_waiting}" + (
            " broken" if self.broken else ""
        )


# -- opening an existing named object, whatever its kind ----------------------------------

_BY_KIND: dict[Kind, type[_Primitive[Any]]] = {
    Kind.LOCK: Lock,
    Kind.RLOCK: RLock,
    Kind.SEMAPHORE: Semaphore,
    Kind.BOUNDED_SEMAPHORE: BoundedSemaphore,
    Kind.EVENT: Event,
    Kind.CONDITION: Condition,
    Kind.BARRIER: Barrier,
}


def open_existing(ctx: Context, name: object) -> _Primitive[Any]:
    """The existing named object *name* of *ctx*, whatever its kind, opened without creating.

    What :meth:`polysync.Context.open` does; see there. Raises
    :class:`~polysync.NotFoundError` if there is no such object.
    """
    user = _validate.name(name)
    if user is None:
        raise TypeError("open() needs the name (a str) of a named object, not None")
    return _open_found(ctx, ctx.backend.object_name(user), user)


def _find(ctx: Context, object_name: ObjectName) -> Found | None:
    backend = ctx.backend
    if not isinstance(backend, Findable):
        raise errors.BackendError(
            f"the {ctx.name!r} backend cannot open an object without knowing its kind "
            "(it has no find_primitive(); see polysync.kernel.Findable)"
        )
    return backend.find_primitive(object_name)


def _open_found(ctx: Context, object_name: ObjectName, user: str) -> _Primitive[Any]:
    found = _find(ctx, object_name)
    if found is None:
        raise errors.NotFoundError(f"no object named {user!r} on the {ctx.name} backend")
    cls = _BY_KIND[found.kind]
    params: tuple[Any, ...]
    lock: Lock | RLock | None = None
    if cls is Condition:
        lock = _condition_lock(ctx, user)
        params = (lock,)
    elif cls is Barrier:
        params = (found.parameter, None, None)
    elif issubclass(cls, Semaphore):
        params = (found.parameter,)
    else:
        params = ()
    try:
        kernel = cls._open_kernel(ctx, object_name, params, False)
        self = cls.__new__(cls)
        self._restore(params)
        self._attach(ctx, user, object_name, kernel, {})
    except BaseException:
        if lock is not None:
            lock.close()
        raise
    return self


def _condition_lock(ctx: Context, user: str) -> Lock | RLock:
    """A Condition's default lock ``<name>.lock`` if it exists, else a closed stand-in."""
    lock_name = f"{user}.lock"
    object_name = ctx.backend.object_name(lock_name)
    found = _find(ctx, object_name)
    if found is not None and found.kind in (Kind.LOCK, Kind.RLOCK):
        lock = _open_found(ctx, object_name, lock_name)
        assert isinstance(lock, (Lock, RLock))
        return lock
    # The Condition was made with a lock of its creator's choosing, which its name does
    # not tell: the handle's lock is closed (statistics, notify counts need none).
    stand_in = Lock.__new__(Lock)
    stand_in._ctx = ctx
    stand_in._name = None
    stand_in._object_name = object_name
    stand_in._options = {}
    stand_in._finalizer = weakref.finalize(stand_in, _nothing)
    stand_in._kernel = ClosedLock(f"the lock of the Condition {user!r} (not {lock_name!r})")
    stand_in._bind(stand_in._kernel)
    return stand_in


def _nothing() -> None:
    pass
