"""Kernel objects: opening them, generations of named ones, keep-alive handles, sliced waits.

Also the guard mutex that Lock and the semaphores change their cells under (:class:`Guard`).
"""

from __future__ import annotations

import ctypes
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from polysync.backends.windows import win32 as _win32
from polysync.backends.windows.names import _directory_name, windows_name
from polysync.backends.windows.win32 import (
    ERROR_ALREADY_EXISTS,
    ERROR_FILE_NOT_FOUND,
    ERROR_INVALID_HANDLE,
    WAIT_ABANDONED,
    WAIT_FAILED,
    WAIT_OBJECT_0,
    WAIT_TIMEOUT,
)
from polysync.errors import (
    KindMismatchError,
    NotFoundError,
    PolysyncError,
)
from polysync.kernel import ObjectName

#: Longest single wait, in ms: a pending Ctrl-C is seen at least this often.
SLICE_MS = 50
#: The maximum count of an unbounded semaphore.
MAX_COUNT = 0x7FFF_FFFF
#: Seconds an anonymous object is kept alive for a receiver after it was pickled.
HOLD_SECONDS = 5.0


# -- errors -------------------------------------------------------------------------


def _raise(code: int, what: str, wname: str, action: str = "open") -> NoReturn:
    cause = _win32.win_error(code)
    exc: PolysyncError
    if code == ERROR_FILE_NOT_FOUND:
        exc = NotFoundError(
            f"the {what} {wname!r} does not exist (never created, or every handle to it was closed)"
        )
    elif code == ERROR_INVALID_HANDLE:
        exc = KindMismatchError(
            f"the name {wname!r} belongs to another type of Windows object than a {what}: "
            "choose another name"
        )
    else:
        exc = PolysyncError(f"cannot {action} the {what} {wname!r}: {cause}")
    raise exc from cause


# -- waiting ------------------------------------------------------------------------


def _wait_handle(
    wait: Callable[[int, int], int],
    handle: int,
    timeout: float | None,
    what: str,
    changed: Callable[[], bool] | None = None,
) -> int:
    """Wait for *handle* in slices; ``WAIT_OBJECT_0``, ``WAIT_ABANDONED`` or ``WAIT_TIMEOUT``.

    *timeout* ``None`` waits forever, ``0`` polls. Between slices Python code runs, so a
    pending signal handler (Ctrl-C) raises here, with nothing taken. *changed*, if given,
    is checked between slices and ends the wait early (returning ``WAIT_OBJECT_0``).
    """
    if timeout is None:
        while True:
            rc = wait(handle, SLICE_MS)
            if rc != WAIT_TIMEOUT:
                break
            if changed is not None and changed():
                return WAIT_OBJECT_0
    elif timeout <= 0:
        rc = wait(handle, 0)
    else:
        deadline = time.monotonic() + timeout
        ms = min(SLICE_MS, math.ceil(timeout * 1000))
        while True:
            rc = wait(handle, ms)
            if rc != WAIT_TIMEOUT:
                break
            if changed is not None and changed():
                return WAIT_OBJECT_0
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return WAIT_TIMEOUT
            ms = min(SLICE_MS, math.ceil(remaining * 1000))
    if rc == WAIT_FAILED:
        _raise(_win32.last_error(), what, "(handle)", "wait for")
    return rc


def slice_ms(deadline: float | None) -> int:
    """The next slice of a wait that ends at *deadline* (``None``: never), in ms; 0 once past.

    A slice is at most :data:`SLICE_MS`: between slices Python code runs, so a pending
    Ctrl-C raises there, and a waiter can look at the state it waits on.
    """
    if deadline is None:
        return SLICE_MS
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return 0
    return min(SLICE_MS, math.ceil(remaining * 1000))


#: How long mending an interrupted guarded step waits for the guard, in ms.
_MEND_MS = 5000


