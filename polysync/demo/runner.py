"""Running the demo: its configuration, the kind of worker it allows, the scenarios in order.

Six scenarios (lock, rlock, semaphore, event, condition, barrier) run on one
:class:`polysync.Context`, each with a fresh harness whose cleanup runs even when the
scenario fails.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from polysync.demo.harness import Harness
from polysync.demo.results import Outcome, ScenarioResult
from polysync.demo.scenarios import (
    scenario_barrier,
    scenario_condition,
    scenario_event,
    scenario_lock,
    scenario_rlock,
    scenario_semaphore,
)
from polysync.kernel import Capability

if TYPE_CHECKING:
    from polysync.api import Context


@dataclass(frozen=True)
class DemoConfig:
    """How to run the demo."""

    #: Workers per scenario (the semaphore scenario uses at least 8).
    workers: int = 4
    #: Seconds any single blocking call may take.
    timeout: float = 30.0
    #: ``multiprocessing`` start method for process workers.
    start_method: str = "spawn"
    #: ``"process"`` or ``"thread"`` (see :func:`worker_kind`).
    kind: str = "process"
    #: Scenario names to run (empty: all).
    only: tuple[str, ...] = ()
    #: Scenario names to break on purpose (their check must then report FAIL).
    sabotage: frozenset[str] = frozenset()


def worker_kind(ctx: Context, requested: str = "auto") -> str:
    """``"process"`` or ``"thread"``: processes need a backend with CROSS_PROCESS."""
    crosses = Capability.CROSS_PROCESS in ctx.capabilities
    if requested == "auto":
        return "process" if crosses else "thread"
    if requested == "process" and not crosses:
        raise ValueError(
            f"the {ctx.name!r} backend does not share objects between processes "
            "(no cross-process capability); run its demo with threads"
        )
    if requested not in ("process", "thread"):
        raise ValueError(f"worker kind must be auto, process or thread, not {requested!r}")
    return requested


#: Every scenario by name, in the order the demo runs them.
SCENARIOS: dict[str, Callable[[Harness], Outcome]] = {
    "lock": scenario_lock,
    "rlock": scenario_rlock,
    "semaphore": scenario_semaphore,
    "event": scenario_event,
    "condition": scenario_condition,
    "barrier": scenario_barrier,
}


def run_demo(
    ctx: Context,
    config: DemoConfig,
    on_result: Callable[[ScenarioResult], None] | None = None,
) -> list[ScenarioResult]:
    """Run the chosen scenarios on *ctx*; call *on_result* after each one."""
    if config.workers < 2:
        raise ValueError(f"the demo needs at least 2 workers, not {config.workers}")
    unknown = sorted((set(config.only) | config.sabotage) - set(SCENARIOS))
    if unknown:
        raise ValueError(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    mp = multiprocessing.get_context(config.start_method) if config.kind == "process" else None
    results = []
    for name, scenario in SCENARIOS.items():
        if config.only and name not in config.only:
            continue
        harness = Harness(ctx, mp, config.workers, config.timeout, name in config.sabotage)
        started = time.perf_counter()
        try:
            with harness.stack:
                outcome = scenario(harness)
        except Exception as exc:
            outcome = Outcome(False, "error", (f"{type(exc).__name__}: {exc}",))
        result = ScenarioResult(name, outcome, (time.perf_counter() - started) * 1000)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results
