"""The redis backend's kernels: each primitive's operations as single Lua script calls.

Waiting is always a blocking pop on a per-wait list (``<base>:w:<random>``) that the
script which wakes the waiter pushes to, so a hand-off costs one round trip and nothing
polls. A waiter that times out (or is interrupted) runs a ``cancel`` step that either
takes it off the queue or consumes what was sent to it, atomically, so a wake-up is
never lost and never delivered twice.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from polysync import errors
from polysync.backends.redis.server import CLAIM, CLEANUP_TIMEOUT, holder_of, text
from polysync.errors import BrokenBarrierError
from polysync.kernel import KernelState

if TYPE_CHECKING:
    from polysync.backends.redis.server import RedisServer
    from polysync.kernel import LockKernel

#: Seconds a blocked lock waiter waits past the holder's lease before checking on it.
LEASE_MARGIN = 0.05
#: Lifetime (ms) of a message sent to a waiter that has not popped it.
MESSAGE_TTL_MS = 60_000


class _Kernel:
    """What every redis kernel shares: its keys, its script, waiting, closing."""

    script_name = ""
    suffixes: tuple[str, ...] = ()

    def __init__(self, server: RedisServer, base: str, anonymous: bool) -> None:
        self._server = server
        self._base = base
        self.keys = [f"{base}:{suffix}" for suffix in self.suffixes]
        self._touch = self._keep_alive() if anonymous else None

    def _keep_alive(self) -> int:
        # A child forked with this handle holds it too, and keeps the object alive itself.
        return self._server.keep_alive(self.keys, on_fork=self._keep_alive_in_child)

    def _keep_alive_in_child(self) -> None:
        self._touch = self._keep_alive()

    def _run(self, *args: Any) -> Any:
        return self._server.run(self.script_name, self.keys, list(args))

    def _run_within(self, timeout: float | None, *args: Any) -> Any:
        """``_run`` for a caller with *timeout* seconds left (``None``: no limit of its own)."""
        return self._server.run(self.script_name, self.keys, list(args), timeout)

    def _cancel(self, *args: Any) -> Any:
        """A wait's clean-up step, bounded so that a frozen server cannot hold the caller."""
        return self._run_within(CLEANUP_TIMEOUT, "cancel", *args)

    def _waiter_key(self) -> str:
        return f"{self._base}:w:{self._server.unique_id()}"

    def _pop(self, wkey: str, timeout: float | None) -> str | None:
        return self._server.pop(wkey, timeout)

    def close(self) -> None:
        for action in self._detach():
            with contextlib.suppress(Exception):  # closing never fails: best effort (at exit too)
                action()

    def discard(self) -> None:
        """``close()`` for a handle the GC dropped: what is left runs on the renewer's thread."""
        for action in self._detach():
            self._server.renewer.defer(action)

    def _detach(self) -> list[Callable[[], object]]:
        """Forget this handle's local state without blocking; return what is left to do."""
        touch, self._touch = self._touch, None
        if touch is None:
            return []
        server = self._server
        # A last touch: the idle TTL starts now.
        ttl_ms = int(server.anonymous_ttl * 1000)
        return [
            partial(server.renewer.remove, touch),
            partial(server.run, "touch", self.keys, [ttl_ms]),
        ]


