"""Verdicts: a scenario's :class:`Outcome`, and the timed :class:`ScenarioResult` of its run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Outcome:
    """A scenario's verdict: whether it passed, its key figure, and what went wrong."""

    passed: bool
    figure: str
    problems: tuple[str, ...] = ()

    def plus(self, problems: Sequence[str]) -> Outcome:
        """This outcome with more *problems* (any problem makes it fail)."""
        if not problems:
            return self
        return Outcome(False, self.figure, (*self.problems, *problems))


def _outcome(figure: str, problems: list[str]) -> Outcome:
    return Outcome(not problems, figure, tuple(problems))


@dataclass(frozen=True)
class ScenarioResult:
    """One scenario's outcome and how long it took."""

    name: str
    outcome: Outcome
    elapsed_ms: float

    @property
    def passed(self) -> bool:
        return self.outcome.passed
