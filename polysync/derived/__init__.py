"""The floor for backends: every primitive derived from counting semaphores and shared cells.

A backend subclasses :class:`BaseBackend` and supplies a semaphore kernel, ``unlink`` and,
optionally, shared cells; everything else is derived here, and a backend replaces one
primitive at a time with a native kernel by overriding its ``open_<kind>`` method.
Native kernels may build on the pieces re-exported here (a block's header, the parking
lot, owner watching, the derived kernels).
"""

from polysync.derived.backend import BaseBackend as BaseBackend
from polysync.derived.header import HEADER as HEADER
from polysync.derived.header import MAGIC as MAGIC
from polysync.derived.header import MAX_SEMS as MAX_SEMS
from polysync.derived.header import PARTS as PARTS
from polysync.derived.header import Block as Block
from polysync.derived.header import find_block as find_block
from polysync.derived.header import open_block as open_block
from polysync.derived.header import unlink_block as unlink_block
from polysync.derived.liveness import current_pid as current_pid
from polysync.derived.liveness import identity as identity
from polysync.derived.liveness import is_alive as is_alive
from polysync.derived.liveness import pid_of as pid_of
from polysync.derived.locks import ConditionHooksOfALock as ConditionHooksOfALock
from polysync.derived.locks import DerivedBoundedSemaphore as DerivedBoundedSemaphore
from polysync.derived.locks import DerivedLock as DerivedLock
from polysync.derived.locks import DerivedRLock as DerivedRLock
from polysync.derived.locks import DerivedSemaphore as DerivedSemaphore
from polysync.derived.locks import RecoverableLock as RecoverableLock
from polysync.derived.locks import local_holder as local_holder
from polysync.derived.openers import BARRIER_LAYOUT as BARRIER_LAYOUT
from polysync.derived.openers import lock_label as lock_label
from polysync.derived.openers import open_recoverable_lock as open_recoverable_lock
from polysync.derived.owner import OwnerWatch as OwnerWatch
from polysync.derived.parking import LOT_CAPACITY as LOT_CAPACITY
from polysync.derived.parking import LOT_CELLS as LOT_CELLS
from polysync.derived.parking import ParkingLot as ParkingLot
from polysync.derived.parking import park_and_wait as park_and_wait
from polysync.derived.waits import BARRIER_STATE_CELLS as BARRIER_STATE_CELLS
from polysync.derived.waits import DerivedBarrier as DerivedBarrier
from polysync.derived.waits import DerivedCondition as DerivedCondition
from polysync.derived.waits import DerivedEvent as DerivedEvent
from polysync.derived.waits import Mutex as Mutex
from polysync.derived.waits import SemaphoreMutex as SemaphoreMutex
