"""The redis backend's kernels: each primitive's operations as single Lua script calls.

Waiting is always a blocking pop on a per-wait list (``<base>:w:<random>``) that the
script which wakes the waiter pushes to, so a hand-off costs one round trip and nothing
polls. A waiter that times out (or is interrupted) runs a ``cancel`` step that either
takes it off the queue or consumes what was sent to it, atomically, so a wake-up is
never lost and never delivered twice. A Lock or Semaphore waiter claims a grant by
popping it (one not popped within ``CLAIM`` lapses to the next waiter), and sends a
``tick`` ahead of each later blocking pop, in the same round trip, which renews its
queue entry (one not renewed within ``LIVENESS`` lapses): a waiter that is gone holds up
nobody for long, and a hand-off is still the push and the pop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from polysync import errors
from polysync._validate import headroom
from polysync.backends.redis.server import (
    CLEANUP_TIMEOUT,
    LIVENESS,
    MESSAGE_TTL_MS,
    POP_SLICE,
    WATCH_SLICE,
    holder_of,
    text,
)
from polysync.derived import liveness
from polysync.derived.locks import ConditionHooksOfALock, DepthOverLock
from polysync.derived.parking import STOP_CHECK, WaitStopped
from polysync.errors import BrokenBarrierError
from polysync.kernel import KernelState

if TYPE_CHECKING:
    from polysync.backends.redis.server import RedisServer
    from polysync.kernel import LockKernel

_log = logging.getLogger(__name__)

#: Seconds a blocked lock waiter waits past the holder's lease before checking on it.
LEASE_MARGIN = 0.05
#: Seconds between two tries of a wait's clean-up that could not reach the server.
CLEANUP_RETRY = 0.5
#: How much sooner than the server may let a lease run out its holder takes it as lost
#: (at most a tenth of the lease), counted from the last renewal the holder sent: room
#: for the renewer's thread to be woken late and for the grant's delivery, so that a
#: holder cut off from the server is told before anyone else can be granted what it held.
LOST_EARLY = 0.1


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

    def _cancel(self, *args: Any, limit: float = CLEANUP_TIMEOUT) -> Any:
        """A wait's clean-up step, bounded so that a frozen server cannot hold the caller."""
        return self._server.run(
            self.script_name, self.keys, ["cancel", *args], min(limit, CLEANUP_TIMEOUT), exact=True
        )

    def _pop_in_slices(
        self,
        wkey: str,
        deadline: float | None,
        tick: list[Any],
        next_slice: Callable[[Any], float],
        stopped: Callable[[], bool] | None = None,
    ) -> Any:
        """The message pushed to waiter *wkey*, or ``None`` at *deadline*.

        Pops in slices, running the script's *tick* before each slice but the first (the
        call that queued the waiter did the first tick's work); *next_slice* gives the
        next slice's length from the last tick's result. With *stopped*, slices last at
        most STOP_CHECK and :class:`~polysync.derived.parking.WaitStopped` is raised once
        ``stopped()`` is true.
        """
        args: list[Any] | None = None
        step = POP_SLICE if stopped is None else STOP_CHECK
        while True:
            if deadline is not None:
                step = min(step, deadline - time.monotonic())
                if step <= 0:
                    return None
            result, message = self._server.run_then_pop(
                self.script_name, self.keys, args, wkey, step
            )
            if message is not None:
                return message
            if stopped is not None:
                if stopped():
                    raise WaitStopped
                step = min(next_slice(result), STOP_CHECK)
            else:
                step = next_slice(result)
            args = tick

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

    def _renew(self, limit: float) -> bool:
        """Renew what this handle holds, within *limit* seconds; ``False`` if it is no
        longer held."""
        raise NotImplementedError

    def _run_bounded(self, limit: float, *args: Any) -> Any:
        """``_run`` that raises once *limit* seconds pass, however short (renewals)."""
        return self._server.run(self.script_name, self.keys, list(args), limit, exact=True)

    def _holds(self) -> bool:
        raise NotImplementedError

    def _granted(self, owner: str, message: str) -> None:
        """Record a grant: *message* is its fencing token, with ``!`` appended if the
        previous holder died (what the scripts push, and what a cancel returns)."""
        raise NotImplementedError

    def _give_back_grant(self, owner: str, message: str) -> None:
        """Release what a cancel found granted to a wait that was abandoned."""
        raise NotImplementedError

    def _wait_for_grant(
        self, owner: str, wkey: str, left_ms: int, near_head: int, timeout: float | None
    ) -> bool:
        """Wait, queued, until a grant is pushed to *wkey*, or *timeout*.

        A release wakes the waiter at once, and popping the grant claims it: nothing more
        is sent. Between wake-ups it waits until the holder's lease (or a grant's claim
        window) could have run out (*left_ms*, as the scripts report it), by slices of
        ``POP_SLICE``, or ``WATCH_SLICE`` among the first two in the queue
        (*near_head*), who watch a grant to the one ahead lapse. Each later BLPOP goes
        out behind the script's ``tick``, in one round trip: it renews this waiter's
        queue entry, settles a grant, and checks on the holder.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        tick: list[Any] | None = None  # the acquire that queued it did the tick's work
        try:
            while True:
                step = self._grant_step(left_ms, near_head, deadline)
                if step <= 0:
                    break
                result, message = self._server.run_then_pop(
                    self.script_name, self.keys, tick, wkey, step
                )
                if message is not None:
                    self._granted(owner, message)
                    return True
                if result is not None:
                    left_ms, near_head = int(result[0]), int(result[1])
                tick = ["tick", owner, wkey, self._lease_ms]
        except BaseException:
            self._abandon(owner, wkey)
            raise
        return self._leave(owner, wkey)

    @staticmethod
    def _grant_step(left_ms: int, near_head: int, deadline: float | None) -> float:
        """How long the next BLPOP of a queued wait may block; ``<= 0``: the deadline passed.

        Until the holder's lease (or a grant's claim window) could have run out
        (*left_ms*), by ``POP_SLICE``, or ``WATCH_SLICE`` near the head (*near_head*).
        """
        step = (left_ms / 1000 if left_ms > 0 else 0) + LEASE_MARGIN
        step = min(step, WATCH_SLICE if near_head else POP_SLICE)
        if deadline is not None:
            step = min(step, deadline - time.monotonic())
        return step

    def _kept(self, owner: str, cancelled: Any) -> bool:
        """What a timed-out wait's ``cancel`` reply means: ``True`` if a grant came
        meanwhile (recorded as this handle's), else ``False`` (off the queue)."""
        if int(cancelled[0]) != 1:
            return False
        self._granted(owner, text(cancelled[1]))
        return True

    def _leave(self, owner: str, wkey: str) -> bool:
        """A timed-out wait's clean-up: off the queue, or keep a grant that came meanwhile."""
        try:
            result = self._cancel(owner, wkey)
        except Exception:
            self._abandon_later(owner, wkey)  # the caller hears of the error: it holds nothing
            raise
        return self._kept(owner, result)

    def _abandon(self, owner: str, wkey: str, *extra: str) -> None:
        """An interrupted wait's clean-up: off the queue, and anything granted given back
        (*extra*: what ``cancel`` is told besides, see the async kernels).

        A server that cannot be reached now (frozen, restarting) is tried again from the
        renewer's thread, every ``CLEANUP_RETRY`` seconds for ``LIVENESS`` seconds (after
        which the entry has lapsed anyway), so it does not hold up the waiters behind.
        """
        try:
            self._abandon_now(owner, wkey, *extra)
        except Exception:
            self._abandon_later(owner, wkey, *extra)

    def _abandon_now(
        self, owner: str, wkey: str, *extra: str, limit: float = CLEANUP_TIMEOUT
    ) -> None:
        result = self._cancel(owner, wkey, *extra, limit=limit)
        if int(result[0]) == 1:
            self._give_back_grant(owner, text(result[1]))

    def _abandon_later(self, owner: str, wkey: str, *extra: str) -> None:
        def attempt(limit: float) -> bool:
            self._abandon_now(owner, wkey, *extra, limit=limit)
            return False  # done: the renewer drops it

        self._server.renewer.add(
            attempt, interval=CLEANUP_RETRY, give_up=LIVENESS, on_lost=lambda: None
        )

    def _granted_lease(self, token: int) -> None:
        """Record a grant (call with ``_state`` held); one renewal for the handle's life.

        The renewal renews whatever the handle holds at each round, so acquire and release
        cost the renewer nothing.
        """
        self.fencing_token = token
        self.lost = False
        lease = self.lease
        if self._renewal is None:
            self._renewal = self._server.renewer.add(
                self._renew,
                interval=lease / 3,
                give_up=lease - min(LOST_EARLY, lease / 10),
                on_lost=self._on_lease_lost,
                on_fork=self._forked,
            )

    def _report_lost(self) -> None:
        """A release found the lease gone before the renewer did: say so, as it would."""
        if self.lost:
            return  # the renewer told already
        self.lost = True
        _log.warning(
            "lease lost: %s on %s ran out before its release (another holder may have "
            "had it meanwhile)",
            self._base,
            self._server.where,
        )
        callback = self.on_lost
        if callback is not None:
            self._server.renewer.call_soon(callback)  # from the backend's thread, as always

    # Runs in the renewer thread, which takes no kernel lock: a fork while it runs must not
    # leave a child with a lock held by a thread it does not have.
    def _on_lease_lost(self) -> None:
        self._renewal = None  # the renewer dropped it; the next grant registers again
        if not self._holds():
            return
        self.lost = True
        _log.warning(
            "lease lost: %s on %s could not be renewed within its lease of %g s",
            self._base,
            self._server.where,
            self.lease,
        )
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


class RedisLock(ConditionHooksOfALock, _Leased):
    """A leased, fenced, FIFO lock (``lock.lua``)."""

    script_name = "lock"
    suffixes = ("k", "o", "f", "q", "h", "l")

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
        return self._wait_for_grant(owner, wkey, int(result[1]), int(result[2]), timeout)

    def _acquire_pipelined(self, owner: str, wkey: str, timeout: float | None) -> bool:
        """acquire() and its first BLPOP in one round trip (see ``run_pop_run``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        step = WATCH_SLICE if timeout is None else min(WATCH_SLICE, timeout)
        try:
            replies = self._server.run_pop_run(
                self.script_name,
                self.keys,
                ["acquire", owner, self._lease_ms, wkey, 1],
                wkey,
                step,
                None,
            )
        except BaseException:
            self._abandon(owner, wkey)
            raise
        if replies is None:  # not on this deployment: the two-step way
            self._contended = False
            return self.acquire(True, timeout)
        result, message, _ = replies
        if int(result[0]) == 1:
            self._contended = False  # it was free: back to one command per acquire
        if message is not None:
            self._granted(owner, message)
            return True
        remaining = None if deadline is None else deadline - time.monotonic()
        return self._wait_for_grant(owner, wkey, int(result[1]), int(result[2]), remaining)

    def _granted(self, owner: str, message: str) -> None:
        self._held(owner, int(message.rstrip("!")), message.endswith("!"))

    def _give_back_grant(self, owner: str, message: str) -> None:
        self._run("release", owner, self._lease_ms, int(message.rstrip("!")))

    def _held(self, owner: str, token: int, holder_died: bool) -> None:
        with self._state:
            self._owner = owner
            self.owner_died = holder_died
            self._granted_lease(token)
        if holder_died:
            errors.warn_owner_died(
                "the previous holder died holding this lock (its lease ran out): this "
                "handle took it over; check the state it protects",
                self.release,
            )

    def _holds(self) -> bool:
        return self._owner is not None

    def _renew(self, limit: float) -> bool:
        owner = self._owner
        if owner is None:
            return True
        return bool(int(self._run_bounded(limit, "renew", owner, self._lease_ms)))

    def _forget(self) -> str | None:
        with self._state:
            owner, self._owner = self._owner, None
            self.owner_died = False
            return owner

    def release(self) -> None:
        args, owner, lost = self._releasing()
        self._released(int(self._run(*args)), owner, lost)

    def _releasing(self) -> tuple[list[Any], str | None, bool]:
        """A release's first half, on this side: the script's arguments, and what
        :meth:`_released` needs. The handle no longer holds anything from here."""
        owner = self._forget()
        token = self.fencing_token if owner else 0
        return ["release", owner or "", self._lease_ms, token or 0], owner, self.lost

    def _released(self, done: int, owner: str | None, lost: bool) -> None:
        """A release's second half: what the script's reply *done* means."""
        if done == 1:
            return
        # This handle held it, and its lease is gone. The server cannot always tell (the
        # lock may have been taken and released by others since, leaving no trace of this
        # grant), but the renewer may have told this handle already.
        if done < 0 or (owner and lost):
            self._report_lost()
            raise errors.lease_lost()
        raise errors.lock_not_held()

    def locked(self) -> bool:
        return bool(int(self._run("locked")))

    def statistics(self) -> KernelState:
        owner, pttl, queued, fence = self._run("stats")
        owner = text(owner)
        mine = bool(owner) and owner == self._owner
        left = int(pttl) / 1000 if owner and int(pttl) >= 0 else None
        return KernelState(
            locked=bool(owner),
            holder=holder_of(owner),
            waiting=int(queued),
            lease_remaining=left if mine else None,
            fencing_token=self.fencing_token,
            last_fencing_token=int(fence) or None,
            holder_lease_remaining=left,
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


class RedisRLock(DepthOverLock["RedisLock"]):
    """Reentrancy per (client, process, thread) over a :class:`RedisLock`; depth kept locally."""

    def configure(self, lease: float | None, on_lost: Callable[[], object] | None) -> None:
        self._lock.configure(lease, on_lost)


class RedisSemaphore(_Leased):
    """A counting semaphore with leased permits (``semaphore.lua``)."""

    script_name = "semaphore"
    suffixes = ("k", "v", "h", "f", "q", "l", "p", "d")

    def __init__(
        self, server: RedisServer, base: str, anonymous: bool, lease: float, bound: int | None
    ) -> None:
        super().__init__(server, base, anonymous, lease)
        self._bound = bound
        self._permits: list[str] = []
        #: Whether this handle holds a permit it took over from a holder that died (True
        #: from that acquire until the handle next releases), as a Lock's ``owner_died``.
        self.owner_died = False

    def acquire(self, blocking: bool, timeout: float | None) -> bool:
        owner = self._server.owner_id()
        waits = blocking and timeout != 0
        wkey = self._waiter_key() if waits else ""
        result = self._run_within(timeout, "acquire", owner, self._lease_ms, wkey)
        if int(result[0]) == 1:
            self._took(owner, int(result[1]), bool(int(result[2])))
            return True
        if not waits:
            return False
        return self._wait_for_grant(owner, wkey, int(result[1]), int(result[2]), timeout)

    def _granted(self, owner: str, message: str) -> None:
        self._took(owner, int(message.rstrip("!")), message.endswith("!"))

    def _give_back_grant(self, owner: str, message: str) -> None:
        bound = "" if self._bound is None else self._bound
        self._run("release", 1, bound, self._lease_ms, f"{owner}#{message.rstrip('!')}")

    def _took(self, owner: str, token: int, holder_died: bool) -> None:
        with self._state:
            self._permits.append(f"{owner}#{token}")
            self.owner_died = self.owner_died or holder_died
            self._granted_lease(token)
        if holder_died:
            errors.warn_owner_died(
                "the previous holder of this permit died holding it (its lease ran out): "
                "this handle took it over; check the state it protects",
                partial(self.release, 1),
            )

    def _holds(self) -> bool:
        return bool(self._permits)

    def _renew(self, limit: float) -> bool:
        permits = list(self._permits)  # a copy under the GIL; no lock in the renewer thread
        if not permits:
            return True
        held = int(self._run_bounded(limit, "renew", self._lease_ms, *permits))
        return held == len(permits)

    def release(self, n: int = 1) -> None:
        args, mine, died = self._releasing(n)
        self._released(n, self._run(*args), mine, died)

    def _releasing(self, n: int) -> tuple[list[Any], list[str], bool]:
        """A release's first half, on this side: the script's arguments, the permits it
        gives back and whether a holder had died (for :meth:`_released`)."""
        with self._state:
            mine = [self._permits.pop() for _ in range(min(n, len(self._permits)))]
            died, self.owner_died = self.owner_died, False
        bound = "" if self._bound is None else self._bound
        return ["release", n, bound, self._lease_ms, *mine], mine, died

    def _released(self, n: int, result: Any, mine: list[str], died: bool) -> None:
        """A release's second half: what the script's *result* means (permits it did
        not take go back to this handle)."""
        if int(result[0]) < 0:
            with self._state:
                self._permits.extend(mine)
                self.owner_died = died
            if int(result[0]) == -2:
                raise headroom(n, int(result[1]))
            raise errors.over_released(self._bound or 0)
        if int(result[1]):  # permits this handle held, whose leases were gone
            self._report_lost()
            raise errors.lease_lost()

    def get_value(self) -> int:
        return int(self._run("value"))

    def statistics(self) -> KernelState:
        value, queued, _held, fence, soonest = self._run("stats")
        return KernelState(
            value=int(value),
            waiting=int(queued),
            fencing_token=self.fencing_token,
            last_fencing_token=int(fence) or None,
            holder_lease_remaining=int(soonest) / 1000 if int(soonest) >= 0 else None,
        )

    def _forked(self) -> None:
        super()._forked()
        self._permits = []
        self.owner_died = False

    def _detach(self) -> list[Callable[[], object]]:
        actions = super()._detach()
        self.owner_died = False
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
            replies = None
            if timeout != 0:  # queue and block in one round trip
                step = POP_SLICE if timeout is None else min(POP_SLICE, timeout)
                replies = self._server.run_pop_run(
                    self.script_name,
                    self.keys,
                    ["wait", wkey, 1, MESSAGE_TTL_MS],
                    wkey,
                    step,
                    None,
                )
            if replies is None:
                woken = bool(int(self._run_within(timeout, "wait", wkey, 0, MESSAGE_TTL_MS)))
            else:
                woken = replies[1] is not None
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
    """A queue of waiter keys with liveness (``condition.lua``).

    A waiter blocks by slices, each sent behind a ``tick`` that renews its liveness; a
    notification nobody claimed in time (its waiter was killed) goes to the next live
    waiter at the next tick or call, so a ``notify()`` is not lost to a dead waiter.
    """

    script_name = "condition"
    suffixes = ("k", "q", "l", "p")

    def wait(self, lock: LockKernel, timeout: float | None) -> bool:
        wkey = self._waiter_key()
        self._run_within(timeout, "enqueue", wkey)  # queued before the release: nothing missed
        state = lock.release_save()
        woken = False
        try:
            woken = self._await(wkey, timeout)
        finally:
            # Leave the queue only with the lock back: a notify sent after the timeout
            # still reaches this waiter, so a caller that waits again loses nothing.
            try:
                lock.acquire_restore(state)
            finally:
                if not woken:
                    woken = bool(int(self._cancel(wkey)))
        return woken

    def _await(self, wkey: str, timeout: float | None) -> bool:
        """Block until notified (``True``) or *timeout*, ticking at every slice."""
        deadline = None if timeout is None else time.monotonic() + timeout
        # A notification not claimed yet (perhaps sent to a waiter that is gone): watch it
        # closely, as it lapses to the next live waiter.
        message = self._pop_in_slices(
            wkey,
            deadline,
            ["tick", wkey],
            lambda result: WATCH_SLICE if result is not None and int(result) == 1 else POP_SLICE,
        )
        return message is not None

    def notify(self, n: int) -> None:
        if n:
            self._run("notify", n, MESSAGE_TTL_MS)

    def notify_all(self) -> None:
        self._run("notify", -1, MESSAGE_TTL_MS)

    def statistics(self) -> KernelState:
        return KernelState(waiting=int(self._run("stats")))


def _process_space() -> str:
    """What tells the processes whose PIDs this one can check: the same kernel (its boot
    id) and PID namespace; ``-`` where that cannot be known (then only liveness lapses)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return "-"
    return f"{boot}.{namespace}"


_SPACE: list[str] = []


def _who() -> str:
    """This process, as a Barrier party records it: ``space:pid:start``."""
    if not _SPACE:
        _SPACE.append(_process_space())
    return f"{_SPACE[0]}:{liveness.current_pid()}:{liveness.started()}"


def _dead(who: str) -> bool:
    """Whether the party *who* (of this process space) is known to be dead."""
    try:
        _space, pid, start = who.rsplit(":", 2)
        return not liveness.is_running(int(pid), int(start))
    except ValueError:
        return False


class RedisBarrier(_Kernel):
    """Parties queued with liveness, each holding its index (``barrier.lua``).

    A waiting party that died no longer counts. The arrival that would trip the barrier
    is first handed the waiting parties of its own process space and checks their PIDs
    (and start times), so one killed on this host is dropped at once; one on another
    host is dropped once its liveness lapses (``LIVENESS``: it ticks at every slice).
    The arrival that drops a party is told with an OwnerDiedWarning.
    """

    script_name = "barrier"
    suffixes = ("k", "b", "q", "l", "h")

    def __init__(self, server: RedisServer, base: str, anonymous: bool, parties: int) -> None:
        super().__init__(server, base, anonymous)
        self.parties = parties

    def wait(self, timeout: float | None, action: Callable[[], object] | None) -> int:
        return self._wait(timeout, action, None)

    def wait_stoppable(
        self,
        timeout: float | None,
        action: Callable[[], object] | None,
        stopped: Callable[[], bool],
    ) -> int | None:
        """As :meth:`wait`; ``None`` once ``stopped()`` (the party left, as interrupted)."""
        try:
            return self._wait(timeout, action, stopped)
        except WaitStopped:
            return None

    def _wait(
        self,
        timeout: float | None,
        action: Callable[[], object] | None,
        stopped: Callable[[], bool] | None,
    ) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        wkey = self._waiter_key()
        while True:
            index, queued = self._arrive(wkey, _left(deadline), action)
            if not queued:
                return index
            try:
                message = self._await(wkey, deadline, stopped)
            except BaseException:
                self._run_within(CLEANUP_TIMEOUT, "leave", wkey)  # interrupted: not a timeout
                raise
            if message is None:
                message = text(self._cancel(wkey, MESSAGE_TTL_MS))
            if message == "again":  # taken for dead while it lived: it arrives again
                continue
            if message == "ok":
                return index
            if message == "timeout":
                raise BrokenBarrierError("the barrier timed out and is now broken")
            raise BrokenBarrierError("the barrier was aborted or reset")

    def _arrive(
        self, wkey: str, timeout: float | None, action: Callable[[], object] | None
    ) -> tuple[int, bool]:
        """Count this party in: its index, and whether it waits (else it tripped it)."""
        trip = 1 if action is None else 0
        checked: list[str] | None = None
        while True:
            result = self._run_within(
                timeout,
                "arrive",
                wkey,
                self.parties,
                _who(),
                trip,
                MESSAGE_TTL_MS,
                0 if checked is None else 1,
                *(checked or ()),
            )
            status = int(result[0])
            if status == 3:  # it would trip: the parties of this host are checked first
                pairs = [text(v) for v in result[1]]
                checked = [pairs[i] for i in range(0, len(pairs), 2) if _dead(pairs[i + 1])]
                continue
            if status < 0:
                raise BrokenBarrierError("the barrier is broken")
            index = int(result[1])
            if int(result[-1]):
                self._told(int(result[-1]), wkey, status)
            if status == 0:
                return index, True
            if int(result[2]) == 0:  # it trips once the action has run
                try:
                    if action is not None:
                        action()
                except BaseException:
                    self._run("break", MESSAGE_TTL_MS)
                    raise
                self._run("trip", MESSAGE_TTL_MS)
            return index, False

    def _told(self, dropped: int, wkey: str, status: int) -> None:
        """Warn that *dropped* waiting parties died; made an error, this party leaves."""

        def leave() -> None:
            if status == 0:
                self._run_within(CLEANUP_TIMEOUT, "leave", wkey)

        errors.warn_owner_died(
            f"{dropped} {'parties' if dropped > 1 else 'party'} died waiting at this "
            "barrier: no longer counted, the barrier waits for others in their place; "
            "check what they were to do",
            leave,
        )

    def _await(
        self, wkey: str, deadline: float | None, stopped: Callable[[], bool] | None = None
    ) -> str | None:
        """The message sent to this waiting party, or ``None`` at *deadline*."""
        message: str | None = self._pop_in_slices(
            wkey, deadline, ["tick", wkey, MESSAGE_TTL_MS], lambda _result: POP_SLICE, stopped
        )
        return message

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


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())
