"""The redis server as the kernels see it: one object for every exchange, its scripts and ids.

A :class:`RedisServer` owns the redis-py client and its per-thread lanes, loads the Lua
scripts, runs every exchange (a script, a script with a BLPOP in one round trip, a
BLPOP in slices) within a bounded time, translates redis-py's errors into polysync's,
makes the ids of owners and waits, and keeps anonymous objects alive through the
renewer. The backend builds one and hands it to each kernel.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from importlib import resources
from typing import Any

import redis
import redis.exceptions

from polysync._validate import MAX_VALUE
from polysync.backends.redis import connection as _connection
from polysync.backends.redis.lanes import Lanes, server_demoted
from polysync.backends.redis.lease import Renewer
from polysync.derived.liveness import current_pid
from polysync.errors import BackendConnectionError, PolysyncError
from polysync.kernel import Holder

# RedisClusterException (no reachable node, ...) is not a RedisError.
_REDIS_ERRORS = (redis.exceptions.RedisError, redis.exceptions.RedisClusterException)
_CONNECTION_ERRORS = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.RedisClusterException,
)
_NO_SCRIPT = redis.exceptions.NoScriptError
#: A script that only a master runs: one without the no-writes flag is refused by a
#: replica (READONLY) before it starts. Older servers fail to compile it, which says
#: nothing either way and is ignored.
_WRITABLE_PROBE = "#!lua\nreturn 1"
#: Seconds a reply may take beyond what its command itself waits, before the server is
#: taken to have stopped answering.
READ_SLACK = 1.0
#: Longest single BLPOP (seconds); see RedisServer.pop.
POP_SLICE = 2.0
#: Longest single BLPOP (seconds) of a Lock or Semaphore waiter among the first two in
#: the queue: they watch a grant to the waiter ahead of them, which lapses after CLAIM.
#: A grant made during a slice is seen at its end, so a lapse reaches the next waiter
#: within WATCH_SLICE + CLAIM (plus a margin and round trips): under a second.
WATCH_SLICE = 0.25
#: Seconds a grant pushed to a queued waiter may wait for its waiter to claim it, which
#: the waiter does by popping it (a grant is revoked, its message deleted, only while
#: nobody has popped it). A live waiter is always blocked on its list, or about to be, so
#: only a waiter that is gone (killed, or it gave up while the server could not be
#: reached) misses it: the grant lapses, and the next waiter gets the object that much
#: later, whatever the lease. The scripts get it as CLAIM_MS.
CLAIM = 0.5
#: Seconds a Lock or Semaphore waiter's queue entry stays valid unless the waiter renews
#: it (each of its BLPOP slices does): the entry of a waiter that is gone lapses, and is
#: passed over, within this. The scripts get it as LIVE_MS.
LIVENESS = 5.0
#: Lifetime (ms) of a message sent to a waiter that has not popped it (MESSAGE_TTL_MS
#: in the scripts too).
MESSAGE_TTL_MS = 60_000
#: Seconds a wait's clean-up step (cancel) may take, and a new connection's handshake.
CLEANUP_TIMEOUT = 1.0


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def holder_of(owner: str) -> Holder | None:
    """Who holds a lock whose owner id (:meth:`RedisServer.holder_id`) is *owner*."""
    if not owner:
        return None
    parts = owner.split(":", 4)
    try:
        if len(parts) == 5:
            return Holder(pid=int(parts[1]), thread=int(parts[3]), host=parts[4])
        return Holder(pid=int(parts[1]))
    except (IndexError, ValueError):  # an id of another format: someone holds it
        return Holder()


def translate(exc: Exception, where: str) -> PolysyncError:
    """redis-py's *exc* as polysync's error, naming the server *where* (secret-free)."""
    if server_demoted(exc):
        return BackendConnectionError(
            f"the redis server at {where} is no longer a master (a failover?): {exc}"
        )
    if isinstance(exc, _CONNECTION_ERRORS):
        return BackendConnectionError(
            f"the redis server at {where} cannot be reached (or went away): {exc}"
        )
    return PolysyncError(f"redis at {where} failed: {exc}")


@contextlib.contextmanager
def translated(where: str) -> Iterator[None]:
    """redis-py's errors as polysync's, with the server named without secrets."""
    try:
        yield
    except _REDIS_ERRORS as exc:
        raise translate(exc, where) from exc


class RedisServer:
    """The deployment behind one backend instance, and every exchange with it."""

    def __init__(self, client: Any, *, where: str, anonymous_ttl: float) -> None:
        self.client = client
        self.where = where
        self.anonymous_ttl = anonymous_ttl
        self._lanes = Lanes(client, handshake_timeout=CLEANUP_TIMEOUT)
        pool_kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
        self._op_timeout = pool_kwargs.get("socket_timeout") or _connection.OP_TIMEOUT
        self._scripts: dict[str, Any] = {}
        self.renewer = Renewer()
        self._client_id = secrets.token_hex(6)
        # Host names hold none of the separators the scripts use (":", "|", "#").
        self._host = socket.gethostname().translate({ord(c): "_" for c in ":|#"})
        self._counter = itertools.count()

    def translated(self) -> contextlib.AbstractContextManager[None]:
        return translated(self.where)

    def translate(self, exc: Exception) -> PolysyncError:
        return translate(exc, self.where)

    def _script(self, name: str) -> Any:
        script = self._scripts.get(name)
        if script is None:  # two threads may both register it: harmless, and no lock to fork
            lua = resources.files(__package__).joinpath("lua")
            body = lua.joinpath(f"{name}.lua").read_text()
            if name not in ("open", "touch"):
                # The operation runs as a function so that keep_alive() follows whichever
                # branch returned.
                body = (
                    f"local CLAIM_MS = {int(CLAIM * 1000)}\n"
                    f"local LIVE_MS = {int(LIVENESS * 1000)}\n"
                    f"local MAX_VALUE = {MAX_VALUE}\n"
                    f"local MESSAGE_TTL_MS = {MESSAGE_TTL_MS}\n"
                    + lua.joinpath("lib.lua").read_text()
                    + "\nlocal function main()\n"
                    + body
                    + "\nend\nlocal result = main()\nkeep_alive()\nreturn result\n"
                )
            script = self._scripts[name] = self.client.register_script(body)
        return script

    def limit(self, timeout: float | None, exact: bool = False) -> float:
        """The bound of one exchange for a caller with *timeout* left (see :meth:`run`)."""
        limit = self._op_timeout
        if timeout is not None:
            limit = min(limit, max(0.001, timeout) if exact else max(READ_SLACK, timeout))
        return limit

    def run(
        self,
        script: str,
        keys: list[str],
        args: list[Any],
        timeout: float | None = None,
        *,
        exact: bool = False,
    ) -> Any:
        """Run *script*; a server that does not answer within *timeout* (the caller's
        remaining time, at least ``READ_SLACK``; at most the operation timeout) raises.
        With *exact*, *timeout* is the bound itself, however short (a lease's renewal,
        which must not outlast the lease)."""
        # Every operation's hot path: EVALSHA on this thread's own connection (see
        # _lanes), an inline try rather than translated(), and the script loaded only when
        # the server lacks it.
        registered = self._script(script)
        limit = self.limit(timeout, exact)
        try:
            if self._lanes.available:
                (reply,) = self._lanes.execute(
                    ("EVALSHA", registered.sha, len(keys), *keys, *args), timeout=limit
                )
                if isinstance(reply, redis.exceptions.NoScriptError):
                    # A restarted or flushed server: EVAL sends the body and loads it, in
                    # one more round trip.
                    (reply,) = self._lanes.execute(
                        ("EVAL", registered.script, len(keys), *keys, *args), timeout=limit
                    )
                if not isinstance(reply, redis.exceptions.ResponseError):
                    return reply
                raise reply
            return registered(keys=keys, args=args)  # through the client: loads it if need be
        except _REDIS_ERRORS as exc:
            raise self.translate(exc) from exc

    def run_pop_run(
        self,
        script: str,
        keys: list[str],
        before: list[Any] | None,
        key: str,
        step: float,
        after: list[Any] | None,
    ) -> tuple[Any, str | None, Any] | None:
        """In one round trip: run *script* with the arguments *before*, BLPOP *key* for
        at most *step* seconds, run *script* with *after* (either run may be ``None``).

        Returns the replies ``(before's, the popped message or None, after's)``, or
        ``None`` where this is not possible (Cluster: its pipelines carry no blocking
        commands). Redis runs the commands of one connection in order, so *after* runs
        on the server as soon as the BLPOP returns, with no round trip of its own. A
        *before* that runs must push to *key* whenever it would not queue the caller, so
        the BLPOP never waits for nothing.

        Scripts missing (a restarted server, ``SCRIPT FLUSH``) cost one more round trip,
        never the BLPOP's slice: when *before* did not run, the BLPOP it came with is
        woken at once (through the pool) and the exchange is sent again with the script's
        body (``EVAL``, which loads it).
        """
        if not self._lanes.available:
            return None
        step = max(0.001, step)  # 0 would be forever
        registered = self._script(script)
        n = len(keys)
        commands: list[tuple[Any, ...]] = []
        if before is not None:
            commands.append(("EVALSHA", registered.sha, n, *keys, *before))
        commands.append(("BLPOP", key, step))
        if after is not None:
            commands.append(("EVALSHA", registered.sha, n, *keys, *after))

        def wake_if_not_run(index: int, reply: Any) -> None:
            if before is not None and index == 0 and isinstance(reply, _NO_SCRIPT):
                self._wake(key)

        try:
            replies = self._lanes.execute(
                *commands, timeout=step + READ_SLACK, on_reply=wake_if_not_run
            )
            if before is not None and isinstance(replies[0], _NO_SCRIPT):
                # Sent again, the body first; the DEL drops the wake-up if the BLPOP had
                # returned before it came (nothing else writes there before the script).
                commands[0] = ("EVAL", registered.script, n, *keys, *before)
                again = self._lanes.execute(("DEL", key), *commands, timeout=step + READ_SLACK)
                replies = again[1:]
        except _REDIS_ERRORS as exc:
            raise self.translate(exc) from exc
        first = replies[0] if before is not None else None
        found = replies[1] if before is not None else replies[0]
        last = replies[-1] if after is not None else None
        if isinstance(last, _NO_SCRIPT):  # the BLPOP has returned: no wait lost
            assert after is not None
            last = self.run(script, keys, after)
        for reply in (first, found, last):
            if isinstance(reply, redis.exceptions.ResponseError):
                raise self.translate(reply) from reply
        return first, None if found is None else text(found[1]), last

    def run_then_pop(
        self, script: str, keys: list[str], before: list[Any] | None, key: str, step: float
    ) -> tuple[Any, str | None]:
        """Run *script* with *before* (if any), then BLPOP *key* for at most *step*
        seconds: one round trip where :meth:`run_pop_run` can, else two. Returns the
        script's reply (``None`` without *before*) and the popped message or ``None``."""
        replies = self.run_pop_run(script, keys, before, key, step, None)
        if replies is not None:
            return replies[0], replies[1]
        reply = None if before is None else self.run(script, keys, before)
        with self.translated():
            found = self.client.blpop([key], timeout=max(0.001, step))
        return reply, None if found is None else text(found[1])

    def _wake(self, key: str) -> None:
        """Push a throw-away message to *key*, through the pool, so a BLPOP on it returns."""
        with self.client.pipeline(transaction=False) as pipe:
            pipe.rpush(key, "")
            pipe.pexpire(key, int(POP_SLICE * 1000) + 1000)
            pipe.execute()

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
                return text(found[1])
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def owner_id(self) -> str:
        """This (client, process, thread)."""
        return f"{self._client_id}:{os.getpid()}:{threading.get_ident()}"

    def unique_id(self) -> str:
        """An id no other acquisition or wait anywhere will use (no system call)."""
        return f"{self._client_id}:{current_pid()}:{next(self._counter)}"

    def holder_id(self) -> str:
        """A :meth:`unique_id` that also says who holds: ``<unique id>:<thread>:<host>``."""
        return f"{self.unique_id()}:{threading.get_ident()}:{self._host}"

    def keep_alive(self, keys: list[str], on_fork: Any = None) -> int:
        ttl_ms = int(self.anonymous_ttl * 1000)
        return self.renewer.add(
            lambda limit: bool(int(self.run("touch", keys, [ttl_ms], limit, exact=True))),
            interval=self.anonymous_ttl / 3,
            give_up=self.anonymous_ttl,
            on_lost=lambda: None,
            on_fork=on_fork,
        )
