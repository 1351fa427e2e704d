"""Process identities that survive PID reuse, and whether the process behind one is alive.

An identity packs a PID with the process's start time (Linux: field 22 of
``/proc/<pid>/stat``, in clock ticks since boot; Windows: the creation time from
``GetProcessTimes``, in ms, reduced to 38 bits), so a recycled PID is not mistaken for
the process that died. Elsewhere the start time is 0 and only the PID is compared.

On Windows liveness is asked of the kernel through a process handle (``OpenProcess``),
never with ``os.kill(pid, 0)``, which there *sends* ``CTRL_C_EVENT``. The calls are
made here with ctypes, not through the windows backend, so the floor stays
backend-neutral: any backend running on Windows gets them.
"""

from __future__ import annotations

import os
from collections.abc import Callable

_PID_BITS = 23
_PID_MASK = (1 << _PID_BITS) - 1
_pid = os.getpid()
# Not on Windows: under Wine, "/proc/self" is the Linux host's, which knows no Windows PID.
_HAVE_PROC = os.name != "nt" and os.path.isdir("/proc/self")


#: Where a start time lives (a nonce of derived.parking holds 38 bits of it).
_START_BITS = 38


def _start_time(pid: int) -> int | None:
    """Start time of *pid*, 0 where unknown, ``None`` if it is a zombie or gone.

    Linux: clock ticks since boot; Windows: the creation time in ms, folded into 38 bits.
    """
    if _nt_start_time is not None:
        return _nt_start_time(pid)
    if not _HAVE_PROC:
        return 0
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except FileNotFoundError:
        return None
    except OSError:
        return 0
    if fields[0] in (b"Z", b"X"):  # a zombie holds nothing any more
        return None
    return int(fields[19])


# -- Windows: process handles through ctypes (kernel32 loaded on first use: at import, for
# -- this process's own identity; nothing of this runs elsewhere) ---------------------------

_nt_running: Callable[[int, int], bool] | None = None
_nt_start_time: Callable[[int], int | None] | None = None

