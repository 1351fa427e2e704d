"""The seven async primitives: coroutine twins of polysync's, over the kernels sync handles use.

An async handle wraps a sync handle (:attr:`Lock.sync`): it opens the same kernel a
sync handle of that name opens, so async and sync handles exclude each other across
threads, processes and hosts. Validation, errors, pickling, leases, ``lost`` and
fencing tokens are the sync handle's. What this layer adds:

- calls that may block or do I/O never run on the event loop's thread: waits run in
  polysync's waiter threads (:mod:`polysync.aio._waiters`), cut into slices; on a
  backend with :class:`~polysync.kernel.InlineCalls` the calls that do not wait (a
  try-acquire, a release, ``set``, reads) run on the loop, elsewhere in the pool too;
  a Lock or Semaphore kernel with :class:`~polysync.kernel.AsyncAcquire` is awaited
  on the loop instead, its tries and waits alike (redis);
- tasks of one loop waiting on one handle queue locally (:mod:`polysync.aio._lanes`), so
  only the first needs a kernel wait;
- cancellation safety: a cancelled wait raises ``CancelledError`` and leaves nothing
  held (a grant that arrives for it goes to the next waiter or back to the kernel); a
  cancelled release, or a cancelled Condition wait, finishes its kernel call first;
- an RLock is owned by the current task: the depth is counted here, and the kernel,
  owned by the thread that takes it, is taken once, by a waiter thread pinned to the
  holding task until its release.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, cast

import polysync.primitives as _sync
from polysync import _validate, errors
from polysync.aio._lanes import AcquireLane, EventLane, Grant, NativeAcquireLane
from polysync.aio._waiters import SLICE, Pinned, pool
from polysync.kernel import (
    AsyncAcquire,
    AsyncRelease,
    InlineCalls,
    LockBacked,
    LockKernel,
    StoppableBarrier,
)
from polysync.primitives import Statistics

if TYPE_CHECKING:
    from polysync.aio.api import AsyncContext

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
_G = TypeVar("_G")
S = TypeVar("S", bound="_sync._Primitive[Any]")
G = TypeVar("G")


class _NoLoop:
    """The loop of the finished futures below, which are awaited and never scheduled."""

    def get_debug(self) -> bool:
        return False


def _finished(result: _T) -> asyncio.Future[_T]:
    future: asyncio.Future[_T] = asyncio.Future(loop=cast(Any, _NoLoop()))
    future.set_result(result)
    return future


#: What ``async with`` awaits when entering or leaving finished on the loop without
#: waiting. Awaiting a finished future returns its result at once, without a loop,
#: for less than a coroutine costs (creating it, its frame, its end): an uncontended
#: posix ``async with`` takes 3,867 instructions so, about 5,300 with coroutine methods
#: (benchmarks/callgrind_pairs.py). Shared by every handle and loop: nothing is ever
#: added to them.
_ENTERED: asyncio.Future[bool] = _finished(True)
_EXITED: asyncio.Future[None] = _finished(None)


async def _finish(future: Future[_T] | asyncio.Future[_T]) -> tuple[_T, bool]:
    """Await *future* (a thread's call, or a task on the loop) to its end even if
    cancelled meanwhile: (its result, whether cancelled).

    Its exception, if it raised, propagates (before any cancellation).
    """
    wrapped = asyncio.wrap_future(future)
    cancelled = False
    while True:
        try:
            return await asyncio.shield(wrapped), cancelled
        except asyncio.CancelledError:
            if wrapped.cancelled():  # the call never started
                raise
            cancelled = True


async def _granted(lane: AcquireLane[_G], seconds: float | None) -> _G | None:
    """Wait in *lane* for a grant: its token, or ``None`` once *seconds* passed. A
    cancelled wait leaves the lane, and passes on a grant that raced the cancel."""
    waiter = lane.add(seconds)
    timer = None if seconds is None else lane.loop.call_later(seconds, lane.expire, waiter)
    try:
        got = await waiter.future
    except asyncio.CancelledError:
        lane.leave(waiter)
        future = waiter.future
        if future.done() and not future.cancelled() and future.exception() is None:
            token = future.result()
            if token is not False:  # False is a timeout's answer; anything else a grant
                lane.pass_on(cast(_G, token))
        raise
    finally:
        if timer is not None:
            timer.cancel()
    return None if got is False else cast(_G, got)


async def _tried(lane: AcquireLane[bool], attempt: Callable[[], bool]) -> bool:
    """One *attempt* to take a kernel, in a waiter thread: whether it took it. A cancel
    that raced a success passes the grant on (to *lane*'s next waiter, or back)."""
    got, cancelled = await _finish(pool().call(attempt))
    if cancelled:
        if got:
            lane.pass_on(True)
        raise asyncio.CancelledError
    return got


async def _confirmed(future: Future[_T] | asyncio.Future[_T]) -> _T:
    """Await *future* to its end; re-raise a cancellation that came meanwhile after it."""
    result, cancelled = await _finish(future)
    if cancelled:
        raise asyncio.CancelledError
    return result


def _inline(sync: _sync._Primitive[Any]) -> bool:
    backend = sync.context.backend
    return isinstance(backend, InlineCalls) and backend.inline_calls()


def _current_task(what: str) -> asyncio.Task[Any]:
    task = asyncio.current_task()
    if task is None:
        raise errors.no_task(what)
    return task


class _Async(Generic[S]):
    """What every async handle shares: the sync handle, identity, pickling, statistics."""

    _sync_type: ClassVar[type[_sync._Primitive[Any]]]
    _sync: S

    def _wrap(self, sync: S) -> None:
        if not isinstance(sync, self._sync_type):
            raise TypeError(
                f"{type(self).__name__} wraps a polysync.{self._sync_type.__name__}, "
                f"not {type(sync).__name__}"
            )
        self._sync = sync
        self._kernel: Any = sync._kernel  # the real one, also once this handle is closed
        self._inline = _inline(sync)
        self._lanes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )
        self._lanes_lock = threading.Lock()
        # The latest (loop, lane): the weak dict is the truth, this the fast path. It
        # keeps the loop alive until another loop uses the handle (a closed loop is
        # never running, so it is never found here again).
        self._last_lane: tuple[asyncio.AbstractEventLoop, Any] | None = None

    @classmethod
    def from_sync(cls, sync: S) -> Any:
        """The async handle over the sync handle *sync* (they share its kernel)."""
        self = cls.__new__(cls)
        self._wrap(sync)
        return self

    def _lane(self, make: Callable[[asyncio.AbstractEventLoop], _T]) -> _T:
        loop = asyncio.get_running_loop()
        cached = self._last_lane  # the common case: one loop; read in one go
        if cached is not None and cached[0] is loop:
            last: _T = cached[1]
            return last
        with self._lanes_lock:
            lane: _T | None = self._lanes.get(loop)
            if lane is None:
                lane = make(loop)
                self._lanes[loop] = lane
        self._last_lane = (loop, lane)
        return lane

    async def _run(self, fn: Callable[[], _T]) -> _T:
        """*fn* (a call that does not wait) on the loop if inline, else in the pool."""
        if self._inline:
            return fn()
        return await asyncio.wrap_future(pool().call(fn))

    async def _run_shielded(self, fn: Callable[[], _T]) -> _T:
        """*fn* that must finish once started (a release): a cancellation waits for it."""
        if self._inline:
            return fn()
        return await _confirmed(pool().call(fn))

    @property
    def sync(self) -> S:
        """The sync handle this one wraps (same kernel: use it from threads)."""
        return self._sync

    @property
    def name(self) -> str | None:
        """The name this object was opened by, or ``None`` if it is anonymous."""
        return self._sync.name

    @property
    def context(self) -> AsyncContext:
        """The async context (backend and options) this object lives in."""
        from polysync.aio.api import AsyncContext

        return AsyncContext(self._sync.context)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called on this handle."""
        return self._sync.closed

    def close(self) -> None:
        """Drop this handle (and the sync handle it wraps); the object lives on.

        The kernel is closed once no waiter thread is in it any more (a wait that just
        ended may be finishing its slice).
        """
        closer = self._sync._detach_kernel()
        if closer is None:
            return
        with self._lanes_lock:
            lanes = list(self._lanes.values())
        pending = [len(lanes) + 1]
        count_lock = threading.Lock()

        def one_idle() -> None:
            with count_lock:
                pending[0] -= 1
                last = pending[0] == 0
            if last:
                closer()

        for lane in lanes:
            lane.when_idle(one_idle)
        one_idle()

    async def unlink(self) -> None:
        """Destroy the object's name (see the sync ``unlink``)."""
        await self._run(self._sync.unlink)

    async def statistics(self) -> Statistics:
        """A snapshot of this object's state (a coroutine: it may ask a server)."""
        return await self._run(self._sync.statistics)

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (type(self), self._sync))

    def __repr__(self) -> str:
        return "<polysync.aio" + repr(self._sync)[len("<polysync") :]


