"""The windows backend: kernel32 semaphores, mutexes, events and file mappings, through ctypes.

Kernels (see ``docs/windows.md``):

* the counting semaphore every backend supplies: a kernel semaphore (maximum 2**31-1);
* shared cells: a file mapping backed by the paging file, viewed as signed 64-bit ints;
* native primitives: Lock = a semaphore of maximum 1 (anyone may release it, as with
  multiprocessing); RLock = a kernel mutex (reentrant, owned by a thread, and
  ``WAIT_ABANDONED`` reports an owner that died); BoundedSemaphore = a semaphore whose
  maximum is its initial value; Event = a manual-reset event. Condition and Barrier are the
  generic derived ones (:mod:`polysync.derived`). Each native primitive also has a small
  header mapping (made by :func:`polysync.derived.open_block`) that records its kind, so
  opening a name as another kind raises :class:`~polysync.KindMismatchError`.

Every blocking wait is a loop of ``WaitForSingleObject`` slices of at most 50 ms, so
Ctrl-C in the main thread interrupts it promptly and leaves the count unchanged.

Names: an object name maps injectively to ``Local\\polysync-...`` (or ``Global\\``):
``n-<name>`` for a user name made of ``[A-Za-z0-9_.-]`` that fits, ``h-<sha256>``
otherwise, ``a-``/``w-`` for the names polysync generates. Windows destroys a named
object with its last handle, so to give named objects polysync's lifetime ("until
unlinked") each process keeps one extra handle to every named object it opened until it
unlinks it or exits, and each named object carries a generation: its kernel name ends in
``~<generation>``, read from a small directory mapping (``polysync-d-...``) that every
handle also holds open. ``unlink()`` advances the generation, so later opens of the name
make a fresh object while handles already open keep working on the old one, as on posix.
"""

from __future__ import annotations

import ctypes
import hashlib
import math
import os
import re
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar, NoReturn

from polysync import derived
from polysync.backends import _win32
from polysync.backends._win32 import (
    ERROR_ALREADY_EXISTS,
    ERROR_FILE_NOT_FOUND,
    ERROR_INVALID_HANDLE,
    ERROR_NOT_OWNER,
    ERROR_TOO_MANY_POSTS,
    WAIT_ABANDONED,
    WAIT_FAILED,
    WAIT_OBJECT_0,
    WAIT_TIMEOUT,
)
from polysync.derived import BaseBackend
from polysync.errors import (
    KindMismatchError,
    NotFoundError,
    NotHeldError,
    OwnerDiedWarning,
    PolysyncError,
)
from polysync.kernel import (
    Capability,
    Cells,
    EventKernel,
    Kind,
    LockKernel,
    RLockKernel,
    SemaphorePrimitiveKernel,
)

__all__ = ["WindowsBackend", "windows_name"]

#: Longest single wait, in ms: a pending Ctrl-C is seen at least this often.
SLICE_MS = 50
#: The maximum count of an unbounded semaphore.
MAX_COUNT = 0x7FFF_FFFF
#: Seconds an anonymous object is kept alive for a receiver after it was pickled.
HOLD_SECONDS = 5.0
#: Longest kernel object name (MAX_PATH); polysync's names stay well within it.
MAX_PATH = 260
NAMESPACES = ("Local", "Global")

_READABLE_USER = re.compile(r"[A-Za-z0-9_.-]+")
_READABLE_GENERATED = re.compile(r"[A-Za-z0-9_.:]+")
# Room left for the namespace, "polysync-d-", "~" and a generation number.
_MAX_READABLE = 200


_HEADER = derived.HEADER  # the cells a block header takes


def windows_name(object_name: str, namespace: str = "Local") -> str:
    """The kernel object name (without generation) of a backend object name.

    Injective: readable ``n-``/``a-``/``w-`` forms never contain ``~`` and keep their tag,
    hashed names are ``h-`` plus 64 hex digits, and generation suffixes start with ``~``.
    """
    tag, _, rest = object_name.partition(":")
    if tag in ("a", "w") and _READABLE_GENERATED.fullmatch(rest):
        base = f"{tag}-{rest.replace(':', '-')}"
    elif tag == "n" and _READABLE_USER.fullmatch(rest) and len(rest) <= _MAX_READABLE:
        base = f"n-{rest}"
    else:
        digest = hashlib.sha256(object_name.encode("utf-8", "surrogatepass")).hexdigest()
        base = f"h-{digest}"
    return f"{namespace}\\polysync-{base}"


