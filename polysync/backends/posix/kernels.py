"""The posix kernels: a posix_ipc semaphore (waits through CPython's SemLock), cells, the locks."""

from __future__ import annotations

import contextlib
import functools
import mmap
import os
import time
from collections.abc import Callable
from typing import Any

import posix_ipc

from polysync import _validate, derived, errors
from polysync.kernel import KernelState

try:
    from _multiprocessing import SemLock as _SemLock
except ImportError:  # an interpreter without it: posix_ipc does the waits too
    _SemLock = None

try:
    # POLYSYNC_NO_EXTENSIONS=1 runs the pure-Python locks, as where the extension is not
    # built (not Linux, no compiler); the tests use it to prove that fallback.
    if os.environ.get("POLYSYNC_NO_EXTENSIONS") == "1":
        raise ImportError("POLYSYNC_NO_EXTENSIONS=1")
    from polysync.backends.posix._wordlock import (
        CELLS,
        SEMAPHORE_BOUND,
        SEMAPHORE_CELLS,
        SEMAPHORE_VALUE,
        WordLock,
        WordSemaphore,
    )
except ImportError:
    CELLS = SEMAPHORE_CELLS = SEMAPHORE_VALUE = SEMAPHORE_BOUND = 0
    WordLock = None  # type: ignore[assignment,misc]


#: multiprocessing.synchronize.SEMAPHORE: a plain counting semaphore, no owner.
_SEMLOCK_SEMAPHORE = 1


def semlock(pname: str) -> Any:
    """The semaphore *pname* opened again as a ``SemLock`` (``None`` where that fails).

    Its maximum is 1, which only its release checks: a Lock's release relies on it.
    """
    if _SemLock is None:
        return None
    try:
        return _SemLock._rebuild(0, _SEMLOCK_SEMAPHORE, 1, pname)
    except (AttributeError, TypeError, ValueError, OSError):  # a changed private API
        return None


class PosixSemaphore:
    """A posix_ipc semaphore as a :class:`~polysync.kernel.SemaphoreKernel`.

    Its waits go through *fast* (the same semaphore opened as CPython's ``SemLock``)
    where there is one: bound as C calls, they need no frame of ours, and they keep a
    timed wait's deadline across signals themselves.
    """

    __slots__ = ("_fast", "_on_close", "_raw", "acquire_forever", "acquire_within", "release_one")
    acquire_forever: Callable[[], object]
    acquire_within: Callable[[float], bool]

    def __init__(self, raw: posix_ipc.Semaphore, on_close: Any = None, fast: Any = None) -> None:
        self._raw = raw
        self._on_close = on_close
        self._fast = fast
        self.release_one = raw.release
        if fast is not None:
            self.acquire_forever = fast.acquire  # True once acquired
            self.acquire_within = functools.partial(fast.acquire, True)  # False on expiry
        else:
            self.acquire_forever = self._acquire_forever_raw
            self.acquire_within = self._acquire_within_raw

    def acquire(self, blocking: bool, timeout: float | None) -> bool:
        if self._fast is not None:  # retries a wait cut by a signal itself, same deadline
            return bool(self._fast.acquire(blocking, timeout))
        return self._acquire_within_raw(timeout if blocking else 0.0)

    def _acquire_forever_raw(self) -> object:
        try:
            self._raw.acquire()
        except posix_ipc.SignalError:
            return self._acquire_after_signal(None)
        return True

    def _acquire_within_raw(self, timeout: float | None) -> bool:
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
        with contextlib.suppress(posix_ipc.ExistentialError):
            self._raw.close()
        if self._on_close is not None:
            self._on_close()
            self._on_close = None


class PosixSegment:
    """A mapped shared-memory segment; its cells are a memoryview of signed 64-bit ints.

    The view itself is what the derived kernels index (in C, with no frame of ours);
    this object keeps what closing it needs.
    """

    __slots__ = ("_map", "_on_close", "view")

    def __init__(self, segment: mmap.mmap, size: int, on_close: Any = None) -> None:
        self._map = segment
        self.view = memoryview(segment).cast("q")[:size]
        self._on_close = on_close

    def close(self) -> None:
        self.view.release()
        self._map.close()
        if self._on_close is not None:
            self._on_close()
            self._on_close = None


class PosixRLock(derived.DerivedRLock):
    """The derived RLock posting its semaphore straight through posix_ipc."""

    __slots__ = ()

    def __init__(self, block: derived.Block) -> None:
        super().__init__(block)
        sem = block.sems[0]
        assert isinstance(sem, PosixSemaphore)
        self._post = sem.release_one