def _rebuild(cls: type[_Async[Any]], sync: _sync._Primitive[Any]) -> _Async[Any]:
    handle: _Async[Any] = cls.from_sync(sync)
    return handle


def _context(ctx: object) -> Any:
    from polysync.aio.api import AsyncContext, get_context

    if ctx is None:
        return get_context().sync
    if not isinstance(ctx, AsyncContext):
        raise TypeError(
            "ctx must be a polysync.aio context from polysync.aio.get_context(), "
            f"not {type(ctx).__name__} {ctx!r}"
        )
    return ctx.sync


# -- Lock, Semaphore, BoundedSemaphore -------------------------------------------------

#: The int 1, told from other ones by identity: cheaper than type(n) is int and n == 1,
#: and any 1 it misses (True, 1.0, a big-int 1) takes the general path anyway.
_ONE = 1


AQ = TypeVar("AQ", _sync.Lock, _sync.Semaphore)


class _Acquirable(_Async[AQ], Grant[bool]):
    """acquire() for kernels any thread may release: Lock, Semaphore, BoundedSemaphore."""

    def _wrap(self, sync: Any) -> None:
        super()._wrap(sync)
        #: The live waiters of this handle's lanes, every loop's (see _Lane.queued).
        self._queued: list[None] = []
        kernel = self._kernel
        #: The kernel's native asyncio acquire and release, awaited on the loop.
        self._native: AsyncAcquire | None = kernel if isinstance(kernel, AsyncAcquire) else None
        self._native_release: AsyncRelease | None = (
            kernel if isinstance(kernel, AsyncRelease) else None
        )

    async def _release_natively(self, native: AsyncRelease, n: int) -> None:
        """A release of *n* awaited on the loop, run to its end if cancelled, and
        reported as the sync handle's ``release`` does."""
        await _confirmed(asyncio.ensure_future(native.release_async(n)))
        probe = self._sync._probe
        if probe is not None:
            probe.released(1)

    # The kernel's own calls (the sync handle's, closed or not), never the timing
    # stand-ins of polysync.instrument: an async acquire reports once, as a whole.
    def _try(self) -> bool:
        return bool(self._sync._kernel.acquire(False, None))

    def wait_slice(self, seconds: float) -> bool | None:
        return True if self._sync._kernel.acquire(True, seconds) else None

    def give_back(self, token: bool) -> None:
        if self._inline:
            self._release_kernel()
        else:
            pool().call(self._release_kernel)

    def give_back_in_thread(self, token: bool) -> None:
        self._release_kernel()

    def _release_kernel(self) -> None:
        raise NotImplementedError

    def _acquire_lane(self) -> AcquireLane[bool]:
        return self._lane(lambda loop: AcquireLane(loop, self, self._queued))

    async def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Acquire, waiting at most *timeout* seconds (``None``: forever); ``True`` if acquired.

        ``blocking=False`` tries once. A cancelled call raises ``CancelledError`` and
        holds nothing.
        """
        sync = self._sync
        probe = sync._probe
        if probe is None:
            # The common call on the loop, uncontended: one try of the kernel, no lane,
            # no loop look-up, while no task of any loop queues on this handle (else
            # _acquire finds this loop's lane: a task there waits its turn). Unobserved,
            # _acquire is the kernel's own acquire (or the closed stand-in's).
            if blocking is True and timeout is None and self._inline and not self._queued:
                try_acquire = sync._acquire  # a slot's callable: LOAD_METHOD never specialises
                if try_acquire(False, None):
                    return True
            return await self._acquire(blocking, timeout)
        begun = probe.begin()  # someone listens (polysync.instrument)
        got = await self._acquire(blocking, timeout)
        probe.end(begun, got, blocking is not False and timeout != 0)
        return got

    async def _acquire(self, blocking: bool, timeout: float | None) -> bool:
        native = self._native
        if native is not None and not self._sync.closed:
            return await self._acquire_native(native, blocking, timeout)
        lane = self._acquire_lane()
        if blocking is True and timeout is None:
            flag, seconds = True, None
        else:
            flag, seconds = _validate.block_and_timeout(True, timeout, blocking)
        if not flag or seconds == 0 or (self._inline and not lane.waiters):
            if self._inline:
                if self._try():
                    return True
            elif await _tried(lane, self._try):
                return True
            if not flag or seconds == 0:
                return False
        return await self._wait(lane, seconds)

    async def _acquire_native(
        self, native: AsyncAcquire, blocking: bool, timeout: float | None
    ) -> bool:
        """acquire() awaited on the loop: a task that finds nobody of this loop waiting
        awaits the kernel itself; those that come meanwhile queue in the lane, whose
        one task awaits it for them. A cancelled acquire_async holds nothing."""
        if blocking is True and timeout is None:
            flag, seconds = True, None
        else:
            flag, seconds = _validate.block_and_timeout(True, timeout, blocking)
        lane: NativeAcquireLane = self._lane(
            lambda loop: NativeAcquireLane(loop, self, native.acquire_async, self._queued)
        )
        if not flag or seconds == 0:
            return await native.acquire_async(False, None)
        if lane.waiters or lane.direct:
            return await self._wait(lane, seconds)
        lane.direct = True
        try:
            return await native.acquire_async(True, seconds)
        finally:
            lane.direct = False

    async def _wait(self, lane: AcquireLane[bool], seconds: float | None) -> bool:
        return await _granted(lane, seconds) is not None

    def _nudge(self) -> None:
        """After a release on the loop: a local waiter may take it right away."""
        cached = self._last_lane
        if cached is None:
            return  # no task of any loop ever queued on this handle
        loop = asyncio.get_running_loop()
        lane: AcquireLane[bool] | None = cached[1] if cached[0] is loop else self._lanes.get(loop)
        if lane is not None and lane.live and self._try() and not lane.hand(True):
            self._release_kernel()

    def __aenter__(self) -> Awaitable[bool]:
        """acquire(), without a coroutine when it took the kernel at once (on the loop)."""
        sync = self._sync
        if sync._probe is not None:
            return self.acquire()
        if self._inline and not self._queued:
            try_acquire = sync._acquire  # as in acquire()
            if try_acquire(False, None):
                return _ENTERED
        return self._acquire(True, None)

    @property
    def fencing_token(self) -> int | None:
        """The fencing token of this handle's latest acquisition (see the sync handle)."""
        return self._sync.fencing_token

    @property
    def lost(self) -> bool:
        """Whether the lease of what this handle holds could not be renewed."""
        return self._sync.lost

    @property
    def owner_died(self) -> bool:
        """Whether this handle holds what it took over from a holder that died."""
        owner: bool = self._sync.owner_died
        return owner


