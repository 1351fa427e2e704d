"""The seven primitives, each defined once over whatever kernels the backend supplies.

This layer owns everything users see: argument checks, timeouts, ownership errors,
context managers, pickling, reprs, ``close()`` and ``unlink()``. Kernels below it trust
their inputs. Every class takes ``name=`` (``None`` for an anonymous object) and ``ctx=``
(a :class:`polysync.Context`; ``None`` means the default context), so
``polysync.Lock()`` works like ``multiprocessing.Lock()``.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from polysync import _validate
from polysync.errors import ClosedError, NotHeldError
from polysync.kernel import Kind

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
]

_T = TypeVar("_T")
_INF = float("inf")


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


class _ClosedKernel:
    """Stands in for a closed handle's kernel: any use raises ClosedError."""

    def __init__(self, what: str) -> None:
        self._what = what

    def __getattr__(self, attr: str) -> Any:
        def closed(*args: object, **kwargs: object) -> Any:
            raise ClosedError(f"{self._what} is closed; open it again to use it")

        return closed


class _Primitive:
    """What every primitive shares: identity, lifetime, pickling and repr."""

    __slots__ = (
        "__weakref__",
        "_ctx",
        "_finalizer",
        "_kernel",
        "_name",
        "_object_name",
        "_options",
    )
    _kind: ClassVar[Kind]

    _ctx: Context
    _kernel: Any
    _name: str | None
    _object_name: str

    def _attach(
        self,
        ctx: Context,
        name: str | None,
        object_name: str,
        kernel: Any,
        options: dict[str, Any],
    ) -> None:
        self._ctx = ctx
        self._name = name
        self._object_name = object_name
        self._kernel = kernel
        self._options = options
        # A handle nobody closed is dropped by its finalizer, which the GC may run in any
        # thread at any allocation, even one holding the backend client's locks: the
        # kernel's discard(), where it has one, is the variant that never blocks.
        self._finalizer = weakref.finalize(self, getattr(kernel, "discard", kernel.close))
        if options:
            try:
                ctx.backend.configure_primitive(kernel, options)
            except BaseException:
                self._close_kernel(kernel)
                raise
        self._bind(kernel)

    def _bind(self, kernel: Any) -> None:
        """Cache the kernel's hot-path methods on the instance."""

    def _open(
        self, ctx: Context | None, name: object, params: tuple[Any, ...], options: dict[str, Any]
    ) -> Context:
        """Check the arguments, open (or create) the kernel, attach it; return the context."""
        context = _context(ctx)
        user, object_name = self._names(context, name, options)
        kernel = self._open_kernel(context, object_name, params, True)  # type: ignore[attr-defined]
        self._attach(context, user, object_name, kernel, options)
        return context

    @classmethod
    def _names(cls, ctx: Context, name: object, options: dict[str, Any]) -> tuple[str | None, str]:
        user = _validate.name(name)
        backend = ctx.backend
        unknown = sorted(set(options) - backend.primitive_options)
        if unknown:
            accepted = ", ".join(sorted(backend.primitive_options)) or "none"
            raise TypeError(
                f"{cls.__name__}() got unknown option(s) {', '.join(unknown)} for the "
                f"{ctx.name!r} backend; accepted: {accepted}"
            )
        return user, backend.anonymous_name() if user is None else backend.object_name(user)

    @property
    def name(self) -> str | None:
        """The name this object was opened by, or ``None`` if it is anonymous."""
        return self._name

    @property
    def context(self) -> Context:
        """The context (backend and options) this object lives in."""
        return self._ctx

    def close(self) -> None:
        """Drop this handle; the object lives on for other handles (named: until unlinked)."""
        kernel = self._kernel
        if isinstance(kernel, _ClosedKernel):
            return
        closed = _ClosedKernel(f"this {type(self).__name__}")
        self._kernel = closed
        self._bind(closed)
        self._close_kernel(kernel)

    def _close_kernel(self, kernel: Any) -> None:
        """Close *kernel* now, unless its finalizer already ran (it then never will)."""
        if self._finalizer.detach() is not None:
            kernel.close()

    def unlink(self) -> None:
        """Destroy the object's name: later opens of the name create a new object.

        Handles already open keep working on backends that allow it (posix does).
        """
        self._ctx.backend.unlink_primitive(self._object_name)

    def _params(self) -> tuple[Any, ...]:
        return ()

    def __reduce__(self) -> tuple[Any, ...]:
        if isinstance(self._kernel, _ClosedKernel):
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
        if isinstance(self._kernel, _ClosedKernel):
            state = "closed"
        else:
            try:
                state = self._state()
            except Exception:  # a repr must not raise (e.g. server gone)
                state = "?"
        extra = f" {state}" if state else ""
        return f"<polysync.{type(self).__name__} {label} backend={self._ctx.name!r}{extra}>"


