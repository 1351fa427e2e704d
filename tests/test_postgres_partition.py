"""The postgres backend with a client cut off by a network partition (its own namespace).

A holder runs in a network namespace of its own (``tests/_netns.py``), reaching a private
PostgreSQL on the bridge; the test drops its link silently (every packet lost, no error),
as a failed switch port would. The server then ends the holder's session when its TCP
keepalives give up (polysync sets them on each session: ~16 s), which releases the lock
to a waiter; the holder's own keepalives (~11 s) tell it first that its session is gone
(``lost``, ``on_lost``), so there is no moment when both believe they hold it. Needs
root and iproute2: it skips without them, and fails instead when ``CI=true`` or
``POLYSYNC_REQUIRE_NETNS=1``.
"""

from __future__ import annotations

import os
import sys
import textwrap
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import polysync

from . import _netns
from .pg_servers import PASSWORD, USER, PrivatePostgres, require_postgres

pytestmark = pytest.mark.timeout(120)

psycopg = pytest.importorskip("psycopg")


@pytest.fixture(scope="module")
def net() -> Iterator[_netns.Hosts]:
    """One host (a network namespace) on a private bridge; all of it gone afterwards."""
    yield from _netns.started_hosts(1)


class _BridgedPostgres(PrivatePostgres):
    """A private cluster listening on the bridge too, and letting its subnet in."""

    def __init__(self, bridge: str) -> None:
        super().__init__()
        self.bridge = bridge

    def _args(self) -> list[str]:
        args = super()._args()
        i = args.index("listen_addresses=127.0.0.1")
        args[i] = f"listen_addresses=127.0.0.1,{self.bridge}"
        return args

    def _spawn(self, timeout: float) -> None:
        assert self.dir is not None
        subnet = self.bridge.rsplit(".", 1)[0] + ".0/24"
        with open(self.dir / "data" / "pg_hba.conf", "a") as hba:
            hba.write(f"host all all {subnet} scram-sha-256\n")
        super()._spawn(timeout)

    def url_on_bridge(self) -> str:
        from urllib.parse import quote

        return f"postgresql://{USER}:{quote(PASSWORD, safe='')}@{self.bridge}:{self.port}/postgres"


@pytest.fixture
def server(net: _netns.Hosts) -> Iterator[_BridgedPostgres]:
    require_postgres()
    pg = _BridgedPostgres(net.server_address)
    try:
        yield pg.start()
    finally:
        pg.stop()


_HOLDER = """
import time, polysync
ctx = polysync.get_context("postgres", url={url!r}, schema="part")
lost_at = []
lock = ctx.Lock(name="cut", on_lost=lambda: lost_at.append(time.time()))
lock.acquire()
print("held", lock.fencing_token, flush=True)
deadline = time.monotonic() + 60
while not lock.lost and time.monotonic() < deadline:
    time.sleep(0.02)
print("lost", lock.lost, lost_at[0] if lost_at else 0.0, flush=True)
input()  # the test heals the link, then says go
try:
    lock.release()
    print("released no error", flush=True)
except polysync.NotHeldError as exc:
    print("released", type(exc).__name__, flush=True)
"""


def _line(proc: Any, word: str) -> list[str]:
    line = proc.stdout.readline().strip()
    assert line.startswith(word), f"child said {line!r}, expected {word!r}"
    return line.split()


def test_a_partitioned_holder_learns_it_lost_the_lock_before_anyone_gets_it(
    net: _netns.Hosts, server: _BridgedPostgres
) -> None:
    holder = net.popen(
        0,
        [sys.executable, "-c", textwrap.dedent(_HOLDER.format(url=server.url_on_bridge()))],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )
    try:
        token = int(_line(holder, "held")[1])
        ctx = polysync.get_context("postgres", url=server.url, schema="part")
        waiter = ctx.Lock(name="cut")
        assert waiter.acquire(timeout=0.2) is False
        net.cut(0, "silent")
        cut = time.monotonic()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", polysync.OwnerDiedWarning)
            assert waiter.acquire(timeout=60) is True  # the server dropped the holder
        granted = time.time()
        assert waiter.owner_died
        assert waiter.fencing_token is not None
        assert waiter.fencing_token > token
        print(f"granted {time.monotonic() - cut:.1f} s after the cut")
        words = _line(holder, "lost")
        assert words[1] == "True"
        lost_at = float(words[2])
        assert 0 < lost_at < granted, "the holder was told only after the lock was re-granted"
        net.heal(0)
        assert holder.stdin is not None
        holder.stdin.write("go\n")
        holder.stdin.flush()
        assert _line(holder, "released")[1] == "LeaseLostError"
        waiter.release()
        waiter.unlink()
    finally:
        holder.kill()
        holder.wait(10)
        ctx_backend = polysync.get_context("postgres", url=server.url, schema="part").backend
        ctx_backend.close()