class Lock(_Acquirable[_sync.Lock]):
    """An async Lock: the same object as ``polysync.Lock`` of that name; any task may release."""

    _sync_type = _sync.Lock

    def __init__(
        self, *, name: str | None = None, ctx: AsyncContext | None = None, **options: object
    ) -> None:
        self._wrap(_sync.Lock(name=name, ctx=_context(ctx), **options))

    def _release_kernel(self) -> None:
        self._kernel.release()

    async def release(self) -> None:
        """Release; raises :class:`~polysync.NotHeldError` if unlocked. Finishes if cancelled."""
        if self._inline:
            self.__aexit__()  # released on the loop, at once
        elif self._native_release is not None and not self._sync.closed:
            try:
                await self._release_natively(self._native_release, 1)
            except self._sync._refusal:  # as the sync release translates it
                raise self._sync._not_held() from None
        else:
            await _confirmed(pool().call(self._sync.release))

    def __aexit__(
        self, _type: object = None, _value: object = None, _tb: object = None
    ) -> Awaitable[None]:
        """release(); for a kernel that answers at once (InlineCalls), on the loop and
        without a coroutine (release() calls this)."""
        if not self._inline:
            return self.release()
        sync = self._sync
        release = sync._release  # the probe's release if observed
        try:  # the sync release(), without its frame
            release()
        except sync._refusal:
            raise sync._not_held() from None
        if self._queued:  # else no task of any loop waits here
            self._nudge()
        return _EXITED

    async def locked(self) -> bool:
        """Whether anyone holds it (a snapshot)."""
        return await self._run(self._sync.locked)


