"""The pytest plugin: fixtures that start private PostgreSQL clusters (and PgBouncers) and
always stop them.

``pg_server`` has session scope (share it; clean up what you create); ``pg_server_fresh``
has function scope, for tests that kill or restart it; ``pgbouncer_factory`` starts a
PgBouncer in a given pool mode before ``pg_server``. When the binaries are missing the
fixtures skip, or fail when the environment variable ``CI`` is ``true``.
``tests/conftest.py`` loads this module through ``pytest_plugins``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from .server import (
    INSTALL_HINT,
    PGBOUNCER_HINT,
    PrivatePgBouncer,
    PrivatePostgres,
    find_bindir,
    find_pgbouncer,
    stop_all,
)


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def require_postgres() -> None:
    """Skip the test (or fail it when ``CI=true``) if initdb/postgres are missing."""
    if find_bindir() is None:
        _missing(f"initdb/postgres not found: {INSTALL_HINT}")


def require_pgbouncer() -> None:
    """Skip the test (or fail it when ``CI=true``) if pgbouncer is missing."""
    if find_pgbouncer() is None:
        _missing(f"pgbouncer not found: {PGBOUNCER_HINT}")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PrivatePostgres]:
    """One private cluster for the whole session."""
    require_postgres()
    server = PrivatePostgres()
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def pg_server_fresh() -> Iterator[PrivatePostgres]:
    """A cluster of the test's own: kill or restart it freely."""
    require_postgres()
    server = PrivatePostgres()
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def pgbouncer_factory(
    pg_server: PrivatePostgres,
) -> Iterator[Callable[[str], PrivatePgBouncer]]:
    """``pgbouncer_factory("transaction")``: a PgBouncer before ``pg_server``, stopped after."""
    require_pgbouncer()
    started: list[PrivatePgBouncer] = []

    def start(pool_mode: str) -> PrivatePgBouncer:
        bouncer = PrivatePgBouncer(pg_server, pool_mode)
        started.append(bouncer)
        return bouncer.start()

    try:
        yield start
    finally:
        for bouncer in started:
            bouncer.stop()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Whatever a test started and did not stop goes now (atexit is the second net)."""
    stop_all()