class Guard:
    """The kernel mutex that a primitive's cells change under (Lock and the semaphores).

    When a process dies holding it, the kernel abandons it and the next owner gets
    ``WAIT_ABANDONED``; that owner finds the cells as the dead process left them.
    """

    __slots__ = ("_obj", "_release", "_wait", "handle")

    def __init__(self, obj: _Object) -> None:
        k = _win32.kernel32()
        self._obj = obj
        self.handle = obj.handle
        self._wait = k.WaitForSingleObject
        self._release = k.ReleaseMutex

    @property
    def name(self) -> str:
        return self._obj.name

    def take(self, timeout: float | None = None) -> bool:
        """Take the guard within *timeout* (``None``: however long, in slices; 0: poll)."""
        rc = _wait_handle(self._wait, self.handle, timeout, "mutex")
        if rc == WAIT_TIMEOUT:
            return False
        if rc not in (WAIT_OBJECT_0, WAIT_ABANDONED):
            _raise(_win32.last_error(), "mutex", self._obj.name, "wait for")
        return True

    def give(self) -> None:
        if not self._release(self.handle):
            _raise(_win32.last_error(), "mutex", self._obj.name, "release")

    def mend(self, fix: Callable[[], None], *, always: bool = False) -> None:
        """An exception (Ctrl-C) left this thread in a guarded step: run *fix* under the guard.

        Only the owner can release a mutex, so a successful ``ReleaseMutex`` tells that
        this thread held the guard (the exception landed inside the step, perhaps the
        instant the wait for it returned): no live thread is left holding it. The guard
        is then taken back, within 5 s, for *fix* to finish or undo the step's business.
        If it was not held, *fix* runs only when *always* is set (the step had left
        something to undo outside the guard). If the guard cannot be had, the mend is
        left to the next owner (the state a step leaves is always consistent).
        """
        if not self._release(self.handle) and not always:
            return
        rc = self._wait(self.handle, _MEND_MS)
        if rc not in (WAIT_OBJECT_0, WAIT_ABANDONED):
            return
        try:
            fix()
        finally:
            self._release(self.handle)

    def close(self) -> None:
        self._obj.close()


# -- generations and keep-alive handles of named objects ----------------------------


class _Directory:
    """The generation cell of one named object, mapped once per process (ref-counted)."""

    __slots__ = ("address", "gen", "handle", "name", "refs")

    def __init__(self, name: str, handle: int, address: int) -> None:
        self.name = name
        self.handle = handle
        self.address = address
        self.gen = ctypes.c_int64.from_address(address)
        self.refs = 1


_state_lock = threading.RLock()
_directories: dict[str, _Directory] = {}
#: Per kernel base name: (generation, handle, directory) kept open until unlink or exit.
_keepalive: dict[str, tuple[int, int, _Directory]] = {}


def _acquire_directory(wname: str) -> _Directory:
    dname = _directory_name(wname)
    with _state_lock:
        found = _directories.get(dname)
        if found is not None:
            found.refs += 1
            return found
        k = _win32.kernel32()
        handle = k.CreateFileMappingW(
            _win32.INVALID_HANDLE_VALUE, None, _win32.PAGE_READWRITE, 0, 8, dname
        )
        if not handle:
            _raise(_win32.last_error(), "file mapping", dname, "create")
        address = k.MapViewOfFile(handle, _win32.FILE_MAP_ALL_ACCESS, 0, 0, 8)
        if not address:
            code = _win32.last_error()
            k.CloseHandle(handle)
            _raise(code, "file mapping", dname, "map")
        directory = _directories[dname] = _Directory(dname, handle, address)
        return directory


def _release_directory(directory: _Directory) -> None:
    with _state_lock:
        directory.refs -= 1
        if directory.refs:
            return
        if _directories.get(directory.name) is directory:
            del _directories[directory.name]
        k = _win32.kernel32()
        k.UnmapViewOfFile(directory.address)
        k.CloseHandle(directory.handle)


def _drop_keepalive(wname: str) -> None:
    with _state_lock:
        entry = _keepalive.pop(wname, None)
    if entry is not None:
        _win32.kernel32().CloseHandle(entry[1])
        _release_directory(entry[2])


# -- opening kernel objects ---------------------------------------------------------


@dataclass(frozen=True)
class _Type:
    """How to create and open one type of kernel object."""

    what: str
    create: Callable[[str], int | None]
    open: Callable[[str], int | None]


def _semaphore_type(value: int, maximum: int) -> _Type:
    k = _win32.kernel32()
    return _Type(
        "semaphore",
        lambda n: k.CreateSemaphoreW(None, value, maximum, n),
        lambda n: k.OpenSemaphoreW(_win32.SEMAPHORE_ALL_ACCESS, 0, n),
    )


def _mutex_type() -> _Type:
    k = _win32.kernel32()
    return _Type(
        "mutex",
        lambda n: k.CreateMutexW(None, 0, n),
        lambda n: k.OpenMutexW(_win32.MUTEX_ALL_ACCESS, 0, n),
    )


def _event_type() -> _Type:
    k = _win32.kernel32()
    return _Type(
        "event",
        lambda n: k.CreateEventW(None, 1, 0, n),
        lambda n: k.OpenEventW(_win32.EVENT_ALL_ACCESS, 0, n),
    )


