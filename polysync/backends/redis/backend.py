"""``RedisBackend``: options, opening objects (``open.lua``), kernels over one ``RedisServer``."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from polysync import errors
from polysync.backends.redis import aiokernels as _aiokernels
from polysync.backends.redis import connection as _connection
from polysync.backends.redis import inventory as _inventory
from polysync.backends.redis import kernels as _kernels
from polysync.backends.redis.aioserver import AsyncServer
from polysync.backends.redis.server import RedisServer, text, translated
from polysync.derived import BaseBackend
from polysync.errors import KindMismatchError, NotFoundError
from polysync.kernel import Capability, Found, Kind, Listed, ObjectName, Orphan, Scope

__all__ = ["RedisBackend"]

_ALL_SUFFIXES = ("k", "o", "f", "q", "h", "v", "e", "b", "l", "p", "d", "u")


class RedisBackend(BaseBackend):
    """Redis (standalone, Sentinel or Cluster) through redis-py: shared across hosts."""

    name = "redis"
    capabilities = frozenset(
        {
            Capability.CROSS_PROCESS,
            Capability.CROSS_HOST,
            Capability.NAMED,
            Capability.READABLE_VALUE,
            Capability.OWNER_DEATH,
            Capability.FENCING,
            Capability.LEASES,
            Capability.LISTING,
            Capability.ORPHAN_COLLECTION,
        }
    )
    options: ClassVar[Mapping[str, object]] = {
        "url": None,
        "client": None,
        "connection_pool": None,
        "connection_kwargs": None,
        "cluster": False,
        "sentinel": None,
        "service_name": None,
        "username": None,
        "password": None,
        "prefix": "polysync",
        "lease": 30.0,
        "anonymous_ttl": 60.0,
    }
    #: What ``ctx.Lock(..., lease=..., on_lost=...)`` and friends accept.
    primitive_options = frozenset({"lease", "on_lost"})

    def __init__(self, **options: Any) -> None:
        from polysync import _validate

        super().__init__(**options)
        s = self.settings
        # Every option is checked before connecting: nothing is written with a bad one.
        for key in ("url", "service_name", "username", "password"):
            if s[key] is not None and not isinstance(s[key], str):
                raise TypeError(
                    f"{key} must be a str or None, not {type(s[key]).__name__} "
                    f"{_validate.shown(s[key]) if key != 'password' else '(hidden)'}"
                )
        if not isinstance(s["cluster"], bool):
            raise TypeError(
                f"cluster must be True or False, not {type(s['cluster']).__name__} "
                f"{_validate.shown(s['cluster'])}"
            )
        if s["connection_kwargs"] is not None and not isinstance(s["connection_kwargs"], Mapping):
            raise TypeError(
                "connection_kwargs must be a dict of redis-py arguments or None, not "
                f"{type(s['connection_kwargs']).__name__}"
            )
        prefix = s["prefix"]
        if not isinstance(prefix, str):
            raise TypeError(
                f"prefix must be a str, not {type(prefix).__name__} {_validate.shown(prefix)}"
            )
        try:
            encodes = bool(prefix.encode("utf-8"))
        except UnicodeEncodeError:  # a lone surrogate: no key could be written
            encodes = False
        if not encodes or "{" in prefix:
            raise ValueError(
                "prefix must be a non-empty str without braces, encodable as UTF-8, not "
                f"{_validate.shown(prefix)}"
            )
        # Redis expiries count milliseconds: from one to 2**31 seconds' worth.
        self.lease = _validate.seconds_option(
            s["lease"], "lease", _validate.MIN_SECONDS_OPTION, _validate.MAX_SECONDS_OPTION
        )
        self.anonymous_ttl = _validate.seconds_option(
            s["anonymous_ttl"],
            "anonymous_ttl",
            _validate.MIN_SECONDS_OPTION,
            _validate.MAX_SECONDS_OPTION,
        )
        where = self.describe_where()
        with translated(where):  # a cluster client connects at once
            self.client = _connection.connect(s)
        self.server = RedisServer(self.client, where=where, anonymous_ttl=self.anonymous_ttl)
        # Native asyncio acquires where the client has a redis.asyncio twin (not Cluster
        # or Sentinel, whose kernels wait in polysync.aio's threads).
        self.async_server = AsyncServer.for_server(self.server)

    @property
    def cleanup_bound(self) -> float:
        # Keys of an anonymous object expire anonymous_ttl after the last touch; a closing
        # handle touches them once more, and the renewer touches every third of it.
        return self.anonymous_ttl * 2 + 5.0

    def _base(self, name: ObjectName) -> str:
        flat = str(name)
        tag = (
            flat
            if "{" not in flat and "}" not in flat
            else ("h:" + hashlib.sha256(flat.encode("utf-8", "surrogatepass")).hexdigest()[:40])
        )
        return f"{self._prefix}:{{{tag}}}"

    @property
    def _prefix(self) -> str:
        prefix = self.settings["prefix"]
        assert isinstance(prefix, str)
        return prefix

    def _open(
        self,
        name: ObjectName,
        kind: Kind,
        param: int,
        create: bool,
        *,
        init_suffix: str | None = None,
        init_value: int = 0,
        must_match: bool = False,
    ) -> str:
        base = self._base(name)
        anonymous = name.is_anonymous
        keys = [f"{base}:k"] + ([f"{base}:{init_suffix}"] if init_suffix else [])
        ttl = int(self.anonymous_ttl * 1000) if anonymous else 0
        found = self.server.run(
            "open", keys, [f"{kind.value}:{param}", int(create), ttl, init_value]
        )
        if found is None:
            raise NotFoundError(f"{name.describe()} does not exist (any more) on the server")
        found = text(found)
        if not found and name.scope is Scope.NAMED and base.startswith(f"{self._prefix}:{{h:"):
            # Created, under a hashed tag: keep the name for listing (best effort).
            with self.server.translated():
                self.client.set(f"{base}:u", name.key)
        if found:
            found_kind, found_param, _ttl = found.rsplit(":", 2)
            if found_kind != kind.value:
                raise errors.kind_mismatch(name.describe(), found_kind, kind.value)
            if must_match and int(found_param) != param:
                raise errors.shape_mismatch(name.describe(), kind.value, found_param, str(param))
        return base

    def find_primitive(self, name: ObjectName) -> Found | None:
        """What the primitive *name* is, from its meta key (one GET: nothing is written)."""
        key = f"{self._base(name)}:k"
        with self.server.translated():
            meta = self.client.get(key)
        if meta is None:
            return None
        kind_text, _, rest = text(meta).partition(":")
        param_text = rest.split(":", 1)[0]
        try:
            kind = Kind(kind_text)
            param = int(param_text)
        except ValueError:
            raise KindMismatchError(
                f"{name.describe()} has a meta key {key!r} that polysync did not write "
                f"({text(meta)[:40]!r}): unlink it"
            ) from None
        parameterised = (Kind.SEMAPHORE, Kind.BOUNDED_SEMAPHORE, Kind.BARRIER)
        return Found(kind, param if kind in parameterised else 0)

    # -- the kernels -------------------------------------------------------------------

    def open_lock(self, name: ObjectName, *, create: bool) -> _kernels.RedisLock:
        base = self._open(name, Kind.LOCK, 1, create)
        if self.async_server is not None:
            return _aiokernels.AsyncRedisLock(
                self.server, base, name.is_anonymous, self.lease, self.async_server
            )
        return _kernels.RedisLock(self.server, base, name.is_anonymous, self.lease)

    def open_rlock(self, name: ObjectName, *, create: bool) -> _kernels.RedisRLock:
        base = self._open(name, Kind.RLOCK, 1, create)
        return _kernels.RedisRLock(
            _kernels.RedisLock(self.server, base, name.is_anonymous, self.lease)
        )

    def open_semaphore(
        self, name: ObjectName, value: int, *, bounded: bool, create: bool
    ) -> _kernels.RedisSemaphore:
        kind = Kind.BOUNDED_SEMAPHORE if bounded else Kind.SEMAPHORE
        base = self._open(
            name, kind, value, create, init_suffix="v", init_value=value, must_match=bounded
        )
        bound = value if bounded else None
        if self.async_server is not None:
            return _aiokernels.AsyncRedisSemaphore(
                self.server, base, name.is_anonymous, self.lease, bound, self.async_server
            )
        return _kernels.RedisSemaphore(self.server, base, name.is_anonymous, self.lease, bound)

    def open_event(self, name: ObjectName, *, create: bool) -> _kernels.RedisEvent:
        base = self._open(name, Kind.EVENT, 0, create)
        return _kernels.RedisEvent(self.server, base, name.is_anonymous)

    def open_condition(self, name: ObjectName, *, create: bool) -> _kernels.RedisCondition:
        base = self._open(name, Kind.CONDITION, 0, create)
        return _kernels.RedisCondition(self.server, base, name.is_anonymous)

    def open_barrier(
        self, name: ObjectName, parties: int, *, create: bool
    ) -> _kernels.RedisBarrier:
        base = self._open(name, Kind.BARRIER, parties, create, must_match=True)
        return _kernels.RedisBarrier(self.server, base, name.is_anonymous, parties)

    def configure_primitive(self, kernel: object, options: Mapping[str, object]) -> None:
        # The neutral layer (Primitive._check_options) checked the kind and both values.
        leased = (_kernels.RedisLock, _kernels.RedisRLock, _kernels.RedisSemaphore)
        assert isinstance(kernel, leased)
        lease = options.get("lease")
        on_lost = options.get("on_lost")
        assert lease is None or isinstance(lease, (int, float))
        kernel.configure(
            None if lease is None else float(lease), on_lost if callable(on_lost) else None
        )

    def unlink_primitive(self, name: ObjectName) -> bool:
        base = self._base(name)
        with self.server.translated():
            return bool(self.client.delete(*[f"{base}:{s}" for s in _ALL_SUFFIXES]))

    def unlink(self, name: ObjectName) -> bool:
        return self.unlink_primitive(name)

    def list_primitives(self) -> Iterator[Listed]:
        """The named objects under the prefix, by ``SCAN`` (:class:`~polysync.kernel.Listable`)."""
        return _inventory.list_named(self)

    def collect_orphans(self, dry_run: bool) -> list[Orphan]:
        """Orphaned keys and dead waiters' queue entries (see
        :mod:`polysync.backends.redis.inventory`)."""
        return _inventory.collect(self, dry_run)

    def picklable_settings(self) -> dict[str, Any]:
        return _connection.picklable(self.settings)

    def describe_where(self) -> str:
        return _connection.describe(self.settings)

    def describe(self) -> str:
        return f"redis ({self.describe_where()}, lease {self.lease:g} s)"
