"""Contexts: ``get_context(backend, **options)`` and the per-backend factories of primitives.

A :class:`Context` binds one backend instance (with its options) and makes the seven
primitives on it, as ``multiprocessing`` contexts do. Contexts are cached per
(backend, options), pickle to (backend name, options), and reopen on the other side.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from polysync import primitives as _p
from polysync.kernel import Capability

if TYPE_CHECKING:
    from polysync.kernel import Backend, Listed, Orphan

__all__ = ["Context", "available_backends", "get_context"]


class Context:
    """One backend with its options; makes primitives that live in that backend."""

    def __init__(self, name: str, options: dict[str, object], backend: Backend) -> None:
        self._name = name
        self._options = options
        self._backend = backend

    @property
    def name(self) -> str:
        """The backend's registered name."""
        return self._name

    @property
    def backend(self) -> Backend:
        """The backend instance (for plugin authors and the conformance suite)."""
        return self._backend

    @property
    def capabilities(self) -> frozenset[Capability]:
        """What this backend guarantees."""
        return self._backend.capabilities

    # Each factory passes **options (per-primitive backend options, such as redis's
    # lease=) to the primitive, which checks them against the backend's primitive_options.

    def Lock(self, *, name: str | None = None, **options: object) -> _p.Lock:
        """A :class:`~polysync.Lock` in this context."""
        return _p.Lock(name=name, ctx=self, **options)

    def RLock(self, *, name: str | None = None, **options: object) -> _p.RLock:
        """A :class:`~polysync.RLock` in this context."""
        return _p.RLock(name=name, ctx=self, **options)

    def Semaphore(
        self, value: int = 1, *, name: str | None = None, **options: object
    ) -> _p.Semaphore:
        """A :class:`~polysync.Semaphore` in this context."""
        return _p.Semaphore(value, name=name, ctx=self, **options)

    def BoundedSemaphore(
        self, value: int = 1, *, name: str | None = None, **options: object
    ) -> _p.BoundedSemaphore:
        """A :class:`~polysync.BoundedSemaphore` in this context."""
        return _p.BoundedSemaphore(value, name=name, ctx=self, **options)

    def Event(self, *, name: str | None = None, **options: object) -> _p.Event:
        """An :class:`~polysync.Event` in this context."""
        return _p.Event(name=name, ctx=self, **options)

    def Condition(
        self,
        lock: _p.Lock | _p.RLock | None = None,
        *,
        name: str | None = None,
        **options: object,
    ) -> _p.Condition:
        """A :class:`~polysync.Condition` in this context."""
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
        """A :class:`~polysync.Barrier` in this context."""
        return _p.Barrier(parties, action, timeout, name=name, ctx=self, **options)

    def open(
        self, name: str
    ) -> _p.Lock | _p.RLock | _p.Semaphore | _p.Event | _p.Condition | _p.Barrier:
        """Open the existing named object *name*, whatever its kind; never create one.

        The backend tells the kind (and a Semaphore's value, a Barrier's parties) from
        what it stored (:class:`polysync.kernel.Findable`); the handle is the one its
        kind's constructor would give (a BoundedSemaphore is a Semaphore), and
        ``statistics()`` reads it without disturbing it. A Condition gets its default
        lock ``<name>.lock`` if that exists; one made with a lock of its own has a closed
        stand-in as ``lock`` (its ``statistics()`` work, its waits do not). Raises
        :class:`~polysync.NotFoundError` if there is no object of that name,
        :class:`~polysync.BackendError` if the backend cannot tell kinds.
        """
        opened = _p.open_existing(self, name)
        assert isinstance(
            opened, (_p.Lock, _p.RLock, _p.Semaphore, _p.Event, _p.Condition, _p.Barrier)
        )
        return opened

    def list_objects(self) -> list[Listed]:
        """Every named object of this backend now, sorted by name (a snapshot).

        Through the backend's :class:`polysync.kernel.Listable`; a backend that does not
        declare :attr:`~polysync.kernel.Capability.LISTING` raises
        :class:`~polysync.BackendError`.
        """
        from polysync import errors
        from polysync.kernel import Listable

        backend = self._backend
        if Capability.LISTING not in backend.capabilities or not isinstance(backend, Listable):
            raise errors.cannot_list(self._name)
        return sorted(backend.list_primitives(), key=lambda listed: listed.name)

    def collect_orphans(self, *, dry_run: bool = False) -> list[Orphan]:
        """Remove what dead processes left (with *dry_run*: only find it); return it.

        Through the backend's :class:`polysync.kernel.Collectable`, which never removes
        what a live process uses; a backend that does not declare
        :attr:`~polysync.kernel.Capability.ORPHAN_COLLECTION` raises
        :class:`~polysync.BackendError`.
        """
        from polysync import errors
        from polysync.kernel import Collectable

        backend = self._backend
        if Capability.ORPHAN_COLLECTION not in backend.capabilities or not isinstance(
            backend, Collectable
        ):
            raise errors.cannot_collect(self._name)
        return list(backend.collect_orphans(dry_run))

    def unlink(self, name: str) -> bool:
        """Destroy the named object *name*, whatever its kind; ``False`` if none existed."""
        from polysync import _validate

        user = _validate.name(name)
        if user is None:
            raise TypeError("unlink() needs the name (a str) of a named object, not None")
        return self._backend.unlink_primitive(self._backend.object_name(user))

    def __reduce__(self) -> tuple[object, ...]:
        return (_context_from, (self._name, self._backend.picklable_settings()))

    def __repr__(self) -> str:
        return f"<polysync.Context {self._backend.describe()}>"


