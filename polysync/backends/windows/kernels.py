"""The windows kernels: semaphores, cells over file mappings, Lock, RLock (a mutex), Event."""

from __future__ import annotations

import ctypes
import os
import socket
import threading
from collections.abc import Callable

from polysync import derived, errors
from polysync.backends.windows import win32 as _win32
from polysync.backends.windows.objects import SLICE_MS, _Object, _raise, _wait_handle
from polysync.backends.windows.win32 import (
    ERROR_NOT_OWNER,
    ERROR_TOO_MANY_POSTS,
    WAIT_ABANDONED,
    WAIT_OBJECT_0,
    WAIT_TIMEOUT,
)
from polysync.errors import NotHeldError, PolysyncError
from polysync.kernel import Holder, KernelState

_HEADER = derived.HEADER  # the cells a block header takes


# -- the kernels ----------------------------------------------------------------------


class WinSemaphore:
    """A kernel semaphore as a :class:`~polysync.kernel.SemaphoreKernel`."""

    __slots__ = ("_handle", "_obj", "_over", "_release", "_wait")

    def __init__(self, obj: _Object, over_release: Callable[[], NotHeldError]) -> None:
        k = _win32.kernel32()
        self._obj = obj
        self._handle = obj.handle
        self._wait = k.WaitForSingleObject
        self._release = k.ReleaseSemaphore
        self._over = over_release

    def acquire(self, blocking: bool, timeout: float | None) -> bool:
        rc = _wait_handle(self._wait, self._handle, timeout if blocking else 0.0, "semaphore")
        return rc == WAIT_OBJECT_0

    def acquire_forever(self) -> object:
        wait, handle = self._wait, self._handle
        while True:
            rc = wait(handle, SLICE_MS)
            if rc == WAIT_OBJECT_0:
                return True
            if rc != WAIT_TIMEOUT:
                _raise(_win32.last_error(), "semaphore", self._obj.name, "wait for")
            # Looping runs pending signal handlers: Ctrl-C raises here, nothing taken.

    def release(self, n: int = 1) -> None:
        if not self._release(self._handle, n, None):
            code = _win32.last_error()
            if code == ERROR_TOO_MANY_POSTS:
                raise self._over()
            _raise(code, "semaphore", self._obj.name, "release")

    def get_value(self) -> int:
        """The count, read as CPython's multiprocessing does on Windows (a snapshot).

        Takes one unit without waiting and gives it back, reading the count from
        ``ReleaseSemaphore``; a concurrent non-blocking acquire may fail in between.
        """
        rc = self._wait(self._handle, 0)
        if rc == WAIT_TIMEOUT:
            return 0
        if rc != WAIT_OBJECT_0:
            _raise(_win32.last_error(), "semaphore", self._obj.name, "read")
        previous = ctypes.c_int32()
        if not self._release(self._handle, 1, ctypes.byref(previous)):
            _raise(_win32.last_error(), "semaphore", self._obj.name, "read")
        return previous.value + 1

    def close(self) -> None:
        self._obj.close()


class WinCells:
    """Shared signed 64-bit cells over a view of a file mapping."""

    __slots__ = ("_address", "_array", "_obj")

    def __init__(self, obj: _Object, address: int, count: int) -> None:
        self._obj = obj
        self._address = address
        self._array: ctypes.Array[ctypes.c_int64] | None = (ctypes.c_int64 * count).from_address(
            address
        )

    def __len__(self) -> int:
        return len(self._array) if self._array is not None else 0

    def __getitem__(self, index: int) -> int:
        array = self._array
        if array is None:
            raise PolysyncError("these shared cells were closed")
        value: int = array[index]
        return value

    def __setitem__(self, index: int, value: int) -> None:
        array = self._array
        if array is None:
            raise PolysyncError("these shared cells were closed")
        array[index] = value

    def close(self) -> None:
        if self._array is None:
            return
        self._array = None
        _win32.kernel32().UnmapViewOfFile(self._address)
        self._obj.close()


class WinLock(derived.DerivedLock):
    """Lock: a kernel semaphore of maximum 1, so any thread or process may release it.

    The derived Lock's logic over a native semaphore: the block only holds the header.
    """

    __slots__ = ()

    def __init__(self, block: derived.Block, sem: WinSemaphore) -> None:
        self._block = block
        self._sem = sem
        self.acquire = sem.acquire
        self.acquire_forever = sem.acquire_forever

    def release(self) -> None:
        self._sem.release()  # ERROR_TOO_MANY_POSTS: "release of an unlocked lock"

    def close(self) -> None:
        self._sem.close()
        self._block.close()


class WinSemaphorePrimitive:
    """Semaphore / BoundedSemaphore on one kernel semaphore (the bound is its maximum)."""

    __slots__ = ("_block", "_sem", "acquire", "acquire_forever", "get_value", "release")

    def __init__(self, block: derived.Block, sem: WinSemaphore) -> None:
        self._block = block
        self._sem = sem
        self.acquire = sem.acquire
        self.acquire_forever = sem.acquire_forever
        self.release = sem.release
        self.get_value = sem.get_value

    def statistics(self) -> KernelState:
        return KernelState(value=self._sem.get_value())

    def close(self) -> None:
        self._sem.close()
        self._block.close()