def _rebuild(
    ctx: Context,
    cls: type[_Primitive],
    name: str | None,
    object_name: str,
    params: tuple[Any, ...],
    options: dict[str, Any],
) -> _Primitive:
    """Reopen a pickled primitive: named ones by name, anonymous ones only if still alive."""
    self = cls.__new__(cls)
    create = name is not None
    kernel = cls._open_kernel(ctx, object_name, params, create)  # type: ignore[attr-defined]
    self._attach(ctx, name, object_name, kernel, options)
    self._restore(params)  # type: ignore[attr-defined]
    return self


class _Acquirable(_Primitive):
    """The shared acquire() of locks and semaphores, with its allocation-free fast path."""

    __slots__ = ("_acquire", "_acquire_failed", "_acquire_forever", "_acquire_within", "_release")
    _acquire_failed: Any
    _acquire_within: Any

    def _bind(self, kernel: Any) -> None:
        self._acquire = kernel.acquire
        self._acquire_forever = kernel.acquire_forever
        self._acquire_within = getattr(kernel, "acquire_within", None)
        self._acquire_failed = getattr(kernel, "acquire_failed", None)
        self._release = kernel.release

    def acquire(
        self, block: bool = True, timeout: float | None = None, *, blocking: bool | None = None
    ) -> bool:
        """Acquire, waiting at most *timeout* seconds (``None``: forever); ``True`` if acquired.

        ``block=False`` returns at once. ``blocking=`` is accepted as in threading.
        """
        if block is True and timeout is None and blocking is None:
            try:
                self._acquire_forever()
            except Exception:
                # The fast path's raw call failed (an interrupted wait, a closed handle):
                # the full path retries and raises polysync's own error if it must.
                self._acquire(True, None)
            return True
        # The common timed call, checked without the general path, and straight to the
        # backend's raw timed wait where it has one.
        if block is True and blocking is None and type(timeout) is float and 0 <= timeout < _INF:
            within = self._acquire_within
            if within is not None:
                try:
                    got_it = within(timeout)
                except Exception as exc:
                    failed: bool = self._acquire_failed(exc, timeout)
                    return failed
                return got_it is not False
            got: bool = self._acquire(True, timeout)
            return got
        flag, seconds = _validate.block_and_timeout(block, timeout, blocking)
        result: bool = self._acquire(flag, seconds)
        return result


class _Leased:
    """Lease and fencing state, on backends that have them (``None``/False elsewhere)."""

    __slots__ = ()
    _kernel: Any

    @property
    def fencing_token(self) -> int | None:
        """The fencing token of this handle's latest acquisition (``fencing`` capability).

        It strictly increases per object across all holders, lease expiries included:
        pass it to the resource you protect and have it refuse smaller ones.
        """
        token: int | None = getattr(self._kernel, "fencing_token", None)
        return token

    @property
    def lost(self) -> bool:
        """Whether the lease of what this handle holds could not be renewed (it may be gone)."""
        return bool(getattr(self._kernel, "lost", False))


class _LockLike(_Acquirable, _Leased):
    # A __dict__ so that _bind can shadow release() with the kernel's own method, saving
    # a Python frame on the hot path (threading.Condition binds its lock's methods alike).
    __slots__ = ("__dict__",)

    def _bind(self, kernel: Any) -> None:
        super()._bind(kernel)
        self.__dict__["release"] = kernel.release

    def release(self) -> None:
        """Release; raises :class:`~polysync.NotHeldError` when the state does not allow it."""
        self._release()

    def __enter__(self) -> bool:
        try:
            self._acquire_forever()
        except Exception:
            self._acquire(True, None)
        return True

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._release()

    def locked(self) -> bool:
        """Whether anyone holds it (a snapshot)."""
        result: bool = self._kernel.locked()
        return result

    @property
    def owner_died(self) -> bool:
        """Whether this handle holds the lock because it took it over from a dead holder.

        True from that acquire until this handle releases the lock; an
        :class:`~polysync.OwnerDiedWarning` is emitted at the takeover. Only backends with
        the ``owner-death`` capability detect it (posix: RLock always, Lock with
        ``recover_locks=True``).
        """
        return bool(getattr(self._kernel, "owner_died", False))

    def _restore(self, params: tuple[Any, ...]) -> None:
        pass