def _directory_name(wname: str) -> str:
    namespace, _, rest = wname.partition("\\")
    return f"{namespace}\\polysync-d-{rest[len('polysync-') :]}"


def _is_generated(object_name: str) -> bool:
    return object_name[:2] in ("a:", "w:")


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


def _open_object(kind: _Type, object_name: str, namespace: str, *, create: bool) -> _Object:
    wname = windows_name(object_name, namespace)
    if _is_generated(object_name):
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


# -- the kernels ----------------------------------------------------------------------


class WinSemaphore:
    """A kernel semaphore as a :class:`~polysync.kernel.SemaphoreKernel`."""

    __slots__ = ("_handle", "_obj", "_over", "_release", "_wait")

    def __init__(self, obj: _Object, over_release: str) -> None:
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
                raise NotHeldError(self._over)
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
        self.acquire_within = self.acquire_failed = None

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
            try:
                warnings.warn(
                    OwnerDiedWarning(
                        "a thread or process died holding this lock (WAIT_ABANDONED); this "
                        "handle took it over: check the state it protects"
                    ),
                    stacklevel=4,
                )
            except BaseException:
                # The warning was made an error: the acquire fails, so the lock goes back
                # rather than stay held by a caller who does not know it holds it.
                self._give_up()
                raise

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

    def acquire_forever(self) -> object:
        return self.acquire(True, None)

    def _give_up(self) -> None:
        self._local.depth = 0
        self.owner_died = False
        self._cells[_OWNER] = 0
        if not self._release(self._handle):
            code = _win32.last_error()
            if code == ERROR_NOT_OWNER:
                raise NotHeldError("cannot release an RLock that this thread does not own")
            _raise(code, "mutex", self._obj.name, "release")

    def release(self) -> None:
        depth: int = getattr(self._local, "depth", 0)
        if not depth:
            raise NotHeldError("cannot release an RLock that this thread does not own")
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

    def close(self) -> None:
        self._obj.close()
        self._block.close()


# -- the backend ----------------------------------------------------------------------