class Semaphore(_Acquirable[_sync.Semaphore]):
    """An async Semaphore over the same kernel as ``polysync.Semaphore`` of that name."""

    _sync_type: ClassVar[type[_sync.Semaphore]] = _sync.Semaphore

    def __init__(
        self,
        value: int = 1,
        *,
        name: str | None = None,
        ctx: AsyncContext | None = None,
        **options: object,
    ) -> None:
        self._wrap(self._sync_type(value, name=name, ctx=_context(ctx), **options))

    def _release_kernel(self) -> None:
        self._kernel.release(1)

    async def release(self, n: int = 1) -> None:
        """Add *n* to the count (errors as the sync ``release``). Finishes if cancelled."""
        if self._inline:
            if n is _ONE:
                self.__aexit__()  # released on the loop, at once
                return
            self._sync.release(n)
            if self._queued:  # else no task of any loop waits here
                for _ in range(min(n, 64)):
                    self._nudge()
            return
        native = self._native_release
        if type(n) is int and n == 1 and native is not None and not self._sync.closed:
            await self._release_natively(native, 1)  # the sync release checks others
            return
        await self._run_shielded(lambda: self._sync.release(n))

    def __aexit__(
        self, _type: object = None, _value: object = None, _tb: object = None
    ) -> Awaitable[None]:
        """release(1); for a kernel that answers at once (InlineCalls), on the loop and
        without a coroutine (release(1) calls this)."""
        if not self._inline:
            return self.release()
        release = self._sync._release  # the probe's release if observed
        try:  # the sync release(1), without its frame
            release(1)
        except OSError as exc:
            _sync._release_failed(exc, 1)
        if self._queued:  # else no task of any loop waits here
            self._nudge()
        return _EXITED

    async def get_value(self) -> int:
        """The current count (a snapshot)."""
        return await self._run(self._sync.get_value)