class Lock(_LockLike):
    """A non-recursive lock: any process or thread may release it, once per acquire.

    Releasing it while unlocked raises :class:`~polysync.NotHeldError`, which is both the
    ``ValueError`` of multiprocessing and the ``RuntimeError`` of threading.
    """

    __slots__ = ()
    _kind = Kind.LOCK

    def __init__(
        self, *, name: str | None = None, ctx: Context | None = None, **options: Any
    ) -> None:
        self._open(ctx, name, (), options)

    @staticmethod
    def _open_kernel(ctx: Context, object_name: str, params: tuple[Any, ...], create: bool) -> Any:
        return ctx.backend.open_lock(object_name, create=create)

    def _state(self) -> str:
        return "locked" if self.locked() else "unlocked"


class RLock(_LockLike):
    """A reentrant lock owned by one thread of one process.

    The owner may acquire it again; it is free once released as many times. A release by
    anyone else raises :class:`~polysync.NotHeldError`. A forked child does not inherit
    its parent's ownership.
    """

    __slots__ = ()
    _kind = Kind.RLOCK

    def __init__(
        self, *, name: str | None = None, ctx: Context | None = None, **options: Any
    ) -> None:
        self._open(ctx, name, (), options)

    @staticmethod
    def _open_kernel(ctx: Context, object_name: str, params: tuple[Any, ...], create: bool) -> Any:
        return ctx.backend.open_rlock(object_name, create=create)

    def _is_owned(self) -> bool:
        """Whether the calling thread owns it (threading's private API, kept for drop-in use)."""
        result: bool = self._kernel.is_owned()
        return result

    def _recursion_count(self) -> int:
        """How many times the calling thread holds it (0 if it does not own it)."""
        result: int = self._kernel.recursion_level()
        return result

    def _state(self) -> str:
        return "locked" if self.locked() else "unlocked"


class Semaphore(_Acquirable, _Leased):
    """A counting semaphore, starting at *value*.

    ``release(n)`` adds *n*; ``acquire`` takes one, waiting while the count is zero.
    For a named semaphore the first opener's *value* wins; later *value*\\ s are ignored.
    """

    __slots__ = ("_initial",)
    _kind = Kind.SEMAPHORE
    _bounded: ClassVar[bool] = False

    def __init__(
        self,
        value: int = 1,
        *,
        name: str | None = None,
        ctx: Context | None = None,
        **options: Any,
    ) -> None:
        _validate.count(value, "value", 0)
        self._open(ctx, name, (value,), options)
        self._initial = value

    @classmethod
    def _open_kernel(
        cls, ctx: Context, object_name: str, params: tuple[Any, ...], create: bool
    ) -> Any:
        return ctx.backend.open_semaphore(
            object_name, params[0], bounded=cls._bounded, create=create
        )

    def _params(self) -> tuple[Any, ...]:
        return (self._initial,)

    def _restore(self, params: tuple[Any, ...]) -> None:
        self._initial = params[0]

    def release(self, n: int = 1) -> None:
        """Add *n* (default 1) to the count, waking up to *n* waiters."""
        if n != 1:
            _validate.count(n, "n", 1)
        self._release(n)

    def get_value(self) -> int:
        """The current count (a snapshot)."""
        result: int = self._kernel.get_value()
        return result

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self._release(1)

    def _state(self) -> str:
        return f"value={self.get_value()}"


class BoundedSemaphore(Semaphore):
    """A semaphore that may never be released above its initial *value*.

    Over-releasing raises :class:`~polysync.NotHeldError` (a ``ValueError``). As in
    multiprocessing, the bound is checked against a snapshot of the count.
    """

    __slots__ = ()
    _kind = Kind.BOUNDED_SEMAPHORE
    _bounded = True