if os.name == "nt":
    import ctypes
    import threading
    from typing import Any

    _SYNCHRONIZE = 0x0010_0000
    _QUERY_LIMITED = 0x1000  # PROCESS_QUERY_LIMITED_INFORMATION
    _ERROR_INVALID_PARAMETER = 87  # OpenProcess of an id that names no process
    _WAIT_TIMEOUT = 0x102
    _STILL_ACTIVE = 259
    _kernel32: Any = None
    _load_lock = threading.Lock()
    # Windows-only parts of ctypes (absent from its Linux stubs).
    _get_last_error: Callable[[], int] = getattr(ctypes, "get_last_error")  # noqa: B009

    def _k32() -> Any:
        global _kernel32
        if _kernel32 is not None:
            return _kernel32
        with _load_lock:
            if _kernel32 is None:
                dll = getattr(ctypes, "WinDLL")("kernel32", use_last_error=True)  # noqa: B009
                handle, dword, filetime = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint64
                for fn, restype, argtypes in (
                    (dll.OpenProcess, handle, [dword, ctypes.c_int, dword]),
                    (dll.CloseHandle, ctypes.c_int, [handle]),
                    (dll.WaitForSingleObject, dword, [handle, dword]),
                    (dll.GetExitCodeProcess, ctypes.c_int, [handle, ctypes.POINTER(dword)]),
                    (dll.GetProcessTimes, ctypes.c_int, [handle, *[ctypes.POINTER(filetime)] * 4]),
                ):
                    fn.restype, fn.argtypes = restype, argtypes
                _kernel32 = dll
        return _kernel32

    def _created(k: Any, handle: int) -> int:
        """When the process of *handle* started, in ms folded into 38 bits (0: unknown)."""
        times = [ctypes.c_uint64() for _ in range(4)]
        if not k.GetProcessTimes(handle, *(ctypes.byref(t) for t in times)):
            return 0
        # 100 ns units since 1601, in ms, folded into 1 .. 2**38 - 1: it wraps every ~8.7
        # years, so a PID reused a multiple of that later is the one reuse not seen.
        return int(times[0].value // 10_000 % ((1 << _START_BITS) - 1) + 1)

    def _open(k: Any, pid: int) -> tuple[int | None, bool]:
        """A handle to process *pid* (``None``: none) and whether it may be waited on."""
        handle = k.OpenProcess(_QUERY_LIMITED | _SYNCHRONIZE, 0, pid)
        if handle:
            return handle, True
        return k.OpenProcess(_QUERY_LIMITED, 0, pid) or None, False

    def _running_nt(pid: int, start: int) -> bool:
        k = _k32()
        handle, waitable = _open(k, pid)
        if handle is None:  # no such process; else access denied, unknowable: alive
            return _get_last_error() != _ERROR_INVALID_PARAMETER
        try:
            if waitable:
                if k.WaitForSingleObject(handle, 0) != _WAIT_TIMEOUT:
                    return False  # signalled: it exited (an open handle keeps its id)
            else:
                code = ctypes.c_uint32()
                if k.GetExitCodeProcess(handle, ctypes.byref(code)) and (
                    code.value != _STILL_ACTIVE
                ):
                    return False
            created = _created(k, handle) if start else 0
            return not (created and created != start)  # another creation time: id reused
        finally:
            k.CloseHandle(handle)

    def _start_time_nt(pid: int) -> int | None:
        k = _k32()
        handle, _ = _open(k, pid)
        if handle is None:
            return None if _get_last_error() == _ERROR_INVALID_PARAMETER else 0
        try:
            return _created(k, handle)
        finally:
            k.CloseHandle(handle)

    _nt_running, _nt_start_time = _running_nt, _start_time_nt


def _identity_of_this_process() -> int:
    pid = os.getpid()
    return pid | ((_start_time(pid) or 0) << _PID_BITS)


#: This process's identity (never 0), kept current across fork: read it as
#: ``liveness.own`` on a hot path, where a call to :func:`identity` would cost a frame.
own = _identity_of_this_process()


def identity() -> int:
    """This process's identity (never 0)."""
    return own


def pid_of(ident: int) -> int:
    """The PID inside identity *ident*."""
    return ident & _PID_MASK


def is_alive(ident: int) -> bool:
    """Whether the process with identity *ident* still runs (unknown counts as alive)."""
    pid = pid_of(ident)
    if _nt_running is not None:
        return pid == _pid or _nt_running(pid, ident >> _PID_BITS)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    started = _start_time(pid)
    if started is None:
        return False
    recorded = ident >> _PID_BITS
    return not (recorded and started and started != recorded)


def started() -> int:
    """This process's start time in clock ticks (0 where unknown), as identities hold it."""
    return own >> _PID_BITS


def is_running(pid: int, start: int) -> bool:
    """Whether process *pid*, started at *start* (clock ticks, 0: unknown), still runs.

    The check behind a parked waiter's liveness (:mod:`polysync.derived.parking`): one
    read of ``/proc/<pid>/stat`` where there is a ``/proc``; on Windows a process handle
    (``OpenProcess``, then whether it has exited and when it was created); where the
    start time is unknown only the PID is compared. Unknown (access denied) counts as
    alive.
    """
    if pid == _pid:
        return True
    if _nt_running is not None:
        return _nt_running(pid, start)
    if _HAVE_PROC:
        running = _start_time(pid)
        if running is None:
            return False
        return not (start and running and running != start)
    return is_alive(pid | (start << _PID_BITS))


def current_pid() -> int:
    """``os.getpid()`` without a system call on the hot path."""
    return _pid


def _after_fork() -> None:
    global own, _pid
    _pid = os.getpid()
    own = _identity_of_this_process()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_after_fork)
