"""``PostgresBackend``: options, opening objects (the ``open`` function), the kernels."""

from __future__ import annotations

import atexit
import contextlib
import os
import weakref
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from polysync import _validate, errors
from polysync.backends.postgres import connection as _connection
from polysync.backends.postgres import kernels as _kernels
from polysync.backends.postgres import sql as _sql
from polysync.backends.postgres.server import PostgresServer
from polysync.derived import BaseBackend
from polysync.errors import KindMismatchError, NotFoundError
from polysync.kernel import Capability, Found, Kind, Listed, ObjectName, Orphan

__all__ = ["PostgresBackend"]

_PARAMETERISED = (Kind.SEMAPHORE, Kind.BOUNDED_SEMAPHORE, Kind.BARRIER)
_backends: weakref.WeakSet[PostgresBackend] = weakref.WeakSet()


@atexit.register
def _at_exit() -> None:
    """A clean exit: the permits this process took stay taken; its uses of anonymous
    objects end (a crash leaves them to be found dead by their liveness session)."""
    for backend in list(_backends):
        backend._forget()


class PostgresBackend(BaseBackend):
    """PostgreSQL through psycopg 3: session advisory locks and LISTEN/NOTIFY, across hosts."""

    name = "postgres"
    capabilities = frozenset(
        {
            Capability.CROSS_PROCESS,
            Capability.CROSS_HOST,
            Capability.NAMED,
            Capability.READABLE_VALUE,
            Capability.OWNER_DEATH,
            Capability.FENCING,
            Capability.LISTING,
            Capability.ORPHAN_COLLECTION,
        }
    )
    options: ClassVar[Mapping[str, object]] = {
        "url": None,
        "connect_timeout": _connection.DEFAULT_CONNECT_TIMEOUT,
        "schema": _connection.DEFAULT_SCHEMA,
        "connection_factory": None,
        "answer_timeout": _connection.DEFAULT_ANSWER_TIMEOUT,
        "advisory_classid": _sql.DEFAULT_CLASSID,
        "pool_size": 4,
        "anonymous_ttl": 60.0,
    }
    #: ``ctx.Lock(name=..., on_lost=callback)``: called when the holder's session is gone.
    primitive_options = frozenset({"on_lost"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._given = dict(options)
        s = self.settings
        self.pg = _connection.settings(
            s["url"],
            connect_timeout=s["connect_timeout"],
            schema=s["schema"],
            connection_factory=s["connection_factory"],
            answer_timeout=s["answer_timeout"],
        )
        classid = s["advisory_classid"]
        if not isinstance(classid, int) or isinstance(classid, bool):
            raise TypeError(
                f"advisory_classid must be an int, not {type(classid).__name__} "
                f"{_validate.shown(classid)}"
            )
        if not 1 <= classid <= 2**31 - 1:
            raise ValueError(
                f"advisory_classid must be from 1 to 2147483647 (an int4 key of "
                f"pg_advisory_lock), not {classid}"
            )
        pool_size = s["pool_size"]
        if not isinstance(pool_size, int) or isinstance(pool_size, bool):
            raise TypeError(
                f"pool_size must be an int, not {type(pool_size).__name__} "
                f"{_validate.shown(pool_size)}"
            )
        if not 0 <= pool_size <= 1000:
            raise ValueError(f"pool_size must be from 0 to 1000, not {pool_size}")
        self.anonymous_ttl = _validate.seconds_option(
            s["anonymous_ttl"],
            "anonymous_ttl",
            _validate.MIN_SECONDS_OPTION,
            _validate.MAX_SECONDS_OPTION,
        )
        self.server = PostgresServer(self.pg, classid=classid, pool_size=pool_size)
        self._holders: dict[int, _kernels.PostgresLock] = {}
        self._pid = os.getpid()
        _backends.add(self)

    @property
    def cleanup_bound(self) -> float:
        # Gone at the last close; a pickle never unpickled holds it anonymous_ttl more.
        return self.anonymous_ttl + 5.0

    def _forget(self) -> None:
        if os.getpid() != self.server._pid or self.server._liveness is None:
            return
        with contextlib.suppress(Exception):
            pid, started = self.server.identity()
            self.server.query(f"SELECT {self.pg.schema}.forget(%s, %s)", (pid, started))

    # -- opening -------------------------------------------------------------------------

    def _open(
        self, name: ObjectName, kind: Kind, param: int, create: bool, *, must_match: bool = False
    ) -> int:
        s = self.pg.schema
        anonymous = name.is_anonymous
        pid, started = self.server.identity() if anonymous else (0, None)
        row = self.server.query(
            f"SELECT * FROM {s}.open(%s, %s, %s, %s, %s, %s, %s, %s)",
            (str(name), kind.value, param, anonymous, create, param, pid, started),
        )
        if row is None:
            raise NotFoundError(f"{name.describe()} does not exist (any more) on the server")
        oid, found_kind, found_param = int(row[0]), str(row[1]), int(row[2])
        if found_kind != kind.value:
            raise errors.kind_mismatch(name.describe(), found_kind, kind.value)
        if must_match and found_param != param:
            raise errors.shape_mismatch(name.describe(), kind.value, str(found_param), str(param))
        return oid

    def find_primitive(self, name: ObjectName) -> Found | None:
        """What the primitive *name* is, from its row (one SELECT: nothing is written)."""
        row = self.server.query(
            f"SELECT kind, parameter FROM {self.pg.schema}.objects WHERE name = %s", (str(name),)
        )
        if row is None:
            return None
        try:
            kind = Kind(str(row[0]))
        except ValueError:
            raise KindMismatchError(
                f"{name.describe()} has a row polysync did not write (kind {row[0]!r}): unlink it"
            ) from None
        return Found(kind, int(row[1]) if kind in _PARAMETERISED else 0)

    def list_primitives(self) -> Iterator[Listed]:
        """The named objects' rows, by name (one SELECT; :class:`~polysync.kernel.Listable`)."""
        rows = self.server.query_all(
            f"SELECT name, kind, parameter FROM {self.pg.schema}.objects "
            "WHERE NOT anonymous ORDER BY name"
        )
        for stored, kind_text, parameter in rows:
            key = str(stored).split(":", 1)[1]  # str(ObjectName): "n:<the user's name>"
            try:
                kind = Kind(str(kind_text))
            except ValueError:
                yield Listed(key, None, note=f"a row polysync did not write (kind {kind_text!r})")
                continue
            yield Listed(key, kind, int(parameter) if kind in _PARAMETERISED else 0)

    def collect_orphans(self, dry_run: bool) -> list[Orphan]:
        """What dead processes left, removed unless *dry_run* (one transaction: the
        schema's ``collect``; :class:`~polysync.kernel.Collectable`)."""
        rows = self.server.query_all(
            f"SELECT what, reason FROM {self.pg.schema}.collect(%s)", (dry_run,)
        )
        return [Orphan(str(what), str(reason)) for what, reason in rows]

    def _lock(self, name: ObjectName, kind: Kind, create: bool) -> _kernels.PostgresLock:
        oid = self._open(name, kind, 0, create)
        return _kernels.PostgresLock(
            self.server, oid, name.is_anonymous, name.describe(), self._holders
        )

    def open_lock(self, name: ObjectName, *, create: bool) -> _kernels.PostgresLock:
        return self._lock(name, Kind.LOCK, create)

    def open_rlock(self, name: ObjectName, *, create: bool) -> _kernels.PostgresRLock:
        return _kernels.PostgresRLock(self._lock(name, Kind.RLOCK, create))

    def open_semaphore(
        self, name: ObjectName, value: int, *, bounded: bool, create: bool
    ) -> _kernels.PostgresSemaphore:
        kind = Kind.BOUNDED_SEMAPHORE if bounded else Kind.SEMAPHORE
        oid = self._open(name, kind, value, create, must_match=bounded)
        return _kernels.PostgresSemaphore(
            self.server, oid, name.is_anonymous, name.describe(), value if bounded else None
        )

    def open_event(self, name: ObjectName, *, create: bool) -> _kernels.PostgresEvent:
        oid = self._open(name, Kind.EVENT, 0, create)
        return _kernels.PostgresEvent(self.server, oid, name.is_anonymous, name.describe())

    def open_condition(self, name: ObjectName, *, create: bool) -> _kernels.PostgresCondition:
        oid = self._open(name, Kind.CONDITION, 0, create)
        return _kernels.PostgresCondition(self.server, oid, name.is_anonymous, name.describe())

    def open_barrier(
        self, name: ObjectName, parties: int, *, create: bool
    ) -> _kernels.PostgresBarrier:
        oid = self._open(name, Kind.BARRIER, parties, create, must_match=True)
        return _kernels.PostgresBarrier(
            self.server, oid, name.is_anonymous, name.describe(), parties
        )

    def configure_primitive(self, kernel: object, options: Mapping[str, object]) -> None:
        on_lost = options.get("on_lost")
        if on_lost is not None and not callable(on_lost):
            raise TypeError(
                f"on_lost must be callable or None, not {type(on_lost).__name__} "
                f"{_validate.shown(on_lost)}"
            )
        if not isinstance(kernel, (_kernels.PostgresLock, _kernels.PostgresRLock)):
            raise TypeError("on_lost= applies to a Lock or RLock (what holds a session)")
        if on_lost is not None:
            kernel.on_lost = on_lost

    def unlink_primitive(self, name: ObjectName) -> bool:
        s = self.pg.schema
        row = self.server.query(
            f"WITH d AS (DELETE FROM {s}.objects WHERE name = %s RETURNING id) "
            f"SELECT count(*) FROM d",
            (str(name),),
        )
        return bool(row and row[0])

    def unlink(self, name: ObjectName) -> bool:
        return self.unlink_primitive(name)

    def hold_for_transfer(self, name: ObjectName) -> None:
        s = self.pg.schema
        self.server.query(
            f"INSERT INTO {s}.users (id, pid, started, until) SELECT id, 0, 'epoch', "
            f"now() + make_interval(secs => %s) FROM {s}.objects WHERE name = %s",
            (self.anonymous_ttl, str(name)),
        )

    def picklable_settings(self) -> dict[str, Any]:
        # The options as given: unpickled in this process, they find this very backend
        # (get_context's cache), whose handles release each other's locks.
        return dict(self._given)

    def describe(self) -> str:
        return f"postgres ({self.pg.describe()})"

    def close(self) -> None:
        self.server.close()
