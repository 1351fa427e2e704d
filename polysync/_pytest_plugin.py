"""polysync's pytest plugin (entry point ``pytest11``): the shipped suite reported and bounded well.

It lives outside :mod:`polysync.testing` so that it can register that package for
assertion rewriting before anything imports it: a failing check in a plugin author's run
then shows the compared values. It bounds the suite's tests in time without overriding
the run's own choice: a run that sets a timeout (``--timeout``, ``PYTEST_TIMEOUT`` or the
``timeout`` ini option of pytest-timeout) keeps it for every test; a run that sets none
gets 60 s per suite test, 120 s for those that start processes. It also adds the
registered backends to the report header, and imports no backend.

A suite test's body runs in a daemon thread that the main thread waits for against the
test's timeout. A broken backend can block a call for ever, and polysync's own code then
blocks again while cleaning up (a Condition wait retakes its lock in a ``finally``),
after the one signal pytest-timeout sends: so the wait is the main thread's, which
pytest-timeout interrupts, and a thread still stuck is abandoned, never waited for at
exit.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import pytest

pytest.register_assert_rewrite("polysync.testing")

#: Seconds a suite test may take when the run sets no timeout of its own.
DEFAULT_TIMEOUT = 60.0
#: The same for a suite test that starts processes.
PROCESSES_TIMEOUT = 120.0


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "polysync_processes: a conformance-suite test that starts processes (it gets "
        f"{PROCESSES_TIMEOUT:g} s when the run sets no timeout)",
    )


def _run_sets_a_timeout(config: pytest.Config) -> bool:
    if config.getoption("timeout", None) is not None or os.environ.get("PYTEST_TIMEOUT"):
        return True
    try:
        return bool(config.getini("timeout"))
    except ValueError:  # pytest-timeout is not installed: nothing bounds tests anyway
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _run_sets_a_timeout(config) or not config.pluginmanager.hasplugin("timeout"):
        return
    for item in items:
        if not _is_suite_test(item) or item.get_closest_marker("timeout"):
            continue
        slow = item.get_closest_marker("polysync_processes") is not None
        item.add_marker(pytest.mark.timeout(PROCESSES_TIMEOUT if slow else DEFAULT_TIMEOUT))


def _is_suite_test(item: pytest.Item) -> bool:
    from polysync.testing.helpers import SuiteBase

    cls = getattr(item, "cls", None)
    return cls is not None and issubclass(cls, SuiteBase)


def _timeout_of(item: pytest.Item) -> float:
    marker = item.get_closest_marker("timeout")
    if marker is not None and marker.args:
        return float(marker.args[0])
    config = item.config
    value = config.getoption("timeout", None) or os.environ.get("PYTEST_TIMEOUT")
    if not value:
        try:
            value = config.getini("timeout")
        except ValueError:
            value = None
    return float(value) if value else PROCESSES_TIMEOUT


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not _is_suite_test(pyfuncitem):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in names}
    outcome: list[Any] = []

    def body() -> None:
        try:
            pyfuncitem.obj(**kwargs)
            outcome.append(None)
        except BaseException as exc:  # handed to the main thread, which reports it
            outcome.append(exc)

    worker = threading.Thread(target=body, name=f"polysync-suite {pyfuncitem.name}", daemon=True)
    worker.start()
    # A little past the test's own timeout, so pytest-timeout reports it where it can.
    worker.join(_timeout_of(pyfuncitem) + 5.0)
    if not outcome:
        pytest.fail(
            f"{pyfuncitem.name} did not finish within its timeout; its thread is left "
            "behind (a daemon: it does not keep the run from exiting)"
        )
    if outcome[0] is not None:
        raise outcome[0]
    return True


def pytest_report_header(config: pytest.Config) -> str:
    from polysync.registry import get_registry

    try:
        names = ", ".join(get_registry().names())
    except Exception as exc:  # a broken third-party plugin must not hide the test run
        names = f"(registry failed: {exc})"
    return f"polysync backends: {names}"
