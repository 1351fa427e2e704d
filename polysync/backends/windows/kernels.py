"""The windows kernels: semaphores, cells over file mappings, Lock, RLock, Event, Barrier mutex.

Lock takes a guard mutex with its kernel semaphore and records its holder; the semaphores
keep their count and each process's permits in the block under a guard mutex (their
kernel semaphore only wakes); Lock, RLock and the semaphores count acquisitions (the
fencing token) in the block.
"""

from __future__ import annotations

import ctypes
import os
import socket
import threading
import time
from collections.abc import Callable

from polysync import _validate, derived, errors
from polysync.backends.windows import win32 as _win32
from polysync.backends.windows.objects import (
    _MEND_MS,
    MAX_COUNT,
    SLICE_MS,
    Guard,
    _Object,
    _raise,
    _wait_handle,
    slice_ms,
)
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
from polysync.kernel import Cells, Holder, KernelState

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

    def array(self) -> ctypes.Array[ctypes.c_int64]:
        """The cells as a ctypes array (valid until :meth:`close`)."""
        if self._array is None:
            raise PolysyncError("these shared cells were closed")
        return self._array

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


class WinLock(derived.ConditionHooksOfALock):
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
        self._sem, self._guard = sem, Guard(guard)
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
                ms = slice_ms(deadline)
                if not ms:
                    return False
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
                left: float | None = 0.0
            else:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self._guard.take(left):
                return False
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

        def fix() -> None:
            c = self._cells
            pid, created = own_identity()
            mine = c[_PID] == pid and c[_CREATED] == created and c[_TID] == threading.get_ident()
            if acquiring and mine:
                c[_PID] = 0
                self._post(self._sem_h, 1, None)
            elif not c[_PID]:
                self._wait(self._sem_h, 0)  # whatever the count was, it ends at 1: free
                self._post(self._sem_h, 1, None)

        self._guard.mend(fix)  # the guard not ours: nothing was changed

    # -- releasing and the rest --------------------------------------------------------

    def release(self) -> None:
        code = 0
        try:
            self._guard.take()
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

    def statistics(self) -> KernelState:
        pid = self._cells[_PID]
        holder = Holder(pid=pid, host=socket.gethostname()) if pid else None
        # The fence cell is the latest token granted (read without the guard: a snapshot).
        fence = self._cells[_FENCE]
        return KernelState(locked=pid != 0, holder=holder, last_fencing_token=fence or None)

    def close(self) -> None:
        self._sem.close()
        self._guard.close()
        self._block.close()


#: Semaphore cells after the header (the truth; the kernel semaphore only wakes waiters).
_VALUE = _HEADER  # the count
_FENCE_S = _HEADER + 1  # how many permits were ever taken (the fencing token)
_LAST_TID = _HEADER + 2  # the thread that took the last one (an interrupted acquire's mend)
_LOOSE = _HEADER + 3  # blocked acquirers of processes with no slot (the table was full)
#: The journal: the slot (index + 1, 0: none) and the value and slot cells being written.
_JOURNAL = _HEADER + 4
_SLOTS_AT = _HEADER + 12
#: Per-process slots of (process id, creation time, permits held, threads blocked).
SLOTS = 32
_SLOT = 4
SEMAPHORE_CELLS = 12 + SLOTS * _SLOT
_WAITING = slice(_SLOTS_AT + 3, _SLOTS_AT + SLOTS * _SLOT, _SLOT)


