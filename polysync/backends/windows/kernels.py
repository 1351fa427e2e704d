"""The windows kernels: semaphores, cells over file mappings, Lock, RLock (a mutex), Event.

Lock and the semaphores take a guard mutex with their kernel semaphore; Lock and RLock
record their holder, and all four count acquisitions (the fencing token) in the block.
"""

from __future__ import annotations

import ctypes
import math
import os
import socket
import threading
import time
from collections.abc import Callable

from polysync import derived, errors
from polysync.backends.windows import win32 as _win32
from polysync.backends.windows.objects import SLICE_MS, _Object, _raise, _wait_handle
from polysync.backends.windows.processes import HolderWatch, own_identity
from polysync.backends.windows.win32 import (
    ERROR_NOT_OWNER,
    ERROR_TOO_MANY_POSTS,
    WAIT_ABANDONED,
    WAIT_ABANDONED_LAST,
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


#: Lock cells after the header: the holder (process id, creation time, thread), the fence.
_PID, _CREATED, _TID, _FENCE = _HEADER, _HEADER + 1, _HEADER + 2, _HEADER + 3
LOCK_CELLS = 4
#: What WaitForMultipleObjects of (semaphore, guard) with bWaitAll returns once it took both
#: (``WAIT_ABANDONED_0 + i``: the guard's last owner died holding it; Wine reports i = 0).
_TOOK_BOTH = frozenset({WAIT_OBJECT_0, WAIT_OBJECT_0 + 1, WAIT_ABANDONED, WAIT_ABANDONED_LAST})


class WinLock:
    """Lock: a kernel semaphore of maximum 1 and a guard mutex; the holder is on record.

    Any thread or process may release it, as with multiprocessing, and a holder that
    dies does not wedge it. The block's cells name the holder (process id and creation
    time, so a reused id is not mistaken for it) and count acquisitions (the fencing
    token). Those cells change only under the guard, a kernel mutex, so when a process
    dies inside ``acquire()`` or ``release()`` the kernel abandons the guard and the next
    one to take it finds the cells as the dead process left them:

    * acquire takes the semaphore *and* the guard in one ``WaitForMultipleObjects(bWaitAll)``
      call, records itself and lets the guard go;
    * release takes the guard, clears the holder, posts the semaphore, lets the guard go;
    * so, under the guard, the semaphore is at 1 exactly when no holder is recorded,
      unless a process died in the middle: then the semaphore is at 0 and the recorded
      holder is 0 or a dead process. A blocked acquirer checks the recorded holder at
      every slice of its wait (:class:`~.processes.HolderWatch`) and, when it is 0 or
      dead, takes the guard and decides there: the lock is free (take it), held by a live
      process (wait on), or held by nobody alive (take it over, with an
      :class:`~polysync.OwnerDiedWarning`).

    A ``KeyboardInterrupt`` raised the instant a wait returned is handled too: a guard
    this thread owns is always given back, so no live thread keeps it by mistake.
    """

    __slots__ = (
        "_block",
        "_cells",
        "_guard",
        "_guard_h",
        "_name",
        "_pair",
        "_post",
        "_sem",
        "_sem_h",
        "_unguard",
        "_wait",
        "_wait_all",
        "fencing_token",
        "owner_died",
    )

    def __init__(self, block: derived.Block, sem: _Object, guard: _Object) -> None:
        assert block.cells is not None
        k = _win32.kernel32()
        self._block = block
        self._cells = block.cells
        self._sem, self._guard = sem, guard
        self._sem_h, self._guard_h = sem.handle, guard.handle
        self._name = sem.name
        self._pair = _win32.handle_pair(sem.handle, guard.handle)
        self._wait = k.WaitForSingleObject
        self._wait_all = k.WaitForMultipleObjects
        self._post = k.ReleaseSemaphore
        self._unguard = k.ReleaseMutex
        self.fencing_token: int | None = None
        self.owner_died = False

    # -- acquiring --------------------------------------------------------------------

    def acquire(self, blocking: bool, timeout: float | None) -> bool:
        if self._take(0):
            return True
        if not blocking or timeout == 0:
            watch = HolderWatch()
            try:
                return self._holder_gone(watch) and self._recover(None, watch, poll=True)
            finally:
                watch.close()
        deadline = None if timeout is None else time.monotonic() + timeout
        watch = HolderWatch()
        try:
            while True:
                if deadline is None:
                    ms = SLICE_MS
                else:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    ms = min(SLICE_MS, math.ceil(remaining * 1000))
                if self._take(ms):
                    return True
                # Between slices Python code runs: a pending Ctrl-C raises here.
                if self._holder_gone(watch) and self._recover(deadline, watch, poll=False):
                    return True
        finally:
            watch.close()

    def _take(self, ms: int) -> bool:
        """Take the semaphore and the guard within *ms*; record this process; free the guard."""
        try:
            rc = self._wait_all(2, self._pair, 1, ms)
            if rc == WAIT_TIMEOUT:
                return False
            if rc not in _TOOK_BOTH:
                _raise(_win32.last_error(), "semaphore and its guard", self._name, "wait for")
            # Both taken: the semaphore was at 1, so the lock was free (whatever an
            # abandoned guard says, no holder died: see the class docstring).
            self._record()
        except BaseException:
            self._interrupted(acquiring=True)
            raise
        # The guard goes by a direct C call: a Python call's entry could raise first.
        if not self._unguard(self._guard_h):
            _raise(_win32.last_error(), "mutex", self._guard.name, "release")
        return True

    def _record(self) -> None:
        """Write this process and thread as the holder and advance the fence (under the guard)."""
        c = self._cells
        pid, created = own_identity()
        token = c[_FENCE] + 1
        c[_FENCE] = token
        c[_TID] = threading.get_ident()
        c[_CREATED] = created  # before the pid: a recorded pid always has its own time
        c[_PID] = pid
        self.fencing_token = token

    def _holder_gone(self, watch: HolderWatch) -> bool:
        """Whether the holder on record is nobody or a dead process (read without the guard)."""
        pid = self._cells[_PID]
        return not pid or not watch.alive(pid, self._cells[_CREATED])

    def _recover(self, deadline: float | None, watch: HolderWatch, *, poll: bool) -> bool:
        """Under the guard: take the lock if it is free or its holder is gone."""
        dead = 0
        try:
            if poll:
                rc = self._wait(self._guard_h, 0)
            else:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                rc = _wait_handle(self._wait, self._guard_h, left, "mutex")
            if rc == WAIT_TIMEOUT:
                return False
            if rc not in (WAIT_OBJECT_0, WAIT_ABANDONED):
                _raise(_win32.last_error(), "mutex", self._guard.name, "wait for")
            if self._wait(self._sem_h, 0) != WAIT_OBJECT_0:
                pid = self._cells[_PID]
                if pid and watch.alive(pid, self._cells[_CREATED]):
                    self._unguard(self._guard_h)
                    return False
                dead = pid or -1  # -1: it died inside acquire() or release()
            self._record()
        except BaseException:
            self._interrupted(acquiring=True)
            raise
        if not self._unguard(self._guard_h):
            _raise(_win32.last_error(), "mutex", self._guard.name, "release")
        if dead:
            self.owner_died = True
            what = f"process {dead}" if dead > 0 else "a process"
            how = "holding this lock" if dead > 0 else "inside acquire() or release() of this lock"
            errors.warn_owner_died(
                f"{what} died {how}; this handle took it over: check the state it protects",
                self.release,
            )
        return True

    def _interrupted(self, *, acquiring: bool) -> None:
        """An exception (Ctrl-C) left this thread in a guarded step: mend what it left.

        Only the owner can release a mutex, so a successful ``ReleaseMutex`` tells that
        this thread held the guard. It is taken back at once to finish the step's
        business: an interrupted acquire must not leave the lock held by its caller (it
        reports failure), and a state with no holder and the semaphore at 0 is freed.
        """
        if not self._unguard(self._guard_h):
            return  # the guard was not ours: nothing was changed
        rc = self._wait(self._guard_h, 5000)
        if rc not in (WAIT_OBJECT_0, WAIT_ABANDONED):
            return  # left for the next acquirer to reconcile
        try:
            c = self._cells
            pid, created = own_identity()
            mine = c[_PID] == pid and c[_CREATED] == created and c[_TID] == threading.get_ident()
            if acquiring and mine:
                c[_PID] = 0
                self._post(self._sem_h, 1, None)
            elif not c[_PID]:
                self._wait(self._sem_h, 0)  # whatever the count was, it ends at 1: free
                self._post(self._sem_h, 1, None)
        finally:
            self._unguard(self._guard_h)

    # -- releasing and the rest --------------------------------------------------------

    def release(self) -> None:
        code = 0
        try:
            rc = _wait_handle(self._wait, self._guard_h, None, "mutex")
            if rc not in (WAIT_OBJECT_0, WAIT_ABANDONED):
                _raise(_win32.last_error(), "mutex", self._guard.name, "wait for")
            self._cells[_PID] = 0  # cleared before the post: a recorded holder holds it
            if not self._post(self._sem_h, 1, None):
                code = _win32.last_error()
        except BaseException:
            self._interrupted(acquiring=False)
            raise
        if not self._unguard(self._guard_h):
            _raise(_win32.last_error(), "mutex", self._guard.name, "release")
        if code:
            if code == ERROR_TOO_MANY_POSTS:
                raise errors.lock_not_held()
            _raise(code, "semaphore", self._name, "release")
        self.owner_died = False

    def locked(self) -> bool:
        return self._cells[_PID] != 0

    def release_save(self) -> object:
        self.release()
        return None

    def acquire_restore(self, state: object) -> None:
        self.acquire(True, None)

    def is_owned(self) -> bool:
        return self.locked()

    def statistics(self) -> KernelState:
        pid = self._cells[_PID]
        holder = Holder(pid=pid, host=socket.gethostname()) if pid else None
        return KernelState(locked=pid != 0, holder=holder)

    def close(self) -> None:
        self._sem.close()
        self._guard.close()
        self._block.close()


_SEM_FENCE = _HEADER  # Semaphore: how many permits were ever taken (the fencing token)
SEMAPHORE_CELLS = 1


class WinSemaphorePrimitive:
    """Semaphore / BoundedSemaphore on one kernel semaphore (the bound is its maximum).

    A permit is taken together with a guard mutex (``WaitForMultipleObjects`` with
    ``bWaitAll``), which orders the fence counter in the block: its value after each
    acquire is the handle's ``fencing_token``. A release is the kernel semaphore's alone.
    """

    __slots__ = (
        "_block",
        "_cells",
        "_guard",
        "_guard_h",
        "_pair",
        "_post",
        "_sem",
        "_sem_h",
        "_unguard",
        "_wait_all",
        "fencing_token",
        "get_value",
        "release",
    )

    def __init__(self, block: derived.Block, sem: WinSemaphore, guard: _Object) -> None:
        assert block.cells is not None
        k = _win32.kernel32()
        self._block = block
        self._cells = block.cells
        self._sem = sem
        self._guard = guard
        self._sem_h, self._guard_h = sem._handle, guard.handle
        self._pair = _win32.handle_pair(sem._handle, guard.handle)
        self._wait_all = k.WaitForMultipleObjects
        self._unguard = k.ReleaseMutex
        self._post = k.ReleaseSemaphore
        self.release = sem.release
        self.get_value = sem.get_value
        self.fencing_token: int | None = None

    def acquire(self, blocking: bool, timeout: float | None) -> bool:
        if self._take(0):
            return True
        if not blocking or timeout == 0:
            return False
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if deadline is None:
                ms = SLICE_MS
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                ms = min(SLICE_MS, math.ceil(remaining * 1000))
            if self._take(ms):
                return True
            # Between slices Python code runs: a pending Ctrl-C raises here.

    def _take(self, ms: int) -> bool:
        try:
            rc = self._wait_all(2, self._pair, 1, ms)
            if rc == WAIT_TIMEOUT:
                return False
            if rc not in _TOOK_BOTH:
                _raise(_win32.last_error(), "semaphore and its guard", self._guard.name, "wait for")
            token = self._cells[_SEM_FENCE] + 1
            self._cells[_SEM_FENCE] = token
            self.fencing_token = token
        except BaseException:
            # Interrupted (Ctrl-C) the instant the wait returned: if it took both, the
            # guard is this thread's (only the owner can release a mutex); give both back.
            if self._unguard(self._guard_h):
                self._post(self._sem_h, 1, None)
            raise
        if not self._unguard(self._guard_h):
            _raise(_win32.last_error(), "mutex", self._guard.name, "release")
        return True

    def statistics(self) -> KernelState:
        return KernelState(value=self._sem.get_value())

    def close(self) -> None:
        self._sem.close()
        self._guard.close()
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
_RLOCK_FENCE = _HEADER + 1  # RLock: how many times it was taken (not counting reentry)
RLOCK_CELLS = 2


class WinRLock:
    """RLock: a kernel mutex; this handle tracks each thread's depth.

    ``WAIT_ABANDONED`` (the owning thread or process ended holding it) makes the acquire
    succeed with an :class:`~polysync.OwnerDiedWarning`, and ``owner_died`` stays true
    until this handle releases the lock.
    """

    __slots__ = (
        "_block",
        "_cells",
        "_handle",
        "_local",
        "_obj",
        "_release",
        "_wait",
        "fencing_token",
        "owner_died",
    )

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
        self.fencing_token: int | None = None

    def _took(self, rc: int, depth: int) -> None:
        self._local.depth = depth
        c = self._cells
        token = c[_RLOCK_FENCE] + 1  # under the mutex: tokens strictly increase
        c[_RLOCK_FENCE] = token
        self.fencing_token = token
        c[_OWNER] = os.getpid()
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
