"""The openers ``BaseBackend`` uses: each primitive's block layout and its derived kernel."""

from __future__ import annotations

from polysync.derived.header import open_block
from polysync.derived.locks import (
    DerivedBoundedSemaphore,
    DerivedLock,
    DerivedRLock,
    DerivedSemaphore,
    RecoverableLock,
)
from polysync.derived.parking import LOT_CELLS
from polysync.derived.waits import (
    BARRIER_STATE_CELLS,
    DerivedBarrier,
    DerivedCondition,
    DerivedEvent,
)
from polysync.kernel import Kind, ObjectName, SemaphoreBackend


def lock_label(param: int) -> str:
    """How a lock's header parameter reads in a mismatch (the posix word lock is 3)."""
    labels = {
        2: "the kind that records its holder",
        3: "the word-lock kind (posix, with its C extension)",
    }
    return labels.get(param, "the plain kind")


def open_lock(backend: SemaphoreBackend, name: ObjectName, *, create: bool) -> DerivedLock:
    return DerivedLock(
        open_block(
            backend,
            name,
            Kind.LOCK,
            1,
            (1,),
            0,
            create=create,
            param_must_match=True,
            param_label=lock_label,
        )
    )


def open_rlock(backend: SemaphoreBackend, name: ObjectName, *, create: bool) -> DerivedRLock:
    return DerivedRLock(open_block(backend, name, Kind.RLOCK, 1, (1, 1), 3, create=create))


def open_recoverable_lock(
    backend: SemaphoreBackend, name: ObjectName, *, create: bool
) -> RecoverableLock:
    """A Lock that records its holder (the header's parameter 2 tells it from a plain Lock)."""
    block = open_block(
        backend,
        name,
        Kind.LOCK,
        2,
        (1, 1),
        1,
        create=create,
        param_must_match=True,
        param_label=lock_label,
    )
    return RecoverableLock(block)


def open_semaphore(
    backend: SemaphoreBackend, name: ObjectName, value: int, *, bounded: bool, create: bool
) -> DerivedSemaphore | DerivedBoundedSemaphore:
    kind = Kind.BOUNDED_SEMAPHORE if bounded else Kind.SEMAPHORE
    block = open_block(
        backend, name, kind, value, (value,), 0, create=create, param_must_match=bounded
    )
    if not bounded:
        return DerivedSemaphore(block)
    # The bound is the creator's value, which the header keeps (without cells: our own).
    return DerivedBoundedSemaphore(block, block.cells[2] if block.cells is not None else value)


def open_event(backend: SemaphoreBackend, name: ObjectName, *, create: bool) -> DerivedEvent:
    return DerivedEvent(
        open_block(backend, name, Kind.EVENT, 0, (1,), 1 + LOT_CELLS, create=create)
    )


def open_condition(
    backend: SemaphoreBackend, name: ObjectName, *, create: bool
) -> DerivedCondition:
    return DerivedCondition(
        open_block(backend, name, Kind.CONDITION, 0, (), LOT_CELLS, create=create)
    )


def open_barrier(
    backend: SemaphoreBackend, name: ObjectName, parties: int, *, create: bool
) -> DerivedBarrier:
    block = open_block(
        backend,
        name,
        Kind.BARRIER,
        parties,
        (1,),
        BARRIER_STATE_CELLS + LOT_CELLS,
        create=create,
        param_must_match=True,
        layout=BARRIER_LAYOUT,
    )
    return DerivedBarrier(block, parties)


#: The Barrier's layout (2: generations and index slots; 1: generations; 0: the earlier
#: drain-phase Barrier).
BARRIER_LAYOUT = 2