class _Leased(_Kernel):
    """A kernel whose grants are leases: renewal, the lost flag, fencing tokens."""

    def __init__(self, server: RedisServer, base: str, anonymous: bool, lease: float) -> None:
        super().__init__(server, base, anonymous)
        self.lease = lease
        self.on_lost: Callable[[], object] | None = None
        self._renewal: int | None = None
        self._state = threading.Lock()
        self.fencing_token: int | None = None
        self.lost = False

    def configure(self, lease: float | None, on_lost: Callable[[], object] | None) -> None:
        if lease is not None:
            self.lease = lease
        if on_lost is not None:
            self.on_lost = on_lost

    @property
    def _lease_ms(self) -> int:
        return max(1, int(self.lease * 1000))

    def acquire(self, blocking: bool, timeout: float | None) -> bool:
        raise NotImplementedError

    def _renew(self) -> bool:
        """Renew what this handle holds; ``False`` if it is no longer held."""
        raise NotImplementedError

    def _holds(self) -> bool:
        raise NotImplementedError

    def _granted(self, owner: str, message: Any) -> None:
        """Record what a grant message (or a cancel's reply) gave *owner*."""
        raise NotImplementedError

    def _give_back(self) -> None:
        """Undo one grant (a wait that was interrupted after it was granted)."""
        raise NotImplementedError

    def _wait_for_grant(self, owner: str, wkey: str, expiry_ms: int, timeout: float | None) -> bool:
        """Wait, queued, until a grant is pushed to *wkey*, or *timeout*.

        A release wakes the waiter at once. Between wake-ups it sleeps until a lease could
        have run out (*expiry_ms*, as the scripts report it), then asks the script to check
        ("poke"): only a dead holder costs a lease.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                step = (expiry_ms / 1000 if expiry_ms > 0 else 0) + LEASE_MARGIN
                if deadline is not None:
                    step = min(step, deadline - time.monotonic())
                    if step <= 0:
                        break
                message = self._pop(wkey, step)
                if message is not None:
                    self._granted(owner, message)
                    return True
                remaining = None if deadline is None else deadline - time.monotonic()
                expiry_ms = int(self._run_within(remaining, "poke", self._lease_ms))
        except BaseException:
            self._leave(owner, wkey, keep=False)
            raise
        return self._leave(owner, wkey, keep=True)

    def _leave(self, owner: str, wkey: str, *, keep: bool) -> bool:
        """Cancel a wait; if it was granted meanwhile, keep the grant (or give it back)."""
        result = self._cancel(owner, wkey)
        if int(result[0]) != 1:
            return False
        self._granted(owner, result[1])
        if not keep:
            self._give_back()
        return True

    def _granted_lease(self, token: int, *, claimed: bool = False) -> None:
        """Record a grant (call with ``_state`` held); one renewal for the handle's life.

        The renewal renews whatever the handle holds at each round, so acquire and release
        cost the renewer nothing. A *claimed* grant (one pushed to this waiter) is leased
        only for the claim window: the renewer confirms it within a third of that, and a
        holder whose confirmation fails learns it is lost when the window closes.
        """
        self.fencing_token = token
        self.lost = False
        lease = self.lease
        if self._renewal is None:
            self._renewal = self._server.renewer.add(
                self._renew,
                interval=lease / 3,
                give_up=lease,
                on_lost=self._on_lease_lost,
                on_fork=self._forked,
            )
        if claimed and lease > CLAIM:
            self._server.renewer.due_within(self._renewal, CLAIM)

    # Runs in the renewer thread, which takes no kernel lock: a fork while it runs must not
    # leave a child with a lock held by a thread it does not have.
    def _on_lease_lost(self) -> None:
        self._renewal = None  # the renewer dropped it; the next grant registers again
        if not self._holds():
            return
        self.lost = True
        callback = self.on_lost
        if callback is not None:
            callback()

    def _forked(self) -> None:
        """In a child forked with this handle (see the renewer): what the handle held was
        the parent's, so the child starts afresh and renews what it takes itself."""
        self._state = threading.Lock()  # a parent's thread may have held it at the fork
        self._renewal = None
        self.fencing_token = None
        self.lost = False

    def _detach(self) -> list[Callable[[], object]]:
        renewal, self._renewal = self._renewal, None
        actions = super()._detach()
        if renewal is not None:
            actions.insert(0, partial(self._server.renewer.remove, renewal))
        return actions