class Event(_Primitive):
    """A flag that processes can wait for: ``set()`` wakes every waiter."""

    __slots__ = ()
    _kind = Kind.EVENT

    def __init__(
        self, *, name: str | None = None, ctx: Context | None = None, **options: Any
    ) -> None:
        self._open(ctx, name, (), options)

    @staticmethod
    def _open_kernel(ctx: Context, object_name: str, params: tuple[Any, ...], create: bool) -> Any:
        return ctx.backend.open_event(object_name, create=create)

    def _restore(self, params: tuple[Any, ...]) -> None:
        pass

    def set(self) -> None:
        """Set the flag and wake every waiter."""
        self._kernel.set()

    def clear(self) -> None:
        """Reset the flag; later ``wait()`` calls block until the next ``set()``."""
        self._kernel.clear()

    def is_set(self) -> bool:
        """Whether the flag is set."""
        result: bool = self._kernel.is_set()
        return result

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the flag is set; ``True`` if it was, ``False`` on timeout."""
        result: bool = self._kernel.wait(_validate.timeout(timeout))
        return result

    def _state(self) -> str:
        return "set" if self.is_set() else "unset"


class Condition(_Primitive):
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
        **options: Any,
    ) -> None:
        if lock is not None and not isinstance(lock, (Lock, RLock)):
            raise TypeError(
                f"lock must be a polysync Lock or RLock, not {type(lock).__name__} {lock!r}"
            )
        context = _context(ctx if ctx is not None or lock is None else lock.context)
        user, object_name = self._names(context, name, options)
        self._owns_lock = lock is None
        if lock is None:
            lock = RLock(name=None if user is None else f"{user}.lock", ctx=context)
        elif lock.context.backend is not context.backend:
            raise ValueError(
                f"the lock belongs to the {lock.context.name!r} context, "
                f"the Condition to {context.name!r}: they must share one context"
            )
        kernel = self._open_kernel(context, object_name, (lock,), True)
        self._attach(context, user, object_name, kernel, options)
        self._lock = lock

    @staticmethod
    def _open_kernel(ctx: Context, object_name: str, params: tuple[Any, ...], create: bool) -> Any:
        return ctx.backend.open_condition(object_name, create=create)

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
        self, block: bool = True, timeout: float | None = None, *, blocking: bool | None = None
    ) -> bool:
        """Acquire the underlying lock."""
        return self._lock.acquire(block, timeout, blocking=blocking)

    def release(self) -> None:
        """Release the underlying lock."""
        self._lock.release()

    def __enter__(self) -> bool:
        return self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    def _check_owned(self, what: str) -> None:
        if not self._lock._kernel.is_owned():
            raise NotHeldError(f"cannot {what} on an un-acquired lock")

    def wait(self, timeout: float | None = None) -> bool:
        """Release the lock, wait for a notification, reacquire; ``False`` on timeout."""
        seconds = _validate.timeout(timeout)
        self._check_owned("wait")
        result: bool = self._kernel.wait(self._lock._kernel, seconds)
        return result

    def wait_for(self, predicate: Callable[[], _T], timeout: float | None = None) -> _T:
        """Wait until ``predicate()`` is true (checked under the lock); return its last value."""
        import time

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
        """Wake at most *n* waiters."""
        _validate.count(n, "n", 0)
        self._check_owned("notify")
        self._kernel.notify(n)

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


class Barrier(_Primitive):
    """A meeting point for *parties* processes; ``wait()`` returns a distinct index.

    The last party to arrive runs *action* (if this handle has one) before the others
    are released. A timeout, ``abort()`` or ``reset()`` breaks the waiters with
    :class:`~polysync.BrokenBarrierError`.
    """

    __slots__ = ("_action", "_timeout")
    _kind = Kind.BARRIER

    def __init__(
        self,
        parties: int,
        action: Callable[[], object] | None = None,
        timeout: float | None = None,
        *,
        name: str | None = None,
        ctx: Context | None = None,
        **options: Any,
    ) -> None:
        _validate.count(parties, "parties", 1)
        if action is not None and not callable(action):
            raise TypeError(f"action must be callable or None, not {type(action).__name__}")
        seconds = _validate.timeout(timeout)
        self._open(ctx, name, (parties, action, seconds), options)
        self._action = action
        self._timeout = seconds

    @staticmethod
    def _open_kernel(ctx: Context, object_name: str, params: tuple[Any, ...], create: bool) -> Any:
        return ctx.backend.open_barrier(object_name, params[0], create=create)

    def _params(self) -> tuple[Any, ...]:
        return (self.parties, self._action, self._timeout)

    def _restore(self, params: tuple[Any, ...]) -> None:
        self._action, self._timeout = params[1], params[2]

    def wait(self, timeout: float | None = None) -> int:
        """Wait for all parties; return this party's index in ``range(parties)``.

        *timeout* ``None`` uses the barrier's own default timeout.
        """
        seconds = self._timeout if timeout is None else _validate.timeout(timeout)
        result: int = self._kernel.wait(seconds, self._action)
        return result

    def reset(self) -> None:
        """Return to the empty state; parties waiting now get BrokenBarrierError."""
        self._kernel.reset()

    def abort(self) -> None:
        """Break the barrier: current and future ``wait()`` calls raise BrokenBarrierError."""
        self._kernel.abort()

    @property
    def parties(self) -> int:
        """How many parties must call ``wait()`` to pass."""
        result: int = self._kernel.parties
        return result

    @property
    def n_waiting(self) -> int:
        """How many parties are waiting now."""
        result: int = self._kernel.n_waiting()
        return result

    @property
    def broken(self) -> bool:
        """Whether the barrier is broken."""
        result: bool = self._kernel.broken()
        return result

    def _state(self) -> str:
        return f"parties={self.parties} waiting={self.n_waiting}" + (
            " broken" if self.broken else ""
        )
