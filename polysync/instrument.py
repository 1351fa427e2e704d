"""Observing waits and holds without patching: listeners, and what primitives report to them.

A *listener* is any callable taking an :class:`Observation`. Subscribe it with
:func:`subscribe` (or, for a block, :func:`listening`) and every Lock, RLock, Semaphore and
BoundedSemaphore handle of the process, on every backend, reports to it:

========================  ===================================================================
``event``                 when, and what ``seconds`` holds
========================  ===================================================================
``"acquired"``            an acquire succeeded; ``seconds``: how long it waited
``"timeout"``             a blocking acquire gave up (its timeout ran out); ``seconds``: waited
``"released"``            the handle released what it had acquired; ``seconds``: how long it
                          was held (an RLock: from the outermost acquire to the last release;
                          ``None`` for a release without a matching acquire on this handle)
``"takeover"``            the acquire took the lock (or permit) over from a holder that died
``"lease_lost"``          a lease could not be renewed (``leases`` backends), from the
                          backend's thread
========================  ===================================================================

A non-blocking ``acquire(False)`` that finds it taken reports nothing. Condition waits
release and retake their lock without a report.

**Zero cost when nobody listens.** Handles call their kernel's raw functions (often one C
call) and nothing else; subscribing the first listener rebinds every open handle (and every
handle opened later) to timing stand-ins, and unsubscribing the last binds the raw functions
again. So a process with no listener runs exactly the code it ran before this module
existed: ``benchmarks/callgrind_pairs.py`` counts the same instructions per pair.

A listener runs in the thread that acquired or released (or the backend's thread, for
``lease_lost``), while that call returns: keep it short and do not block. An exception it
raises is logged (logger ``polysync.instrument``) and never reaches the primitive's caller.
:mod:`polysync.otel` adapts listeners to OpenTelemetry metrics.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import NamedTuple, Protocol

__all__ = [
    "ACQUIRED",
    "LEASE_LOST",
    "RELEASED",
    "TAKEOVER",
    "TIMEOUT",
    "Listener",
    "Observation",
    "listening",
    "subscribe",
    "unsubscribe",
]

#: An acquisition succeeded; ``Observation.seconds`` is how long it waited.
ACQUIRED = "acquired"
#: An acquisition gave up at its timeout; ``seconds``: how long it waited.
TIMEOUT = "timeout"
#: A hold ended (an RLock's outermost release); ``seconds``: how long it was held.
RELEASED = "released"
#: An acquisition took the object over from a holder that died.
TAKEOVER = "takeover"
#: A lease was lost (leased backends): the holder could not renew it.
LEASE_LOST = "lease_lost"

_log = logging.getLogger(__name__)
_clock = time.perf_counter


class Observation(NamedTuple):
    """One thing a primitive reports to listeners (see the module docstring).

    A named tuple: immutable, and cheap to make on the observed path.
    """

    #: ``"acquired"``, ``"timeout"``, ``"released"``, ``"takeover"`` or ``"lease_lost"``.
    event: str
    #: The primitive's kind (``"lock"``, ``"rlock"``, ``"semaphore"``, ``"bounded_semaphore"``).
    kind: str
    #: Its name; ``None`` for an anonymous object.
    name: str | None
    #: The backend's registered name (``"posix"``, ``"redis"``, …).
    backend: str
    #: Seconds waited (acquired, timeout) or held (released); ``None`` otherwise.
    seconds: float | None = None


Listener = Callable[[Observation], object]


class _Rebindable(Protocol):
    def _rebind(self) -> None: ...


_listeners: tuple[Listener, ...] = ()
#: Read by a handle when it binds its kernel: whether to bind the timing stand-ins.
active = False
_handles: weakref.WeakSet[_Rebindable] = weakref.WeakSet()
_lock = threading.Lock()


def _after_fork_in_child() -> None:
    # A thread of the parent may have held the lock at the fork: the child gets a new one.
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)


def subscribe(listener: Listener) -> None:
    """Report every observation of this process to *listener* (once, however often added)."""
    global _listeners, active
    if not callable(listener):
        raise TypeError(f"a listener must be callable, not {type(listener).__name__}")
    with _lock:
        if listener in _listeners:
            return
        _listeners = (*_listeners, listener)
        first = not active
        active = True
        if first:
            _rebind_all()


def unsubscribe(listener: Listener) -> None:
    """Stop reporting to *listener*; the last one gone, handles bind their raw calls again."""
    global _listeners, active
    with _lock:
        _listeners = tuple(one for one in _listeners if one != listener)
        if active and not _listeners:
            active = False
            _rebind_all()


@contextlib.contextmanager
def listening(listener: Listener) -> Iterator[Listener]:
    """``with listening(fn):`` subscribes *fn* for the block."""
    subscribe(listener)
    try:
        yield listener
    finally:
        unsubscribe(listener)


def track(handle: _Rebindable) -> None:
    """A handle that binds timing stand-ins while someone listens (called at its attach)."""
    with _lock:
        _handles.add(handle)


def forget(handle: _Rebindable) -> None:
    """A handle that closed."""
    with _lock:
        _handles.discard(handle)


def _rebind_all() -> None:
    for handle in list(_handles):
        handle._rebind()


def emit(observation: Observation) -> None:
    """Hand *observation* to every listener; one that raises is logged, never propagated."""
    for listener in _listeners:
        try:
            listener(observation)
        except Exception:
            _log.exception("polysync listener %r failed on %s", listener, observation.event)


class Probe:
    """The timing stand-ins of one handle's acquire and release calls (bound while listening).

    *level* tells an RLock's depth after an acquire and before a release (``None``: every
    acquire is a hold of its own); *died* reads the kernel's ``owner_died`` (``None``:
    the kernel cannot tell). Each stand-in is one closure over what it needs, so an
    observed pair costs two frames of its own and one :class:`Observation` per report.
    """

    __slots__ = ("_died", "_level", "_since", "backend", "kind", "name", "original_on_lost")

    def __init__(
        self,
        kind: str,
        name: str | None,
        backend: str,
        level: Callable[[], int] | None,
        died: Callable[[], bool] | None,
    ) -> None:
        self.kind = kind
        self.name = name
        self.backend = backend
        self._level = level
        self._died = died
        self._since: list[float] = []
        self.original_on_lost: Callable[[], object] | None = None

    def _report(self, event: str, seconds: float | None = None) -> None:
        emit(Observation(event, self.kind, self.name, self.backend, seconds))

    def begin(self) -> tuple[bool, float]:
        """Before an acquire that its caller times itself (:mod:`polysync.aio`, whose
        waits are many kernel calls): what :meth:`end` needs."""
        died = self._died
        return (died is not None and died()), _clock()

    def end(
        self,
        begun: tuple[bool, float],
        result: object,
        waits: bool,
        always_ok: bool = False,
        new_hold: bool | None = None,
    ) -> None:
        """After that acquire: report what happened, as the stand-ins do. *new_hold*
        tells whether a hold began (``None``: as the level says)."""
        before, started = begun
        now = _clock()
        if not (always_ok or result):
            if waits:
                emit(Observation(TIMEOUT, self.kind, self.name, self.backend, now - started))
            return
        if new_hold is None:
            level = self._level
            new_hold = level is None or level() == 1
        if new_hold:
            self._since.append(now)
        emit(Observation(ACQUIRED, self.kind, self.name, self.backend, now - started))
        died = self._died
        if died is not None and not before and died():
            self._report(TAKEOVER)

    def _timed(
        self, call: Callable[[], bool | object], waits: bool, always_ok: bool
    ) -> bool | object:
        """Run *call* (an acquire), timing it; report what happened; return its result."""
        begun = self.begin()
        result = call()
        self.end(begun, result, waits, always_ok)
        return result

    def released(self, count: int) -> None:
        """*count* holds ended: report each, with how long it was held."""
        now = _clock()
        since = self._since
        for _ in range(count):
            seconds = now - since.pop() if since else None
            emit(Observation(RELEASED, self.kind, self.name, self.backend, seconds))

    def acquire(
        self, raw: Callable[[bool, float | None], bool]
    ) -> Callable[[bool, float | None], bool]:
        timed = self._timed

        def acquire(blocking: bool, timeout: float | None) -> bool:
            waits = blocking and timeout != 0
            return bool(timed(lambda: raw(blocking, timeout), waits, False))

        return acquire

    def acquire_forever(self, raw: Callable[[], object]) -> Callable[[], object]:
        timed = self._timed
        return lambda: timed(raw, True, True)

    def acquire_within(self, raw: Callable[[float], bool]) -> Callable[[float], bool]:
        timed = self._timed

        def acquire_within(timeout: float) -> bool:
            return bool(timed(lambda: raw(timeout), timeout != 0, False))

        return acquire_within

    def release(self, raw: Callable[[], None]) -> Callable[[], None]:
        level, released = self._level, self.released

        def release() -> None:
            last = level is None or level() == 1
            raw()
            if last:
                released(1)

        return release

    def release_n(self, raw: Callable[[int], None]) -> Callable[[int], None]:
        released, since = self.released, self._since

        def release(n: int = 1) -> None:
            raw(n)
            released(min(n, len(since)) or 1)

        return release

    def on_lost(self, original: Callable[[], object] | None) -> Callable[[], object]:
        """The ``on_lost`` callback to set on a leased kernel: reports, then calls *original*."""
        self.original_on_lost = original

        def on_lost() -> object:
            self._report(LEASE_LOST)
            return None if original is None else original()

        return on_lost
