"""Private PostgreSQL clusters (and PgBouncers) for the tests: the names the tests import.

* :mod:`.server`: :class:`PrivatePostgres` (initdb once per session, a postmaster per
  test server on a free port with its unix socket in its own directory; ``kill()``,
  ``restart()``, ``stop()``), :class:`PrivatePgBouncer`, and :func:`stop_all`;
* :mod:`.fixtures`: the pytest plugin (``pg_server``, ``pg_server_fresh``,
  ``pgbouncer_factory``), which ``tests/conftest.py`` loads.

The package is named ``pg_servers``, never ``psycopg`` or ``postgres``, so that it cannot
shadow a library for code that puts ``tests`` on ``sys.path``.
"""

from __future__ import annotations

from .fixtures import require_pgbouncer, require_postgres
from .server import (
    HOST,
    PASSWORD,
    USER,
    PostgresSupportError,
    PrivatePgBouncer,
    PrivatePostgres,
    find_bindir,
    find_pgbouncer,
    processes_matching,
    stop_all,
)

__all__ = [
    "HOST",
    "PASSWORD",
    "USER",
    "PostgresSupportError",
    "PrivatePgBouncer",
    "PrivatePostgres",
    "find_bindir",
    "find_pgbouncer",
    "processes_matching",
    "require_pgbouncer",
    "require_postgres",
    "stop_all",
]
