"""``ThreadBackend``: a process-wide table of named and anonymous thread kernels."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator, Mapping, MutableMapping
from typing import ClassVar

from polysync.backends.thread.kernels import ThreadCells, ThreadSemaphore
from polysync.derived import BaseBackend, find_block
from polysync.errors import NotFoundError
from polysync.kernel import Capability, Cells, Listed, ObjectName, Orphan

_named: dict[ObjectName, object] = {}
# Anonymous objects and waiters vanish with their last handle, as on the other backends.
_anonymous: weakref.WeakValueDictionary[ObjectName, object] = weakref.WeakValueDictionary()
_table_lock = threading.Lock()


def _table(name: ObjectName) -> MutableMapping[ObjectName, object]:
    return _anonymous if name.is_anonymous else _named


class ThreadBackend(BaseBackend):
    """In-process reference backend: threads of one process, no cross-process sharing.

    ``find_primitive`` (the floor's, from the block header) and ``list_primitives`` see
    this process's objects only, as everything here does: ``polysync inspect`` and
    ``polysync ls``, other processes, never find any. Nothing outlives its process, so
    ``collect_orphans`` never finds any either.
    """

    name = "thread"
    capabilities = frozenset(
        {
            Capability.NAMED,
            Capability.READABLE_VALUE,
            Capability.SHARED_CELLS,
            Capability.LISTING,
            Capability.ORPHAN_COLLECTION,
        }
    )
    options: ClassVar[Mapping[str, object]] = {}

    def inline_calls(self) -> bool:
        """Calls that do not wait do no I/O (:class:`polysync.kernel.InlineCalls`)."""
        return True

    def semaphore_kernel(self, name: ObjectName, value: int, *, create: bool) -> ThreadSemaphore:
        with _table_lock:
            table = _table(name)
            sem = table.get(name)
            if sem is None:
                if not create:
                    raise NotFoundError(f"no thread-backend semaphore {name}")
                sem = table[name] = ThreadSemaphore(value)
        assert isinstance(sem, ThreadSemaphore)
        return sem

    def cells_kernel(self, name: ObjectName, size: int, *, create: bool) -> tuple[Cells, bool]:
        with _table_lock:
            table = _table(name)
            cells = table.get(name)
            if cells is not None:
                assert isinstance(cells, ThreadCells)
                return cells, False
            if not create:
                raise NotFoundError(f"no thread-backend cells {name}")
            cells = ThreadCells([0] * size)
            table[name] = cells
            return cells, True

    def unlink(self, name: ObjectName) -> bool:
        with _table_lock:
            return _table(name).pop(name, None) is not None

    def describe(self) -> str:
        return "thread (in-process reference backend)"

    def list_primitives(self) -> Iterator[Listed]:
        """This process's named objects (:class:`~polysync.kernel.Listable`)."""
        with _table_lock:
            blocks = sorted(n.primitive.key for n in _named if n.part == "c")
        for key in blocks:
            found = find_block(self, self.object_name(key))
            if found is not None:
                yield Listed(key, found.kind, found.parameter)

    def collect_orphans(self, dry_run: bool) -> list[Orphan]:
        """Nothing: anonymous objects go with their last handle, and with the process."""
        return []