_SETS = _HEADER  # Event: how many times set() was called (wakes waiters between slices)


class WinEvent:
    """Event: a manual-reset kernel event."""

    __slots__ = ("_block", "_cells", "_handle", "_k", "_obj", "_wait")

    def __init__(self, block: derived.Block, obj: _Object) -> None:
        assert block.cells is not None
        self._block = block
        self._cells = block.cells
        self._obj = obj
        self._handle = obj.handle
        self._k = _win32.kernel32()
        self._wait = self._k.WaitForSingleObject

    def set(self) -> None:
        # Counted first: a waiter between two slices sees the count move even if clear()
        # resets the event before it waits again.
        self._cells[_SETS] += 1
        if not self._k.SetEvent(self._handle):
            _raise(_win32.last_error(), "event", self._obj.name, "set")

    def clear(self) -> None:
        if not self._k.ResetEvent(self._handle):
            _raise(_win32.last_error(), "event", self._obj.name, "reset")

    def is_set(self) -> bool:
        return self._wait(self._handle, 0) == WAIT_OBJECT_0

    def statistics(self) -> KernelState:
        return KernelState(is_set=self.is_set())

    def wait(self, timeout: float | None) -> bool:
        if self._wait(self._handle, 0) == WAIT_OBJECT_0:
            return True
        if timeout == 0:
            return False
        cells, seen = self._cells, self._cells[_SETS]
        rc = _wait_handle(self._wait, self._handle, timeout, "event", lambda: cells[_SETS] != seen)
        return rc == WAIT_OBJECT_0

    def close(self) -> None:
        self._obj.close()
        self._block.close()


_OWNER = _HEADER  # RLock: the owner's process id while held (0 when free)


class WinRLock:
    """RLock: a kernel mutex; this handle tracks each thread's depth.

    ``WAIT_ABANDONED`` (the owning thread or process ended holding it) makes the acquire
    succeed with an :class:`~polysync.OwnerDiedWarning`, and ``owner_died`` stays true
    until this handle releases the lock.
    """

    __slots__ = ("_block", "_cells", "_handle", "_local", "_obj", "_release", "_wait", "owner_died")

    def __init__(self, block: derived.Block, obj: _Object) -> None:
        assert block.cells is not None
        k = _win32.kernel32()
        self._block = block
        self._cells = block.cells
        self._obj = obj
        self._handle = obj.handle
        self._wait = k.WaitForSingleObject
        self._release = k.ReleaseMutex
        self._local = threading.local()
        self.owner_died = False

    def _took(self, rc: int, depth: int) -> None:
        self._local.depth = depth
        self._cells[_OWNER] = os.getpid()
        if rc == WAIT_ABANDONED:
            self.owner_died = True
            errors.warn_owner_died(
                "a thread or process died holding this lock (WAIT_ABANDONED); this handle "
                "took it over: check the state it protects",
                self._give_up,
            )

    def acquire(self, blocking: bool, timeout: float | None) -> bool:
        local = self._local
        depth: int = getattr(local, "depth", 0)
        if depth:
            local.depth = depth + 1
            return True
        rc = _wait_handle(self._wait, self._handle, timeout if blocking else 0.0, "mutex")
        if rc == WAIT_TIMEOUT:
            return False
        self._took(rc, 1)
        return True

    def _give_up(self) -> None:
        self._local.depth = 0
        self.owner_died = False
        self._cells[_OWNER] = 0
        if not self._release(self._handle):
            code = _win32.last_error()
            if code == ERROR_NOT_OWNER:
                raise errors.rlock_not_owned()
            _raise(code, "mutex", self._obj.name, "release")

    def release(self) -> None:
        depth: int = getattr(self._local, "depth", 0)
        if not depth:
            raise errors.rlock_not_owned()
        if depth > 1:
            self._local.depth = depth - 1
        else:
            self._give_up()

    def locked(self) -> bool:
        return self._cells[_OWNER] != 0

    def release_save(self) -> object:
        depth: int = getattr(self._local, "depth", 0)
        self._give_up()
        return depth

    def acquire_restore(self, state: object) -> None:
        assert isinstance(state, int)
        rc = _wait_handle(self._wait, self._handle, None, "mutex")
        self._took(rc, state)

    def is_owned(self) -> bool:
        return bool(getattr(self._local, "depth", 0))

    def recursion_level(self) -> int:
        depth: int = getattr(self._local, "depth", 0)
        return depth

    def statistics(self) -> KernelState:
        owner = self._cells[_OWNER]
        holder = Holder(pid=owner, host=socket.gethostname()) if owner else None
        return KernelState(locked=owner != 0, holder=holder)

    def close(self) -> None:
        self._obj.close()
        self._block.close()
