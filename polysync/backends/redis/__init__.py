"""The redis backend: every primitive as atomic Lua over keys sharing one hash tag, across hosts.

Keys of one primitive are ``<prefix>:{<name>}:<part>``; the braces make them one Redis
Cluster hash slot, so every script runs on one node. Waiters block on their own list
and are woken by the script that grants them (never a sleep loop). Locks, RLocks and
Semaphore permits are leases renewed by a background thread while the holder's process
lives, and every grant carries a fencing token that strictly increases per primitive.
Anonymous objects expire ``anonymous_ttl`` seconds after the last process using them
stops touching them; named ones persist until ``unlink()``. redis-py's errors reach
users as polysync's own, chained.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import secrets
import threading
import time
from collections.abc import Iterator, Mapping
from importlib import resources
from typing import Any, ClassVar

import redis
import redis.exceptions

from polysync import derived
from polysync.backends.redis import _connection, _kernels
from polysync.backends.redis._lanes import Lanes, server_demoted
from polysync.backends.redis._lease import Renewer
from polysync.derived import BaseBackend
from polysync.errors import (
    BackendConnectionError,
    KindMismatchError,
    NotFoundError,
    PolysyncError,
)
from polysync.kernel import Capability, Kind

__all__ = ["RedisBackend"]

# RedisClusterException (no reachable node, ...) is not a RedisError.
_REDIS_ERRORS = (redis.exceptions.RedisError, redis.exceptions.RedisClusterException)
_CONNECTION_ERRORS = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.RedisClusterException,
)
#: A script that only a master runs: one without the no-writes flag is refused by a
#: replica (READONLY) before it starts. Older servers fail to compile it, which says
#: nothing either way and is ignored.
_WRITABLE_PROBE = "#!lua\nreturn 1"
#: Seconds a reply may take beyond what its command itself waits, before the server is
#: taken to have stopped answering.
READ_SLACK = 1.0
#: Longest single BLPOP (seconds); see RedisBackend.pop.
POP_SLICE = 2.0
_ALL_SUFFIXES = ("k", "o", "f", "q", "h", "v", "e", "b")


def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a number of seconds > 0, not {value!r}")
    return float(value)


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
        super().__init__(**options)
        s = self.settings
        if s["url"] is not None and not isinstance(s["url"], str):
            raise TypeError(f"url must be a str, not {type(s['url']).__name__}")
        if not isinstance(s["prefix"], str) or not s["prefix"] or "{" in s["prefix"]:
            raise ValueError(f"prefix must be a non-empty str without braces, not {s['prefix']!r}")
        self.lease = _positive("lease", s["lease"])
        self.anonymous_ttl = _positive("anonymous_ttl", s["anonymous_ttl"])
        with self.translated():  # a cluster client connects at once
            self.client = _connection.connect(s)
        self._lanes = Lanes(self.client, handshake_timeout=_kernels.CLEANUP_TIMEOUT)
        pool_kwargs = getattr(
            getattr(self.client, "connection_pool", None), "connection_kwargs", {}
        )
        self._op_timeout = pool_kwargs.get("socket_timeout") or _connection.OP_TIMEOUT
        self._scripts: dict[str, Any] = {}
        self.renewer = Renewer()
        self._client_id = secrets.token_hex(6)
        self._counter = itertools.count()

    # -- plumbing ----------------------------------------------------------------------

    @contextlib.contextmanager
    def translated(self) -> Iterator[None]:
        """redis-py's errors as polysync's, with the server named without secrets."""
        try:
            yield
        except _REDIS_ERRORS as exc:
            raise self.translate(exc) from exc

    def translate(self, exc: Exception) -> PolysyncError:
        if server_demoted(exc):
            return BackendConnectionError(
                f"the redis server at {self.describe_where()} is no longer a master (a "
                f"failover?): {exc}"
            )
        if isinstance(exc, _CONNECTION_ERRORS):
            return BackendConnectionError(
                f"the redis server at {self.describe_where()} cannot be reached (or went "
                f"away): {exc}"
            )
        return PolysyncError(f"redis at {self.describe_where()} failed: {exc}")

    def _script(self, name: str) -> Any:
        script = self._scripts.get(name)
        if script is None:  # two threads may both register it: harmless, and no lock to fork
            lua = resources.files(__package__).joinpath("lua")
            body = lua.joinpath(f"{name}.lua").read_text()
            if name not in ("open", "touch"):
                # The operation runs as a function so that keep_alive() follows whichever
                # branch returned.
                body = (
                    f"local CLAIM_MS = {int(_kernels.CLAIM * 1000)}\n"
                    + lua.joinpath("lib.lua").read_text()
                    + "\nlocal function main()\n"
                    + body
                    + "\nend\nlocal result = main()\nkeep_alive()\nreturn result\n"
                )
            script = self._scripts[name] = self.client.register_script(body)
        return script

    def run(
        self, script: str, keys: list[str], args: list[Any], timeout: float | None = None
    ) -> Any:
        """Run *script*; a server that does not answer within *timeout* (the caller's
        remaining time, at least ``READ_SLACK``; at most the operation timeout) raises."""
        # Every operation's hot path: EVALSHA on this thread's own connection (see
        # _lanes), an inline try rather than translated(), and the script loaded only when
        # the server lacks it.
        registered = self._script(script)
        limit = self._op_timeout
        if timeout is not None:
            limit = min(limit, max(READ_SLACK, timeout))
        try:
            if self._lanes.available:
                (reply,) = self._lanes.execute(
                    ("EVALSHA", registered.sha, len(keys), *keys, *args), timeout=limit
                )
                if not isinstance(reply, redis.exceptions.ResponseError):
                    return reply
                if not isinstance(reply, redis.exceptions.NoScriptError):
                    raise reply
            return registered(keys=keys, args=args)  # through the client: loads it if need be
        except _REDIS_ERRORS as exc:
            raise self.translate(exc) from exc

    def run_then_pop(
        self, script: str, keys: list[str], args: list[Any], key: str, timeout: float | None
    ) -> tuple[Any, str | None] | None:
        """Run *script* and a BLPOP on *key* in one round trip (``None``: not possible here).

        The script must push to *key* whenever it would not queue the caller, so the
        BLPOP never waits for nothing. The BLPOP lasts at most one ``POP_SLICE``.
        """
        if not self._lanes.available:  # Cluster: its pipelines carry no blocking commands
            return None
        step = POP_SLICE if timeout is None else min(POP_SLICE, max(0.001, timeout))
        sha = self._script(script).sha
        try:
            result, found = self._lanes.execute(
                ("EVALSHA", sha, len(keys), *keys, *args),
                ("BLPOP", key, step),
                timeout=step + READ_SLACK,
            )
        except _REDIS_ERRORS as exc:
            raise self.translate(exc) from exc
        if isinstance(result, redis.exceptions.NoScriptError):
            return None  # the script did not run (a restarted server): the two-step way
        if isinstance(result, redis.exceptions.ResponseError):
            raise self.translate(result) from result
        if isinstance(found, redis.exceptions.ResponseError):
            raise self.translate(found) from found
        return result, None if found is None else _kernels.text(found[1])

    def pop(self, key: str, timeout: float | None) -> str | None:
        """Block on *key* for at most *timeout* seconds (``None``: forever).

        Each BLPOP lasts at most ``POP_SLICE`` and its reply is awaited ``READ_SLACK``
        longer, so a server that stopped answering is noticed within a slice plus the
        slack. Nothing is lost between slices: a message waits in the list for the next
        BLPOP.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        first = True
        while True:
            step = POP_SLICE
            if deadline is not None:
                step = min(step, max(0.001, deadline - time.monotonic()))  # 0 = forever
            with self.translated():
                if self._lanes.available:
                    # Each later slice first checks that the server still takes writes: a
                    # master demoted by a failover keeps serving BLPOP, and would keep this
                    # waiter away from the new master (and its wake-ups) until its timeout.
                    # A refusal comes back in place of the BLPOP's reply too (see _lanes).
                    probe = () if first else (("EVAL", _WRITABLE_PROBE, 0),)
                    *_, found = self._lanes.execute(
                        *probe, ("BLPOP", key, step), timeout=step + READ_SLACK
                    )
                else:
                    found = self.client.blpop([key], timeout=step)
                if isinstance(found, redis.exceptions.ResponseError):
                    raise found
            first = False
            if found is not None:
                return _kernels.text(found[1])
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def owner_id(self) -> str:
        """This (client, process, thread)."""
        return f"{self._client_id}:{os.getpid()}:{threading.get_ident()}"

    def unique_id(self) -> str:
        """An id no other acquisition or wait anywhere will use (no system call)."""
        return f"{self._client_id}:{derived.current_pid()}:{next(self._counter)}"

    def keep_alive(self, keys: list[str], on_fork: Any = None) -> int:
        ttl_ms = int(self.anonymous_ttl * 1000)
        return self.renewer.add(
            lambda: bool(int(self.run("touch", keys, [ttl_ms]))),
            interval=self.anonymous_ttl / 3,
            give_up=self.anonymous_ttl,
            on_lost=lambda: None,
            on_fork=on_fork,
        )

    def _base(self, name: str) -> str:
        tag = (
            name
            if "{" not in name and "}" not in name
            else ("h:" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:40])
        )
        return f"{self.settings['prefix']}:{{{tag}}}"

    def _open(
        self,
        name: str,
        kind: Kind,
        param: int,
        create: bool,
        *,
        init_suffix: str | None = None,
        init_value: int = 0,
        must_match: bool = False,
    ) -> str:
        base = self._base(name)
        anonymous = self.is_anonymous(name)
        keys = [f"{base}:k"] + ([f"{base}:{init_suffix}"] if init_suffix else [])
        ttl = int(self.anonymous_ttl * 1000) if anonymous else 0
        found = self.run("open", keys, [f"{kind.value}:{param}", int(create), ttl, init_value])
        if found is None:
            raise NotFoundError(f"{_display(name)} does not exist (any more) on the server")
        found = _kernels.text(found)
        if found:
            found_kind, found_param, _ttl = found.rsplit(":", 2)
            if found_kind != kind.value:
                raise KindMismatchError(
                    f"{_display(name)} already exists as a {found_kind} (asked for a "
                    f"{kind.value}): choose another name, or unlink the existing object"
                )
            if must_match and int(found_param) != param:
                raise KindMismatchError(
                    f"{_display(name)} already exists as a {kind.value} of {found_param} "
                    f"(asked for {param}): open it the same way, or unlink it first"
                )
        return base

    # -- the kernels -------------------------------------------------------------------

    def open_lock(self, name: str, *, create: bool) -> _kernels.RedisLock:
        base = self._open(name, Kind.LOCK, 1, create)
        return _kernels.RedisLock(self, base, self.is_anonymous(name))

    def open_rlock(self, name: str, *, create: bool) -> _kernels.RedisRLock:
        base = self._open(name, Kind.RLOCK, 1, create)
        return _kernels.RedisRLock(_kernels.RedisLock(self, base, self.is_anonymous(name)))

    def open_semaphore(
        self, name: str, value: int, *, bounded: bool, create: bool
    ) -> _kernels.RedisSemaphore:
        kind = Kind.BOUNDED_SEMAPHORE if bounded else Kind.SEMAPHORE
        base = self._open(
            name, kind, value, create, init_suffix="v", init_value=value, must_match=bounded
        )
        return _kernels.RedisSemaphore(
            self, base, self.is_anonymous(name), value if bounded else None
        )

    def open_event(self, name: str, *, create: bool) -> _kernels.RedisEvent:
        base = self._open(name, Kind.EVENT, 0, create)
        return _kernels.RedisEvent(self, base, self.is_anonymous(name))

    def open_condition(self, name: str, *, create: bool) -> _kernels.RedisCondition:
        base = self._open(name, Kind.CONDITION, 0, create)
        return _kernels.RedisCondition(self, base, self.is_anonymous(name))

    def open_barrier(self, name: str, parties: int, *, create: bool) -> _kernels.RedisBarrier:
        base = self._open(name, Kind.BARRIER, parties, create, must_match=True)
        return _kernels.RedisBarrier(self, base, self.is_anonymous(name), parties)

    def configure_primitive(self, kernel: Any, options: Mapping[str, Any]) -> None:
        lease = options.get("lease")
        if lease is not None:
            lease = _positive("lease", lease)
        on_lost = options.get("on_lost")
        if on_lost is not None and not callable(on_lost):
            raise TypeError(f"on_lost must be callable, not {type(on_lost).__name__}")
        kernel.configure(lease=lease, on_lost=on_lost)

    def unlink_primitive(self, name: str) -> bool:
        base = self._base(name)
        with self.translated():
            return bool(self.client.delete(*[f"{base}:{s}" for s in _ALL_SUFFIXES]))

    def unlink(self, name: str) -> bool:
        return self.unlink_primitive(name)

    def picklable_settings(self) -> dict[str, Any]:
        return _connection.picklable(self.settings)

    def describe_where(self) -> str:
        return _connection.describe(self.settings)

    def describe(self) -> str:
        return f"redis ({self.describe_where()}, lease {self.lease:g} s)"


def _display(name: str) -> str:
    tag, _, rest = name.partition(":")
    return f"the object named {rest!r}" if tag == "n" else "the anonymous object"
