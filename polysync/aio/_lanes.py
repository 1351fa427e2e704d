"""Local queues of waiting tasks: one per async handle per event loop, one kernel wait for them all.

Tasks of one loop waiting on one handle line up here, first come first served, and a
single :class:`~polysync.aio._waiters.Job` waits on the kernel for whoever is first: a
thousand tasks on one lock cost one waiter thread. A kernel with native asyncio waits
(:class:`~polysync.kernel.AsyncAcquire`) gets a :class:`NativeAcquireLane` instead, whose
one wait is a task on the loop itself: no thread at all. Every grant the job obtains is
delivered on the loop's thread to the first task still waiting; a grant that arrives
for a task that was cancelled or timed out meanwhile goes to the next one, or back to
the kernel if none is left, so no grant is ever lost or leaked.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

from polysync.aio._waiters import SLICE, pool

__all__ = ["AcquireLane", "EventLane", "Grant", "NativeAcquireLane", "Waiter"]

#: The shortest slice (a kernel wait of a few microseconds would only spin).
_SHORTEST = 0.005

#: What a kernel wait hands a task: an opaque token (an RLock's pinned thread), or True.
G = TypeVar("G")


class Waiter(Generic[G]):
    """One waiting task's place in a lane."""

    __slots__ = ("active", "future")

    def __init__(self, future: asyncio.Future[G | bool]) -> None:
        self.future = future
        self.active = True


class Grant(Generic[G]):
    """What a lane needs of its handle: the kernel wait, and how to give a grant back."""

    def wait_slice(self, seconds: float) -> G | None:
        """In a waiter thread: wait at most *seconds* for the kernel; a token if granted."""
        raise NotImplementedError

    def give_back(self, token: G) -> None:
        """On the loop: return a grant nobody took."""
        raise NotImplementedError

    def give_back_in_thread(self, token: G) -> None:
        """In the waiter thread that took it: return a grant the loop can no longer take."""
        raise NotImplementedError


