"""How the postgres backend connects: options to psycopg 3 connections, secret-free descriptions.

:func:`settings` checks the options once (``url`` in libpq's URI or ``key=value`` form,
``connect_timeout``, ``schema``, ``connection_factory``) and returns
:class:`PostgresSettings`; :func:`connect` opens an autocommit connection within the
timeout; :func:`translated` is the one place where psycopg's errors become polysync's;
:func:`refuse_transaction_pooling` refuses a pooler (PgBouncer in ``transaction`` or
``statement`` mode) that would hand the session, and so its advisory locks, to
someone else between two transactions.

Passwords (``user:password@`` in a URI, ``password=`` in its query or in ``key=value``
form, ``sslpassword``) never appear in descriptions or error messages. psycopg is
imported on first use, never by ``import polysync``.
"""

from __future__ import annotations

import contextlib
import math
import re
import secrets
import select
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from polysync import _validate, errors
from polysync.errors import BackendUnavailableError, PolysyncError

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_SCHEMA",
    "INSTALL_HINT",
    "PostgresSettings",
    "connect",
    "describe",
    "mask",
    "refuse_transaction_pooling",
    "settings",
    "translate",
    "translated",
]

INSTALL_HINT = "pip install 'polysync-primitives[postgres]'"
#: Seconds a new connection may take (libpq's ``connect_timeout``, per host tried).
DEFAULT_CONNECT_TIMEOUT = 10.0
#: libpq rounds a connect_timeout below 2 s up to 2 s; polysync refuses it instead.
MIN_CONNECT_TIMEOUT = 2.0
MAX_CONNECT_TIMEOUT = 3600.0
#: Seconds a call that does not wait in the server (a release, ``set``, a read, an
#: opening) waits for the answer before it gives up the session: a frozen server keeps
#: its sockets open and answers TCP keepalives, so nothing else would end the call.
DEFAULT_ANSWER_TIMEOUT = 10.0
MIN_ANSWER_TIMEOUT = 0.1
#: The schema that holds the backend's tables and functions.
DEFAULT_SCHEMA = "polysync"
#: An unquoted PostgreSQL identifier that needs no quoting and no case folding: at most
#: 63 bytes (NAMEDATALEN - 1), lowercase ASCII letters, digits and underscores.
_SCHEMA_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")
#: libpq parameters that hold secrets.
_SECRET_KEYS = frozenset({"password", "sslpassword"})
#: The session setting the pooling probe writes (a custom, namespaced GUC).
_PROBE_SETTING = "polysync.session_probe"
#: Seconds the pooling probe's second connection may wait for the pooler to give it a
#: server (a pool in session mode may have none free: then the probe is inconclusive).
PROBE_WAIT = 2.0

ConnectionFactory = Callable[..., "psycopg.Connection[Any]"]


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:
        raise BackendUnavailableError(
            f"the postgres backend needs psycopg 3: {INSTALL_HINT}"
        ) from exc
    return psycopg


# -- secret-free text -------------------------------------------------------------------

_URI_PASSWORD = re.compile(r"(?<=://)([^:@/?#]*):[^@/?#]*@")
_KEY_PASSWORD = re.compile(r"(?i)\b((?:ssl)?password)(\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s&#]*)")


def mask(text: str) -> str:
    """*text* (a URI, a ``key=value`` string, or a message quoting one) without passwords."""
    text = _URI_PASSWORD.sub(r"\1:***@", text)
    return _KEY_PASSWORD.sub(r"\1\2***", text)


def _where(params: Mapping[str, str]) -> str:
    """``user@host:port/dbname`` from parsed libpq parameters (no secret among them)."""
    host = params.get("host") or params.get("hostaddr") or ""
    port = params.get("port") or ""
    hosts = host.split(",") if host else ["(libpq default host)"]
    ports = port.split(",") if port else [""]
    if len(ports) == 1:
        ports = ports * len(hosts)
    places = []
    for h, p in zip(hosts, ports, strict=False):
        h = h or "(libpq default host)"
        places.append(f"{h}:{p}" if p else h)
    user = params.get("user")
    text = f"{user}@" if user else ""
    text += ",".join(places)
    if params.get("dbname"):
        text += f"/{params['dbname']}"
    return text


# -- options ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PostgresSettings:
    """The postgres backend's checked options.

    ``conninfo`` is the ``url`` as given (it may hold a password: never show it);
    ``where`` names the server without secrets; ``connect_timeout`` is in seconds.
    """

    conninfo: str = field(repr=False)
    where: str
    schema: str = DEFAULT_SCHEMA
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    connection_factory: ConnectionFactory | None = field(default=None, repr=False)
    answer_timeout: float = DEFAULT_ANSWER_TIMEOUT

    def describe(self) -> str:
        """Where the objects live, without secrets: ``user@host:port/db (schema polysync)``."""
        return f"{self.where} (schema {self.schema})"