class WindowsBackend(BaseBackend):
    """kernel32 semaphores, mutexes, events and file mappings, shared by one session's processes.

    Option ``namespace``: ``"Local"`` (default: this logon session) or ``"Global"`` (every
    session; creating file mappings there needs ``SeCreateGlobalPrivilege`` on Windows).
    """

    name = "windows"
    capabilities = frozenset(
        {
            Capability.CROSS_PROCESS,
            Capability.NAMED,
            Capability.READABLE_VALUE,
            Capability.SHARED_CELLS,
            Capability.OWNER_DEATH,
        }
    )
    options: ClassVar[Mapping[str, object]] = {"namespace": "Local"}

    def __init__(self, *, namespace: str = "Local") -> None:
        if not isinstance(namespace, str):
            raise TypeError(
                f"namespace must be 'Local' or 'Global', not {type(namespace).__name__} "
                f"{namespace!r}"
            )
        if namespace not in NAMESPACES:
            raise ValueError(f"namespace must be 'Local' or 'Global', not {namespace!r}")
        super().__init__(namespace=namespace)
        self.namespace = namespace

    # -- names ----------------------------------------------------------------------

    def windows_name(self, object_name: str) -> str:
        """The kernel name of *object_name* (a named object's also ends in ``~<generation>``)."""
        return windows_name(object_name, self.namespace)

    # -- the kernels every backend supplies -------------------------------------------

    def semaphore_kernel(self, name: str, value: int, *, create: bool) -> WinSemaphore:
        obj = _open_object(_semaphore_type(value, MAX_COUNT), name, self.namespace, create=create)
        return WinSemaphore(obj, f"Semaphore released past its maximum count {MAX_COUNT}")

    def cells_kernel(self, name: str, size: int, *, create: bool) -> tuple[Cells, bool]:
        obj = _open_object(_mapping_type(size * 8), name, self.namespace, create=create)
        k = _win32.kernel32()
        # The whole mapping is viewed: an existing block keeps its creator's size.
        address = k.MapViewOfFile(obj.handle, _win32.FILE_MAP_ALL_ACCESS, 0, 0, 0)
        if not address:
            code = _win32.last_error()
            obj.close()
            _raise(code, "file mapping", obj.name, "map")
        try:
            count = _win32.region_size(address) // 8
        except OSError as exc:
            k.UnmapViewOfFile(address)
            obj.close()
            raise PolysyncError(f"cannot size the file mapping {obj.name!r}: {exc}") from exc
        return WinCells(obj, address, count), obj.created

    def close_cells(self, cells: Cells) -> None:
        assert isinstance(cells, WinCells)
        cells.close()

    def unlink(self, name: str) -> bool:
        """Make *name* open a fresh object from now on; ``True`` if an object had it.

        On Windows a kernel object lives while any handle to it is open, in any process,
        and nothing here closes another process's handles. So for a named object this
        advances the name's generation (later opens create a new object), drops this
        process's keep-alive handle, and leaves handles already open working on the old
        object, which vanishes with its last handle. For an anonymous object or a waiter
        it only reports whether the object still exists: those vanish with their last
        handle anyway.
        """
        wname = self.windows_name(name)
        if _is_generated(name):
            return _exists(wname)
        k = _win32.kernel32()
        dname = _directory_name(wname)
        handle = k.OpenFileMappingW(_win32.FILE_MAP_ALL_ACCESS, 0, dname)
        if not handle:
            code = _win32.last_error()
            _drop_keepalive(wname)
            if code == ERROR_FILE_NOT_FOUND:
                return False
            _raise(code, "file mapping", dname, "unlink")
        try:
            address = k.MapViewOfFile(handle, _win32.FILE_MAP_ALL_ACCESS, 0, 0, 8)
            if not address:
                _raise(_win32.last_error(), "file mapping", dname, "map")
            try:
                gen = ctypes.c_int64.from_address(address)
                existed = _exists(f"{wname}~{gen.value}")
                gen.value += 1
            finally:
                k.UnmapViewOfFile(address)
        finally:
            k.CloseHandle(handle)
        _drop_keepalive(wname)
        return existed

    def unlink_primitive(self, name: str) -> bool:
        found = derived.unlink_block(self, name)
        return self.unlink(f"{name}.k") or found

    def hold_for_transfer(self, name: str) -> None:
        """Keep every object of anonymous primitive *name* open ~5 s for its receiver."""
        handles = []
        for suffix in (".c", ".k", *(f".s{i}" for i in range(derived.MAX_SEMS))):
            handle = _open_any(self.windows_name(name + suffix))
            if handle:
                handles.append(handle)
        if handles:
            _holder.hold(handles, HOLD_SECONDS)

    # -- native primitives -------------------------------------------------------------

    def _header(
        self, name: str, kind: Kind, param: int, state: int, *, create: bool, match: bool
    ) -> derived.Block:
        label: Callable[[int], str] = derived.lock_label if kind is Kind.LOCK else str
        return derived.open_block(
            self,
            name,
            kind,
            param,
            (),
            state,
            create=create,
            param_must_match=match,
            param_label=label,
        )

    def _native(self, block: derived.Block, name: str, kind: _Type, create: bool) -> _Object:
        try:
            return _open_object(kind, f"{name}.k", self.namespace, create=create)
        except BaseException:
            block.close()
            raise

    def open_lock(self, name: str, *, create: bool) -> LockKernel:
        block = self._header(name, Kind.LOCK, 1, 0, create=create, match=True)
        obj = self._native(block, name, _semaphore_type(1, 1), create)
        return WinLock(block, WinSemaphore(obj, "release of an unlocked lock"))

    def open_rlock(self, name: str, *, create: bool) -> RLockKernel:
        block = self._header(name, Kind.RLOCK, 1, 1, create=create, match=False)
        return WinRLock(block, self._native(block, name, _mutex_type(), create))

    def open_semaphore(
        self, name: str, value: int, *, bounded: bool, create: bool
    ) -> SemaphorePrimitiveKernel:
        kind = Kind.BOUNDED_SEMAPHORE if bounded else Kind.SEMAPHORE
        block = self._header(name, kind, value, 0, create=create, match=bounded)
        assert block.cells is not None
        first = block.cells[2]  # the creator's value: "first value wins"
        maximum = first if bounded else MAX_COUNT
        obj = self._native(block, name, _semaphore_type(first, maximum), create)
        over = (
            f"BoundedSemaphore released too many times (its bound is {first})"
            if bounded
            else f"Semaphore released past its maximum count {MAX_COUNT}"
        )
        return WinSemaphorePrimitive(block, WinSemaphore(obj, over))

    def open_event(self, name: str, *, create: bool) -> EventKernel:
        block = self._header(name, Kind.EVENT, 0, 1, create=create, match=False)
        return WinEvent(block, self._native(block, name, _event_type(), create))

    def describe(self) -> str:
        return (
            f"windows (kernel32 semaphores, mutexes, events and file mappings, "
            f"{self.namespace}\\ namespace)"
        )