class WinSemaphorePrimitive:
    """Semaphore / BoundedSemaphore whose dead processes' permits come back.

    The block's cells are the truth: the value, and one slot per process that took
    permits (its process id and creation time, the permits it holds, its threads
    blocked in ``acquire()``). They change only under a guard mutex; a change that
    spans several cells is written to a journal first, so whoever takes the guard next
    (``WAIT_ABANDONED`` after a death) finishes it: no death leaves them half-updated.
    The kernel semaphore carries no permit: it only wakes blocked acquirers (a release
    of *n* posts ``min(n, blocked)``). A blocked acquirer waits on it in slices and
    looks again at every one.

    An acquire that finds no permit left (and a blocked one once per slice) gives back
    the permits of slots whose process died, takes one and warns
    (:class:`~polysync.OwnerDiedWarning`, ``owner_died`` until it next releases). A
    handle closed normally keeps what it took (consumed), as on posix and redis.

    A ``KeyboardInterrupt`` raised the instant a wait returned, or inside a guarded
    step, is mended (:meth:`Guard.mend`): the guard is given back, an interrupted
    acquire does not keep its permit, and a blocked count is taken back. Each journaled
    write runs as straight-line code with no call inside, so CPython runs no signal
    handler half-way through one.
    """

    __slots__ = (
        "__weakref__",
        "_a",
        "_block",
        "_bound",
        "_guard",
        "_guard_h",
        "_post",
        "_slot",
        "_taken",
        "_unguard",
        "_wait",
        "_wake",
        "_wake_h",
        "_watches",
        "fencing_token",
        "owner_died",
    )

    def __init__(
        self, block: derived.Block, bound: int | None, wake: _Object, guard: _Object
    ) -> None:
        assert isinstance(block.cells, WinCells)
        k = _win32.kernel32()
        self._block = block
        self._a = block.cells.array()
        self._bound = bound
        self._wake, self._wake_h = wake, wake.handle
        self._guard, self._guard_h = Guard(guard), guard.handle
        self._wait = k.WaitForSingleObject
        self._unguard = k.ReleaseMutex
        self._post = k.ReleaseSemaphore
        self._slot = -1  # this process's slot, once known
        self._taken = 0  # permits this handle took and did not give back
        self._watches: dict[int, HolderWatch] = {}
        self.fencing_token: int | None = None
        self.owner_died = False

    @staticmethod
    def initial_state(value: int) -> Callable[[Cells], None]:
        """What a new block's cells start with (written before it is marked ready)."""

        def write(cells: Cells) -> None:
            cells[_VALUE] = value

        return write

    # -- the cells, under the guard ----------------------------------------------------

    def _commit(
        self,
        slot: int,
        value: int,
        pid: int,
        created: int,
        held: int,
        waiting: int,
        token: int = 0,
        tid: int = 0,
    ) -> None:
        """Write the value and one slot (journal first); and the fence if *token*.

        Straight-line stores, no call: a signal handler runs before or after, never in
        the middle. A slot of -1 (none) writes the value alone.
        """
        a = self._a
        if slot >= 0:
            j = _JOURNAL
            a[j + 1] = value
            a[j + 2] = pid
            a[j + 3] = created
            a[j + 4] = held
            a[j + 5] = waiting
            a[j] = slot + 1
            s = _SLOTS_AT + _SLOT * slot
            a[_VALUE] = value
            a[s + 1] = created
            a[s + 2] = held
            a[s + 3] = waiting
            a[s] = pid
            a[j] = 0
        else:
            a[_VALUE] = value
        if token:
            a[_FENCE_S] = token
            a[_LAST_TID] = tid

    def _lock(self, timeout: float | None = None) -> bool:
        """Take the guard and finish what a dead owner of it left half-written."""
        if not self._guard.take(timeout):
            return False
        self._replay()
        return True

    def _replay(self) -> None:
        """Finish a journaled write its writer died in the middle of (under the guard)."""
        a = self._a
        journal = a[_JOURNAL]
        if 0 < journal <= SLOTS:
            j, s = _JOURNAL, _SLOTS_AT + _SLOT * (journal - 1)
            a[_VALUE] = a[j + 1]
            a[s + 1] = a[j + 3]
            a[s + 2] = a[j + 4]
            a[s + 3] = a[j + 5]
            a[s] = a[j + 2]
        a[_JOURNAL] = 0

    def _find(self, pid: int, created: int) -> int:
        """This process's slot, or -1 (looked up once, then remembered)."""
        a, slot = self._a, self._slot
        if slot >= 0:
            s = _SLOTS_AT + _SLOT * slot
            if a[s] == pid and a[s + 1] == created:
                return slot
        for i in range(SLOTS):
            s = _SLOTS_AT + _SLOT * i
            if a[s] == pid and a[s + 1] == created:
                self._slot = i
                return i
        return -1

    def _own_slot(self) -> tuple[int, int, int]:
        """(returned, dead pid, slot): this process's slot, made if need be (-1: none free)."""
        pid, created = own_identity()
        slot = self._find(pid, created)
        if slot >= 0:
            return 0, 0, slot
        returned, dead = 0, 0
        slot = self._find(0, 0)
        if slot < 0:
            returned, dead = self._reclaim(every_slot=True)
            slot = self._find(0, 0)
        if slot >= 0:
            self._commit(slot, self._a[_VALUE], pid, created, 0, 0)
            self._slot = slot
        return returned, dead, slot

    def _reclaim(self, *, every_slot: bool) -> tuple[int, int]:
        """Give back the permits of slots whose process died: (how many, a dead pid).

        Slots that hold no permit and block no one are freed only with *every_slot*
        (each liveness check costs a kernel call).
        """
        a = self._a
        returned, dead = 0, 0
        for i in range(SLOTS):
            s = _SLOTS_AT + _SLOT * i
            pid = a[s]
            if not pid:
                continue
            held, waiting = a[s + 2], a[s + 3]
            if held <= 0 and waiting <= 0 and not every_slot:
                continue
            watch = self._watches.get(i)
            if watch is None:
                watch = self._watches[i] = HolderWatch()
            if watch.alive(pid, a[s + 1]):
                continue
            back = max(held, 0)
            value = a[_VALUE] + back
            if self._bound is not None:
                value = min(value, self._bound)  # never more than the bound
            self._commit(i, value, 0, 0, 0, 0)
            if back:
                returned += back
                dead = pid
        return returned, dead

    def _take_permit(self, check_dead: bool) -> tuple[bool, int, int]:
        """(taken, returned, dead pid): take a permit if there is one, first giving back
        a dead process's permits when none is left and *check_dead* is set."""
        a = self._a
        returned, dead = 0, 0
        if a[_VALUE] <= 0:
            if not check_dead:
                return False, 0, 0
            returned, dead = self._reclaim(every_slot=False)
            if a[_VALUE] <= 0:
                return False, returned, dead
        more, died, slot = self._own_slot()
        returned, dead = returned + more, died or dead
        token, tid = a[_FENCE_S] + 1, threading.get_ident()
        if slot >= 0:
            s = _SLOTS_AT + _SLOT * slot
            self._commit(slot, a[_VALUE] - 1, a[s], a[s + 1], a[s + 2] + 1, a[s + 3], token, tid)
        else:
            self._commit(-1, a[_VALUE] - 1, 0, 0, 0, 0, token, tid)
        self._taken += 1
        self.fencing_token = token
        return True, returned, dead

    def _blocked(self) -> int:
        a = self._a
        return max(0, sum(a[_WAITING]) + a[_LOOSE])

    def _wake_up(self, n: int) -> None:
        if n > 0:
            self._post(self._wake_h, min(n, MAX_COUNT), None)  # past its maximum: all awake

    # -- acquiring ----------------------------------------------------------------------

    def acquire(self, blocking: bool, timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        a = self._a
        waiting_at = -1  # the cell counting this thread as blocked, while it is
        got, returned, dead, left, blocked = False, 0, 0, 0, 0
        token = 0
        try:
            self._lock()
            check_dead = True
            while True:
                token = a[_FENCE_S] + 1
                got, more, died = self._take_permit(check_dead)
                returned, dead = returned + more, died or dead
                if got or not blocking or timeout == 0:
                    break
                ms = slice_ms(deadline)
                if not ms:
                    if not check_dead:  # a last look for a dead process's permits
                        got, more, died = self._take_permit(True)
                        returned, dead = returned + more, died or dead
                    break
                # Blocked: counted (in this process's slot) before the guard goes, and
                # wakes left over from releases that found no permit wanted are dropped.
                while self._wait(self._wake_h, 0) == WAIT_OBJECT_0:
                    pass
                _, _, slot = self._own_slot()
                cell = _LOOSE if slot < 0 else _SLOTS_AT + _SLOT * slot + 3
                a[cell] += 1
                waiting_at = cell
                self._guard.give()
                rc = self._wait(self._wake_h, ms)
                # Between slices Python code runs: a pending Ctrl-C raises here.
                self._lock()
                a[waiting_at] -= 1
                waiting_at = -1
                if rc not in (WAIT_OBJECT_0, WAIT_TIMEOUT):
                    _raise(_win32.last_error(), "semaphore", self._wake.name, "wait for")
                check_dead = rc == WAIT_TIMEOUT  # a slice went by with no release
            left = a[_VALUE]
            blocked = self._blocked()
        except BaseException:
            self._interrupted(token, waiting_at)
            raise
        self._guard.give()
        if returned and left > 0:
            self._wake_up(min(left, blocked))  # the dead's permits are for the others too
        if not got:
            if left > 0:
                self._wake_up(min(1, blocked))  # a wake meant for another may have come here
            return False
        if returned:
            self.owner_died = True
            errors.warn_owner_died(
                f"process {dead} died holding {returned} permit(s) of this semaphore; "
                "they came back and this handle took one: check the state they protect",
                self.release,
            )
        return True

    def _interrupted(self, token: int, waiting_at: int) -> None:
        """Mend an acquire an exception (Ctrl-C) cut short: it takes no permit."""
        tid = threading.get_ident()

        def fix() -> None:
            a = self._a
            self._replay()
            if waiting_at >= 0:
                a[waiting_at] = max(0, a[waiting_at] - 1)
            if token and a[_FENCE_S] == token and a[_LAST_TID] == tid:
                # The permit was taken (this thread's, the last one taken): give it back.
                pid, created = own_identity()
                slot = self._find(pid, created)
                s = _SLOTS_AT + _SLOT * slot
                if slot >= 0:
                    self._commit(slot, a[_VALUE] + 1, pid, created, a[s + 2] - 1, a[s + 3])
                else:
                    self._commit(-1, a[_VALUE] + 1, 0, 0, 0, 0)
                a[_LAST_TID] = 0
                self._taken = max(0, self._taken - 1)
                self.fencing_token = None
            if a[_VALUE] > 0:
                self._wake_up(min(1, self._blocked()))

        self._guard.mend(fix, always=waiting_at >= 0)

    # -- releasing and the rest ----------------------------------------------------------

    def release(self, n: int = 1) -> None:
        a = self._a
        try:
            self._lock()
            value = a[_VALUE]
            bound = self._bound
            if (bound is not None and value + n > bound) or value + n > _validate.MAX_VALUE:
                self._guard.give()
                if bound is not None:
                    raise errors.over_released(bound)
                raise _validate.headroom(n, value)
            pid, created = own_identity()
            slot = self._find(pid, created)
            if slot >= 0:
                s = _SLOTS_AT + _SLOT * slot
                self._commit(slot, value + n, pid, created, a[s + 2] - n, a[s + 3])
            else:
                self._commit(-1, value + n, 0, 0, 0, 0)
            blocked = self._blocked()
        except (NotHeldError, ValueError):
            raise
        except BaseException:
            self._guard.mend(lambda: None)  # done or not done: both whole
            raise
        self._guard.give()
        self._taken = max(0, self._taken - n)
        self.owner_died = False
        self._wake_up(min(n, blocked))

    def get_value(self) -> int:
        return int(self._a[_VALUE])

    def statistics(self) -> KernelState:
        return KernelState(
            value=self.get_value(),
            waiting=self._blocked(),
            last_fencing_token=int(self._a[_FENCE_S]) or None,
        )

    def _forget(self) -> None:
        """What this handle took counts as consumed: never given back at this process's death.

        Waits for the guard at most 1 s (a finalizer may call it).
        """
        if not self._taken:
            return
        try:
            if not self._lock(1.0):
                return
        except PolysyncError:
            return
        try:
            a = self._a
            pid, created = own_identity()
            slot = self._find(pid, created)
            if slot >= 0:
                s = _SLOTS_AT + _SLOT * slot
                self._commit(slot, a[_VALUE], pid, created, a[s + 2] - self._taken, a[s + 3])
            self._taken = 0
        finally:
            self._unguard(self._guard_h)

    def close(self) -> None:
        self._forget()
        for watch in self._watches.values():
            watch.close()
        self._watches.clear()
        self._wake.close()
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


class WinMutex:
    """The internal mutex of a windows Barrier (a :class:`polysync.derived.Mutex`): a kernel mutex.

    The floor's mutex is a semaphore, which a process killed inside ``wait()``,
    ``reset()`` or ``abort()`` while holding it leaves taken for good. A kernel mutex is
    abandoned when its owner dies: the next one to take it gets ``WAIT_ABANDONED``, runs
    ``on_takeover`` (the Barrier's mend: it breaks it, as a party that fails does), and
    then tells the user with an :class:`~polysync.OwnerDiedWarning`.

    A ``KeyboardInterrupt`` raised the instant the wait returned is handled as the
    guard's :meth:`~.objects.Guard.mend` does: a mutex this thread owns is given back
    (only the owner can release a mutex, so a successful ``ReleaseMutex`` tells), after
    the mend if the take may have been an abandoned one.
    """

    __slots__ = ("_handle", "_obj", "_release", "_wait", "_what", "on_takeover")

    def __init__(self, obj: _Object, what: str) -> None:
        k = _win32.kernel32()
        self._obj = obj
        self._handle = obj.handle
        self._wait = k.WaitForSingleObject
        self._release = k.ReleaseMutex
        self._what = what
        self.on_takeover: Callable[[], None] | None = None

    def __enter__(self) -> None:
        wait, handle = self._wait, self._handle
        rc = WAIT_TIMEOUT
        try:
            while True:
                rc = wait(handle, SLICE_MS)
                if rc != WAIT_TIMEOUT:
                    break
                # Looping runs pending signal handlers: Ctrl-C raises here, nothing taken.
            if rc == WAIT_ABANDONED:
                self._mend()
            elif rc != WAIT_OBJECT_0:
                _raise(_win32.last_error(), "mutex", self._obj.name, "wait for")
        except BaseException:
            self._interrupted(rc)
            raise

    def _mend(self) -> None:
        if self.on_takeover is not None:
            self.on_takeover()
        errors.warn_owner_died(
            f"a process died inside a call on this {self._what} (WAIT_ABANDONED); its "
            "state was mended (a Barrier is broken: reset() it)",
            self._give,
        )

    def _interrupted(self, rc: int) -> None:
        """An exception (Ctrl-C) cut ``__enter__`` short: give back a mutex this thread got.

        Taken cleanly (``WAIT_OBJECT_0`` seen), nothing was changed under it. Else the
        take may have been an abandoned one whose mend did not run: the mutex is taken
        back (within 5 s) and the mend runs, so the dead process's half-done update is
        never left in place unmended.
        """
        if not self._release(self._handle):
            return  # not ours: nothing taken
        if rc == WAIT_OBJECT_0:
            return
        if self._wait(self._handle, _MEND_MS) not in (WAIT_OBJECT_0, WAIT_ABANDONED):
            return  # left to the next owner (a half-done update, if any, stays abandoned)
        try:
            if self.on_takeover is not None:
                self.on_takeover()
        finally:
            self._release(self._handle)

    def _give(self) -> None:
        if not self._release(self._handle):
            _raise(_win32.last_error(), "mutex", self._obj.name, "release")

    def __exit__(self, *exc: object) -> None:
        # A direct C call: nothing between the check and the release can raise.
        if not self._release(self._handle):
            _raise(_win32.last_error(), "mutex", self._obj.name, "release")

    def release_save(self) -> object:
        self._give()
        return None

    def acquire_restore(self, state: object) -> None:
        self.__enter__()

    def close(self) -> None:
        self._obj.close()


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
        fence = self._cells[_RLOCK_FENCE]
        return KernelState(locked=owner != 0, holder=holder, last_fencing_token=fence or None)

    def close(self) -> None:
        self._obj.close()
        self._block.close()
