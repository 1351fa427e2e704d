"""The conformance suite polysync ships for backend authors (see :mod:`polysync.testing.suite`).

Importing this module imports pytest; it is meant for test code only.
"""

from polysync.testing.aio import AsyncTests as AsyncTests
from polysync.testing.capabilities import CleanupTests as CleanupTests
from polysync.testing.capabilities import ClosedHandleTests as ClosedHandleTests
from polysync.testing.capabilities import CrossHostTests as CrossHostTests
from polysync.testing.capabilities import FencingTests as FencingTests
from polysync.testing.capabilities import LeaseTests as LeaseTests
from polysync.testing.capabilities import ListingTests as ListingTests
from polysync.testing.capabilities import OrphanCollectionTests as OrphanCollectionTests
from polysync.testing.capabilities import OwnerDeathTests as OwnerDeathTests
from polysync.testing.capabilities import SharedCellsTests as SharedCellsTests
from polysync.testing.capabilities import StatisticsTests as StatisticsTests
from polysync.testing.helpers import require as require
from polysync.testing.suite import BackendSuite as BackendSuite
from polysync.testing.suite import BarrierTests as BarrierTests
from polysync.testing.suite import ConditionTests as ConditionTests
from polysync.testing.suite import CrossProcessTests as CrossProcessTests
from polysync.testing.suite import EventTests as EventTests
from polysync.testing.suite import LockTests as LockTests
from polysync.testing.suite import NamingTests as NamingTests
from polysync.testing.suite import PicklingTests as PicklingTests
from polysync.testing.suite import RLockTests as RLockTests
from polysync.testing.suite import SemaphoreTests as SemaphoreTests
