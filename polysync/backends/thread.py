"""The thread backend: the in-process reference backend, for unit tests and single processes.

Its kernels are ``threading`` objects kept in a process-wide table, so every primitive is
derived through exactly the same code as on a cross-process backend. Named objects are
shared by the threads of one process; nothing crosses a process boundary.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping, MutableMapping
from typing import ClassVar

from polysync.derived import BaseBackend
from polysync.errors import NotFoundError
from polysync.kernel import Capability, Cells

_named: dict[str, object] = {}
# Anonymous objects and waiters vanish with their last handle, as on the other backends.
_anonymous: weakref.WeakValueDictionary[str, object] = weakref.WeakValueDictionary()
_table_lock = threading.Lock()


def _table(name: str) -> MutableMapping[str, object]:
    return _anonymous if name[:2] in ("a:", "w:") else _named


class ThreadSemaphore:
    """A counting semaphore on a ``threading.Condition``."""

    __slots__ = ("__weakref__", "_cond", "_value")

    def __init__(self, value: int) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._value = value

    def acquire(self, blocking: bool, timeout: float | None) -> bool:
        with self._cond:
            if not blocking:
                timeout = 0.0
            if not self._cond.wait_for(lambda: self._value > 0, timeout):
                return False
            self._value -= 1
            return True

    def acquire_forever(self) -> object:
        return self.acquire(True, None)

    def release(self, n: int = 1) -> None:
        with self._cond:
            self._value += n
            self._cond.notify(n)

    def get_value(self) -> int:
        return self._value

    def close(self) -> None:
        pass


class ThreadCells(list[int]):
    """Cells are a plain list: the GIL makes one item's read or write atomic."""


class ThreadBackend(BaseBackend):
    """In-process reference backend: threads of one process, no cross-process sharing."""

    name = "thread"
    capabilities = frozenset({Capability.NAMED, Capability.READABLE_VALUE, Capability.SHARED_CELLS})
    options: ClassVar[Mapping[str, object]] = {}

    def semaphore_kernel(self, name: str, value: int, *, create: bool) -> ThreadSemaphore:
        with _table_lock:
            table = _table(name)
            sem = table.get(name)
            if sem is None:
                if not create:
                    raise NotFoundError(f"no thread-backend semaphore {name!r}")
                sem = table[name] = ThreadSemaphore(value)
        assert isinstance(sem, ThreadSemaphore)
        return sem

    def cells_kernel(self, name: str, size: int, *, create: bool) -> tuple[Cells, bool]:
        with _table_lock:
            table = _table(name)
            cells = table.get(name)
            if cells is not None:
                assert isinstance(cells, ThreadCells)
                return cells, False
            if not create:
                raise NotFoundError(f"no thread-backend cells {name!r}")
            cells = ThreadCells([0] * size)
            table[name] = cells
            return cells, True

    def unlink(self, name: str) -> bool:
        with _table_lock:
            return _table(name).pop(name, None) is not None

    def describe(self) -> str:
        return "thread (in-process reference backend)"
