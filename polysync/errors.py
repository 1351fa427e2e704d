"""The exception tree every backend raises, and the helpers that translate at the boundary.

::

    PolysyncError
    ├── NotHeldError (also ValueError, RuntimeError)    release of an unheld lock, non-owner,
    │   │                                               over-release of a BoundedSemaphore
    │   └── LeaseLostError                              released after its lease ran out
    ├── BrokenBarrierError (also threading.BrokenBarrierError)
    ├── ClosedError (also ValueError)                   use of a handle after close()
    ├── ObjectError
    │   ├── NotFoundError (also FileNotFoundError)      reopening a name that no longer exists
    │   └── KindMismatchError (also ValueError)         a name opened as another kind or shape
    └── BackendError
        ├── UnknownBackendError (also LookupError)      no backend registered under that name
        ├── BackendUnavailableError (also ImportError)  registered, but not usable here
        └── BackendConnectionError (also ConnectionError)  the backend's server went away

and one warning, ``OwnerDiedWarning``: a lock was taken over from a holder that died.

Users of any backend see only these (with the backend's own exception chained as
``__cause__``), never ``posix_ipc.*`` or raw ``OSError`` numbers. The messages that
several backends raise are built here, once (``lock_not_held()`` and its neighbours),
and so is the owner-died rule: warn at the user's line, and give the lock back if the
warning was made an error (:func:`warn_owner_died`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import warnings
from collections.abc import Callable
from types import FrameType

__all__ = [
    "BackendConnectionError",
    "BackendError",
    "BackendUnavailableError",
    "BrokenBarrierError",
    "ClosedError",
    "KindMismatchError",
    "LeaseLostError",
    "NotFoundError",
    "NotHeldError",
    "ObjectError",
    "OwnerDiedWarning",
    "PolysyncError",
    "UnknownBackendError",
]


class PolysyncError(Exception):
    """Base class of every error polysync raises on purpose."""


class NotHeldError(PolysyncError, ValueError, RuntimeError):
    """A release that the primitive's state does not allow.

    It is a ``ValueError`` (what multiprocessing raises) and a ``RuntimeError`` (what
    threading raises), so code written for either keeps catching it.
    """


class LeaseLostError(NotHeldError):
    """Released after the lease had run out: someone else may have held it meanwhile."""


class BrokenBarrierError(threading.BrokenBarrierError, PolysyncError):
    """The barrier was aborted, reset, or timed out while (or before) this party waited."""


class ClosedError(PolysyncError, ValueError):
    """The handle was closed with ``close()``; open the object again to use it."""


class ObjectError(PolysyncError):
    """A named object could not be opened as asked."""


class NotFoundError(ObjectError, FileNotFoundError):
    """The object no longer exists (it was unlinked, or every process using it exited)."""


class KindMismatchError(ObjectError, ValueError):
    """The name belongs to an object of another kind or shape."""


class BackendError(PolysyncError):
    """A problem with a backend rather than with a primitive's use."""


class UnknownBackendError(BackendError, LookupError):
    """No backend is registered under the requested name."""


class BackendUnavailableError(BackendError, ImportError):
    """The backend is registered but cannot run here (missing dependency or platform)."""


class BackendConnectionError(BackendError, ConnectionError):
    """The backend lost its connection to the server that holds the objects."""


class OwnerDiedWarning(UserWarning):
    """A lock's holder died without releasing it, and this handle took the lock over.

    The acquire that emits it succeeds. Whatever the lock protected may have been left
    half-updated by the dead holder: check it, as after ``WAIT_ABANDONED`` on Windows or
    ``EOWNERDEAD`` from a robust pthread mutex. A ``Barrier`` arrival emits it too when
    it finds a waiting party dead (that party no longer counts), and a call that takes
    over an Event's or Barrier's internal mutex from a process that died inside a call.
    """


# -- messages that more than one backend raises ------------------------------------------


def lock_not_held() -> NotHeldError:
    """A Lock released while unlocked."""
    return NotHeldError("release of an unlocked lock")


def rlock_not_owned() -> NotHeldError:
    """An RLock released by a thread that does not own it."""
    return NotHeldError("cannot release an RLock that this thread does not own")


def task_not_owner() -> NotHeldError:
    """A polysync.aio RLock released by a task that does not own it."""
    return NotHeldError("cannot release an RLock that this task does not own")


