"""Process identities on Windows, (process id, creation time), and whether one still runs.

A process id alone is reused by Windows soon after its process ends, so a lock's holder
is recorded with its creation time (``GetProcessTimes``, in 100 ns units since 1601): a
new process that got the dead holder's id has another creation time, and is not taken
for the holder. Liveness is asked of the kernel through a process handle
(``OpenProcess`` with ``PROCESS_QUERY_LIMITED_INFORMATION``), never with
``os.kill(pid, 0)``: on Windows signal 0 is ``CTRL_C_EVENT``, which that call *sends*.
"""

from __future__ import annotations

import ctypes

from polysync.backends.windows import win32 as _win32
from polysync.backends.windows.win32 import (
    ERROR_INVALID_PARAMETER,
    PROCESS_QUERY_LIMITED_INFORMATION,
    STILL_ACTIVE,
    SYNCHRONIZE,
    WAIT_TIMEOUT,
)

__all__ = ["HolderWatch", "own_identity"]

_own: tuple[int, int] | None = None


def own_identity() -> tuple[int, int]:
    """This process's (process id, creation time); neither is ever 0."""
    global _own
    if _own is None:
        k = _win32.kernel32()
        created = _win32.creation_time(k.GetCurrentProcess() or 0)
        # Windows has no fork: the identity stays this process's for its whole life.
        _own = (int(k.GetCurrentProcessId()), created or 1)
    return _own


class HolderWatch:
    """Answers "does the process recorded as (pid, creation time) still run?" cheaply.

    It keeps a handle to the last process it was asked about, so a waiter that asks at
    every slice of its wait makes one ``WaitForSingleObject(handle, 0)`` call each time,
    not a fresh ``OpenProcess``. What cannot be known (access denied) counts as alive.
    One watch serves one thread; :meth:`close` drops the handle.
    """

    __slots__ = ("_handle", "_key", "_waitable")

    def __init__(self) -> None:
        self._key: tuple[int, int] = (0, 0)
        self._handle = 0
        self._waitable = False

    def alive(self, pid: int, created: int) -> bool:
        if (pid, created) == own_identity():
            return True
        if (pid, created) != self._key or not self._handle:
            self.close()
            found = self._open(pid, created)
            if found is not None:
                return found
            self._key = (pid, created)
        k = _win32.kernel32()
        if self._waitable:
            return bool(k.WaitForSingleObject(self._handle, 0) == WAIT_TIMEOUT)
        code = _win32.DWORD()
        if not k.GetExitCodeProcess(self._handle, ctypes.byref(code)):
            return True
        return code.value == STILL_ACTIVE

    def _open(self, pid: int, created: int) -> bool | None:
        """Open *pid*; a known answer (``False``: gone, ``True``: unknowable) or ``None``."""
        k = _win32.kernel32()
        self._waitable = True
        handle = k.OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION | SYNCHRONIZE, 0, pid)
        if not handle:
            if _win32.last_error() == ERROR_INVALID_PARAMETER:
                return False  # no process has this id
            self._waitable = False  # perhaps allowed to query, not to wait
            handle = k.OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid)
            if not handle:
                return _win32.last_error() != ERROR_INVALID_PARAMETER
        started = _win32.creation_time(handle)
        if started is not None and started != created:
            k.CloseHandle(handle)
            return False  # the id was reused: the recorded process is gone
        self._handle = handle
        return None

    def close(self) -> None:
        handle, self._handle, self._key = self._handle, 0, (0, 0)
        if handle:
            _win32.kernel32().CloseHandle(handle)
