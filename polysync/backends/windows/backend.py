"""``WindowsBackend``: naming, opening and unlinking kernel32 objects; the native primitives."""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Mapping
from typing import ClassVar

from polysync import derived
from polysync.backends.windows import win32 as _win32
from polysync.backends.windows.kernels import (
    LOCK_CELLS,
    RLOCK_CELLS,
    SEMAPHORE_CELLS,
    WinCells,
    WinEvent,
    WinLock,
    WinMutex,
    WinRLock,
    WinSemaphore,
    WinSemaphorePrimitive,
)
from polysync.backends.windows.names import NAMESPACES, _directory_name, windows_name
from polysync.backends.windows.objects import (
    HOLD_SECONDS,
    MAX_COUNT,
    _drop_keepalive,
    _event_type,
    _exists,
    _holder,
    _mapping_type,
    _mutex_type,
    _Object,
    _open_any,
    _open_object,
    _raise,
    _semaphore_type,
    _Type,
)
from polysync.backends.windows.win32 import (
    ERROR_FILE_NOT_FOUND,
)
from polysync.derived import BaseBackend
from polysync.errors import NotHeldError, PolysyncError
from polysync.kernel import (
    BarrierKernel,
    Capability,
    Cells,
    EventKernel,
    Kind,
    LockKernel,
    ObjectName,
    RLockKernel,
    SemaphorePrimitiveKernel,
)

__all__ = ["WindowsBackend"]


#: The native kernel objects of a primitive, after its header block: the object itself
#: (semaphore, mutex or event) and, for a Lock or a semaphore, its guard mutex.
_NATIVE_PARTS = ("k", "g")
#: The header layout of a Lock or semaphore with a guard (its holder or fence on record):
#: a name made by an earlier polysync, a bare semaphore, is refused rather than shared.
_GUARDED = 1
#: The header layout of a semaphore whose cells count the permits and each process's
#: share (the kernel semaphore only wakes): a name made in layout 1 is refused.
_COUNTED = 2
#: The header layout of a Barrier whose internal mutex is a kernel mutex (``k``), not the
#: floor's semaphore (the floor's Barrier, layout 2, is refused: it would not share it).
_MUTEXED_BARRIER = 3


def _past_maximum() -> NotHeldError:
    return NotHeldError(f"Semaphore released past its maximum count {MAX_COUNT}")


# -- the backend ----------------------------------------------------------------------


