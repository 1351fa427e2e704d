"""The redis Lock and Semaphore kernels with native asyncio acquires and releases.

They are the sync kernels (:mod:`polysync.backends.redis.kernels`) plus ``acquire_async``
and ``release_async`` (``AsyncAcquire``, ``AsyncRelease``):
the same scripts, keys, queue entries, ticks, leases, fencing tokens and ``lost`` and
``owner_died`` bookkeeping, with the exchanges awaited over redis.asyncio
(:class:`~polysync.backends.redis.aioserver.AsyncServer`) instead of blocking a thread.
Sync and async acquirers of one name therefore queue together and exclude each other.

A wait that ends by an exception (a cancellation above all, at any await) holds
nothing: its clean-up (the ``cancel`` step, which takes it off the queue and returns
what was granted to it, a grant whose reply never arrived included) runs on the
renewer's thread, retried while the server cannot be reached, so the cancelled task
does not wait for a round trip. Every owner id an async acquire uses is its own
(``holder_id``), which is what lets a semaphore's ``cancel`` find a permit taken for it.
"""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING, Any

from polysync.backends.redis.kernels import (
    RedisLock,
    RedisSemaphore,
    _Leased,
)
from polysync.backends.redis.server import (
    CLEANUP_TIMEOUT,
    WATCH_SLICE,
)

if TYPE_CHECKING:
    from polysync.backends.redis.aioserver import AsyncServer
    from polysync.backends.redis.server import RedisServer

__all__ = ["AsyncRedisLock", "AsyncRedisSemaphore"]


class _AcquiresAsync(_Leased):
    """``acquire_async`` over a leased kernel's ``acquire``/``tick``/``cancel`` steps."""

    #: The acquire script can push an immediate grant to the waiter key (lock.lua).
    _pushes_grant = False
    #: What ``cancel`` is told of an owner id used by this acquisition alone.
    _unique_owner: tuple[str, ...] = ()

    _aio: AsyncServer
    _contended_async = False

    def _taken(self, owner: str, token: int, holder_died: bool) -> None:
        """Record what the acquire script granted at once (as the sync acquire does)."""
        raise NotImplementedError

    async def acquire_async(self, blocking: bool, timeout: float | None) -> bool:
        """``acquire(blocking, timeout)`` awaited on the running loop (see the module)."""
        owner = self._server.holder_id()
        waits = blocking and timeout != 0
        wkey = self._waiter_key() if waits else ""
        deadline = None if timeout is None else time.monotonic() + timeout
        aio = self._aio
        try:
            if waits and self._pushes_grant and self._contended_async:
                # Last time it waited: the acquire and the first BLPOP in one round trip.
                step = WATCH_SLICE if timeout is None else min(WATCH_SLICE, timeout)
                result, message = await aio.run_then_pop(
                    self.script_name, self.keys, ["acquire", owner, self._lease_ms, wkey, 1],
                    wkey, step,
                )  # fmt: skip
                if int(result[0]) == 1:
                    self._contended_async = False  # it was free: one command per acquire
                if message is not None:
                    self._granted(owner, message)
                    return True
            else:
                result = await aio.run(
                    self.script_name, self.keys, ["acquire", owner, self._lease_ms, wkey], timeout
                )
                if int(result[0]) == 1:
                    self._taken(owner, int(result[1]), bool(int(result[2])))
                    return True
                if not waits:
                    return False
                self._contended_async = True
            return await self._wait_async(owner, wkey, int(result[1]), int(result[2]), deadline)
        except BaseException:
            self._abandon_soon(owner, wkey)
            raise

    async def _wait_async(
        self, owner: str, wkey: str, left_ms: int, near_head: int, deadline: float | None
    ) -> bool:
        """The sync ``_wait_for_grant``, awaited: queued until a grant is pushed to
        *wkey*, ticking before each later BLPOP, or off the queue at *deadline*."""
        aio = self._aio
        tick: list[Any] | None = None  # the acquire that queued it did the tick's work
        while True:
            step = self._grant_step(left_ms, near_head, deadline)
            if step <= 0:
                break
            result, message = await aio.run_then_pop(self.script_name, self.keys, tick, wkey, step)
            if message is not None:
                self._granted(owner, message)
                return True
            if result is not None:
                left_ms, near_head = int(result[0]), int(result[1])
            tick = ["tick", owner, wkey, self._lease_ms]
        # Timed out: off the queue, or keep a grant that came meanwhile.
        result = await aio.run(
            self.script_name, self.keys, ["cancel", owner, wkey], CLEANUP_TIMEOUT, exact=True
        )
        return self._kept(owner, result)

    def _abandon_soon(self, owner: str, wkey: str) -> None:
        """An acquire that ended by an exception holds nothing: the sync clean-up
        (``_abandon``), from the renewer's thread, so the task does not wait for it."""
        self._server.renewer.call_soon(
            functools.partial(self._abandon, owner, wkey, *self._unique_owner)
        )


class AsyncRedisLock(_AcquiresAsync, RedisLock):
    """A :class:`~polysync.backends.redis.kernels.RedisLock` with ``acquire_async``."""

    _pushes_grant = True  # lock.lua's acquire takes the push flag
    # lock.lua's cancel finds a grant whose reply was lost by its owner id already.

    def __init__(
        self, server: RedisServer, base: str, anonymous: bool, lease: float, aio: AsyncServer
    ) -> None:
        super().__init__(server, base, anonymous, lease)
        self._aio = aio

    def _taken(self, owner: str, token: int, holder_died: bool) -> None:
        self._held(owner, token, holder_died)

    async def release_async(self, n: int) -> None:
        """``release()`` awaited on the running loop (*n* is 1: a Lock)."""
        args, owner, lost = self._releasing()
        self._released(int(await self._aio.run(self.script_name, self.keys, args)), owner, lost)


class AsyncRedisSemaphore(_AcquiresAsync, RedisSemaphore):
    """A :class:`~polysync.backends.redis.kernels.RedisSemaphore` with ``acquire_async``."""

    _unique_owner = ("1",)  # semaphore.lua's cancel then looks for a permit of that owner

    def __init__(
        self,
        server: RedisServer,
        base: str,
        anonymous: bool,
        lease: float,
        bound: int | None,
        aio: AsyncServer,
    ) -> None:
        super().__init__(server, base, anonymous, lease, bound)
        self._aio = aio

    def _taken(self, owner: str, token: int, holder_died: bool) -> None:
        self._took(owner, token, holder_died)

    async def release_async(self, n: int) -> None:
        """``release(n)`` awaited on the running loop."""
        args, mine, died = self._releasing(n)
        self._released(n, await self._aio.run(self.script_name, self.keys, args), mine, died)
