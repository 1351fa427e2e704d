"""The thread backend's kernels: a counting semaphore on a ``threading.Condition``, list cells."""

from __future__ import annotations

import threading

from polysync._validate import MAX_VALUE, headroom


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

    def release(self, n: int = 1) -> None:
        with self._cond:
            if self._value + n > MAX_VALUE:  # as posix's sem_post refuses (EOVERFLOW)
                raise headroom(n, self._value)
            self._value += n
            self._cond.notify(n)

    def get_value(self) -> int:
        return self._value

    def close(self) -> None:
        pass


class ThreadCells(list[int]):
    """Cells are a plain list: the GIL makes one item's read or write atomic."""
