"""``BaseBackend``: the floor a backend stands on, deriving every primitive from its semaphores.

A backend must supply two things, and may supply a third:

* :meth:`BaseBackend.semaphore_kernel`: open (or create) a named counting semaphore
  satisfying :class:`~polysync.kernel.SemaphoreKernel`;
* :meth:`BaseBackend.unlink`: remove one stored object by its name;
* with the ``SHARED_CELLS`` capability, :meth:`BaseBackend.cells_kernel`: a block of
  shared 64-bit integer cells (:class:`~polysync.kernel.Cells`) under a name.

From those, :class:`BaseBackend` derives every primitive. A backend that can do better
overrides one ``open_<kind>`` method with a native kernel; the neutral layer
(:mod:`polysync.primitives`) never knows the difference.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from typing import ClassVar

from polysync.derived import header, openers
from polysync.kernel import (
    BarrierKernel,
    Capability,
    Cells,
    ConditionKernel,
    EventKernel,
    Found,
    LockKernel,
    ObjectName,
    RLockKernel,
    Scope,
    SemaphoreKernel,
    SemaphorePrimitiveKernel,
)

__all__ = ["BaseBackend"]


class BaseBackend:
    """Base class of backends: supply the stored objects, inherit the derived primitives.

    Subclasses set :attr:`name`, :attr:`capabilities` and :attr:`options`, and implement
    :meth:`semaphore_kernel` and :meth:`unlink`; a backend that declares
    ``SHARED_CELLS`` implements :meth:`cells_kernel` (and :meth:`close_cells` if a
    handle needs closing) as well. Names handed to these methods are
    :class:`~polysync.kernel.ObjectName` values: :meth:`object_name` makes one from a
    user's name, :meth:`anonymous_name` a fresh one. Together this satisfies
    :class:`polysync.kernel.SemaphoreBackend`.
    """

    #: The name users pass to :func:`polysync.get_context`.
    name: ClassVar[str] = ""
    #: What the backend guarantees.
    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    #: Accepted options and their defaults; anything else is a ``TypeError``.
    options: ClassVar[Mapping[str, object]] = {}
    #: Options a single primitive accepts (``ctx.Lock(name="x", lease=5)``).
    primitive_options: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        # Cells exist if and only if the backend declares them: checked once, here.
        if (
            Capability.SHARED_CELLS in cls.capabilities
            and cls.cells_kernel is BaseBackend.cells_kernel
        ):
            raise TypeError(
                f"{cls.__module__}.{cls.__qualname__} declares the shared-cells capability "
                "but supplies no cells_kernel(): implement it, or do not declare it"
            )

    def __init__(self, **options: object) -> None:
        self.settings: dict[str, object] = {**self.options, **options}

    @property
    def cleanup_bound(self) -> float:
        """Seconds within which an anonymous object is gone once unused (default: 10)."""
        return 10.0

    # -- what a backend supplies -------------------------------------------------

    def semaphore_kernel(self, name: ObjectName, value: int, *, create: bool) -> SemaphoreKernel:
        """Open the counting semaphore *name*; with *create*, make it (at *value*) if missing.

        Raise :class:`~polysync.errors.NotFoundError` when it is missing and not *create*.
        """
        raise NotImplementedError(f"the {self.name!r} backend supplies no semaphore kernel")

    def cells_kernel(self, name: ObjectName, size: int, *, create: bool) -> tuple[Cells, bool]:
        """Open the cells *name*; with *create*, make *size* cells reading 0 if missing.

        Return them and whether this call created them. An existing block is returned
        whole, whatever *size* is asked. Only backends declaring ``SHARED_CELLS`` have it.
        """
        raise NotImplementedError(f"the {self.name!r} backend has no shared cells")

    def close_cells(self, cells: Cells) -> None:
        """Drop a handle returned by :meth:`cells_kernel` (default: nothing to do)."""

    def unlink(self, name: ObjectName) -> bool:
        """Remove the stored object *name* (a semaphore or cells); ``False`` if there was none."""
        raise NotImplementedError(f"the {self.name!r} backend supplies no unlink()")

    def hold_for_transfer(self, name: ObjectName) -> None:
        """Primitive *name* is being pickled: keep it alive until the receiver can open it.

        The default does nothing (objects that live until unlinked need no help).
        """

    # -- names ---------------------------------------------------------------------

    def object_name(self, user_name: str) -> ObjectName:
        """The name of the object a user calls *user_name* (validated already)."""
        return ObjectName(Scope.NAMED, user_name)

    def anonymous_name(self) -> ObjectName:
        """A fresh name for an anonymous object, unique across processes and hosts."""
        return ObjectName(Scope.ANONYMOUS, f"{os.getpid()}:{secrets.token_hex(8)}")

    def unlink_primitive(self, name: ObjectName) -> bool:
        """Remove every object making up the primitive *name*; ``True`` if any existed."""
        return header.unlink_block(self, name)

    def find_primitive(self, name: ObjectName) -> Found | None:
        """What the primitive *name* is (its kind, from its header), or ``None`` if missing.

        The optional :class:`~polysync.kernel.Findable` method, derived from the block
        header for a backend with shared cells; a backend without them cannot tell and
        raises :class:`~polysync.BackendError` (override it if your store can tell).
        """
        return header.find_block(self, name)

    # -- the derived primitives: override one to supply a native kernel -----------

    def open_lock(self, name: ObjectName, *, create: bool) -> LockKernel:
        return openers.open_lock(self, name, create=create)

    def open_rlock(self, name: ObjectName, *, create: bool) -> RLockKernel:
        return openers.open_rlock(self, name, create=create)

    def open_semaphore(
        self, name: ObjectName, value: int, *, bounded: bool, create: bool
    ) -> SemaphorePrimitiveKernel:
        return openers.open_semaphore(self, name, value, bounded=bounded, create=create)

    def open_event(self, name: ObjectName, *, create: bool) -> EventKernel:
        return openers.open_event(self, name, create=create)

    def open_condition(self, name: ObjectName, *, create: bool) -> ConditionKernel:
        return openers.open_condition(self, name, create=create)

    def open_barrier(self, name: ObjectName, parties: int, *, create: bool) -> BarrierKernel:
        return openers.open_barrier(self, name, parties, create=create)

    def configure_primitive(self, kernel: object, options: Mapping[str, object]) -> None:
        """Apply per-primitive *options* to a freshly opened kernel.

        The default accepts none. Names outside :attr:`primitive_options` never get here.
        """
        raise TypeError(f"the {self.name!r} backend takes no per-primitive options")

    def picklable_settings(self) -> dict[str, object]:
        """The options that recreate this backend in another process (no live objects)."""
        return dict(self.settings)

    def describe(self) -> str:
        """A one-line, secret-free description for reprs and error messages."""
        return self.name

    def close(self) -> None:
        """Release backend-wide resources (connections); primitives stay usable until closed."""
