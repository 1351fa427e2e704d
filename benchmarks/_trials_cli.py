"""What the two trial runners (kill_trials.py, stress_run.py) share on their command line.

Both import their harness from ``tests/_trials.py``, so this module puts the project's root
on ``sys.path`` and re-exports it as ``_trials``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import Any

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from _redis_server import RedisServer, RedisServerError  # noqa: E402

from tests import _trials  # noqa: E402

__all__ = ["RedisServer", "_trials", "comma_list", "private_server", "write_json"]


def comma_list(allowed: Sequence[str], what: str) -> Callable[[str], list[str]]:
    """An argparse type: a comma-separated list, each item one of *allowed*."""

    def parse(text: str) -> list[str]:
        chosen = [part.strip() for part in text.split(",") if part.strip()]
        wrong = [c for c in chosen if c not in allowed]
        if wrong or not chosen:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {', '.join(wrong) or '(none)'}; choose from {', '.join(allowed)}"
            )
        return chosen

    return parse


def private_server(stack: ExitStack) -> RedisServer | None:
    """A private redis-server on a free port, stopped with *stack*; None (said) if it failed."""
    try:
        return stack.enter_context(RedisServer())
    except RedisServerError as exc:
        print(f"the private redis-server could not start: {exc}", file=sys.stderr)
        return None


def write_json(path: str, payload: dict[str, Any], args: argparse.Namespace) -> None:
    """Write *payload* with the run's options (all but --json) as its ``config``."""
    payload["config"] = {k: v for k, v in vars(args).items() if k != "json"}
    with open(path, "w") as f:
        json.dump(payload, f, indent=2)
