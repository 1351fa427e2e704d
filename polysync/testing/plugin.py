"""polysync's pytest plugin (entry point ``pytest11``): makes the shipped suite report well.

It registers the conformance suite for assertion rewriting, so a failing check in a
plugin author's run shows the compared values, and adds the backends polysync sees to
the report header. It imports no backend.
"""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("polysync.testing.suite")


def pytest_report_header(config: pytest.Config) -> str:
    from polysync.registry import get_registry

    try:
        names = ", ".join(get_registry().names())
    except Exception as exc:  # a broken third-party plugin must not hide the test run
        names = f"(registry failed: {exc})"
    return f"polysync backends: {names}"
