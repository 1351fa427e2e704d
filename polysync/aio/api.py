"""Async contexts: ``polysync.aio.get_context(backend, **options)`` and the module-level shortcuts.

An :class:`AsyncContext` wraps the :class:`polysync.Context` that
:func:`polysync.get_context` returns for the same arguments (the same backend instance),
and makes the async twins of the seven primitives on it.
"""

from __future__ import annotations

from collections.abc import Callable

import polysync.api as _api
from polysync.aio import primitives as _p
from polysync.kernel import Capability

__all__ = [
    "AsyncContext",
    "Barrier",
    "BoundedSemaphore",
    "Condition",
    "Event",
    "Lock",
    "RLock",
    "Semaphore",
    "get_context",
]


class AsyncContext:
    """One backend with its options, making async primitives (see :class:`polysync.Context`)."""

    def __init__(self, ctx: _api.Context) -> None:
        if not isinstance(ctx, _api.Context):
            raise TypeError(f"AsyncContext wraps a polysync.Context, not {type(ctx).__name__}")
        self._ctx = ctx

    @property
    def sync(self) -> _api.Context:
        """The sync context: same backend instance, same objects."""
        return self._ctx

    @property
    def name(self) -> str:
        """The backend's registered name."""
        return self._ctx.name

    @property
    def capabilities(self) -> frozenset[Capability]:
        """What this backend guarantees."""
        return self._ctx.capabilities

    def Lock(self, *, name: str | None = None, **options: object) -> _p.Lock:
        """An async :class:`~polysync.aio.Lock` in this context."""
        return _p.Lock(name=name, ctx=self, **options)

    def RLock(self, *, name: str | None = None, **options: object) -> _p.RLock:
        """An async :class:`~polysync.aio.RLock` in this context."""
        return _p.RLock(name=name, ctx=self, **options)

    def Semaphore(
        self, value: int = 1, *, name: str | None = None, **options: object
    ) -> _p.Semaphore:
        """An async :class:`~polysync.aio.Semaphore` in this context."""
        return _p.Semaphore(value, name=name, ctx=self, **options)

    def BoundedSemaphore(
        self, value: int = 1, *, name: str | None = None, **options: object
    ) -> _p.BoundedSemaphore:
        """An async :class:`~polysync.aio.BoundedSemaphore` in this context."""
        return _p.BoundedSemaphore(value, name=name, ctx=self, **options)

    def Event(self, *, name: str | None = None, **options: object) -> _p.Event:
        """An async :class:`~polysync.aio.Event` in this context."""
        return _p.Event(name=name, ctx=self, **options)

    def Condition(
        self,
        lock: _p.Lock | _p.RLock | None = None,
        *,
        name: str | None = None,
        **options: object,
    ) -> _p.Condition:
        """An async :class:`~polysync.aio.Condition` in this context."""
        return _p.Condition(lock, name=name, ctx=self, **options)

    def Barrier(
        self,
        parties: int,
        action: Callable[[], object] | None = None,
        timeout: float | None = None,
        *,
        name: str | None = None,
        **options: object,
    ) -> _p.Barrier:
        """An async :class:`~polysync.aio.Barrier` in this context."""
        return _p.Barrier(parties, action, timeout, name=name, ctx=self, **options)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AsyncContext) and other._ctx is self._ctx

    def __hash__(self) -> int:
        return hash(self._ctx)

    def __reduce__(self) -> tuple[object, ...]:
        return (AsyncContext, (self._ctx,))

    def __repr__(self) -> str:
        return f"<polysync.aio.AsyncContext {self._ctx.backend.describe()}>"


def get_context(backend: str | None = None, /, **options: object) -> AsyncContext:
    """The async context for *backend* with *options* (as :func:`polysync.get_context`)."""
    return AsyncContext(_api.get_context(backend, **options))


# Module-level shortcuts on the default context, as polysync (and multiprocessing) has them.
Lock = _p.Lock
RLock = _p.RLock
Semaphore = _p.Semaphore
BoundedSemaphore = _p.BoundedSemaphore
Event = _p.Event
Condition = _p.Condition
Barrier = _p.Barrier
