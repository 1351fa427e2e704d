"""The postgres backend's connection layer against private clusters: options, secrets, errors.

Every server here is a private cluster (``tests/pg_servers``) on a free port, never the
machine's own; PgBouncer, when installed, runs before it in each pooling mode.
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import polysync
from polysync.backends.postgres import connection as pgc

from .conftest import run_python
from .pg_servers import PASSWORD, PrivatePgBouncer, PrivatePostgres
from .pg_servers.server import free_port

psycopg = pytest.importorskip("psycopg")

pytestmark = pytest.mark.timeout(60)

#: Seconds an error may take beyond the connect_timeout that bounds it.
MARGIN = 3.0


def _settings(url: str, **options: Any) -> pgc.PostgresSettings:
    return pgc.settings(url, **options)


# -- options and descriptions (no server) -------------------------------------------------


@pytest.mark.parametrize(
    ("url", "where"),
    [
        ("postgresql://alice:s3cret@db.example:5433/app", "alice@db.example:5433/app"),
        ("postgres://alice:s3cret@db.example/app?sslmode=require", "alice@db.example/app"),
        ("postgresql://db.example/app?user=bob&password=s3cret", "bob@db.example/app"),
        ("postgresql://h1:5432,h2:5433/app?sslpassword=s3cret", "h1:5432,h2:5433/app"),
        ("host=/tmp/x port=5433 dbname=app password=s3cret", "/tmp/x:5433/app"),
        ("host=db user=carol password='s3 cret' dbname=app", "carol@db/app"),
    ],
    ids=["uri", "uri-ssl", "query-password", "sslpassword", "keyword", "keyword-quoted"],
)
def test_describe_names_the_server_never_the_password(url: str, where: str) -> None:
    options = _settings(url)
    assert options.where == where
    assert pgc.describe(options) == f"{where} (schema polysync)"
    for text in (pgc.describe(options), repr(options), str(options)):
        assert "s3" not in text
        assert "cret" not in text


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://alice:s3cret@db:notaport/app",
        "postgresql://alice:s3cret@db:70000/app",
        "host=db password=s3cret nonsense",
        "host=db password=s3cret bogus_option=1",
    ],
    ids=["port-word", "port-range", "keyword-syntax", "unknown-option"],
)
def test_a_bad_url_is_a_value_error_naming_it_without_password(url: str) -> None:
    with pytest.raises(ValueError, match="url ") as info:
        pgc.settings(url)
    message = str(info.value)
    assert "s3cret" not in message
    assert "***" in message
    assert "\n" not in message


def test_mask_hides_every_password_form() -> None:
    assert pgc.mask("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"
    assert pgc.mask("postgresql://h/db?password=pw&x=1") == "postgresql://h/db?password=***&x=1"
    assert pgc.mask("host=h password = 'p w' port=1") == "host=h password = *** port=1"
    assert pgc.mask("sslpassword=pw") == "sslpassword=***"


@pytest.mark.parametrize(
    "schema", ["", "Polysync", "1abc", "pg_mine", "a-b", "a" * 64, "sch ema", "é"]
)
def test_a_bad_schema_name_is_a_value_error(schema: str) -> None:
    with pytest.raises(ValueError, match="schema must be"):
        pgc.settings("host=/tmp", schema=schema)


def test_schema_and_timeout_types_and_ranges() -> None:
    assert pgc.settings("host=/tmp", schema="jobs_2").schema == "jobs_2"
    assert pgc.settings("host=/tmp").schema == "polysync"
    with pytest.raises(TypeError, match="schema must be a str"):
        pgc.settings("host=/tmp", schema=3)
    with pytest.raises(ValueError, match="connect_timeout"):
        pgc.settings("host=/tmp", connect_timeout=1)
    with pytest.raises(TypeError, match="connect_timeout"):
        pgc.settings("host=/tmp", connect_timeout="5")
    assert pgc.settings("host=/tmp", answer_timeout=0.5).answer_timeout == 0.5
    assert pgc.settings("host=/tmp").answer_timeout == pgc.DEFAULT_ANSWER_TIMEOUT
    for bad in (0, 0.01, -1, float("nan"), float("inf"), 4000):
        with pytest.raises(ValueError, match=r"answer_timeout must be a number of seconds in"):
            pgc.settings("host=/tmp", answer_timeout=bad)
    for wrong in ("5", None, True):
        with pytest.raises(TypeError, match="answer_timeout"):
            pgc.settings("host=/tmp", answer_timeout=wrong)
    with pytest.raises(TypeError, match="url must be a str"):
        pgc.settings(b"host=/tmp")
    with pytest.raises(TypeError, match="needs url="):
        pgc.settings()
    with pytest.raises(TypeError, match="connection_factory must be a callable"):
        pgc.settings("host=/tmp", connection_factory=3)


def test_psycopg_is_imported_lazily() -> None:
    out = run_python(
        "import sys, polysync, polysync.errors; "
        "import polysync.backends.postgres, polysync.backends.postgres.connection; "
        "print('psycopg' in sys.modules)"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_without_psycopg_the_error_carries_the_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(polysync.BackendUnavailableError, match=r"polysync-primitives\[postgres\]"):
        pgc.settings("host=/tmp")


# -- connecting to a private cluster ------------------------------------------------------


def test_connect_by_url_over_tcp_with_a_password(pg_server: PrivatePostgres) -> None:
    options = _settings(pg_server.url)
    assert PASSWORD not in pgc.describe(options)
    with pgc.connect(options) as conn:
        assert conn.autocommit
        assert conn.execute("SELECT current_user").fetchone() == ("polysync",)
        assert conn.info.port == pg_server.port


def test_connect_by_keywords_over_the_unix_socket(pg_server: PrivatePostgres) -> None:
    options = _settings(pg_server.keyword_dsn, connect_timeout=5)
    assert pgc.describe(options).startswith(f"polysync@{pg_server.socket_dir}:{pg_server.port}")
    with pgc.connect(options) as conn:
        assert conn.autocommit
        assert conn.info.host == pg_server.socket_dir
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_connection_factory_is_called_and_made_autocommit(pg_server: PrivatePostgres) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []

    def factory(conninfo: str, **kwargs: Any) -> Any:
        calls.append((conninfo, dict(kwargs)))
        kwargs["autocommit"] = False  # polysync turns it on again
        return psycopg.connect(conninfo, **kwargs)

    with pgc.connect(_settings(pg_server.url, connection_factory=factory)) as conn:
        assert conn.autocommit
    assert calls == [(pg_server.url, {"autocommit": True, "connect_timeout": 10})]
    with pytest.raises(TypeError, match=r"must return a psycopg\.Connection"):
        pgc.connect(_settings(pg_server.url, connection_factory=lambda *a, **k: object()))


def test_a_refused_port_is_a_one_line_connection_error() -> None:
    port = free_port()
    options = _settings(f"postgresql://polysync:{PASSWORD}@127.0.0.1:{port}/postgres")
    start = time.monotonic()
    with pytest.raises(polysync.BackendConnectionError) as info:
        pgc.connect(options)
    assert time.monotonic() - start < options.connect_timeout + MARGIN
    message = str(info.value)
    assert f"polysync@127.0.0.1:{port}/postgres" in message
    assert PASSWORD not in message
    assert "\n" not in message
    assert isinstance(info.value.__cause__, psycopg.OperationalError)


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts TCP connections and never answers (a frozen server)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    try:
        yield int(listener.getsockname()[1])
    finally:
        listener.close()


def test_a_server_that_never_answers_fails_within_connect_timeout(silent_server: int) -> None:
    options = _settings(
        f"host=127.0.0.1 port={silent_server} user=polysync password={PASSWORD}",
        connect_timeout=2,
    )
    start = time.monotonic()
    with pytest.raises(polysync.BackendConnectionError) as info:
        pgc.connect(options)
    elapsed = time.monotonic() - start
    assert 1.5 < elapsed < 2 + MARGIN
    assert PASSWORD not in str(info.value)
    assert "\n" not in str(info.value)


def test_a_wrong_password_is_a_connection_error(pg_server: PrivatePostgres) -> None:
    options = _settings(pg_server.url_with_password("not-the-password"))
    with pytest.raises(polysync.BackendConnectionError, match="password authentication") as info:
        pgc.connect(options)
    assert "not-the-password" not in str(info.value)
    assert "\n" not in str(info.value)


def test_a_killed_server_is_a_connection_error_and_a_restart_serves_again(
    pg_server_fresh: PrivatePostgres,
) -> None:
    options = _settings(pg_server_fresh.url, connect_timeout=3)
    conn = pgc.connect(options)
    try:
        pg_server_fresh.kill()
        with pytest.raises(polysync.BackendConnectionError, match="cannot be reached"):  # noqa: SIM117
            with pgc.translated(options.where):
                conn.execute("SELECT 1")
        start = time.monotonic()
        with pytest.raises(polysync.BackendConnectionError):
            pgc.connect(options)
        assert time.monotonic() - start < options.connect_timeout + MARGIN
    finally:
        conn.close()
    pg_server_fresh.restart()
    with pgc.connect(options) as again:
        assert again.execute("SELECT 1").fetchone() == (1,)


def test_other_server_errors_are_polysync_errors(pg_server: PrivatePostgres) -> None:
    options = _settings(pg_server.url)
    with pgc.connect(options) as conn:
        with pytest.raises(polysync.PolysyncError, match=r"PostgreSQL at .* failed") as info:  # noqa: SIM117
            with pgc.translated(options.where):
                conn.execute("SELECT no_such_column FROM pg_class")
        assert not isinstance(info.value, polysync.BackendConnectionError)
        assert isinstance(info.value.__cause__, psycopg.errors.UndefinedColumn)


# -- the refusal of transaction pooling ---------------------------------------------------


@pytest.mark.parametrize("form", ["url", "keywords"])
def test_a_plain_server_passes_the_pooling_check(pg_server: PrivatePostgres, form: str) -> None:
    options = _settings(pg_server.url if form == "url" else pg_server.keyword_dsn)
    with pgc.connect(options) as conn:
        pgc.refuse_transaction_pooling(conn, options)
        probe = conn.execute("SELECT current_setting('polysync.session_probe', true)")
        assert probe.fetchone() == ("",)  # cleared afterwards
        # and the connection is still usable, in autocommit
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


@pytest.mark.parametrize("pool_mode", ["session", "transaction", "statement"])
def test_pgbouncer_is_refused_unless_in_session_mode(
    pgbouncer_factory: Callable[[str], PrivatePgBouncer], pool_mode: str
) -> None:
    bouncer = pgbouncer_factory(pool_mode)
    options = _settings(bouncer.url, connect_timeout=5)
    with pgc.connect(options) as conn:
        if pool_mode == "session":
            pgc.refuse_transaction_pooling(conn, options)
            return
        with pytest.raises(polysync.BackendError, match=r"transaction .*pooling mode") as info:
            pgc.refuse_transaction_pooling(conn, options)
    assert "pool_mode = session" in str(info.value)
    assert not isinstance(info.value, polysync.BackendConnectionError)


def test_pgbouncer_in_transaction_mode_is_refused_with_other_idle_servers(
    pgbouncer_factory: Callable[[str], PrivatePgBouncer],
) -> None:
    """Several idle servers in the pool: the check still sees the session change."""
    bouncer = pgbouncer_factory("transaction")
    options = _settings(bouncer.url, connect_timeout=5)
    warm = [pgc.connect(options) for _ in range(3)]
    try:
        for conn in warm:  # three servers, busy at once, then idle in the pool
            conn.execute("BEGIN")
            conn.execute("SELECT 1")
        for conn in warm:
            conn.execute("COMMIT")
        for _ in range(5):
            with pgc.connect(options) as conn, pytest.raises(polysync.BackendError):
                pgc.refuse_transaction_pooling(conn, options)
    finally:
        for conn in warm:
            conn.close()
