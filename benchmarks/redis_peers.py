"""The Redis systems under comparison: how each one makes a lock and names it in tables.

Every lock here is opened through a :class:`LockSpec`, made in the job process before it
forks its participants. :meth:`LockSpec.open` is then called in each participant:

* the peers (redis-py ``Lock``, python-redis-lock, pottery ``Redlock``, sherlock, the bare
  LPUSH/BLPOP token) get a client and a lock object of their own in every process, on one
  key shared by the spec, as separate programs using one lock would;
* polysync's objects follow the multiprocessing API: the job makes them and the forked
  participants inherit them.

Every acquire has a timeout (:data:`TIMEOUT`): a timed-out acquire raises ``TimeoutError``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import _timing

#: Seconds any single blocking call may wait before the measurement fails.
TIMEOUT = _timing.TIMEOUT

POLYSYNC = "polysync"
REDIS_PY = "redis-py"
REDIS_PY_1MS = "redis-py-1ms"
PRL = "python-redis-lock"
POTTERY = "pottery"
SHERLOCK = "sherlock"
TOKEN = "token"
#: Pseudo-system of section C: the same loop with no lock at all (it must lose updates).
NOLOCK = "nolock"
#: Pseudo-systems of section A's PING row.
PING_PY = "ping-redis-py"
PING_RAW = "ping-socket"

LABELS: dict[str, str] = {
    POLYSYNC: "polysync redis",
    REDIS_PY: "redis-py Lock",
    REDIS_PY_1MS: "redis-py Lock, sleep=0.001",
    PRL: "python-redis-lock",
    POTTERY: "pottery Redlock (1 master)",
    SHERLOCK: "sherlock",
    TOKEN: "bare LPUSH/BLPOP token (redis-py)",
    NOLOCK: "no lock (control)",
    PING_PY: "redis-py PING",
    PING_RAW: "bare socket PING (no client library)",
}

#: The lock peers, in table order (polysync first when it is available).
PEERS = (REDIS_PY, REDIS_PY_1MS, PRL, POTTERY, SHERLOCK, TOKEN)

#: How often a waiter of a polling lock retries (s): B1 holds the lock for a random part
#: of this so that the poll is caught at a random point. Push-based locks are not listed.
POLL_INTERVAL: dict[str, float] = {REDIS_PY: 0.1, POTTERY: 0.2, SHERLOCK: 0.1, REDIS_PY_1MS: 0.001}

#: Key prefix of everything this suite names itself (the server is private anyway).
PREFIX = "psbench"


def new_key(what: str) -> str:
    """A key no other job uses."""
    return f"{PREFIX}:{what}:{os.getpid()}:{secrets.token_hex(4)}"


def redis_client(url: str) -> Any:
    """A redis-py client of this process (hiredis parser when installed)."""
    import redis

    # BLPOP waits up to TIMEOUT on the server: the socket must wait longer than that.
    return redis.Redis.from_url(url, socket_timeout=2 * TIMEOUT, socket_connect_timeout=TIMEOUT)


# -- polysync ----------------------------------------------------------------------------


def polysync_context(url: str) -> Any:
    """``polysync.get_context("redis", url=url)`` (raises while the backend does not exist)."""
    import polysync

    return polysync.get_context("redis", url=url)


def close_quietly(obj: Any) -> None:
    """Call ``obj.close()`` if the object has one (polysync objects may)."""
    close = getattr(obj, "close", None)
    if callable(close):
        with contextlib.suppress(Exception):  # a tear-down must not hide the figures
            close()


# -- locks -------------------------------------------------------------------------------


@dataclass
class OpenLock:
    """A lock as one process uses it: ``acquire()`` raises ``TimeoutError`` after TIMEOUT."""

    acquire: Callable[[], None]
    release: Callable[[], object]
    keep: list[Any] = field(default_factory=list)


def _timed(acquire: Callable[[], object], what: str) -> Callable[[], None]:
    def timed() -> None:
        if not acquire():
            raise TimeoutError(f"{what}: acquire took more than {TIMEOUT} s")

    return timed


@dataclass
class LockSpec:
    """One lock shared by the participants of a job: made before the fork, opened after."""

    system: str
    url: str
    key: str = ""
    shared: Any = None  # polysync: the object itself, inherited by the participants

    def open(self) -> OpenLock:
        """The lock as this process uses it (the peers: a client and lock object of its own)."""
        s = self.system
        if s == POLYSYNC:
            lock = self.shared
            acquire = lock.acquire
            return OpenLock(_timed(lambda: acquire(True, TIMEOUT), s), lock.release)
        client = redis_client(self.url)
        if s in (REDIS_PY, REDIS_PY_1MS):
            # redis-py's default: poll every 0.1 s (REDIS_PY_1MS: every 1 ms)
            lock = client.lock(self.key, sleep=POLL_INTERVAL[s], blocking_timeout=TIMEOUT)
            return OpenLock(_timed(lock.acquire, s), lock.release, [client])
        if s == PRL:
            import redis_lock

            lock = redis_lock.Lock(client, self.key)
            prl_acquire = lock.acquire
            return OpenLock(
                _timed(lambda: prl_acquire(blocking=True, timeout=TIMEOUT), s),
                lock.release,
                [client],
            )
        if s == POTTERY:
            from pottery import Redlock

            lock = Redlock(key=self.key, masters={client})
            pottery_acquire = lock.acquire
            return OpenLock(
                _timed(lambda: pottery_acquire(blocking=True, timeout=TIMEOUT), s),
                lock.release,
                [client],
            )
        if s == SHERLOCK:
            import sherlock

            lock = sherlock.RedisLock(self.key, client=client, timeout=TIMEOUT)
            sherlock_acquire = lock.acquire

            def acquire_sherlock() -> None:
                try:
                    sherlock_acquire()
                except sherlock.LockTimeoutException:
                    raise TimeoutError(f"sherlock: acquire took more than {TIMEOUT} s") from None

            return OpenLock(acquire_sherlock, lock.release, [client])
        if s == TOKEN:
            blpop, lpush, key = client.blpop, client.lpush, self.key

            def take() -> None:
                if blpop([key], timeout=TIMEOUT) is None:
                    raise TimeoutError(f"token: BLPOP took more than {TIMEOUT} s")

            return OpenLock(take, lambda: lpush(key, b"t"), [client])
        raise ValueError(f"no Lock for {s!r}")

    def close(self) -> None:
        if self.shared is not None:
            close_quietly(self.shared)


def lock_spec(system: str, url: str) -> LockSpec:
    """Make the lock of *system* (call it in the job, before forking the participants)."""
    if system == POLYSYNC:
        # Named, like every peer's lock (a key): the use case the peers serve.
        return LockSpec(system, url, shared=polysync_context(url).Lock(name=new_key("lock")))
    spec = LockSpec(system, url, new_key("lock"))
    if system == TOKEN:  # one token in the list = the lock is free
        client = redis_client(url)
        try:
            client.delete(spec.key)
            client.lpush(spec.key, b"t")
        finally:
            client.close()
    return spec


# -- the token pair of B2 (the floor of a round trip through redis-py) --------------------


@dataclass
class TokenQueue:
    """A list used as a semaphore: ``release`` = LPUSH, ``acquire`` = BLPOP with a timeout."""

    url: str
    key: str

    def open(self) -> OpenLock:
        client = redis_client(self.url)
        blpop, lpush, key = client.blpop, client.lpush, self.key

        def take() -> None:
            if blpop([key], timeout=TIMEOUT) is None:
                raise TimeoutError(f"BLPOP {key} took more than {TIMEOUT} s")

        return OpenLock(take, lambda: lpush(key, b"t"), [client])


# -- PING --------------------------------------------------------------------------------


class RawPing:
    """PING over a bare socket (RESP inline command), no client library."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.sock = socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or 0), timeout=TIMEOUT
        )
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if parts.password:
            user = parts.username or "default"
            self.sock.sendall(f"AUTH {user} {parts.password}\r\n".encode())
            if not self.sock.recv(64).startswith(b"+OK"):
                raise ConnectionError("AUTH failed")

    def ping(self) -> None:
        self.sock.sendall(b"PING\r\n")
        reply = self.sock.recv(64)
        if reply != b"+PONG\r\n":
            raise ConnectionError(f"unexpected PING reply {reply!r}")

    def close(self) -> None:
        self.sock.close()
