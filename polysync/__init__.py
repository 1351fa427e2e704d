"""polysync: process-synchronization primitives with the multiprocessing API, on many backends.

``import polysync`` imports no backend dependency and loads no plugin; both happen on
the first :func:`get_context` (or the first primitive made on the default context).
"""

from polysync._validate import MAX_VALUE as MAX_VALUE
from polysync.api import Context as Context
from polysync.api import available_backends as available_backends
from polysync.api import get_context as get_context
from polysync.errors import BackendConnectionError as BackendConnectionError
from polysync.errors import BackendError as BackendError
from polysync.errors import BackendUnavailableError as BackendUnavailableError
from polysync.errors import BrokenBarrierError as BrokenBarrierError
from polysync.errors import ClosedError as ClosedError
from polysync.errors import KindMismatchError as KindMismatchError
from polysync.errors import LeaseLostError as LeaseLostError
from polysync.errors import NotFoundError as NotFoundError
from polysync.errors import NotHeldError as NotHeldError
from polysync.errors import ObjectError as ObjectError
from polysync.errors import OwnerDiedWarning as OwnerDiedWarning
from polysync.errors import PolysyncError as PolysyncError
from polysync.errors import UnknownBackendError as UnknownBackendError
from polysync.kernel import Capability as Capability
from polysync.kernel import Holder as Holder
from polysync.primitives import Barrier as Barrier
from polysync.primitives import BoundedSemaphore as BoundedSemaphore
from polysync.primitives import Condition as Condition
from polysync.primitives import Event as Event
from polysync.primitives import Lock as Lock
from polysync.primitives import RLock as RLock
from polysync.primitives import Semaphore as Semaphore
from polysync.primitives import Statistics as Statistics

__version__ = "0.1.0"


def _report_as_polysync() -> None:
    # Public objects say where users import them from: polysync.Lock, not
    # polysync.primitives.Lock (pickles find them either way: both names work).
    for public in (
        Context, Capability, Holder, Statistics, Lock, RLock, Semaphore, BoundedSemaphore,
        Event, Condition, Barrier, PolysyncError, NotHeldError, LeaseLostError,
        BrokenBarrierError, ClosedError, ObjectError, NotFoundError, KindMismatchError,
        BackendError, UnknownBackendError, BackendUnavailableError, BackendConnectionError,
        OwnerDiedWarning, get_context, available_backends,
    ):  # fmt: skip
        public.__module__ = "polysync"


_report_as_polysync()
