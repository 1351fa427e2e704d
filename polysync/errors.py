"""The exception tree every backend raises, and the helpers that translate at the boundary.

::

    PolysyncError
    ├── NotHeldError (also ValueError, RuntimeError)    release of an unheld lock, non-owner,
    │                                                   over-release of a BoundedSemaphore
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
``__cause__``), never ``posix_ipc.*`` or raw ``OSError`` numbers.
"""

from __future__ import annotations

import threading

__all__ = [
    "BackendConnectionError",
    "BackendError",
    "BackendUnavailableError",
    "BrokenBarrierError",
    "ClosedError",
    "KindMismatchError",
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
    ``EOWNERDEAD`` from a robust pthread mutex.
    """
