"""The block behind every derived primitive: its cells header, race-free creation, unlinking.

A block is one cell array (a header, then the primitive's state) and up to two
semaphores, all parts of the primitive's name (cells ``"c"``, semaphores ``"s0"`` and
``"s1"``). The creator writes ``MAGIC`` last; an opener waits for it, then checks the
kind (and, where it must match, the parameter) before using anything, so it never
sees a half-made object and never misuses a name that belongs to another kind.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from polysync import errors
from polysync.errors import BackendError, BackendUnavailableError, NotFoundError
from polysync.kernel import (
    Capability,
    Cells,
    Found,
    Kind,
    ObjectName,
    SemaphoreBackend,
    SemaphoreKernel,
)

MAGIC = 0x70_6F_6C_79_73_79_6E_63  # "polysync"
HEADER = 4  # magic, kind code, parameter, layout
_OPEN_WAIT = 5.0  # seconds an opener waits for a concurrent creator to finish
MAX_SEMS = 2
#: The parts a block may have (what unlink_block removes).
PARTS = ("c", *(f"s{i}" for i in range(MAX_SEMS)))


@dataclass
class Block:
    """The objects making up one primitive."""

    backend: SemaphoreBackend
    sems: list[SemaphoreKernel]
    cells: Cells | None
    closed: bool = field(default=False)
    #: Called first by close(): whatever holds on to the cells lets go of them.
    before_close: list[Callable[[], object]] = field(default_factory=list)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for let_go in self.before_close:
            let_go()
        for sem in self.sems:
            sem.close()
        if self.cells is not None:
            self.backend.close_cells(self.cells)


def has_cells(backend: SemaphoreBackend) -> bool:
    """Whether *backend* supplies cells: exactly when it declares ``SHARED_CELLS``."""
    return Capability.SHARED_CELLS in backend.capabilities


def open_block(
    backend: SemaphoreBackend,
    name: ObjectName,
    kind: Kind,
    param: int,
    sem_values: tuple[int, ...],
    state_cells: int,
    *,
    create: bool,
    param_must_match: bool = False,
    param_label: Callable[[int], str] = str,
    layout: int = 0,
    on_create: Callable[[Cells], None] | None = None,
) -> Block:
    """Open (or create) the block for primitive *name*; see the module docstring.

    *layout* tells apart two shapes of one kind (a backend's native kernel and the
    floor's): an opener asking for another layout is refused. *on_create* writes the
    initial state of a block just created, before it is marked ready.
    """
    if not has_cells(backend):
        if state_cells:
            raise BackendUnavailableError(
                f"the {backend.name!r} backend has no shared cells, which a {kind.value} "
                "needs; its author must declare shared-cells and supply cells_kernel(), "
                f"or supply open_{kind.value}()"
            )
        return Block(
            backend,
            [
                backend.semaphore_kernel(name.child(f"s{i}"), v, create=create)
                for i, v in enumerate(sem_values)
            ],
            None,
        )
    cells, created = backend.cells_kernel(name.child("c"), HEADER + state_cells, create=create)
    sems: list[SemaphoreKernel] = []
    try:
        if created:
            for i, v in enumerate(sem_values):
                sems.append(_create_fresh_semaphore(backend, name.child(f"s{i}"), v))
            cells[1] = kind.code
            cells[2] = param
            cells[3] = layout
            if on_create is not None:
                on_create(cells)
            cells[0] = MAGIC
        else:
            _wait_ready(cells, name)
            if cells[1] != kind.code:
                raise errors.kind_mismatch(name.describe(), _kind_of(cells[1]), kind.value)
            if param_must_match and cells[2] != param:
                raise errors.shape_mismatch(
                    name.describe(), kind.value, param_label(cells[2]), param_label(param)
                )
            if cells[3] != layout:
                raise errors.shape_mismatch(
                    name.describe(), kind.value, _layout_label(cells[3]), _layout_label(layout)
                )
            for i in range(len(sem_values)):
                sems.append(backend.semaphore_kernel(name.child(f"s{i}"), 0, create=False))
    except BaseException:
        for sem in sems:
            sem.close()
        backend.close_cells(cells)
        if created:
            unlink_block(backend, name)
        raise
    return Block(backend, sems, cells)


#: The kinds whose header parameter an opener must pass back (value, bound, parties).
_PARAMETER_KINDS = frozenset({Kind.SEMAPHORE, Kind.BOUNDED_SEMAPHORE, Kind.BARRIER})


def find_block(backend: SemaphoreBackend, name: ObjectName) -> Found | None:
    """What the header of primitive *name* says it is; ``None`` if it has no cells block.

    Opens the cells without creating them, reads the header (waiting, as an opener does,
    for a creator that is finishing), and closes them again. A backend without shared
    cells keeps no header: it cannot tell, and raises :class:`~polysync.BackendError`.
    """
    if not has_cells(backend):
        raise BackendError(
            f"the {backend.name!r} backend keeps no header (it has no shared cells), so it "
            "cannot tell what an existing object is; its author may supply find_primitive()"
        )
    try:
        cells, _created = backend.cells_kernel(name.child("c"), HEADER, create=False)
    except NotFoundError:
        return None
    try:
        _wait_ready(cells, name)
        code, param = cells[1], cells[2]
    finally:
        backend.close_cells(cells)
    for kind in Kind:
        if kind.code == code:
            return Found(kind, param if kind in _PARAMETER_KINDS else 0)
    raise errors.KindMismatchError(
        f"{name.describe()} exists but its header names no polysync kind ({code}): it was "
        "made by another version or program; unlink it"
    )


def _create_fresh_semaphore(
    backend: SemaphoreBackend, name: ObjectName, value: int
) -> SemaphoreKernel:
    # The cells were just created, so a semaphore already under this name is a leftover
    # of a creator that died half-way: replace it.
    backend.unlink(name)
    return backend.semaphore_kernel(name, value, create=True)


def _wait_ready(cells: Cells, name: ObjectName) -> None:
    deadline = time.monotonic() + _OPEN_WAIT
    while cells[0] != MAGIC:
        if time.monotonic() > deadline:
            raise NotFoundError(
                f"{name.describe()} exists but was never finished by its creator "
                "(it probably died while creating it): unlink it and open it again"
            )
        time.sleep(0.001)


def _layout_label(layout: int) -> str:
    return "the floor's layout" if layout == 0 else f"native layout {layout}"


def _kind_of(code: int) -> str:
    for kind in Kind:
        if kind.code == code:
            return kind.value
    return f"object of unknown kind {code}"


def unlink_block(backend: SemaphoreBackend, name: ObjectName) -> bool:
    """Remove the cells and semaphores of primitive *name*; ``True`` if any existed."""
    found = False
    for part in PARTS:
        found = backend.unlink(name.child(part)) or found
    return found