class BoundedSemaphore(Semaphore):
    """An async BoundedSemaphore: over-releasing raises :class:`~polysync.NotHeldError`."""

    _sync_type = _sync.BoundedSemaphore


# -- RLock ------------------------------------------------------------------------------


class _Holding:
    """Who holds an async RLock: the task, its depth, the thread pinned to the kernel
    (``None`` over a Lock kernel any thread may release: :class:`~polysync.kernel.LockBacked`)."""

    __slots__ = ("depth", "pinned", "task")

    def __init__(self, task: asyncio.Task[Any], depth: int, pinned: Pinned | None) -> None:
        self.task = task
        self.depth = depth
        self.pinned = pinned


class _UnderLock(Grant[bool]):
    """What the lanes of an RLock over a Lock kernel take: that Lock, in polysync's waiter
    threads, none of them pinned (any thread may release it)."""

    def __init__(self, kernel: LockKernel) -> None:
        self.kernel = kernel

    def wait_slice(self, seconds: float) -> bool | None:
        return True if self.kernel.acquire(True, seconds) else None

    def give_back(self, token: bool) -> None:
        pool().call(self.kernel.release)

    def give_back_in_thread(self, token: bool) -> None:
        self.kernel.release()


class RLock(_Async[_sync.RLock], Grant[Pinned]):
    """An async RLock owned by the current task; the same object as ``polysync.RLock``.

    The task holding it may acquire it again; it is free once released as many times.
    The kernel is taken once per holding. A kernel owned by a thread (posix, thread,
    windows) is taken by a waiter thread that stays pinned to it until the release; over
    a Lock kernel any thread may release (:class:`~polysync.kernel.LockBacked`: redis,
    postgres), that Lock is taken for the task and no thread is pinned. Either way a sync
    holder in another thread or process and an async task exclude each other.
    """

    _sync_type = _sync.RLock
    _holding: _Holding | None

    def __init__(
        self, *, name: str | None = None, ctx: AsyncContext | None = None, **options: object
    ) -> None:
        self._wrap(_sync.RLock(name=name, ctx=_context(ctx), **options))

    def _wrap(self, sync: _sync.RLock) -> None:
        super()._wrap(sync)
        self._holding = None
        kernel = self._kernel
        #: The Lock kernel under a LockBacked RLock kernel, which tasks take themselves.
        self._under = _UnderLock(kernel.lock_kernel) if isinstance(kernel, LockBacked) else None

    # what the lane calls, in a waiter thread or on the loop
    def _take(self, blocking: bool, seconds: float | None = None) -> Pinned | None:
        if self._sync._kernel.acquire(blocking, seconds if blocking else None):
            return pool().pin()
        return None

    def wait_slice(self, seconds: float) -> Pinned | None:
        return self._take(True, seconds)

    def give_back(self, token: Pinned) -> None:
        token.call(self._kernel.release)
        token.unpin()

    def give_back_in_thread(self, token: Pinned) -> None:
        try:
            self._kernel.release()
        finally:
            token.unpin()

    def _owned(self, task: asyncio.Task[Any]) -> _Holding | None:
        holding = self._holding
        return holding if holding is not None and holding.task is task else None

    async def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Acquire (again, if this task holds it); ``True`` if acquired (see ``Lock.acquire``)."""
        probe = self._sync._probe
        if probe is None:
            return await self._acquire(blocking, timeout)
        begun = probe.begin()  # someone listens (polysync.instrument)
        held = self._holding is not None and self._holding.task is asyncio.current_task()
        got = await self._acquire(blocking, timeout)
        probe.end(begun, got, blocking is not False and timeout != 0, new_hold=not held)
        return got

    async def _acquire(self, blocking: bool, timeout: float | None) -> bool:
        flag, seconds = _validate.block_and_timeout(True, timeout, blocking)
        task = _current_task("RLock.acquire()")
        if self._sync.closed:
            self._sync._kernel.acquire(False, None)  # raises ClosedError
        holding = self._owned(task)
        if holding is not None:
            holding.depth += 1
            return True
        under = self._under
        if under is not None:
            if not await self._take_under(under, flag, seconds):
                return False
            self._holding = _Holding(task, 1, None)
            return True
        lane: AcquireLane[Pinned] = self._lane(lambda loop: AcquireLane(loop, self))
        pinned: Pinned | None
        if not flag or seconds == 0:
            pinned, cancelled = await _finish(pool().call(lambda: self._take(False)))
            if cancelled:
                if pinned is not None:
                    lane.pass_on(pinned)
                raise asyncio.CancelledError
            if pinned is None:
                return False
        else:
            pinned = await _granted(lane, seconds)
            if pinned is None:
                return False
        self._holding = _Holding(task, 1, pinned)
        return True

    async def _take_under(self, under: _UnderLock, flag: bool, seconds: float | None) -> bool:
        """Take the Lock kernel under this RLock for the current task (queued behind
        the tasks of this loop already waiting for it)."""
        lane: AcquireLane[bool] = self._lane(lambda loop: AcquireLane(loop, under))
        if not flag or seconds == 0:
            return await _tried(lane, lambda: bool(under.kernel.acquire(False, None)))
        # A free lock is taken by the lane's first kernel wait at once: no try before.
        return await _granted(lane, seconds) is not None

    async def release(self) -> None:
        """Release once; the kernel is released with the last. Finishes if cancelled.

        Raises :class:`~polysync.NotHeldError` unless the current task holds it.
        """
        task = _current_task("RLock.release()")
        holding = self._owned(task)
        if holding is None:
            if self._sync.closed:
                self._sync._kernel.release()  # raises ClosedError
            raise errors.task_not_owner()
        if holding.depth > 1:
            holding.depth -= 1
            return
        pinned, under = holding.pinned, self._under
        if pinned is not None:
            _, cancelled = await _finish(pinned.call(self._sync._kernel.release))
        else:
            assert under is not None
            if self._sync.closed:
                self._sync._kernel.release()  # raises ClosedError
            _, cancelled = await _finish(pool().call(under.kernel.release))
        # The backend confirmed: now the local state goes, and the thread returns (the
        # next holder may already have recorded itself while this task waited).
        if self._holding is holding:
            self._holding = None
        if pinned is not None:
            pinned.unpin()
        probe = self._sync._probe
        if probe is not None:
            probe.released(1)
        if cancelled:
            raise asyncio.CancelledError

    __aenter__ = acquire  # no second coroutine

    async def __aexit__(self, *exc: object) -> None:
        await self.release()

    async def locked(self) -> bool:
        """Whether anyone holds it (a snapshot)."""
        return await self._run(self._sync.locked)

    def _is_owned(self) -> bool:
        """Whether the current task holds it."""
        task = asyncio.current_task()
        return task is not None and self._owned(task) is not None

    def _recursion_count(self) -> int:
        """How many times the current task holds it (0 if it does not)."""
        task = asyncio.current_task()
        holding = None if task is None else self._owned(task)
        return 0 if holding is None else holding.depth

    @property
    def fencing_token(self) -> int | None:
        """The fencing token of this handle's latest acquisition (see the sync handle)."""
        return self._sync.fencing_token

    @property
    def lost(self) -> bool:
        """Whether the lease of what this handle holds could not be renewed."""
        return self._sync.lost

    @property
    def owner_died(self) -> bool:
        """Whether this handle holds the lock because it took it over from a dead holder."""
        return self._sync.owner_died


