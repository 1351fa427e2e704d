"""Private Redis servers for the tests: the names the tests import, from the modules below.

* :mod:`.resp`: a tiny RESP2 client (:class:`RespConnection`), so no Redis client library
  is needed;
* :mod:`.processes`: the life of each ``redis-server`` process (free ports, binaries,
  waits, and :func:`stop_all`, the net that stops whatever is left);
* :mod:`.server`: :class:`RedisServer` (one server; ACL and unix socket options);
* :mod:`.cluster`: :class:`RedisCluster` (three masters, no replicas);
* :mod:`.sentinel`: :class:`RedisSentinel` (one master and one sentinel, and optionally a
  replica to fail over to);
* :mod:`.fixtures`: the pytest plugin (``redis_server``, ``redis_server_fresh``,
  ``redis_cluster``, ``redis_sentinel``, ``redis_sentinel_with_replica``), which
  ``tests/conftest.py`` loads.

Every server is a ``redis-server`` child process on a free loopback port (never the
machine's own ``:6379``), with no persistence, and nothing started here outlives the
Python process that started it.

The package is named ``redis_servers``, never ``redis``: a package ``tests/redis`` would
shadow the real ``redis`` library for code that puts ``tests`` on ``sys.path``.
"""

from __future__ import annotations

from .cluster import RedisCluster
from .fixtures import require_redis
from .processes import (
    INSTALL_HINT,
    START_TIMEOUT,
    STOP_TIMEOUT,
    RedisSupportError,
    find_binary,
    free_port,
    live_pids,
    pid_alive,
    redis_version,
    stop_all,
    wait_for,
)
from .resp import HOST, RESERVED_PORTS, RespConnection, RespError, parse_info
from .sentinel import RedisSentinel
from .server import RedisServer

__all__ = [
    "HOST",
    "INSTALL_HINT",
    "RESERVED_PORTS",
    "START_TIMEOUT",
    "STOP_TIMEOUT",
    "RedisCluster",
    "RedisSentinel",
    "RedisServer",
    "RedisSupportError",
    "RespConnection",
    "RespError",
    "find_binary",
    "free_port",
    "live_pids",
    "parse_info",
    "pid_alive",
    "redis_version",
    "require_redis",
    "stop_all",
    "wait_for",
]