def schema_name(value: object) -> str:
    """A schema name polysync can use unquoted: see :data:`_SCHEMA_RE`, never ``pg_*``."""
    if not isinstance(value, str):
        raise TypeError(
            f"schema must be a str, not {type(value).__name__} {_validate.shown(value)}"
        )
    if not _SCHEMA_RE.fullmatch(value) or value.startswith("pg_"):
        raise ValueError(
            "schema must be 1 to 63 lowercase ASCII letters, digits and underscores, not "
            f"starting with a digit or with 'pg_' (reserved by PostgreSQL), not "
            f"{_validate.shown(value)}"
        )
    return value


def settings(
    url: object = None,
    *,
    connect_timeout: object = DEFAULT_CONNECT_TIMEOUT,
    schema: object = DEFAULT_SCHEMA,
    connection_factory: object = None,
    answer_timeout: object = DEFAULT_ANSWER_TIMEOUT,
) -> PostgresSettings:
    """Check the backend's options, before anything connects.

    *url*: ``postgresql://[user[:password]@]host[:port][/dbname][?param=value...]`` or
    libpq's ``key=value`` form (``host=/run/postgresql port=5433 dbname=app``); with a
    *connection_factory* it may be omitted (``""``: libpq's defaults and ``PG*``
    variables). *connect_timeout*: seconds, from 2 (libpq's minimum) to 3600.
    *schema*: see :func:`schema_name`. *connection_factory*: a callable with
    ``psycopg.connect``'s signature, called as ``factory(conninfo, autocommit=True,
    connect_timeout=N)``, returning a psycopg 3 ``Connection``. *answer_timeout*: seconds
    (0.1 to 3600) a call that does not wait in the server waits for its answer.

    Raises ``TypeError`` for a wrong type, ``ValueError`` for a URL libpq cannot parse
    (quoted without its password) or a value out of range.
    """
    if connection_factory is not None and not callable(connection_factory):
        raise TypeError(
            "connection_factory must be a callable returning a psycopg Connection, not "
            f"{type(connection_factory).__name__}"
        )
    if url is None:
        if connection_factory is None:
            raise TypeError(
                "the postgres backend needs url= (postgresql://user@host:5432/db, or "
                "'host=/run/postgresql dbname=app'), or connection_factory="
            )
        url = ""
    if not isinstance(url, str):
        raise TypeError(f"url must be a str, not {type(url).__name__} (value hidden)")
    timeout = _validate.seconds_option(
        connect_timeout, "connect_timeout", MIN_CONNECT_TIMEOUT, MAX_CONNECT_TIMEOUT
    )
    answer = _validate.seconds_option(
        answer_timeout, "answer_timeout", MIN_ANSWER_TIMEOUT, MAX_CONNECT_TIMEOUT
    )
    name = schema_name(schema)
    params = _parse(url)
    return PostgresSettings(
        conninfo=url,
        where=_where(params),
        schema=name,
        connect_timeout=timeout,
        connection_factory=connection_factory,
        answer_timeout=answer,
    )


def _parse(url: str) -> dict[str, str]:
    pg = _psycopg()
    from psycopg import conninfo as _conninfo

    try:
        params: dict[str, Any] = _conninfo.conninfo_to_dict(url)
    except pg.Error as exc:
        raise ValueError(
            f"url {mask(url)!r} is not a libpq connection string "
            f"(postgresql://user@host:5432/dbname, or 'host=... port=... dbname=...'): "
            f"{_one_line(str(exc))}"
        ) from None
    for port in str(params.get("port") or "").split(","):
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(
                f"url {mask(url)!r} has port {port!r}: a port is a number from 1 to 65535"
            )
    return {k: str(v) for k, v in params.items() if k not in _SECRET_KEYS}


def describe(options: PostgresSettings) -> str:
    """Where the objects live, without secrets."""
    return options.describe()


# -- errors -----------------------------------------------------------------------------


def _one_line(text: str) -> str:
    return "; ".join(line.strip() for line in text.strip().splitlines() if line.strip())


def translate(exc: Exception, where: str) -> PolysyncError:
    """psycopg's *exc* as polysync's error, naming the server *where* (secret-free)."""
    pg = _psycopg()
    detail = mask(_one_line(str(exc))) or type(exc).__name__
    if isinstance(exc, (pg.OperationalError, pg.InterfaceError)):
        # QueryCanceled is an OperationalError: a statement_timeout (or a cancel from
        # another session) ended the wait; the server did not answer in time.
        return errors.server_unreachable("PostgreSQL", where, detail)
    return PolysyncError(f"PostgreSQL at {where} failed: {detail}")


@contextlib.contextmanager
def translated(where: str) -> Iterator[None]:
    """psycopg's errors as polysync's (chained), with the server named without secrets."""
    try:
        yield
    except Exception as exc:
        pg = _psycopg()
        if isinstance(exc, pg.Error):
            raise translate(exc, where) from exc
        raise


# -- connections ------------------------------------------------------------------------


