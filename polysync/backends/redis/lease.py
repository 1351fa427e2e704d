"""The renewer: one daemon thread per process that keeps leases and anonymous objects alive.

Each registration is a callable run every *interval* seconds that returns whether what
it keeps is still there. A ``False`` (the key is gone: expired, deleted, or the server
restarted empty) or no success for *give_up* seconds call ``on_lost`` once and drop the
registration. The verdict comes on time even when the server cannot be reached at all
(a network partition, a frozen server): the callable is given the seconds left until
*give_up* runs out, which bound its exchange with the server (a reconnect included),
and a failed round is tried again at that deadline rather than an interval later. For
a lease, *give_up* counts from the moment the last successful renewal was sent, so the
holder hears of the loss before the server can let the lease go. Registrations are
judged nearest deadline first, and no exchange outlasts the nearest deadline of all, so
one that waits on the server does not make another's verdict late.

A forked child starts with none: each registration's ``on_fork`` is called there, so
that its owner can start afresh. The thread also runs the clean-ups of handles the
garbage collector dropped (``defer``), which must not run where the GC interrupted.
"""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

#: The longest the renewer sleeps between looks at its registrations (seconds).
TICK = 1.0


@dataclass
class Renewal:
    #: Called with the seconds it may take at most (what is left before give_up).
    renew: Callable[[float], bool]
    interval: float
    give_up: float
    on_lost: Callable[[], None]
    on_fork: Callable[[], None] | None = None
    next_due: float = 0.0
    last_ok: float = field(default_factory=time.monotonic)

    @property
    def deadline(self) -> float:
        """When, without a success before, this registration is lost."""
        return self.last_ok + self.give_up


class Renewer:
    def __init__(self) -> None:
        self._next_id = 0
        self._reset()
        _renewers.add(self)

    def _reset(self) -> None:
        # Also run in a forked child: the parent's thread is gone, and its lock may have
        # been held at the moment of the fork, so everything starts afresh.
        self._items: dict[int, Renewal] = {}
        self._deferred: deque[Callable[[], object]] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def add(
        self,
        renew: Callable[[float], bool],
        interval: float,
        give_up: float,
        on_lost: Callable[[], None],
        on_fork: Callable[[], None] | None = None,
    ) -> int:
        now = time.monotonic()
        with self._lock:
            self._next_id += 1
            key = self._next_id
            self._items[key] = Renewal(
                renew, interval, give_up, on_lost, on_fork, next_due=now + interval, last_ok=now
            )
            self._start()
        # The thread looks at its items at least every TICK seconds: waking it (a context
        # switch on the acquire path) is only needed for a shorter interval.
        if interval < TICK:
            self._wake.set()
        return key

    def _start(self) -> None:
        """Start the thread if it is not running (call with ``_lock`` held)."""
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._run, name="polysync-redis-renewer", daemon=True
            )
            self._thread.start()

    def call_soon(self, action: Callable[[], object]) -> None:
        """Have the renewer's thread run *action* now (best effort); never from a
        finalizer (it takes locks: see :meth:`defer`)."""
        if _exiting:
            with contextlib.suppress(Exception):
                action()
            return
        self._deferred.append(action)
        with self._lock:
            self._start()
        self._wake.set()

    def remove(self, key: int) -> None:
        with self._lock:
            self._items.pop(key, None)

    def defer(self, action: Callable[[], object]) -> None:
        """Have the renewer's thread run *action* within ``TICK`` seconds (best effort).

        For a finalizer's work: the GC may run it in a thread that holds the redis
        client's locks, or that is half-way through an exchange on its connection.
        Neither blocks nor starts a thread; at interpreter exit *action* runs at once.
        """
        if _exiting:
            with contextlib.suppress(Exception):
                action()
            return
        self._deferred.append(action)

    def run_deferred(self) -> None:
        while True:
            try:
                action = self._deferred.popleft()
            except IndexError:
                return
            with contextlib.suppress(Exception):  # clean-ups are best effort
                action()

    def _run(self) -> None:
        while True:
            self.run_deferred()
            with self._lock:
                # The nearest verdict first: an item past its give_up is judged before
                # anything else waits on the server.
                items = sorted(self._items.items(), key=lambda kv: kv[1].deadline)
            wait = TICK
            for key, item in items:
                now = time.monotonic()  # each round may wait on the server: time it anew
                if item.next_due <= now:
                    self._renew(key, item, now)
                wait = min(wait, max(0.0, item.next_due - time.monotonic()))
            self._wake.wait(wait)
            self._wake.clear()

    def _soonest(self) -> float:
        """The nearest give_up of all registrations: no renewal may wait on the server
        past it, or that verdict would come late (one thread judges them all)."""
        with self._lock:
            return min((item.deadline for item in self._items.values()), default=math.inf)

    def _renew(self, key: int, item: Renewal, now: float) -> None:
        item.next_due = now + item.interval
        deadline = item.deadline
        ok = False
        if now < deadline:
            try:
                # Bounded by the deadline: a server that does not answer (a partition)
                # must not hold the verdict up for a whole socket timeout.
                ok = item.renew(min(deadline, self._soonest()) - now)
            except Exception:  # the server is unreachable: keep trying until give_up
                ok = time.monotonic() < deadline
                # The next try, or the verdict, at the deadline: not an interval later.
                item.next_due = min(item.next_due, deadline)
            else:
                if ok:
                    item.last_ok = now  # sent after this: what it renewed runs out later
        if not ok:
            self.remove(key)
            with contextlib.suppress(Exception):  # a user's callback must not stop renewals
                item.on_lost()


_renewers: weakref.WeakSet[Renewer] = weakref.WeakSet()


_exiting = False


def _at_exit() -> None:
    # weakref runs the finalizers left at exit before or after this: clean-ups they
    # queued before run here, and later ones run at once in defer().
    global _exiting
    _exiting = True
    for renewer in list(_renewers):
        renewer.run_deferred()


def _after_fork_in_child() -> None:
    # What the parent renewed is the parent's: the child drops it all, then tells each
    # registration's owner, which may register again (after the reset, on this renewer).
    for renewer in list(_renewers):
        inherited = [item.on_fork for item in renewer._items.values() if item.on_fork]
        renewer._reset()
        for on_fork in inherited:
            with contextlib.suppress(Exception):
                on_fork()


atexit.register(_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
