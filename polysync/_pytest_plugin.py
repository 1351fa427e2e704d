"""polysync's pytest plugin (entry point ``pytest11``): makes the shipped suite report well.

It lives outside :mod:`polysync.testing` so that it can register that package for
assertion rewriting before anything imports it: a failing check in a plugin author's run
then shows the compared values. It also adds the registered backends to the report
header, and imports no backend.
"""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("polysync.testing")


def pytest_report_header(config: pytest.Config) -> str:
    from polysync.registry import get_registry

    try:
        names = ", ".join(get_registry().names())
    except Exception as exc:  # a broken third-party plugin must not hide the test run
        names = f"(registry failed: {exc})"
    return f"polysync backends: {names}"
