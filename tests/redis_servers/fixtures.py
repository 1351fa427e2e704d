"""The pytest plugin: fixtures that start private Redis deployments and always stop them.

``redis_server``, ``redis_cluster`` and ``redis_sentinel`` have session scope;
``redis_server_fresh`` and ``redis_sentinel_with_replica`` have function scope, for
kill/restart/pause/failover tests. When ``redis-server`` is missing they skip, or fail
when the environment variable ``CI`` is ``true``. ``tests/conftest.py`` loads this module
through ``pytest_plugins``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TypeVar

import pytest

from .cluster import RedisCluster
from .processes import INSTALL_HINT, find_binary, stop_all
from .sentinel import RedisSentinel
from .server import RedisServer


def require_redis(*binaries: str) -> None:
    """Skip the test (or fail it when ``CI=true``) if a Redis binary is missing."""
    missing = [b for b in (binaries or ("redis-server",)) if find_binary(b) is None]
    if not missing:
        return
    reason = f"{', '.join(missing)} not installed: {INSTALL_HINT}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


_Startable = TypeVar("_Startable", RedisServer, RedisCluster, RedisSentinel)


def _running(deployment: _Startable) -> Iterator[_Startable]:
    """Start *deployment* for a fixture and stop it afterwards, even if starting failed."""
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One private server for the whole session (flush it yourself if a test needs to)."""
    require_redis()
    yield from _running(RedisServer(name="redis-session"))


@pytest.fixture
def redis_server_fresh() -> Iterator[RedisServer]:
    """A server of the test's own: kill, restart or pause it freely."""
    require_redis()
    yield from _running(RedisServer(name="redis-fresh"))


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """Three masters, ``cluster_state:ok`` on each."""
    require_redis("redis-server", "redis-cli")
    yield from _running(RedisCluster())


@pytest.fixture(scope="session")
def redis_sentinel() -> Iterator[RedisSentinel]:
    """A master and one sentinel that reports it as ``mymaster``."""
    require_redis()
    yield from _running(RedisSentinel())


@pytest.fixture
def redis_sentinel_with_replica() -> Iterator[RedisSentinel]:
    """A master, a replica and one sentinel, of the test's own (it may fail them over)."""
    require_redis()
    yield from _running(RedisSentinel(replica=True))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Whatever a test started and did not stop goes now (atexit is the second net)."""
    stop_all()
