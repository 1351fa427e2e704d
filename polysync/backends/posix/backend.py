"""``PosixBackend``: opening, naming, tracking and unlinking POSIX objects."""

from __future__ import annotations

import contextlib
import mmap
import os
import secrets
import sys
import time
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import posix_ipc

from polysync import derived
from polysync.backends.posix import inventory as _inventory
from polysync.backends.posix import tracker as _tracker
from polysync.backends.posix.kernels import (
    WORD_LOCK_CELLS,
    WORD_SEMAPHORE_CELLS,
    PosixRLock,
    PosixSegment,
    PosixSemaphore,
    WordLockKernel,
    WordMutex,
    WordSemaphoreKernel,
    semlock,
)
from polysync.backends.posix.names import hashed_digest, posix_name, sidecar_name
from polysync.derived import BaseBackend
from polysync.errors import KindMismatchError, NotFoundError, PolysyncError
from polysync.kernel import (
    BarrierKernel,
    Capability,
    Cells,
    EventKernel,
    Kind,
    Listed,
    LockKernel,
    ObjectName,
    Orphan,
    RLockKernel,
    Scope,
    SemaphorePrimitiveKernel,
)

_MODE = 0o600
#: The header parameter of a Lock or RLock kept in a word lock (_wordlock.c).
_WORD_LOCK = 3
#: The layout of a Barrier with a word mutex (4: with index slots; it was 3 before them).
_WORD_BARRIER = 4