class WindowsBackend(BaseBackend):
    """kernel32 semaphores, mutexes, events and file mappings, shared by one session's processes.

    Option ``namespace``: ``"Local"`` (default: this logon session) or ``"Global"`` (every
    session; creating file mappings there needs ``SeCreateGlobalPrivilege`` on Windows).
    """

    name = "windows"
    capabilities = frozenset(
        {
            Capability.CROSS_PROCESS,
            Capability.NAMED,
            Capability.READABLE_VALUE,
            Capability.SHARED_CELLS,
            Capability.OWNER_DEATH,
            Capability.FENCING,
        }
    )
    options: ClassVar[Mapping[str, object]] = {"namespace": "Local"}

    def inline_calls(self) -> bool:
        """Calls that do not wait do no I/O (:class:`polysync.kernel.InlineCalls`)."""
        return True

    def __init__(self, *, namespace: str = "Local") -> None:
        if not isinstance(namespace, str):
            raise TypeError(
                f"namespace must be 'Local' or 'Global', not {type(namespace).__name__} "
                f"{namespace!r}"
            )
        if namespace not in NAMESPACES:
            raise ValueError(f"namespace must be 'Local' or 'Global', not {namespace!r}")
        super().__init__(namespace=namespace)
        self.namespace = namespace

    # -- names ----------------------------------------------------------------------

    def windows_name(self, name: ObjectName) -> str:
        """The kernel name of *name* (a named object's also ends in ``~<generation>``)."""
        return windows_name(name, self.namespace)

    # -- the kernels every backend supplies -------------------------------------------

    def semaphore_kernel(self, name: ObjectName, value: int, *, create: bool) -> WinSemaphore:
        obj = _open_object(_semaphore_type(value, MAX_COUNT), name, self.namespace, create=create)
        return WinSemaphore(obj, _past_maximum)

    def cells_kernel(self, name: ObjectName, size: int, *, create: bool) -> tuple[Cells, bool]:
        obj = _open_object(_mapping_type(size * 8), name, self.namespace, create=create)
        k = _win32.kernel32()
        # The whole mapping is viewed: an existing block keeps its creator's size.
        address = k.MapViewOfFile(obj.handle, _win32.FILE_MAP_ALL_ACCESS, 0, 0, 0)
        if not address:
            code = _win32.last_error()
            obj.close()
            _raise(code, "file mapping", obj.name, "map")
        try:
            count = _win32.region_size(address) // 8
        except OSError as exc:
            k.UnmapViewOfFile(address)
            obj.close()
            raise PolysyncError(f"cannot size the file mapping {obj.name!r}: {exc}") from exc
        return WinCells(obj, address, count), obj.created

    def close_cells(self, cells: Cells) -> None:
        assert isinstance(cells, WinCells)
        cells.close()

    def unlink(self, name: ObjectName) -> bool:
        """Make *name* open a fresh object from now on; ``True`` if an object had it.

        On Windows a kernel object lives while any handle to it is open, in any process,
        and nothing here closes another process's handles. So for a named object this
        advances the name's generation (later opens create a new object), drops this
        process's keep-alive handle, and leaves handles already open working on the old
        object, which vanishes with its last handle. For an anonymous object or a waiter
        it only reports whether the object still exists: those vanish with their last
        handle anyway.
        """
        wname = self.windows_name(name)
        if name.is_anonymous:
            return _exists(wname)
        k = _win32.kernel32()
        dname = _directory_name(wname)
        handle = k.OpenFileMappingW(_win32.FILE_MAP_ALL_ACCESS, 0, dname)
        if not handle:
            code = _win32.last_error()
            _drop_keepalive(wname)
            if code == ERROR_FILE_NOT_FOUND:
                return False
            _raise(code, "file mapping", dname, "unlink")
        try:
            address = k.MapViewOfFile(handle, _win32.FILE_MAP_ALL_ACCESS, 0, 0, 8)
            if not address:
                _raise(_win32.last_error(), "file mapping", dname, "map")
            try:
                gen = ctypes.c_int64.from_address(address)
                existed = _exists(f"{wname}~{gen.value}")
                gen.value += 1
            finally:
                k.UnmapViewOfFile(address)
        finally:
            k.CloseHandle(handle)
        _drop_keepalive(wname)
        return existed

    def unlink_primitive(self, name: ObjectName) -> bool:
        found = derived.unlink_block(self, name)
        for part in _NATIVE_PARTS:
            found = self.unlink(name.child(part)) or found
        return found

    def hold_for_transfer(self, name: ObjectName) -> None:
        """Keep every object of anonymous primitive *name* open ~5 s for its receiver."""
        handles = []
        for part in (*derived.PARTS, *_NATIVE_PARTS):
            handle = _open_any(self.windows_name(name.child(part)))
            if handle:
                handles.append(handle)
        if handles:
            _holder.hold(handles, HOLD_SECONDS)

    # -- native primitives -------------------------------------------------------------

    def _header(
        self,
        name: ObjectName,
        kind: Kind,
        param: int,
        state: int,
        *,
        create: bool,
        match: bool,
        layout: int = 0,
        on_create: Callable[[Cells], None] | None = None,
    ) -> derived.Block:
        label: Callable[[int], str] = derived.lock_label if kind is Kind.LOCK else str
        return derived.open_block(
            self,
            name,
            kind,
            param,
            (),
            state,
            create=create,
            param_must_match=match,
            param_label=label,
            layout=layout,
            on_create=on_create,
        )

    def _native(
        self,
        block: derived.Block,
        name: ObjectName,
        kinds: tuple[_Type, ...],
        create: bool,
    ) -> list[_Object]:
        """Open the native objects ``k`` (and ``g``) of *name*; on failure close the block."""
        objs: list[_Object] = []
        try:
            for part, kind in zip(_NATIVE_PARTS, kinds, strict=False):
                objs.append(_open_object(kind, name.child(part), self.namespace, create=create))
        except BaseException:
            for obj in objs:
                obj.close()
            block.close()
            raise
        return objs

    def open_lock(self, name: ObjectName, *, create: bool) -> LockKernel:
        block = self._header(
            name, Kind.LOCK, 1, LOCK_CELLS, create=create, match=True, layout=_GUARDED
        )
        sem, guard = self._native(block, name, (_semaphore_type(1, 1), _mutex_type()), create)
        return WinLock(block, sem, guard)

    def open_rlock(self, name: ObjectName, *, create: bool) -> RLockKernel:
        block = self._header(name, Kind.RLOCK, 1, RLOCK_CELLS, create=create, match=False)
        (mutex,) = self._native(block, name, (_mutex_type(),), create)
        return WinRLock(block, mutex)

    def open_semaphore(
        self, name: ObjectName, value: int, *, bounded: bool, create: bool
    ) -> SemaphorePrimitiveKernel:
        kind = Kind.BOUNDED_SEMAPHORE if bounded else Kind.SEMAPHORE
        block = self._header(
            name,
            kind,
            value,
            SEMAPHORE_CELLS,
            create=create,
            match=bounded,
            layout=_COUNTED,
            on_create=WinSemaphorePrimitive.initial_state(value),
        )
        assert block.cells is not None
        bound = block.cells[2] if bounded else None  # the creator's value: "first value wins"
        # The kernel semaphore only wakes blocked acquirers: it starts at 0.
        wake, guard = self._native(
            block, name, (_semaphore_type(0, MAX_COUNT), _mutex_type()), create
        )
        return WinSemaphorePrimitive(block, bound, wake, guard)

    def open_event(self, name: ObjectName, *, create: bool) -> EventKernel:
        block = self._header(name, Kind.EVENT, 0, 1, create=create, match=False)
        (event,) = self._native(block, name, (_event_type(),), create)
        return WinEvent(block, event)

    def open_barrier(self, name: ObjectName, parties: int, *, create: bool) -> BarrierKernel:
        # The floor's Barrier, with a kernel mutex in place of its semaphore: a process
        # that dies holding it abandons it, and the next owner mends (breaks) the barrier.
        block = self._header(
            name,
            Kind.BARRIER,
            parties,
            derived.BARRIER_STATE_CELLS + derived.LOT_CELLS,
            create=create,
            match=True,
            layout=_MUTEXED_BARRIER,
        )
        (mutex,) = self._native(block, name, (_mutex_type(),), create)
        block.before_close.append(mutex.close)
        return derived.DerivedBarrier(block, parties, WinMutex(mutex, "Barrier"))

    def describe(self) -> str:
        return (
            f"windows (kernel32 semaphores, mutexes, events and file mappings, "
            f"{self.namespace}\\ namespace)"
        )
