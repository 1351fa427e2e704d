"""Process identities that survive PID reuse, and whether the process behind one is alive.

An identity packs a PID with the process's start time (Linux: field 22 of
``/proc/<pid>/stat``, in clock ticks since boot), so a recycled PID is not mistaken for
the process that died. Elsewhere the start time is 0 and only the PID is compared.
"""

from __future__ import annotations

import os

_PID_BITS = 23
_PID_MASK = (1 << _PID_BITS) - 1
_pid = os.getpid()
# Not on Windows: under Wine, "/proc/self" is the Linux host's, which knows no Windows PID.
_HAVE_PROC = os.name != "nt" and os.path.isdir("/proc/self")


def _start_time(pid: int) -> int | None:
    """Start time of *pid* in clock ticks, 0 where unknown, ``None`` if it is a zombie or gone."""
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
    read of ``/proc/<pid>/stat`` where there is a ``/proc``; where the start time is
    unknown only the PID is compared. Unknown counts as alive, and so does every process
    on Windows, where ``os.kill`` would end the process it probes.
    """
    if pid == _pid:
        return True
    if _HAVE_PROC:
        running = _start_time(pid)
        if running is None:
            return False
        return not (start and running and running != start)
    if os.name == "nt":
        return True
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
