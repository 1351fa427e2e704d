"""ctypes declarations of the kernel32 functions the windows backend calls, loaded lazily.

Importing this module does nothing on any platform: :func:`kernel32` builds the
``WinDLL`` (with ``use_last_error=True``), declares every function's ``argtypes`` and
``restype`` once, and caches the result on first use. So the module imports, and
type-checks, on Linux; only calling :func:`kernel32` there fails.

Handles are plain ``int`` values (``c_void_p``); a failed ``Create``/``Open`` returns
``None``, and :func:`last_error` then gives the Windows error code.
"""

from __future__ import annotations

import ctypes
import sys
import threading
from collections.abc import Callable
from typing import Any

__all__ = [
    "ERROR_ALREADY_EXISTS",
    "ERROR_FILE_NOT_FOUND",
    "ERROR_INVALID_HANDLE",
    "ERROR_INVALID_PARAMETER",
    "ERROR_NOT_OWNER",
    "ERROR_TOO_MANY_POSTS",
    "INFINITE",
    "WAIT_ABANDONED",
    "WAIT_ABANDONED_LAST",
    "WAIT_FAILED",
    "WAIT_OBJECT_0",
    "WAIT_TIMEOUT",
    "Kernel32",
    "kernel32",
    "last_error",
    "win_error",
]

# Wait results.
WAIT_OBJECT_0 = 0x0
WAIT_ABANDONED = 0x80
#: WaitForMultipleObjects of two objects: WAIT_ABANDONED_0 + 1, the last "abandoned" result.
WAIT_ABANDONED_LAST = 0x81
WAIT_TIMEOUT = 0x102
WAIT_FAILED = 0xFFFFFFFF
INFINITE = 0xFFFFFFFF

# Error codes (winerror.h).
ERROR_FILE_NOT_FOUND = 2
ERROR_ACCESS_DENIED = 5
ERROR_INVALID_HANDLE = 6
ERROR_INVALID_PARAMETER = 87  # OpenProcess of a process id that names no process
ERROR_ALREADY_EXISTS = 183
ERROR_NOT_OWNER = 288
ERROR_TOO_MANY_POSTS = 298

# Access rights.
SYNCHRONIZE = 0x0010_0000
SEMAPHORE_ALL_ACCESS = 0x001F_0003
MUTEX_ALL_ACCESS = 0x001F_0001
EVENT_ALL_ACCESS = 0x001F_0003
FILE_MAP_ALL_ACCESS = 0x000F_001F
FILE_MAP_READ = 0x0004
PAGE_READWRITE = 0x04
PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
#: GetExitCodeProcess of a process that has not exited.
STILL_ACTIVE = 259

#: ``INVALID_HANDLE_VALUE``: as the file of CreateFileMappingW, "backed by the paging file".
INVALID_HANDLE_VALUE = ctypes.c_void_p(-1)

HANDLE = ctypes.c_void_p
DWORD = ctypes.c_uint32
BOOL = ctypes.c_int
LONG = ctypes.c_int32
LPCWSTR = ctypes.c_wchar_p
SIZE_T = ctypes.c_size_t


class MEMORY_BASIC_INFORMATION(ctypes.Structure):  # noqa: N801  (the Windows name)
    # The 64-bit SDK adds a WORD PartitionId after AllocationProtect; it sits in padding
    # there, so leaving it out keeps RegionSize's offset right on 32 and 64 bits.
    _fields_ = [
        ("BaseAddress", ctypes.c_void_p),
        ("AllocationBase", ctypes.c_void_p),
        ("AllocationProtect", DWORD),
        ("RegionSize", SIZE_T),
        ("State", DWORD),
        ("Protect", DWORD),
        ("Type", DWORD),
    ]


_Handle = int | None