# -- Event ------------------------------------------------------------------------------


class Event(_Async[_sync.Event]):
    """An async Event over the same kernel as ``polysync.Event`` of that name."""

    _sync_type = _sync.Event

    def __init__(
        self, *, name: str | None = None, ctx: AsyncContext | None = None, **options: object
    ) -> None:
        self._wrap(_sync.Event(name=name, ctx=_context(ctx), **options))

    async def set(self) -> None:
        """Set the flag and wake every waiter (sync and async). Finishes if cancelled."""
        await self._run_shielded(self._sync.set)

    async def clear(self) -> None:
        """Reset the flag. Finishes if cancelled."""
        await self._run_shielded(self._sync.clear)

    async def is_set(self) -> bool:
        """Whether the flag is set."""
        return await self._run(self._sync.is_set)

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait until the flag is set; ``True`` if it was, ``False`` on timeout."""
        seconds = _validate.timeout(timeout)
        kernel = self._sync._kernel
        if self._inline or seconds == 0:
            if await self._run(kernel.is_set):
                return True
            if seconds == 0:
                return False
        lane: EventLane = self._lane(lambda loop: EventLane(loop, kernel.wait))
        waiter = lane.add(seconds)
        timer = None if seconds is None else lane.loop.call_later(seconds, lane.expire, waiter)
        try:
            return await waiter.future is True
        finally:
            lane.leave(waiter)
            if timer is not None:
                timer.cancel()


# -- Condition --------------------------------------------------------------------------


class Condition(_Async[_sync.Condition]):
    """An async Condition over a polysync.aio Lock or RLock (a new RLock by default).

    The same object as ``polysync.Condition`` of that name: sync and async waiters share
    one queue, and either side's notify wakes either. ``wait`` releases the lock, waits,
    and takes it back before it returns, also when cancelled (then it raises
    ``CancelledError``, passing on a notification it took, holding the lock again).
    """

    _sync_type = _sync.Condition
    _lock: Lock | RLock

    def __init__(
        self,
        lock: Lock | RLock | None = None,
        *,
        name: str | None = None,
        ctx: AsyncContext | None = None,
        **options: object,
    ) -> None:
        if lock is not None and not isinstance(lock, (Lock, RLock)):
            raise TypeError(
                f"lock must be a polysync.aio Lock or RLock, not {type(lock).__name__} {lock!r}"
            )
        sync_ctx = lock.sync.context if ctx is None and lock is not None else _context(ctx)
        self._wrap(
            _sync.Condition(None if lock is None else lock.sync, name=name, ctx=sync_ctx, **options)
        )
        if lock is not None:
            self._lock = lock

    def _wrap(self, sync: _sync.Condition) -> None:
        super()._wrap(sync)
        inner = sync.lock
        self._lock = (
            RLock.from_sync(inner) if isinstance(inner, _sync.RLock) else Lock.from_sync(inner)
        )

    @property
    def lock(self) -> Lock | RLock:
        """The underlying async lock."""
        return self._lock

    async def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Acquire the underlying lock."""
        return await self._lock.acquire(blocking, timeout)

    async def release(self) -> None:
        """Release the underlying lock."""
        await self._lock.release()

    async def __aenter__(self) -> bool:
        return await self._lock.acquire()

    async def __aexit__(self, *exc: object) -> None:
        await self._lock.release()

    async def _check_owned(self, what: str) -> None:
        lock = self._lock
        if isinstance(lock, RLock):
            if not lock._is_owned():
                raise errors.condition_unowned(what)
        elif not await lock.locked():
            raise errors.condition_unowned(what)

    async def wait(self, timeout: float | None = None) -> bool:
        """Release the lock, wait for a notification, reacquire; ``False`` on timeout."""
        seconds = _validate.timeout(timeout)
        await self._check_owned("wait")
        kernel = self._sync._kernel
        lock = self._lock
        lock_kernel = lock.sync._kernel
        holding: _Holding | None = None
        run_on = pool().call_in_turn
        if isinstance(lock, RLock):
            holding = lock._holding
            assert holding is not None
            if holding.pinned is not None:
                run_on = holding.pinned.call
            elif lock._under is not None:  # the task holds the Lock under it: wait on that
                lock_kernel = lock._under.kernel
            lock._holding = None  # while it waits, the kernel lock is not this task's
        deadline = None if seconds is None else time.monotonic() + seconds
        woken = cancelled = False
        try:
            while True:
                left = SLICE if deadline is None else min(SLICE, deadline - time.monotonic())
                piece = max(0.0, left)
                woken, cancelled = await _finish(
                    run_on(functools.partial(kernel.wait, lock_kernel, piece))
                )
                if woken or cancelled:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    break
        finally:
            # Each slice returns with the lock taken back: it is this task's again.
            if holding is not None and isinstance(lock, RLock):
                lock._holding = holding
        if cancelled:
            if woken:  # pass the notification on: this task no longer wants it
                await _finish(run_on(lambda: kernel.notify(1)))
            raise asyncio.CancelledError
        return woken

    async def wait_for(self, predicate: Callable[[], _T], timeout: float | None = None) -> _T:
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
            await self.wait(remaining)
            result = predicate()
        return result

    async def notify(self, n: int = 1) -> None:
        """Wake at most *n* waiters (any int ``>= 0``)."""
        if type(n) is not int or n < 0:
            _validate.count(n, "n", 0, maximum=None)
        await self._check_owned("notify")
        kernel = self._sync._kernel
        count = min(n, _validate.MAX_VALUE)
        await self._run_shielded(lambda: kernel.notify(count))

    async def notify_all(self) -> None:
        """Wake every waiter."""
        await self._check_owned("notify")
        await self._run_shielded(self._sync._kernel.notify_all)

    def close(self) -> None:
        """Drop this handle, and the handle of the lock it made for itself (if it did)."""
        super().close()
        if self._sync._owns_lock:
            self._lock.close()