def condition_unowned(what: str) -> NotHeldError:
    """A Condition's wait or notify while the caller does not hold its lock."""
    return NotHeldError(f"cannot {what} on an un-acquired lock")


def no_task(what: str) -> RuntimeError:
    """A polysync.aio call that needs the current task, made outside of one."""
    return RuntimeError(
        f"{what} must be awaited in an asyncio task (polysync.aio owns RLocks by task); "
        "run it under asyncio.run() or in a task"
    )


def over_released(bound: int) -> NotHeldError:
    """A BoundedSemaphore released past its bound."""
    return NotHeldError(f"BoundedSemaphore released too many times (its bound is {bound})")


def lease_lost() -> LeaseLostError:
    """A release that came after the lease ran out."""
    return LeaseLostError(
        "the lease ran out before this release: another holder may have had it "
        "meanwhile (see the lost flag and fencing tokens)"
    )


def kind_mismatch(what: str, found: str, asked: str) -> KindMismatchError:
    """*what* (an object's description) exists as a *found* kind, not the *asked* one."""
    return KindMismatchError(
        f"{what} already exists as a {found} (asked for a {asked}): choose another name, "
        "or unlink the existing object"
    )


def shape_mismatch(what: str, kind: str, found: str, asked: str) -> KindMismatchError:
    """*what* exists as a *kind* of another shape (a bound, parties, a lock's variant)."""
    return KindMismatchError(
        f"{what} already exists as a {kind} of {found} (asked for {asked}): open it the "
        "same way, or unlink it first"
    )


def server_unreachable(product: str, where: str, detail: str) -> BackendConnectionError:
    """The *product* server at *where* (named without secrets) refused, timed out or went away."""
    return BackendConnectionError(
        f"the {product} server at {where} cannot be reached (or went away): {detail}"
    )


def session_pooling_refused(where: str, evidence: str) -> BackendError:
    """A pooler before the PostgreSQL server at *where* does not keep one session per client."""
    return BackendError(
        f"the PostgreSQL server at {where} is reached through a pooler in transaction "
        f"(or statement) pooling mode ({evidence}): polysync's locks are session advisory "
        "locks, which such a pooler hands to other clients between transactions. Connect "
        "to PostgreSQL directly, or through a pool in session mode (PgBouncer: "
        "pool_mode = session)"
    )


def cannot_list(backend: str) -> BackendError:
    """The *backend* does not list its objects (it does not declare ``listing``)."""
    return BackendError(
        f"the {backend!r} backend cannot list its objects (it does not declare the "
        "'listing' capability); name them to inspect or rm them"
    )


def cannot_collect(backend: str) -> BackendError:
    """The *backend* cannot tell what dead processes left (no ``orphan-collection``)."""
    return BackendError(
        f"the {backend!r} backend cannot collect what dead processes left (it does not "
        "declare the 'orphan-collection' capability)"
    )


def warn_owner_died(message: str, give_back: Callable[[], object]) -> None:
    """Tell the acquirer it took a lock over from a holder that died.

    The :class:`OwnerDiedWarning` points at the user's line, not into polysync. If the
    warning was made an error, the acquire fails: *give_back* returns the lock first,
    so it is not left held by a caller who does not know it holds it. The takeover is
    logged too, at WARNING, on the logger of the calling module (``polysync.<module>``;
    ``polysync.errors`` for a caller outside polysync, such as a plugin).
    """
    caller = sys._getframe(1).f_globals.get("__name__", "")
    logger = caller if isinstance(caller, str) and caller.startswith("polysync.") else __name__
    logging.getLogger(logger).warning("takeover: %s", message)
    try:
        warnings.warn(OwnerDiedWarning(message), stacklevel=_user_stacklevel())
    except BaseException:
        with contextlib.suppress(Exception):  # the error that matters is the warning
            give_back()
        raise


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep
_TESTING = _PACKAGE + "testing" + os.sep


def _user_stacklevel() -> int:
    """The ``stacklevel`` of the innermost caller outside polysync (its tests count as users)."""
    # Frame 2 is warn_owner_died's caller: stacklevel 2 from inside warn_owner_died.
    frame: FrameType | None = sys._getframe(2)
    level = 2
    while frame is not None:
        filename = frame.f_code.co_filename
        if not filename.startswith(_PACKAGE) or filename.startswith(_TESTING):
            return level
        frame = frame.f_back
        level += 1
    return 1
