"""The public face of ``polysync demo``: re-exports the names the CLI and the tests use.

The demo runs the seed API's examples on real workers, each checking its invariant:
:mod:`~polysync.demo.shared` holds the shared-memory integers, :mod:`~polysync.demo.harness`
what a scenario runs with (workers, cleanup), :mod:`~polysync.demo.results` the verdicts,
:mod:`~polysync.demo.scenarios` the six scenarios and their checks, and
:mod:`~polysync.demo.runner` the configuration and the run.
"""

from polysync.demo.harness import Harness as Harness
from polysync.demo.results import Outcome as Outcome
from polysync.demo.results import ScenarioResult as ScenarioResult
from polysync.demo.runner import SCENARIOS as SCENARIOS
from polysync.demo.runner import DemoConfig as DemoConfig
from polysync.demo.runner import run_demo as run_demo
from polysync.demo.runner import worker_kind as worker_kind
from polysync.demo.scenarios import RLockFacts as RLockFacts
from polysync.demo.scenarios import check_barrier as check_barrier
from polysync.demo.scenarios import check_condition as check_condition
from polysync.demo.scenarios import check_event as check_event
from polysync.demo.scenarios import check_lock as check_lock
from polysync.demo.scenarios import check_rlock as check_rlock
from polysync.demo.scenarios import check_semaphore as check_semaphore
from polysync.demo.shared import SharedInts as SharedInts
