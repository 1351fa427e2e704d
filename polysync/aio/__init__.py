"""polysync.aio: the seven primitives for asyncio, on every backend, over the same objects.

``import polysync.aio`` imports asyncio; ``import polysync`` does not import this
package. See docs/asyncio.md.
"""

from polysync.aio.api import AsyncContext as AsyncContext
from polysync.aio.api import get_context as get_context
from polysync.aio.primitives import Barrier as Barrier
from polysync.aio.primitives import BoundedSemaphore as BoundedSemaphore
from polysync.aio.primitives import Condition as Condition
from polysync.aio.primitives import Event as Event
from polysync.aio.primitives import Lock as Lock
from polysync.aio.primitives import RLock as RLock
from polysync.aio.primitives import Semaphore as Semaphore


def _report_as_polysync_aio() -> None:
    for public in (
        AsyncContext, get_context, Lock, RLock, Semaphore, BoundedSemaphore, Event,
        Condition, Barrier,
    ):  # fmt: skip
        public.__module__ = "polysync.aio"


_report_as_polysync_aio()