class RedisLock(_Leased):
    """A leased, fenced, FIFO lock (``lock.lua``)."""

    script_name = "lock"
    suffixes = ("k", "o", "f", "q", "h")

    def __init__(self, server: RedisServer, base: str, anonymous: bool, lease: float) -> None:
        super().__init__(server, base, anonymous, lease)
        self._owner: str | None = None
        self.owner_died = False
        # Whether this handle's last blocking acquire had to wait: then the next one sends
        # its BLPOP in the same round trip as the acquire script.
        self._contended = False

    def acquire(self, blocking: bool, timeout: float | None) -> bool:
        # One owner id per acquisition: a thread acquiring again must wait like anyone.
        # It names the holder too, for statistics().
        owner = self._server.holder_id()
        waits = blocking and timeout != 0
        wkey = self._waiter_key() if waits else ""
        if waits and self._contended:
            return self._acquire_pipelined(owner, wkey, timeout)
        result = self._run_within(timeout, "acquire", owner, self._lease_ms, wkey)
        if int(result[0]) == 1:
            self._held(owner, int(result[1]), bool(int(result[2])))
            return True
        if not waits:
            return False
        self._contended = True
        return self._wait_for_grant(owner, wkey, int(result[1]), timeout)

    def _acquire_pipelined(self, owner: str, wkey: str, timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            both = self._server.run_then_pop(
                self.script_name,
                self.keys,
                ["acquire", owner, self._lease_ms, wkey, 1],
                wkey,
                timeout,
            )
        except BaseException:
            self._leave(owner, wkey, keep=False)
            raise
        if both is None:  # not on this deployment: the two-step way
            self._contended = False
            return self.acquire(True, timeout)
        result, message = both
        if int(result[0]) == 1:
            self._contended = False  # it was free: back to one command per acquire
        if message is not None:
            self._granted(owner, message)
            return True
        remaining = None if deadline is None else deadline - time.monotonic()
        return self._wait_for_grant(owner, wkey, int(result[1]), remaining)

    def _granted(self, owner: str, message: Any) -> None:
        token = text(message)
        self._held(owner, int(token.rstrip("!")), token.endswith("!"), claimed=True)

    def _give_back(self) -> None:
        self.release()

    def _held(self, owner: str, token: int, holder_died: bool, *, claimed: bool = False) -> None:
        with self._state:
            self._owner = owner
            self.owner_died = holder_died
            self._granted_lease(token, claimed=claimed)
        if holder_died:
            errors.warn_owner_died(
                "the previous holder died holding this lock (its lease ran out): this "
                "handle took it over; check the state it protects",
                self.release,
            )

    def _holds(self) -> bool:
        return self._owner is not None

    def _renew(self) -> bool:
        owner = self._owner
        if owner is None:
            return True
        return bool(int(self._run("renew", owner, self._lease_ms)))

    def _forget(self) -> str | None:
        with self._state:
            owner, self._owner = self._owner, None
            self.owner_died = False
            return owner

    def release(self) -> None:
        owner = self._forget()
        if int(self._run("release", owner or "", self._lease_ms)):
            return
        if owner and self.lost:
            raise errors.lease_lost()
        raise errors.lock_not_held()

    def locked(self) -> bool:
        return bool(int(self._run("locked")))

    def release_save(self) -> object:
        self.release()
        return None

    def acquire_restore(self, state: object) -> None:
        self.acquire(True, None)

    def is_owned(self) -> bool:
        return self.locked()

    def statistics(self) -> KernelState:
        owner, pttl, queued, _fence = self._run("stats")
        owner = text(owner)
        mine = bool(owner) and owner == self._owner
        return KernelState(
            locked=bool(owner),
            holder=holder_of(owner),
            waiting=int(queued),
            lease_remaining=int(pttl) / 1000 if mine and int(pttl) >= 0 else None,
            fencing_token=self.fencing_token,
        )

    def _forked(self) -> None:
        super()._forked()
        self._owner = None
        self.owner_died = False

    def _detach(self) -> list[Callable[[], object]]:
        actions = super()._detach()
        self._owner = None
        self.owner_died = False
        return actions


class RedisRLock:
    """Reentrancy per (client, process, thread) over a :class:`RedisLock`; depth kept locally."""

    def __init__(self, lock: RedisLock) -> None:
        self._lock = lock
        self._depth: dict[tuple[int, int], int] = {}

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

    def configure(self, lease: float | None, on_lost: Callable[[], object] | None) -> None:
        self._lock.configure(lease, on_lost)

    def statistics(self) -> KernelState:
        return self._lock.statistics()

    def _me(self) -> tuple[int, int]:
        import os

        return os.getpid(), threading.get_ident()

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
        me = self._me()
        depth = self._depth.pop(me, 0)
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
        self._lock.close()

    def discard(self) -> None:
        self._lock.discard()


class RedisSemaphore(_Leased):
    """A counting semaphore with leased permits (``semaphore.lua``)."""

    script_name = "semaphore"
    suffixes = ("k", "v", "h", "f", "q")

    def __init__(
        self, server: RedisServer, base: str, anonymous: bool, lease: float, bound: int | None
    ) -> None:
        super().__init__(server, base, anonymous, lease)
        self._bound = bound
        self._permits: list[str] = []

    def acquire(self, blocking: bool, timeout: float | None) -> bool:
        owner = self._server.owner_id()
        waits = blocking and timeout != 0
        wkey = self._waiter_key() if waits else ""
        result = self._run_within(timeout, "acquire", owner, self._lease_ms, wkey)
        if int(result[0]) == 1:
            self._took(owner, int(result[1]))
            return True
        if not waits:
            return False
        return self._wait_for_grant(owner, wkey, int(result[1]), timeout)

    def _granted(self, owner: str, message: Any) -> None:
        self._took(owner, int(text(message)), claimed=True)

    def _give_back(self) -> None:
        self.release(1)

    def _took(self, owner: str, token: int, *, claimed: bool = False) -> None:
        with self._state:
            self._permits.append(f"{owner}#{token}")
            self._granted_lease(token, claimed=claimed)

    def _holds(self) -> bool:
        return bool(self._permits)

    def _renew(self) -> bool:
        permits = list(self._permits)  # a copy under the GIL; no lock in the renewer thread
        if not permits:
            return True
        held = int(self._run("renew", self._lease_ms, *permits))
        return held == len(permits)

    def release(self, n: int = 1) -> None:
        with self._state:
            mine = [self._permits.pop() for _ in range(min(n, len(self._permits)))]
        bound = "" if self._bound is None else self._bound
        if int(self._run("release", n, bound, self._lease_ms, *mine)) < 0:
            with self._state:
                self._permits.extend(mine)
            raise errors.over_released(self._bound or 0)

    def get_value(self) -> int:
        return int(self._run("value"))

    def statistics(self) -> KernelState:
        value, queued, _held = self._run("stats")
        return KernelState(value=int(value), waiting=int(queued), fencing_token=self.fencing_token)

    def _forked(self) -> None:
        super()._forked()
        self._permits = []

    def _detach(self) -> list[Callable[[], object]]:
        actions = super()._detach()
        permits, self._permits = self._permits, []
        if permits:
            actions.insert(0, partial(self._run, "forget", *permits))
        return actions


class RedisEvent(_Kernel):
    script_name = "event"
    suffixes = ("k", "e", "q")

    def set(self) -> None:
        self._run("set", MESSAGE_TTL_MS)

    def clear(self) -> None:
        self._run("clear")

    def is_set(self) -> bool:
        return bool(int(self._run("is_set")))

    def statistics(self) -> KernelState:
        flag, queued = self._run("stats")
        return KernelState(is_set=bool(int(flag)), waiting=int(queued))

    def wait(self, timeout: float | None) -> bool:
        wkey = self._waiter_key()
        deadline = None if timeout is None else time.monotonic() + timeout
        woken = False
        try:
            both = None
            if timeout != 0:  # queue and block in one round trip
                both = self._server.run_then_pop(
                    self.script_name, self.keys, ["wait", wkey, 1, MESSAGE_TTL_MS], wkey, timeout
                )
            if both is None:
                woken = bool(int(self._run_within(timeout, "wait", wkey, 0, MESSAGE_TTL_MS)))
            else:
                woken = both[1] is not None
            if woken:
                return True
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if remaining != 0:
                woken = self._pop(wkey, remaining) is not None
        finally:
            if not woken:
                woken = bool(int(self._cancel(wkey)))
        return woken


class RedisCondition(_Kernel):
    script_name = "condition"
    suffixes = ("k", "q")

    def wait(self, lock: LockKernel, timeout: float | None) -> bool:
        wkey = self._waiter_key()
        self._run_within(timeout, "enqueue", wkey)  # queued before the release: nothing missed
        state = lock.release_save()
        woken = False
        try:
            woken = self._pop(wkey, timeout) is not None
        finally:
            if not woken:
                woken = bool(int(self._cancel(wkey)))
            lock.acquire_restore(state)
        return woken

    def notify(self, n: int) -> None:
        if n:
            self._run("notify", n, MESSAGE_TTL_MS)

    def notify_all(self) -> None:
        self._run("notify", -1, MESSAGE_TTL_MS)

    def statistics(self) -> KernelState:
        return KernelState(waiting=int(self._run("stats")))


class RedisBarrier(_Kernel):
    script_name = "barrier"
    suffixes = ("k", "b", "q")

    def __init__(self, server: RedisServer, base: str, anonymous: bool, parties: int) -> None:
        super().__init__(server, base, anonymous)
        self.parties = parties

    def wait(self, timeout: float | None, action: Callable[[], object] | None) -> int:
        wkey = self._waiter_key()
        result = self._run_within(timeout, "arrive", wkey, self.parties)
        status = int(result[0])
        if status < 0:
            raise BrokenBarrierError("the barrier is broken")
        index = int(result[1])
        if status == 2:
            try:
                if action is not None:
                    action()
            except BaseException:
                self._run("break", MESSAGE_TTL_MS)
                raise
            self._run("trip", MESSAGE_TTL_MS)
            return index
        try:
            message = self._pop(wkey, timeout)
        except BaseException:
            self._run_within(CLEANUP_TIMEOUT, "leave", wkey)  # interrupted: not a timeout
            raise
        if message is None:
            message = text(self._cancel(wkey, MESSAGE_TTL_MS))
        if message == "ok":
            return index
        if message == "timeout":
            raise BrokenBarrierError("the barrier timed out and is now broken")
        raise BrokenBarrierError("the barrier was aborted or reset")

    def reset(self) -> None:
        self._run("reset", MESSAGE_TTL_MS)

    def abort(self) -> None:
        self._run("break", MESSAGE_TTL_MS)

    def n_waiting(self) -> int:
        count, broken = self._run("status")
        return 0 if int(broken) else int(count)

    def broken(self) -> bool:
        return bool(int(self._run("status")[1]))

    def statistics(self) -> KernelState:
        count, broken = self._run("status")
        return KernelState(broken=bool(int(broken)), waiting=0 if int(broken) else int(count))