class _Lane(Generic[G]):
    """Waiters of one loop, their live count, and whether a kernel job is out for them."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queued: list[None] | None = None) -> None:
        self.loop = loop
        self.waiters: collections.deque[Waiter[G]] = collections.deque()
        self.mutex = threading.Lock()  # guards live and running, shared with the job
        self.live = 0
        #: One entry per live waiter, in a list all the handle's lanes (one per loop)
        #: share: while it is empty no task of any loop queues, which the handle's fast
        #: paths read without looking up their loop. append and pop are atomic: lanes
        #: of loops in other threads change it too.
        self.queued: list[None] = [] if queued is None else queued
        self.running = False
        self.jobs = 0  # jobs out, or their last post not yet handled on the loop
        #: When the last waiter's timeout ends (monotonic; inf: one waits forever), so
        #: that no kernel wait outlasts everyone who wants it by more than a moment.
        self.latest = 0.0
        self._when_idle: list[Callable[[], object]] = []

    def _start(self) -> None:
        with self.mutex:
            self.jobs += 1
        self._submit()

    def _submit(self) -> None:
        raise NotImplementedError

    def ended(self) -> None:
        """A job is over (its last post handled): run what waited for no job to be out."""
        with self.mutex:
            self.jobs -= 1
            callbacks = self._when_idle if self.jobs == 0 else []
            if callbacks:
                self._when_idle = []
        for callback in callbacks:
            callback()

    def when_idle(self, callback: Callable[[], object]) -> None:
        """Call *callback* once no job uses the kernel (now, if none does)."""
        with self.mutex:
            if self.jobs:
                self._when_idle.append(callback)
                return
        callback()

    def add(self, seconds: float | None = None) -> Waiter[G]:
        """A new waiter at the back (for at most *seconds*); starts the job if none is out."""
        waiter: Waiter[G] = Waiter(self.loop.create_future())
        self.waiters.append(waiter)
        ends = math.inf if seconds is None else time.monotonic() + seconds
        with self.mutex:
            if self.live == 0 or ends > self.latest:
                self.latest = ends
            self.live += 1
            self.queued.append(None)
            start = not self.running
            self.running = True
        if start:
            self._start()
        return waiter

    def leave(self, waiter: Waiter[G]) -> None:
        """*waiter* no longer waits (granted, timed out, cancelled)."""
        if waiter.active:
            waiter.active = False
            with self.mutex:
                self.live -= 1
                self.queued.pop()
            with contextlib.suppress(ValueError):
                self.waiters.remove(waiter)

    def expire(self, waiter: Waiter[G]) -> None:
        """The timer of *waiter* ran out: it gets False."""
        if waiter.active and not waiter.future.done():
            self.leave(waiter)
            waiter.future.set_result(False)

    def fail(self, exc: BaseException) -> None:
        """The kernel wait raised: every waiter gets the error; the job is over."""
        for waiter in list(self.waiters):
            self.leave(waiter)
            if not waiter.future.done():
                waiter.future.set_exception(exc)
        with self.mutex:
            self.running = False
        self.ended()

    def stop_running(self) -> None:
        """No job waits for this lane any more (a new waiter starts one)."""
        with self.mutex:
            self.running = False

    def next_slice(self) -> float | None:
        """In the job: how long its next kernel wait may last; ``None`` (and the lane
        stopped) when nobody wants it any more, or those left are timing out: no kernel
        wait may outlast them, to take the object when nobody is there to have it."""
        with self.mutex:
            left = self.latest - time.monotonic()
            if self.live == 0 or left <= 0:
                self.running = False
                return None
            return min(SLICE, max(_SHORTEST, left))

    def failed(self, exc: BaseException) -> bool:
        """In the job: the kernel wait raised; hand *exc* to the waiters (``True`` if posted)."""
        if self.post(self.fail, exc):
            return True
        self.stop_running()
        return False

    def carry_on(self) -> None:
        """On the loop, after a delivery: wait on for who is left, or stop."""
        with self.mutex:
            again = self.live > 0
            if not again:
                self.running = False
        if again:
            self._start()
        self.ended()

    def post(self, callback: Callable[..., object], *args: object) -> bool:
        """Run *callback* on the loop; ``False`` if the loop is closed."""
        try:
            self.loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop is closed
            return False
        return True


class AcquireLane(_Lane[G]):
    """The tasks of one loop acquiring one Lock, RLock or Semaphore handle."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, grant: Grant[G], queued: list[None] | None = None
    ) -> None:
        super().__init__(loop, queued)
        self.grant = grant

    def _submit(self) -> None:
        pool().submit(_AcquireJob(self))

    def hand(self, token: G) -> bool:
        """On the loop: give *token* to the first live waiter; ``False`` if there is none."""
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.active:
                continue
            # Counted out here even if its task was cancelled and has not left yet: its
            # leave() is then a no-op, and a live count left behind would keep the
            # kernel wait going (taking grants and giving them back) for nobody.
            waiter.active = False
            with self.mutex:
                self.live -= 1
                self.queued.pop()
            if not waiter.future.done():
                waiter.future.set_result(token)
                return True
        return False

    def granted(self, token: G) -> None:
        """On the loop: the job got a grant; hand it on, then wait on for who is left."""
        if not self.hand(token):
            self.grant.give_back(token)
        self.carry_on()

    def pass_on(self, token: G) -> None:
        """On the loop: a cancelled task got *token*; the next waiter has it, or the kernel."""
        if not self.hand(token):
            self.grant.give_back(token)


