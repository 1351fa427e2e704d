"""The posix kernels: a posix_ipc semaphore (waits through CPython's SemLock), cells, the Lock."""

from __future__ import annotations

import contextlib
import functools
import mmap
import time
from typing import Any

import posix_ipc

from polysync import derived
from polysync.errors import NotHeldError

try:
    from _multiprocessing import SemLock as _SemLock
except ImportError:  # an interpreter without it: posix_ipc does the waits too
    _SemLock = None


#: multiprocessing.synchronize.SEMAPHORE: a plain counting semaphore, no owner.
_SEMLOCK_SEMAPHORE = 1


def semlock(pname: str) -> Any:
    """The semaphore *pname* opened again as a ``SemLock`` (``None`` where that fails).

    Its maximum is 1, which only its release checks: only a Lock's release uses it.
    """
    if _SemLock is None:
        return None
    try:
        return _SemLock._rebuild(0, _SEMLOCK_SEMAPHORE, 1, pname)
    except (AttributeError, TypeError, ValueError, OSError):  # a changed private API
        return None


class PosixSemaphore:
    """A posix_ipc semaphore as a :class:`~polysync.kernel.SemaphoreKernel`."""

    __slots__ = ("_fast", "_on_close", "_raw", "acquire_forever", "acquire_within", "release_one")

    def __init__(self, raw: posix_ipc.Semaphore, on_close: Any = None, fast: Any = None) -> None:
        self._raw = raw
        self._on_close = on_close
        self._fast = fast
        self.release_one = raw.release
        self._bind_waits()

    def _bind_waits(self) -> None:
        fast, raw = self._fast, self._raw
        if fast is not None:
            self.acquire_forever = fast.acquire
            self.acquire_within = functools.partial(fast.acquire, True)  # False on expiry
        else:
            self.acquire_forever = raw.acquire
            self.acquire_within = raw.acquire  # raises BusyError on expiry

    def acquire_failed(self, exc: Exception, timeout: float) -> bool:
        """What a failed ``acquire_within(timeout)`` means: expired, or cut by a signal."""
        if isinstance(exc, posix_ipc.BusyError):
            return False
        if isinstance(exc, posix_ipc.SignalError):
            return self._acquire_after_signal(timeout)
        raise exc

    def acquire(self, blocking: bool, timeout: float | None) -> bool:
        if self._fast is not None:  # retries a wait cut by a signal itself, same deadline
            return bool(self._fast.acquire(blocking, timeout))
        if not blocking:
            timeout = 0.0
        try:
            self._raw.acquire(timeout)
        except posix_ipc.BusyError:
            return False
        except posix_ipc.SignalError:
            return self._acquire_after_signal(timeout)
        return True

    def _acquire_after_signal(self, timeout: float | None) -> bool:
        # A signal whose handler did not raise cut the wait short. How long it lasted is
        # unknown (stamping every call would tax the hot path), so the remaining wait is
        # at most the full timeout again.
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                self._raw.acquire(remaining)
                return True
            except posix_ipc.BusyError:
                return False
            except posix_ipc.SignalError:
                continue

    def release(self, n: int = 1) -> None:
        if n == 1:
            self._raw.release()
            return
        release = self._raw.release
        for _ in range(n):
            release()

    def get_value(self) -> int:
        value: int = self._raw.value
        return value

    def close(self) -> None:
        self._fast = None  # its handle closes with it; waits now fail on the closed raw one
        self._bind_waits()
        with contextlib.suppress(posix_ipc.ExistentialError):
            self._raw.close()
        if self._on_close is not None:
            self._on_close()
            self._on_close = None


class PosixCells:
    """Shared 64-bit cells in a POSIX shared-memory segment."""

    __slots__ = ("_map", "_on_close", "_view")

    def __init__(self, segment: mmap.mmap, size: int, on_close: Any = None) -> None:
        self._map = segment
        self._view = memoryview(segment).cast("q")[:size]
        self._on_close = on_close

    def __getitem__(self, index: int) -> int:
        value: int = self._view[index]
        return value

    def __setitem__(self, index: int, value: int) -> None:
        self._view[index] = value

    def close(self) -> None:
        self._view.release()
        self._map.close()
        if self._on_close is not None:
            self._on_close()
            self._on_close = None


class PosixLock(derived.DerivedLock):
    """The derived Lock with its release check done straight on posix_ipc (the hot path)."""

    __slots__ = ("_post", "_raw")

    def __init__(self, block: derived.Block) -> None:
        super().__init__(block)
        sem = block.sems[0]
        assert isinstance(sem, PosixSemaphore)
        self._raw = sem._raw
        self._post = sem.release_one

    def release(self) -> None:
        if self._raw.value:
            raise NotHeldError("release of an unlocked lock")
        self._post()


class SemLockPosixLock(PosixLock):
    """The Lock whose release is SemLock's: the value check and the post in one C call."""

    __slots__ = ("_checked_release",)

    def __init__(self, block: derived.Block, fast: Any) -> None:
        super().__init__(block)
        self._checked_release = fast.release  # ValueError when the value is already 1

    def release(self) -> None:
        try:
            self._checked_release()
        except ValueError:
            raise NotHeldError("release of an unlocked lock") from None