#: The cells a word lock and a word semaphore take after the header.
WORD_LOCK_CELLS = CELLS
WORD_SEMAPHORE_CELLS = SEMAPHORE_CELLS

if WordLock is not None:

    class WordLockKernel(WordLock):
        """The Lock and RLock of this backend: a word lock (``_wordlock.c``) in the block's cells.

        Every call of the hot path is the C type's own method; this class adds what only
        runs off it: the takeover warning, statistics, closing.
        """

        __slots__ = ("__weakref__", "_block", "_recursive")
        release_refusal = ValueError

        def __init__(self, block: derived.Block, *, recursive: bool) -> None:
            assert block.cells is not None
            super().__init__(block.cells, derived.HEADER, recursive)
            self._block = block
            self._recursive = recursive

        def _owner_died(self, pid: int) -> None:
            # Called by the C code right after a takeover, this handle holding the lock.
            errors.warn_owner_died(
                f"process {pid} died holding this lock; this handle took it over: "
                "check the state it protects",
                self.release,
            )

        def statistics(self) -> KernelState:
            holder, thread, fence, waiting = self._state()
            return KernelState(
                locked=holder != 0,
                holder=derived.local_holder(holder, thread if self._recursive else None),
                waiting=waiting,
                last_fencing_token=fence or None,  # the counter is the latest token granted
            )

        def close(self) -> None:
            self._detach()  # the C side lets go of the cells before they are unmapped
            self._block.close()

    class WordMutex(WordLock):
        """The internal mutex of a posix Event or Barrier: a word lock, mended after a death.

        A process that dies inside a call while holding it is taken over like any lock's
        holder; the kernel's ``on_takeover`` mends its state (derived.waits.Mutex), then
        the user is told with an OwnerDiedWarning.
        """

        __slots__ = ("_dead", "_what", "on_takeover")

        def __init__(self, cells: Any, index: int, what: str) -> None:
            super().__init__(cells, index, False)
            self.on_takeover: Callable[[], None] | None = None
            self._dead = 0
            self._what = what

        def _owner_died(self, pid: int) -> None:
            self._dead = pid  # mended in __enter__, once the C call has returned

        def __enter__(self) -> None:
            self.acquire_forever()
            if self._dead:
                self._mend()

        def __exit__(self, *exc: object) -> None:
            self.release()

        def release_save(self) -> object:
            self.release()
            return None

        def acquire_restore(self, state: object) -> None:
            self.__enter__()

        def _mend(self) -> None:
            pid, self._dead = self._dead, 0
            if self.on_takeover is not None:
                self.on_takeover()
            errors.warn_owner_died(
                f"process {pid} died inside a call on this {self._what}; its state was "
                "mended (a Barrier is broken: reset() it)",
                self.release,
            )

    class WordSemaphoreKernel(WordSemaphore):
        """The Semaphore and BoundedSemaphore of this backend (``_wordlock.c``).

        Permits are counted per process, so those of a process that died come back; a
        handle closed normally keeps what it took (consumed, as a signal's consumer does).
        """

        __slots__ = ("__weakref__", "_block", "_bound")

        def __init__(self, block: derived.Block, bound: int) -> None:
            assert block.cells is not None
            super().__init__(block.cells, derived.HEADER)
            self._block = block
            self._bound = bound

        @staticmethod
        def initial_state(value: int, bound: int) -> Callable[[Any], None]:
            """What a new block's cells start with (written before it is marked ready)."""

            def write(cells: Any) -> None:
                cells[derived.HEADER + SEMAPHORE_VALUE] = value
                cells[derived.HEADER + SEMAPHORE_BOUND] = bound

            return write

        def _owner_died(self, pid: int, permits: int) -> None:
            # Called by the C code after this handle took a permit a dead process gave back.
            errors.warn_owner_died(
                f"process {pid} died holding {permits} permit(s) of this semaphore; they "
                "came back and this handle took one: check the state they protect",
                self.release,
            )

        def _refuse_release(self, n: int, value: int) -> None:
            if self._bound:
                raise errors.over_released(self._bound)
            raise _validate.headroom(n, value)

        def statistics(self) -> KernelState:
            value, waiting, fence = self._state()
            return KernelState(value=value, waiting=waiting, last_fencing_token=fence or None)

        def close(self) -> None:
            self._forget()  # what this handle took was consumed, not held by the dead
            self._detach()
            self._block.close()

else:  # pragma: no cover - only where the extension was not built
    WordLockKernel = None  # type: ignore[assignment,misc]
    WordMutex = None  # type: ignore[assignment,misc]
    WordSemaphoreKernel = None  # type: ignore[assignment,misc]
