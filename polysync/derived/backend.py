"""``BaseBackend``: the floor a backend stands on, deriving every primitive from its semaphores.

A backend must supply two things, and may supply a third:

* :meth:`BaseBackend.semaphore_kernel`: open (or create) a named counting semaphore
  satisfying :class:`~polysync.kernel.SemaphoreKernel`;
* :meth:`BaseBackend.unlink`: remove one object by its object name;
* optionally :meth:`BaseBackend.cells_kernel`: a block of shared 64-bit integer cells
  (:class:`~polysync.kernel.Cells`) under a name.

From those, :class:`BaseBackend` derives every primitive. A backend that can do better
overrides one ``open_<kind>`` method with a native kernel; the neutral layer
(:mod:`polysync.primitives`) never knows the difference.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from typing import Any, ClassVar

from polysync.derived import header, openers
from polysync.kernel import (
    BarrierKernel,
    Capability,
    Cells,
    ConditionKernel,
    EventKernel,
    LockKernel,
    RLockKernel,
    SemaphoreKernel,
    SemaphorePrimitiveKernel,
)

__all__ = ["BaseBackend"]


class BaseBackend:
    """Base class of every backend: supply the kernels, inherit the derived primitives.

    Subclasses set :attr:`name`, :attr:`capabilities` and :attr:`options`, implement
    :meth:`semaphore_kernel` and :meth:`unlink`, and usually :meth:`cells_kernel`.
    Object names handed to these methods are already in the backend's namespace
    (:meth:`object_name` maps a user's name; :meth:`anonymous_name` makes a fresh one).
    """

    #: The name users pass to :func:`polysync.get_context`.
    name: ClassVar[str] = ""
    #: What the backend guarantees.
    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    #: Accepted options and their defaults; anything else is a ``TypeError``.
    options: ClassVar[Mapping[str, object]] = {}
    #: Options a single primitive accepts (``ctx.Lock(name="x", lease=5)``).
    primitive_options: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, **options: Any) -> None:
        self.settings: dict[str, object] = {**self.options, **options}

    # -- what a backend supplies -------------------------------------------------

    def semaphore_kernel(self, name: str, value: int, *, create: bool) -> SemaphoreKernel:
        """Open the counting semaphore *name*; with *create*, make it (at *value*) if missing.

        Raise :class:`~polysync.errors.NotFoundError` when it is missing and not *create*.
        """
        raise NotImplementedError

    def cells_kernel(self, name: str, size: int, *, create: bool) -> tuple[Cells, bool]:
        """Open *size* shared cells under *name*; return them and whether this call created them.

        Freshly created cells read 0. The default says the backend has none.
        """
        raise NotImplementedError(f"the {self.name!r} backend has no shared cells")

    def unlink(self, name: str) -> bool:
        """Remove the object (semaphore or cells) called *name*; ``False`` if there was none."""
        raise NotImplementedError

    def hold_for_transfer(self, name: str) -> None:
        """Primitive *name* is being pickled: keep it alive until the receiver can open it.

        The default does nothing (objects that live until unlinked need no help).
        """

    def close_cells(self, cells: Cells) -> None:
        """Drop a handle returned by :meth:`cells_kernel` (default: nothing to do)."""

    # -- names ---------------------------------------------------------------------

    def object_name(self, user_name: str) -> str:
        """Map a validated user name into the backend's namespace (identity by default)."""
        return "n:" + user_name

    def anonymous_name(self) -> str:
        """A fresh name for an anonymous object, unique across processes and hosts."""
        return f"a:{os.getpid()}:{secrets.token_hex(8)}"

    def is_anonymous(self, name: str) -> bool:
        return name.startswith("a:")

    def unlink_primitive(self, name: str) -> bool:
        """Remove every object making up the primitive *name*; ``True`` if any existed."""
        return header.unlink_block(self, name)

    # -- the derived primitives: override one to supply a native kernel -----------

    def open_lock(self, name: str, *, create: bool) -> LockKernel:
        return openers.open_lock(self, name, create=create)

    def open_rlock(self, name: str, *, create: bool) -> RLockKernel:
        return openers.open_rlock(self, name, create=create)

    def open_semaphore(
        self, name: str, value: int, *, bounded: bool, create: bool
    ) -> SemaphorePrimitiveKernel:
        return openers.open_semaphore(self, name, value, bounded=bounded, create=create)

    def open_event(self, name: str, *, create: bool) -> EventKernel:
        return openers.open_event(self, name, create=create)

    def open_condition(self, name: str, *, create: bool) -> ConditionKernel:
        return openers.open_condition(self, name, create=create)

    def open_barrier(self, name: str, parties: int, *, create: bool) -> BarrierKernel:
        return openers.open_barrier(self, name, parties, create=create)

    def configure_primitive(self, kernel: Any, options: Mapping[str, Any]) -> None:
        """Apply per-primitive *options* to a freshly opened kernel.

        The default accepts none. Names outside :attr:`primitive_options` never get here.
        """
        raise TypeError(f"the {self.name!r} backend takes no per-primitive options")

    def picklable_settings(self) -> dict[str, Any]:
        """The options that recreate this backend in another process (no live objects)."""
        return dict(self.settings)

    def describe(self) -> str:
        """A one-line, secret-free description for reprs and error messages."""
        return self.name

    def close(self) -> None:
        """Release backend-wide resources (connections); primitives stay usable until closed."""