class Kernel32:
    """The declared kernel32 functions, as typed attributes (bound once, called directly)."""

    CreateSemaphoreW: Callable[[Any, int, int, str | None], _Handle]
    OpenSemaphoreW: Callable[[int, int, str], _Handle]
    ReleaseSemaphore: Callable[[Any, int, Any], int]
    CreateMutexW: Callable[[Any, int, str | None], _Handle]
    OpenMutexW: Callable[[int, int, str], _Handle]
    ReleaseMutex: Callable[[Any], int]
    CreateEventW: Callable[[Any, int, int, str | None], _Handle]
    OpenEventW: Callable[[int, int, str], _Handle]
    SetEvent: Callable[[Any], int]
    ResetEvent: Callable[[Any], int]
    WaitForSingleObject: Callable[[Any, int], int]
    CloseHandle: Callable[[Any], int]
    CreateFileMappingW: Callable[[Any, Any, int, int, int, str | None], _Handle]
    OpenFileMappingW: Callable[[int, int, str], _Handle]
    MapViewOfFile: Callable[[Any, int, int, int, int], int | None]
    UnmapViewOfFile: Callable[[Any], int]
    VirtualQuery: Callable[[Any, Any, int], int]
    WaitForMultipleObjects: Callable[[int, Any, int, int], int]
    OpenProcess: Callable[[int, int, int], _Handle]
    GetProcessTimes: Callable[[Any, Any, Any, Any, Any], int]
    GetExitCodeProcess: Callable[[Any, Any], int]
    GetCurrentProcess: Callable[[], _Handle]
    GetCurrentProcessId: Callable[[], int]

    def __init__(self, dll: Any) -> None:
        def declare(name: str, restype: Any, *argtypes: Any) -> None:
            fn = getattr(dll, name)
            fn.restype = restype
            fn.argtypes = list(argtypes)
            setattr(self, name, fn)

        declare("CreateSemaphoreW", HANDLE, ctypes.c_void_p, LONG, LONG, LPCWSTR)
        declare("OpenSemaphoreW", HANDLE, DWORD, BOOL, LPCWSTR)
        declare("ReleaseSemaphore", BOOL, HANDLE, LONG, ctypes.POINTER(LONG))
        declare("CreateMutexW", HANDLE, ctypes.c_void_p, BOOL, LPCWSTR)
        declare("OpenMutexW", HANDLE, DWORD, BOOL, LPCWSTR)
        declare("ReleaseMutex", BOOL, HANDLE)
        declare("CreateEventW", HANDLE, ctypes.c_void_p, BOOL, BOOL, LPCWSTR)
        declare("OpenEventW", HANDLE, DWORD, BOOL, LPCWSTR)
        declare("SetEvent", BOOL, HANDLE)
        declare("ResetEvent", BOOL, HANDLE)
        declare("WaitForSingleObject", DWORD, HANDLE, DWORD)
        declare("CloseHandle", BOOL, HANDLE)
        declare("CreateFileMappingW", HANDLE, HANDLE, ctypes.c_void_p, DWORD, DWORD, DWORD, LPCWSTR)
        declare("OpenFileMappingW", HANDLE, DWORD, BOOL, LPCWSTR)
        declare("MapViewOfFile", ctypes.c_void_p, HANDLE, DWORD, DWORD, DWORD, SIZE_T)
        declare("UnmapViewOfFile", BOOL, ctypes.c_void_p)
        declare(
            "VirtualQuery",
            SIZE_T,
            ctypes.c_void_p,
            ctypes.POINTER(MEMORY_BASIC_INFORMATION),
            SIZE_T,
        )
        declare("WaitForMultipleObjects", DWORD, DWORD, ctypes.POINTER(HANDLE), BOOL, DWORD)
        declare("OpenProcess", HANDLE, DWORD, BOOL, DWORD)
        # The four FILETIMEs as 64-bit counts of 100 ns (creation, exit, kernel, user).
        filetime = ctypes.POINTER(ctypes.c_uint64)
        declare("GetProcessTimes", BOOL, HANDLE, filetime, filetime, filetime, filetime)
        declare("GetExitCodeProcess", BOOL, HANDLE, ctypes.POINTER(DWORD))
        declare("GetCurrentProcess", HANDLE)
        declare("GetCurrentProcessId", DWORD)


_kernel32: Kernel32 | None = None
_load_lock = threading.Lock()


def kernel32() -> Kernel32:
    """The declared kernel32, built on first use (``OSError`` elsewhere than on Windows)."""
    global _kernel32
    lib = _kernel32
    if lib is None:
        with _load_lock:
            lib = _kernel32
            if lib is None:
                # getattr: ctypes.WinDLL exists only on Windows (and only there for mypy).
                win_dll = getattr(ctypes, "WinDLL", None)
                if win_dll is None:
                    raise OSError(f"kernel32 exists only on Windows, not on {sys.platform}")
                dll = win_dll("kernel32", use_last_error=True)
                lib = _kernel32 = Kernel32(dll)
    return lib


def last_error() -> int:
    """The Windows error code of this thread's last kernel32 call (ctypes' private copy)."""
    code: int = getattr(ctypes, "get_last_error")()  # noqa: B009  (Windows only)
    return code


def clear_last_error() -> None:
    getattr(ctypes, "set_last_error")(0)  # noqa: B009  (Windows only)


def win_error(code: int) -> OSError:
    """``OSError`` for Windows error *code*, with its system message where available."""
    make = getattr(ctypes, "WinError", None)
    if make is not None:
        err: OSError = make(code)
        return err
    return OSError(code, f"[WinError {code}]")


def handle_pair(first: int, second: int) -> ctypes.Array[ctypes.c_void_p]:
    """The ``HANDLE[2]`` array WaitForMultipleObjects takes."""
    return (HANDLE * 2)(first, second)


def creation_time(handle: int) -> int | None:
    """When the process of *handle* started (100 ns since 1601), or ``None`` if unknown."""
    times = [ctypes.c_uint64() for _ in range(4)]
    if not kernel32().GetProcessTimes(handle, *(ctypes.byref(t) for t in times)):
        return None
    return int(times[0].value)


def region_size(address: int) -> int:
    """Bytes mapped from *address* to the end of its region (a view's usable size)."""
    info = MEMORY_BASIC_INFORMATION()
    if not kernel32().VirtualQuery(address, ctypes.byref(info), ctypes.sizeof(info)):
        raise win_error(last_error())
    return int(info.RegionSize)