def _context_from(name: str, options: dict[str, object]) -> Context:
    return get_context(name, **options)


_cache: dict[tuple[str, Any], Context] = {}
_cache_lock = threading.Lock()


def get_context(backend: str | None = None, /, **options: object) -> Context:
    """The context for *backend* with *options*.

    Without *backend*: the ``POLYSYNC_BACKEND`` environment variable, else the platform
    default (``posix``; ``windows`` on Windows). An unknown name raises
    :class:`~polysync.UnknownBackendError` listing the registered ones; a backend that
    cannot run here raises :class:`~polysync.BackendUnavailableError` with the install
    command; an option the backend does not accept raises ``TypeError``.
    """
    from polysync.registry import get_registry

    registry = get_registry()
    if backend is None:
        backend = registry.default_name()
    elif not isinstance(backend, str):
        raise TypeError(f"backend must be a str name, not {type(backend).__name__} {backend!r}")
    try:
        # The type is part of the key: an option given as 1 must not find one given as True.
        key: tuple[str, Any] | None = (
            backend,
            frozenset((k, type(v), v) for k, v in options.items()),
        )
        hash(key)
    except TypeError:
        key = None  # unhashable options (a live client): no caching
    if key is not None:
        found = _cache.get(key)
        if found is not None:
            return found
    cls = registry.load(backend)
    unknown = sorted(set(options) - set(cls.options))
    if unknown:
        accepted = ", ".join(sorted(cls.options)) or "none"
        raise TypeError(
            f"the {backend!r} backend got unknown option(s) {', '.join(unknown)}; "
            f"accepted: {accepted}"
        )
    from polysync._attach import check_backend

    instance = cls(**options)
    try:
        check_backend(instance)
    except BaseException:
        instance.close()
        raise
    ctx = Context(backend, dict(options), instance)
    if key is not None:
        with _cache_lock:
            ctx = _cache.setdefault(key, ctx)
    return ctx


def available_backends() -> list[tuple[str, bool, str]]:
    """Every registered backend as ``(name, usable here, reason if not)``."""
    from polysync.registry import get_registry

    registry = get_registry()
    return [(n, *registry.availability(n)) for n in registry.names()]
