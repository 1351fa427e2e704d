"""The block behind every derived primitive: its cells header, race-free creation, unlinking."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from polysync.errors import BackendUnavailableError, KindMismatchError, NotFoundError
from polysync.kernel import Cells, Kind, SemaphoreKernel

if TYPE_CHECKING:
    from polysync.derived.backend import BaseBackend

MAGIC = 0x70_6F_6C_79_73_79_6E_63  # "polysync"
HEADER = 4  # magic, kind code, parameter, reserved
_OPEN_WAIT = 5.0  # seconds an opener waits for a concurrent creator to finish
MAX_SEMS = 2


@dataclass
class Block:
    """The objects making up one primitive."""

    backend: BaseBackend
    sems: list[SemaphoreKernel]
    cells: Cells | None
    closed: bool = field(default=False)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for sem in self.sems:
            sem.close()
        if self.cells is not None:
            self.backend.close_cells(self.cells)


def _has_cells(backend: BaseBackend) -> bool:
    return type(backend).cells_kernel is not _base_cells_kernel()


def _base_cells_kernel() -> object:
    from polysync.derived.backend import BaseBackend

    return BaseBackend.cells_kernel


def open_block(
    backend: BaseBackend,
    name: str,
    kind: Kind,
    param: int,
    sem_values: tuple[int, ...],
    state_cells: int,
    *,
    create: bool,
    param_must_match: bool = False,
    param_label: Callable[[int], str] = str,
) -> Block:
    """Open (or create) the block for primitive *name*; see the module docstring."""
    if not _has_cells(backend):
        if state_cells:
            raise BackendUnavailableError(
                f"the {backend.name!r} backend has no shared cells, which a {kind.value} "
                "needs; its author must supply cells_kernel() or open_"
                f"{kind.value}()"
            )
        return Block(
            backend,
            [
                backend.semaphore_kernel(f"{name}.s{i}", v, create=create)
                for i, v in enumerate(sem_values)
            ],
            None,
        )
    cells, created = backend.cells_kernel(f"{name}.c", HEADER + state_cells, create=create)
    sems: list[SemaphoreKernel] = []
    try:
        if created:
            for i, v in enumerate(sem_values):
                sems.append(_create_fresh_semaphore(backend, f"{name}.s{i}", v))
            cells[1] = kind.code
            cells[2] = param
            cells[0] = MAGIC
        else:
            _wait_ready(cells, name)
            if cells[1] != kind.code:
                found = _kind_of(cells[1])
                raise KindMismatchError(
                    f"{_display(name)} already exists as a {found} (asked for a "
                    f"{kind.value}): choose another name, or unlink the existing object"
                )
            if param_must_match and cells[2] != param:
                raise KindMismatchError(
                    f"{_display(name)} already exists as a {kind.value} of "
                    f"{param_label(cells[2])} (asked for {param_label(param)}): open it "
                    "the same way, or unlink it first"
                )
            for i in range(len(sem_values)):
                sems.append(backend.semaphore_kernel(f"{name}.s{i}", 0, create=False))
    except BaseException:
        for sem in sems:
            sem.close()
        backend.close_cells(cells)
        if created:
            unlink_block(backend, name)
        raise
    return Block(backend, sems, cells)


def _create_fresh_semaphore(backend: BaseBackend, name: str, value: int) -> SemaphoreKernel:
    # The cells were just created, so a semaphore already under this name is a leftover
    # of a creator that died half-way: replace it.
    backend.unlink(name)
    return backend.semaphore_kernel(name, value, create=True)


def _wait_ready(cells: Cells, name: str) -> None:
    deadline = time.monotonic() + _OPEN_WAIT
    while cells[0] != MAGIC:
        if time.monotonic() > deadline:
            raise NotFoundError(
                f"{_display(name)} exists but was never finished by its creator "
                "(it probably died while creating it): unlink it and open it again"
            )
        time.sleep(0.001)


def _kind_of(code: int) -> str:
    for kind in Kind:
        if kind.code == code:
            return kind.value
    return f"object of unknown kind {code}"


def _display(name: str) -> str:
    tag, _, rest = name.partition(":")
    return f"the object named {rest!r}" if tag == "n" else "the anonymous object"


def unlink_block(backend: BaseBackend, name: str) -> bool:
    """Remove the cells and semaphores of primitive *name*; ``True`` if any existed."""
    found = backend.unlink(f"{name}.c")
    for i in range(MAX_SEMS):
        found = backend.unlink(f"{name}.s{i}") or found
    return found