def connect(options: PostgresSettings) -> psycopg.Connection[Any]:
    """A new psycopg 3 connection in autocommit mode, within ``connect_timeout``.

    Raises :class:`~polysync.BackendConnectionError` (one line, the server named without
    its password) when the server is unreachable, refuses, or rejects the credentials.
    """
    pg = _psycopg()
    factory = options.connection_factory or pg.Connection.connect
    timeout = max(2, math.ceil(options.connect_timeout))
    with translated(options.where):
        conn = factory(options.conninfo, autocommit=True, connect_timeout=timeout)
    if not isinstance(conn, pg.Connection):
        with contextlib.suppress(Exception):
            conn.close()
        raise TypeError(
            f"connection_factory must return a psycopg.Connection, not {type(conn).__name__}"
        )
    if not conn.autocommit:
        with translated(options.where):
            conn.autocommit = True
    connection: psycopg.Connection[Any] = conn
    return connection


def _bounded_query(conn: psycopg.Connection[Any], query: str, wait: float) -> str | None:
    """The first column of the last row *query* returns, or ``None`` after *wait* s.

    Sent on libpq's asynchronous interface, so a pooler that queues the query (no
    free server) cannot hold the caller longer than *wait*.
    """
    pq = _psycopg().pq
    pgconn = conn.pgconn
    pgconn.send_query(query.encode())  # raises psycopg.OperationalError on failure
    deadline = time.monotonic() + wait
    value: str | None = None
    while True:
        while pgconn.is_busy():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([pgconn.socket], [], [], remaining)
            if ready:
                pgconn.consume_input()
        result = pgconn.get_result()
        if result is None:
            return value
        if result.status == pq.ExecStatus.TUPLES_OK and result.ntuples:
            raw = result.get_value(result.ntuples - 1, 0)
            value = None if raw is None else bytes(raw).decode()
        elif result.status not in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK):
            message = result.error_message.decode(errors="replace")
            raise _psycopg().OperationalError(message)


def refuse_transaction_pooling(
    conn: psycopg.Connection[Any],
    options: PostgresSettings,
    *,
    probe_wait: float = PROBE_WAIT,
) -> None:
    """Raise :class:`~polysync.BackendError` if *conn*'s session does not outlive a transaction.

    The backend's locks are session advisory locks: behind PgBouncer in
    ``transaction`` (or ``statement``) pooling mode the session that took one goes back
    to the pool when the transaction ends, and the next statement, the release
    included, may run in another client's session. PgBouncer has no query that tells its
    mode to an ordinary client, so this checks the property itself:

    1. *conn* stores a random token in a session setting, in one transaction;
    2. a second connection opens a transaction and reads that setting: seeing the token
       means it was given *conn*'s session (transaction pooling: refused). It keeps its
       transaction open, so the pooler cannot give *conn* that same server again;
    3. *conn* reads its setting (and its backend pid) in a new transaction: a missing
       token or another pid means its session was swapped (refused).

    PgBouncer in ``statement`` mode refuses step 2's transaction block ("transaction
    blocks not allowed in statement pooling mode"): refused too.

    On a plain server (or session pooling) the second connection never sees the token
    and *conn* always does, so neither step can refuse it. Step 2 waits at most
    *probe_wait* s for the pooler to give the second connection a server (a full pool
    in session mode has none to give): then steps 1 and 3 decide alone.
    """
    where = options.where
    token = secrets.token_hex(8)
    with translated(where):
        row = conn.execute(
            "SELECT pg_backend_pid(), set_config(%s, %s, false)", (_PROBE_SETTING, token)
        ).fetchone()
        assert row is not None
        pid = row[0]
        seen = _session_token(conn)
        if seen == (pid, token):
            probe = connect(options)
            try:
                try:
                    other = _bounded_query(
                        probe,
                        f"BEGIN; SELECT current_setting('{_PROBE_SETTING}', true)",
                        probe_wait,
                    )
                except _psycopg().OperationalError as exc:
                    # PgBouncer in statement mode refuses the transaction block itself.
                    if "pooling mode" not in str(exc):
                        raise
                    raise errors.session_pooling_refused(
                        where, f"the pooler refused a transaction block: {_one_line(str(exc))}"
                    ) from None
                if other == token:
                    raise errors.session_pooling_refused(
                        where, "a second connection was given this session"
                    )
                seen = _session_token(conn)
            finally:
                with contextlib.suppress(Exception):
                    probe.close()
        try:
            if seen != (pid, token):
                raise errors.session_pooling_refused(
                    where, "the session changed between two transactions"
                )
        finally:
            with contextlib.suppress(Exception):
                conn.execute("SELECT set_config(%s, '', false)", (_PROBE_SETTING,))


def _session_token(conn: psycopg.Connection[Any]) -> tuple[int, str | None]:
    row = conn.execute(
        "SELECT pg_backend_pid(), current_setting(%s, true)", (_PROBE_SETTING,)
    ).fetchone()
    assert row is not None
    return int(row[0]), row[1]
