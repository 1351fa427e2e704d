"""Attaching a kernel to a handle: the contract checked once, and the stand-ins of closed handles.

:func:`check_kernel` runs when a primitive gets its kernel, so a backend whose kernel
falls short of what its capabilities promise fails there, with a message naming the
Protocol, rather than at some later call; :func:`check_backend` does the same for what a
capability requires of the backend itself, when a context is made. The ``Closed*``
classes replace a handle's kernel at ``close()``: every operation raises
:class:`~polysync.ClosedError`, and none of them answers to an optional Protocol, so a
closed handle holds nothing (``lost`` and ``owner_died`` are False, ``fencing_token`` is None).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn

from polysync.errors import BackendError, ClosedError
from polysync.kernel import Backend, Kind, LockKernel

__all__ = [
    "Closed",
    "ClosedBarrier",
    "ClosedCondition",
    "ClosedEvent",
    "ClosedLock",
    "ClosedSemaphore",
    "check_backend",
    "check_kernel",
]


def check_kernel(backend: Backend, kind: Kind, kernel: object) -> None:
    """Refuse *kernel* if it lacks a Protocol that one of *backend*'s capabilities requires."""
    for capability in backend.capabilities:
        for requirement in capability.requires:
            if kind in requirement.kinds and not isinstance(kernel, requirement.protocol):
                protocol = requirement.protocol.__name__
                raise BackendError(
                    f"the {backend.name!r} backend declares {capability.value!r}, so its "
                    f"{kind.value} kernels must satisfy polysync.kernel.{protocol}; "
                    f"{type(kernel).__module__}.{type(kernel).__qualname__} does not "
                    "(see docs/writing-a-backend.md)"
                )


def check_backend(backend: Backend) -> None:
    """Refuse *backend* if it lacks a Protocol that one of its capabilities requires of it.

    Those are the requirements that name no kinds (``listing``, ``orphan-collection``):
    checked once, when a context is made.
    """
    for capability in backend.capabilities:
        for requirement in capability.requires:
            if not requirement.kinds and not isinstance(backend, requirement.protocol):
                raise BackendError(
                    f"the {backend.name!r} backend declares {capability.value!r}, so it must "
                    f"satisfy polysync.kernel.{requirement.protocol.__name__}; "
                    f"{type(backend).__module__}.{type(backend).__qualname__} does not "
                    "(see docs/writing-a-backend.md)"
                )


class Closed:
    """Raises ClosedError for every operation of a closed handle."""

    __slots__ = ("_what",)

    def __init__(self, what: str) -> None:
        self._what = what

    def _closed(self) -> NoReturn:
        raise ClosedError(f"{self._what} is closed; open it again to use it")

    def close(self) -> None:
        """Closing again does nothing."""


class ClosedLock(Closed):
    """A closed Lock's or RLock's kernel."""

    __slots__ = ()

    def acquire(self, blocking: bool, timeout: float | None) -> bool:
        self._closed()

    def release(self) -> None:
        self._closed()

    def locked(self) -> bool:
        self._closed()

    def release_save(self) -> object:
        self._closed()

    def acquire_restore(self, state: object) -> None:
        self._closed()

    def is_owned(self) -> bool:
        self._closed()

    def recursion_level(self) -> int:
        self._closed()


class ClosedSemaphore(Closed):
    """A closed Semaphore's or BoundedSemaphore's kernel."""

    __slots__ = ()

    def acquire(self, blocking: bool, timeout: float | None) -> bool:
        self._closed()

    def release(self, n: int = 1) -> None:
        self._closed()

    def get_value(self) -> int:
        self._closed()


class ClosedEvent(Closed):
    """A closed Event's kernel."""

    __slots__ = ()

    def set(self) -> None:
        self._closed()

    def clear(self) -> None:
        self._closed()

    def is_set(self) -> bool:
        self._closed()

    def wait(self, timeout: float | None) -> bool:
        self._closed()


class ClosedCondition(Closed):
    """A closed Condition's kernel."""

    __slots__ = ()

    def wait(self, lock: LockKernel, timeout: float | None) -> bool:
        self._closed()

    def notify(self, n: int) -> None:
        self._closed()

    def notify_all(self) -> None:
        self._closed()


class ClosedBarrier(Closed):
    """A closed Barrier's kernel (the handle itself still knows its parties)."""

    __slots__ = ()

    @property
    def parties(self) -> int:
        self._closed()

    def wait(self, timeout: float | None, action: Callable[[], object] | None) -> int:
        self._closed()

    def reset(self) -> None:
        self._closed()

    def abort(self) -> None:
        self._closed()

    def n_waiting(self) -> int:
        self._closed()

    def broken(self) -> bool:
        self._closed()