class NativeAcquireLane(AcquireLane[bool]):
    """The tasks of one loop acquiring one handle whose kernel awaits natively.

    The kernel wait is one task on the loop, awaiting *acquire* (``acquire_async``) for as
    long as the last waiter wants it, not slice by slice: the backend keeps its place in
    the object's queue. Once no waiter is left it is cancelled, and the kernel gives back
    whatever a cancelled acquire was granted.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        grant: Grant[bool],
        acquire: Callable[[bool, float | None], Coroutine[Any, Any, bool]],
        queued: list[None] | None = None,
    ) -> None:
        super().__init__(loop, grant, queued)
        self.acquire = acquire
        self.task: asyncio.Task[None] | None = None
        #: Whether the task that found nobody waiting awaits the kernel itself now.
        self.direct = False

    def _submit(self) -> None:
        self.task = self.loop.create_task(self._wait())

    def leave(self, waiter: Waiter[bool]) -> None:
        super().leave(waiter)
        self._stop_if_unwanted()

    def hand(self, token: bool) -> bool:
        handed = super().hand(token)
        self._stop_if_unwanted()
        return handed

    def _stop_if_unwanted(self) -> None:
        task = self.task
        if self.live == 0 and task is not None and task is not asyncio.current_task():
            task.cancel()  # nobody wants what it waits for

    async def _wait(self) -> None:
        try:
            while True:
                with self.mutex:
                    left = self.latest - time.monotonic()
                    if self.live == 0 or left <= 0:
                        self.running = False
                        return
                try:
                    got = await self.acquire(True, None if left == math.inf else left)
                except asyncio.CancelledError:
                    if self.live:  # a waiter came as it was being stopped: wait for it
                        continue
                    with self.mutex:
                        self.running = False
                    return
                except BaseException as exc:  # the kernel's error: every waiter gets it
                    for waiter in list(self.waiters):
                        super().leave(waiter)
                        if not waiter.future.done():
                            waiter.future.set_exception(exc)
                    with self.mutex:
                        self.running = False
                    return
                if got and not self.hand(True):
                    self.grant.give_back(True)
        finally:
            self.task = None
            self.ended()


_LaneT = TypeVar("_LaneT", bound="_Lane[Any]")


class _Job(Generic[_LaneT]):
    """A lane's kernel wait, one slice per step (see :mod:`polysync.aio._waiters`)."""

    __slots__ = ("lane",)

    def __init__(self, lane: _LaneT) -> None:
        self.lane = lane

    def step(self) -> bool:
        finished, posted = self._step()
        if finished and not posted:
            self.lane.ended()
        return finished

    def _step(self) -> tuple[bool, bool]:
        """One slice: (whether the job is over, whether it posted to the loop)."""
        raise NotImplementedError


class _AcquireJob(_Job["AcquireLane[G]"], Generic[G]):
    __slots__ = ()

    def _step(self) -> tuple[bool, bool]:
        lane = self.lane
        seconds = lane.next_slice()
        if seconds is None:
            return True, False
        try:
            token = lane.grant.wait_slice(seconds)
        except BaseException as exc:
            return True, lane.failed(exc)
        if token is None:
            return False, False
        with lane.mutex:
            wanted = lane.live > 0
            if not wanted:
                # Decided with the count, in one go: a waiter added from now on starts
                # a job of its own.
                lane.running = False
        if wanted and lane.post(lane.granted, token):
            return True, True
        # Nobody left (or no loop) to take it. A failure means someone released it
        # meanwhile (nothing is held), or the server is gone (its lease ends it).
        with contextlib.suppress(Exception):
            lane.grant.give_back_in_thread(token)
        if wanted:  # the loop is closed
            lane.stop_running()
        return True, False


class EventLane(_Lane[bool]):
    """The tasks of one loop waiting for one Event handle; one kernel wait for them all."""

    def __init__(self, loop: asyncio.AbstractEventLoop, wait: Callable[[float], object]) -> None:
        super().__init__(loop)
        self.wait = wait

    def _submit(self) -> None:
        pool().submit(_EventJob(self))

    def fire(self) -> None:
        """On the loop: the event was seen set; every waiter now gets True."""
        for waiter in list(self.waiters):
            self.leave(waiter)
            if not waiter.future.done():
                waiter.future.set_result(True)
        self.carry_on()


class _EventJob(_Job["EventLane"]):
    __slots__ = ()

    def _step(self) -> tuple[bool, bool]:
        lane = self.lane
        seconds = lane.next_slice()
        if seconds is None:
            return True, False
        try:
            is_set = lane.wait(seconds)
        except BaseException as exc:
            return True, lane.failed(exc)
        if not is_set:
            return False, False
        if lane.post(lane.fire):
            return True, True
        lane.stop_running()
        return True, False
