"""Shared memory that owes nothing to polysync: the integers every scenario keeps its data in.

Every scenario keeps its shared data in :class:`SharedInts`, a file-backed shared mapping
that owes nothing to polysync, so a broken primitive shows up as a broken invariant rather
than being masked by the data structure.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import tempfile
from typing import Any


def _shared_dir() -> str:
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        return "/dev/shm"
    return tempfile.gettempdir()


class SharedInts:
    """Signed 64-bit integers in a file-backed ``mmap`` shared by every process that opens it.

    Nothing here synchronizes: reads and writes of one aligned cell are single machine
    stores, and every read-modify-write in the demo is guarded by the primitive under test.
    Pickles by path, so a spawned child maps the same file.
    """

    def __init__(self, path: str, size: int, *, owner: bool = False) -> None:
        self.path = path
        self.size = size
        self._owner = owner
        with open(path, "r+b") as file:
            self._map = mmap.mmap(file.fileno(), size * 8)
        self._view: memoryview | None = memoryview(self._map).cast("q")

    @classmethod
    def create(cls, size: int) -> SharedInts:
        """A fresh zeroed block of *size* cells, removed by :meth:`destroy`."""
        if size < 1:
            raise ValueError(f"size must be >= 1, not {size}")
        fd, path = tempfile.mkstemp(prefix=f"polysync-demo-{os.getpid()}-", dir=_shared_dir())
        try:
            os.ftruncate(fd, size * 8)
        finally:
            os.close(fd)
        try:
            return cls(path, size, owner=True)
        except BaseException:
            os.unlink(path)
            raise

    def _cells(self) -> memoryview:
        if self._view is None:
            raise ValueError(f"the shared block {self.path} is closed")
        return self._view

    def __getitem__(self, index: int) -> int:
        return int(self._cells()[index])

    def __setitem__(self, index: int, value: int) -> None:
        self._cells()[index] = value

    def read(self, start: int, count: int) -> list[int]:
        """Cells ``[start, start + count)`` as a list."""
        view = self._cells()
        return [int(view[i]) for i in range(start, start + count)]

    def close(self) -> None:
        """Unmap this handle (idempotent)."""
        if self._view is not None:
            self._view.release()
            self._view = None
            self._map.close()

    def destroy(self) -> None:
        """Unmap and, in the creating process, remove the file."""
        self.close()
        if self._owner:
            self._owner = False
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (SharedInts, (self.path, self.size))