def _mapping_type(nbytes: int) -> _Type:
    k = _win32.kernel32()
    return _Type(
        "file mapping",
        lambda n: k.CreateFileMappingW(
            _win32.INVALID_HANDLE_VALUE, None, _win32.PAGE_READWRITE, 0, nbytes, n
        ),
        lambda n: k.OpenFileMappingW(_win32.FILE_MAP_ALL_ACCESS, 0, n),
    )


class _Object:
    """One open kernel handle (and, for a named object, its directory reference)."""

    __slots__ = ("created", "directory", "handle", "name")

    def __init__(self, handle: int, name: str, directory: _Directory | None, created: bool) -> None:
        self.handle = handle
        self.name = name
        self.directory = directory
        self.created = created

    def close(self) -> None:
        handle, self.handle = self.handle, 0
        if handle:
            _win32.kernel32().CloseHandle(handle)
            if self.directory is not None:
                _release_directory(self.directory)
                self.directory = None


def _create_or_open(kind: _Type, wname: str, create: bool) -> tuple[int, bool]:
    if create:
        _win32.clear_last_error()
        handle = kind.create(wname)
        code = _win32.last_error()
        if not handle:
            _raise(code, kind.what, wname, "create")
        return handle, code != ERROR_ALREADY_EXISTS
    handle = kind.open(wname)
    if not handle:
        _raise(_win32.last_error(), kind.what, wname)
    return handle, False


def _open_object(kind: _Type, name: ObjectName, namespace: str, *, create: bool) -> _Object:
    wname = windows_name(name, namespace)
    if name.is_anonymous:
        handle, created = _create_or_open(kind, wname, create)
        return _Object(handle, wname, None, created)
    directory = _acquire_directory(wname)
    try:
        gen = int(directory.gen.value)
        gname = f"{wname}~{gen}"
        handle, created = _create_or_open(kind, gname, create)
    except BaseException:
        _release_directory(directory)
        raise
    try:
        _keep_alive(kind, wname, gname, gen)
    except BaseException:
        _win32.kernel32().CloseHandle(handle)
        _release_directory(directory)
        raise
    return _Object(handle, gname, directory, created)


def _keep_alive(kind: _Type, wname: str, gname: str, gen: int) -> None:
    """Keep one handle to the named object *gname* in this process until unlink or exit."""
    with _state_lock:
        entry = _keepalive.get(wname)
        if entry is not None and entry[0] == gen:
            return
    if entry is not None:  # unlinked by another process meanwhile: let the old one go
        _drop_keepalive(wname)
    directory = _acquire_directory(wname)
    handle = kind.open(gname)
    if not handle:
        _release_directory(directory)
        _raise(_win32.last_error(), kind.what, gname)
    with _state_lock:
        if wname not in _keepalive:
            _keepalive[wname] = (gen, handle, directory)
            return
    _win32.kernel32().CloseHandle(handle)
    _release_directory(directory)


def _open_any(wname: str) -> int | None:
    """A handle to whatever kernel object is called *wname*, or ``None`` if there is none."""
    k = _win32.kernel32()
    openers: list[Callable[[int, int, str], int | None]] = [
        k.OpenSemaphoreW,
        k.OpenMutexW,
        k.OpenEventW,
        k.OpenFileMappingW,
    ]
    for i, opener in enumerate(openers):
        handle = opener(_win32.FILE_MAP_READ if i == 3 else _win32.SYNCHRONIZE, 0, wname)
        if handle:
            return handle
        if _win32.last_error() == ERROR_FILE_NOT_FOUND:
            return None
    return None


def _exists(wname: str) -> bool:
    k = _win32.kernel32()
    handle = k.OpenSemaphoreW(_win32.SYNCHRONIZE, 0, wname)
    if handle:
        k.CloseHandle(handle)
        return True
    return _win32.last_error() != ERROR_FILE_NOT_FOUND


# -- anonymous objects in transit -----------------------------------------------------


class _Holder:
    """Closes handles kept for a pickled anonymous object once their time is up."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[tuple[float, list[int]]] = deque()
        self._thread: threading.Thread | None = None

    def hold(self, handles: list[int], seconds: float) -> None:
        with self._cond:
            self._queue.append((time.monotonic() + seconds, handles))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="polysync-windows-holder", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        close = _win32.kernel32().CloseHandle
        while True:
            with self._cond:
                if not self._queue:
                    self._cond.wait(HOLD_SECONDS * 2)
                    if not self._queue:
                        self._thread = None
                        return
                    continue
                deadline, handles = self._queue[0]
                delay = deadline - time.monotonic()
                if delay > 0:
                    self._cond.wait(delay)
                    continue
                self._queue.popleft()
            for handle in handles:
                close(handle)


_holder = _Holder()