class PosixBackend(BaseBackend):
    """POSIX named semaphores and shared memory (posix_ipc), shared by processes of one host."""

    name = "posix"
    # Word locks and semaphores (_wordlock.c) carry fencing tokens; without the extension
    # the floor's kernels, which have none, serve.
    capabilities = frozenset(
        {
            Capability.CROSS_PROCESS,
            Capability.NAMED,
            Capability.READABLE_VALUE,
            Capability.SHARED_CELLS,
            Capability.OWNER_DEATH,
            *([Capability.FENCING] if WordLockKernel is not None else []),
            # /dev/shm shows the objects (Linux only: macOS keeps no such view).
            *(
                [Capability.LISTING, Capability.ORPHAN_COLLECTION]
                if sys.platform.startswith("linux")
                else []
            ),
        }
    )
    # Locks and RLocks are word locks (_wordlock.c): a holder that dies at any instant is
    # taken over by the next acquirer. Without the extension, the pure-Python locks of
    # polysync.derived record their holder instead (see docs/backends.md for the window).
    options: ClassVar[Mapping[str, object]] = {}

    def inline_calls(self) -> bool:
        """Calls that do not wait do no I/O (:class:`polysync.kernel.InlineCalls`)."""
        return True

    def __init__(self) -> None:
        super().__init__()
        # The mapped segments of the cells handed out, by id of their view.
        self._segments: dict[int, PosixSegment] = {}

    @property
    def cleanup_bound(self) -> float:
        # The tracker unlinks as soon as the last user's connection closes; a pickled
        # object is held for its receiver for TRANSFER_GRACE seconds on top.
        return _tracker.TRANSFER_GRACE + 5.0

    def _tracked(self, name: ObjectName, entry: str, *, created: bool) -> Any:
        """Register *entry* with the tracker if the object needs it; return the close hook.

        Anonymous objects count every process that opens them. A waiter semaphore
        belongs to the thread that created it: only its creator registers it, so a
        process that merely posted it cannot take it away when it exits.
        """
        if name.scope is Scope.NAMED or (name.scope is Scope.WAITER and not created):
            return None
        tracker = _tracker.client(_tracker_of(name) if name.scope is Scope.ANONYMOUS else None)
        tracker.register(entry)
        return lambda: tracker.unregister(entry)

    def hold_for_transfer(self, name: ObjectName) -> None:
        tracker = _tracker.client(_tracker_of(name))
        tracker.hold_for_transfer("m" + posix_name(name.child("c")))
        for i in range(derived.MAX_SEMS):
            tracker.hold_for_transfer("s" + posix_name(name.child(f"s{i}")))

    def anonymous_name(self) -> ObjectName:
        # The key starts with the id of the tracker that reclaims the object.
        return ObjectName(Scope.ANONYMOUS, f"{_tracker.own_tracker_id()}:{secrets.token_hex(8)}")

    def semaphore_kernel(self, name: ObjectName, value: int, *, create: bool) -> PosixSemaphore:
        pname = posix_name(name)
        # Declared to the tracker before it exists: a process killed right after creating
        # it must not leave it behind unknown (an unlink of a missing name is harmless).
        hook = self._tracked(name, "s" + pname, created=create)
        try:
            if create:
                raw = posix_ipc.Semaphore(pname, posix_ipc.O_CREAT, _MODE, value)
            else:
                raw = posix_ipc.Semaphore(pname)
        except BaseException as exc:
            if hook is not None:
                hook()
            if isinstance(exc, posix_ipc.ExistentialError):
                raise NotFoundError(f"the semaphore {pname!r} does not exist") from exc
            if isinstance(exc, (posix_ipc.Error, OSError)):
                raise PolysyncError(f"cannot open the semaphore {pname!r}: {exc}") from exc
            raise
        return PosixSemaphore(raw, hook, semlock(pname))

    def cells_kernel(self, name: ObjectName, size: int, *, create: bool) -> tuple[Cells, bool]:
        pname = posix_name(name)
        # Declared to the tracker first, as a semaphore is (see semaphore_kernel).
        hook = self._tracked(name, "m" + pname, created=True)
        try:
            segment, created = self._map_segment(pname, size * 8, create=create)
        except BaseException:
            if hook is not None:
                hook()
            raise
        if created and name.scope is Scope.NAMED:
            _record_name(pname, name.key)
        mapped = PosixSegment(segment, len(segment) // 8, hook)
        # Dict operations alone, no lock: a GC finalizer may close cells in any thread.
        self._segments[id(mapped.view)] = mapped
        return mapped.view, created

    def _map_segment(self, pname: str, nbytes: int, *, create: bool) -> tuple[mmap.mmap, bool]:
        created = False
        try:
            if create:
                try:
                    seg = posix_ipc.SharedMemory(pname, posix_ipc.O_CREX, _MODE, nbytes)
                    created = True
                except posix_ipc.ExistentialError:
                    seg = posix_ipc.SharedMemory(pname)
            else:
                seg = posix_ipc.SharedMemory(pname)
        except posix_ipc.ExistentialError as exc:
            raise NotFoundError(f"the shared memory {pname!r} does not exist") from exc
        except (posix_ipc.Error, OSError) as exc:
            raise PolysyncError(f"cannot open the shared memory {pname!r}: {exc}") from exc
        try:
            if not created:
                # An existing block is mapped whole: the header says what it holds.
                nbytes = _wait_for_size(seg, pname)
            return mmap.mmap(seg.fd, nbytes), created
        finally:
            seg.close_fd()

    def close_cells(self, cells: Cells) -> None:
        mapped = self._segments.pop(id(cells), None)
        if mapped is not None:
            mapped.close()

    def unlink(self, name: ObjectName) -> bool:
        pname = posix_name(name)
        unlink = posix_ipc.unlink_shared_memory if name.part == "c" else None
        try:
            if unlink is not None:
                unlink(pname)
            else:
                posix_ipc.unlink_semaphore(pname)
        except posix_ipc.ExistentialError:
            return False
        finally:
            digest = hashed_digest(pname) if unlink is not None else None
            if digest is not None:
                with contextlib.suppress(posix_ipc.ExistentialError):
                    posix_ipc.unlink_shared_memory(sidecar_name(digest))
        return True

    def list_primitives(self) -> Iterator[Listed]:
        """The named objects in /dev/shm (:class:`~polysync.kernel.Listable`; Linux)."""
        return _inventory.list_named()

    def collect_orphans(self, dry_run: bool) -> list[Orphan]:
        """What dead processes left (:class:`~polysync.kernel.Collectable`; see
        :mod:`polysync.backends.posix.inventory`)."""
        return _inventory.collect(self, dry_run)

    def open_lock(self, name: ObjectName, *, create: bool) -> LockKernel:
        if WordLockKernel is not None:
            return WordLockKernel(self._word_lock_block(name, Kind.LOCK, create), recursive=False)
        return derived.open_recoverable_lock(self, name, create=create)

    def open_rlock(self, name: ObjectName, *, create: bool) -> RLockKernel:
        if WordLockKernel is not None:
            return WordLockKernel(self._word_lock_block(name, Kind.RLOCK, create), recursive=True)
        return PosixRLock(derived.open_block(self, name, Kind.RLOCK, 1, (1, 1), 3, create=create))

    def open_semaphore(
        self, name: ObjectName, value: int, *, bounded: bool, create: bool
    ) -> SemaphorePrimitiveKernel:
        if WordSemaphoreKernel is None:
            return super().open_semaphore(name, value, bounded=bounded, create=create)
        bound = value if bounded else 0
        block = derived.open_block(
            self,
            name,
            Kind.BOUNDED_SEMAPHORE if bounded else Kind.SEMAPHORE,
            value,
            (),
            WORD_SEMAPHORE_CELLS,
            create=create,
            param_must_match=bounded,
            layout=_WORD_LOCK,
            on_create=WordSemaphoreKernel.initial_state(value, bound),
        )
        assert block.cells is not None
        # The bound is the creator's value, which the header keeps.
        return WordSemaphoreKernel(block, block.cells[2] if bounded else 0)

    def open_event(self, name: ObjectName, *, create: bool) -> EventKernel:
        if WordMutex is None:
            return super().open_event(name, create=create)
        state = 1 + derived.LOT_CELLS
        block = self._mutexed_block(name, Kind.EVENT, 0, state, create=create, match=False)
        return derived.DerivedEvent(block, self._mutex(block, state, "Event"))

    def open_barrier(self, name: ObjectName, parties: int, *, create: bool) -> BarrierKernel:
        if WordMutex is None:
            return super().open_barrier(name, parties, create=create)
        state = derived.BARRIER_STATE_CELLS + derived.LOT_CELLS
        block = self._mutexed_block(
            name, Kind.BARRIER, parties, state, create=create, match=True, layout=_WORD_BARRIER
        )
        return derived.DerivedBarrier(block, parties, self._mutex(block, state, "Barrier"))

    def _mutexed_block(
        self,
        name: ObjectName,
        kind: Kind,
        param: int,
        state: int,
        *,
        create: bool,
        match: bool,
        layout: int = _WORD_LOCK,
    ) -> derived.Block:
        # The floor's state cells, then a word mutex in place of the floor's semaphore.
        return derived.open_block(
            self,
            name,
            kind,
            param,
            (),
            state + WORD_LOCK_CELLS,
            create=create,
            param_must_match=match,
            layout=layout,
        )

    @staticmethod
    def _mutex(block: derived.Block, state: int, what: str) -> derived.Mutex:
        assert block.cells is not None
        word = WordMutex(block.cells, derived.HEADER + state, what)
        block.before_close.append(word._detach)  # the C side lets go before the unmap
        mutex: derived.Mutex = word
        return mutex

    def _word_lock_block(self, name: ObjectName, kind: Kind, create: bool) -> derived.Block:
        # Header parameter 3 marks a word lock: a pure-Python lock of the same name (an
        # interpreter without the extension) is refused, never shared.
        return derived.open_block(
            self,
            name,
            kind,
            _WORD_LOCK,
            (),
            WORD_LOCK_CELLS,
            create=create,
            param_must_match=True,
            param_label=derived.lock_label,
        )

    def describe(self) -> str:
        locks = "word locks" if WordLockKernel is not None else "pure-Python locks"
        return f"posix (POSIX named semaphores and shared memory, this host; {locks})"


def _record_name(pname: str, user_name: str) -> None:
    """Keep the user name of a hashed block in its sidecar, for listing (best effort)."""
    digest = hashed_digest(pname)
    if digest is None:
        return
    data = user_name.encode("utf-8", "surrogatepass")
    with contextlib.suppress(posix_ipc.Error, OSError):
        seg = posix_ipc.SharedMemory(sidecar_name(digest), posix_ipc.O_CREAT, _MODE, len(data))
        try:
            os.pwrite(seg.fd, data, 0)
        finally:
            seg.close_fd()


def _tracker_of(name: ObjectName) -> str:
    """The id of the tracker that reclaims the anonymous object *name* (its key's first part)."""
    return name.key.split(":", 1)[0]


def _wait_for_size(seg: posix_ipc.SharedMemory, pname: str) -> int:
    # The creator sizes the segment right after creating it; an opener can get between.
    deadline = time.monotonic() + 5.0
    while seg.size < derived.HEADER * 8:
        if time.monotonic() > deadline:
            raise KindMismatchError(
                f"the shared memory {pname!r} has {seg.size} bytes, too few for a polysync "
                "object: it was made by something else; unlink it"
            )
        time.sleep(0.001)
    size: int = seg.size
    return size