# -- Barrier ----------------------------------------------------------------------------


class Barrier(_Async[_sync.Barrier]):
    """An async Barrier over the same kernel as ``polysync.Barrier`` of that name.

    A cancelled ``wait`` leaves without breaking the barrier (the party no longer counts),
    as an interrupted sync wait does, on backends whose barrier is stoppable
    (:class:`~polysync.kernel.StoppableBarrier`: posix, thread, windows, redis). The
    *action* runs in a waiter thread.
    """

    _sync_type = _sync.Barrier

    def __init__(
        self,
        parties: int,
        action: Callable[[], object] | None = None,
        timeout: float | None = None,
        *,
        name: str | None = None,
        ctx: AsyncContext | None = None,
        **options: object,
    ) -> None:
        self._wrap(_sync.Barrier(parties, action, timeout, name=name, ctx=_context(ctx), **options))

    async def wait(self, timeout: float | None = None) -> int:
        """Wait for all parties; return this party's index in ``range(parties)``."""
        sync = self._sync
        seconds = sync._timeout if timeout is None else _validate.timeout(timeout)
        kernel = sync._kernel
        action = sync._action
        stop = threading.Event()

        def wait(pinned: Pinned) -> int | None:
            if isinstance(kernel, StoppableBarrier):
                return kernel.wait_stoppable(seconds, action, stop.is_set)
            index: int = kernel.wait(seconds, action)
            return index

        future = pool().run_pinned(wait)
        wrapped = asyncio.wrap_future(future)
        try:
            index = await asyncio.shield(wrapped)
        except asyncio.CancelledError:
            stop.set()
            if isinstance(kernel, StoppableBarrier):
                # The party leaves within a slice: wait for it, so none is left behind.
                while not wrapped.done():
                    try:
                        await asyncio.shield(wrapped)
                    except asyncio.CancelledError:
                        continue
                    except BaseException:  # it left the barrier anyway
                        break
            raise
        if index is None:
            raise asyncio.CancelledError
        return index

    async def reset(self) -> None:
        """Return to the empty state; parties waiting now get BrokenBarrierError."""
        await self._run_shielded(self._sync.reset)

    async def abort(self) -> None:
        """Break the barrier: current and future waits raise BrokenBarrierError."""
        await self._run_shielded(self._sync.abort)

    @property
    def parties(self) -> int:
        """How many parties must call ``wait()`` to pass."""
        return self._sync.parties

    async def n_waiting(self) -> int:
        """How many parties are waiting now (a coroutine: it may ask a server)."""
        return await self._run(lambda: self._sync.n_waiting)

    async def broken(self) -> bool:
        """Whether the barrier is broken (a coroutine: it may ask a server)."""
        return await self._run(lambda: self._sync.broken)
