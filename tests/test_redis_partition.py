"""The redis backend across hosts, cut apart for real: clients in network namespaces of
their own, a private ``redis-server`` on a bridge between them, and a host cut off from it
for longer than the lease while it holds (or waits for) a lock.

What is shown, with every time taken on the one monotonic clock the namespaces share:

* the holder that is cut off learns it: ``lost`` turns True and ``on_lost`` runs within
  the lease (counted from the cut) plus a small margin, and before anyone else is
  granted what it held, so no two holders ever believe they hold it at once;
* a holder on another host gets it once the lease has run out, with a strictly larger
  fencing token, and the fenced store of the docs' example refuses the old holder's
  writes once the partition heals; its ``release()`` raises ``LeaseLostError``;
* after the heal the cut-off host takes it again, with a larger token still;
* a waiter cut off while queued delays the next live waiter by about a second past the
  lease at most (its grant lapses, or, made within its last BLPOP, is held under its
  lease), and its own ``acquire()`` ends with a clear error, not a hang;
* calls made during the cut end within their own bounds, reconnects included.

Two ways to cut (see ``tests/_netns.py``): ``silent`` (the switch port goes down: every
packet is dropped, connects hang) and ``link`` (the host's interface goes down: its
route goes, connects fail at once). Needs root and iproute2: it skips without them,
and fails instead when ``CI=true`` or ``POLYSYNC_REQUIRE_NETNS=1`` (``.ci/run`` sets it).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import queue
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import polysync

from . import _netns
from .redis_servers import RedisServer, require_redis, wait_for

pytestmark = pytest.mark.timeout(60)

redis = pytest.importorskip("redis")

#: The lease of every client here: the partition lasts longer.
LEASE = 1.0
#: How long a host stays cut off (longer than the lease).
PARTITION = 2.5
#: How late after the lease (counted from the cut) the cut-off holder may learn ``lost``.
LOST_MARGIN = 0.5
#: How late after the lease (counted from the cut) another host may get what it held:
#: it checks every 0.25 s while it is first in the queue; room for a loaded machine.
TAKEOVER_MARGIN = 1.0
#: A grant to a waiter that is gone reaches the next live one within about a second
#: (the claim window, 0.5 s, and a watch slice, 0.25 s); asserted with room.
HANDOFF_BOUND = 2.0
#: Longest wait for a child's reply to anything that does not wait itself.
REPLY_TIMEOUT = 15.0

ROOT = Path(__file__).resolve().parent.parent
CHILD = Path(__file__).resolve().parent / "_netns_child.py"


@pytest.fixture(scope="module")
def net() -> Iterator[_netns.Hosts]:
    """Three hosts (network namespaces) on a private bridge; all of it gone afterwards."""
    yield from _netns.started_hosts(3)


@pytest.fixture(scope="module")
def server(net: _netns.Hosts) -> Iterator[RedisServer]:
    """The tests' own redis-server, listening on loopback and on the bridge only."""
    require_redis()
    srv = RedisServer(
        name="redis-partition",
        extra_args=["--bind", "127.0.0.1", net.server_address, "--protected-mode", "no"],
    )
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()


class Host:
    """One polysync client process in a namespace (``tests/_netns_child.py``)."""

    def __init__(self, net: _netns.Hosts, index: int, url: str, prefix: str) -> None:
        self.net = net
        self.index = index
        paths = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
        self.proc = net.popen(
            index, [sys.executable, "-u", str(CHILD), url, prefix, str(LEASE)], env
        )
        self._ids = itertools.count(1)
        self._replies: dict[int, queue.Queue[dict[str, Any]]] = {}
        self._events: list[dict[str, Any]] = []
        self._seen = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        assert self.event("ready", timeout=30.0) is not None, f"host {index} did not start"

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            message = json.loads(line)
            with self._seen:
                if "event" in message:
                    self._events.append(message)
                    self._seen.notify_all()
                else:
                    self._replies.setdefault(message["id"], queue.Queue()).put(message)

    def send(self, op: str, **fields: Any) -> Callable[[float], dict[str, Any]]:
        """Send a request; returns a function that waits (at most its argument, in s)
        for the reply."""
        rid = next(self._ids)
        with self._seen:
            box = self._replies.setdefault(rid, queue.Queue())
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"id": rid, "op": op, **fields}) + "\n")
        self.proc.stdin.flush()

        def reply(timeout: float) -> dict[str, Any]:
            try:
                return box.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(
                    f"host {self.index}: no reply to {op} {fields} within {timeout:g} s"
                ) from None

        return reply

    def call(self, op: str, wait: float = REPLY_TIMEOUT, **fields: Any) -> dict[str, Any]:
        """Send a request and wait at most *wait* s for its reply."""
        return self.send(op, **fields)(wait)

    def ok(self, op: str, wait: float = REPLY_TIMEOUT, **fields: Any) -> dict[str, Any]:
        """:meth:`call`, failing the test on an error reply."""
        result = self.call(op, wait, **fields)
        assert "error" not in result, f"host {self.index}: {op} {fields} -> {result}"
        return result

    def event(
        self, kind: str, obj: str | None = None, timeout: float = 0.0
    ) -> dict[str, Any] | None:
        """The first event *kind* (for *obj*) within *timeout* s, or ``None``."""
        deadline = time.monotonic() + timeout

        def found() -> dict[str, Any] | None:
            for e in self._events:
                if e["event"] == kind and (obj is None or e.get("obj") == obj):
                    return e
            return None

        with self._seen:
            while (hit := found()) is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._seen.wait(left)
            return hit

    def events(self, kind: str) -> list[dict[str, Any]]:
        with self._seen:
            return [e for e in self._events if e["event"] == kind]

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.call("exit", wait=5.0)
        with contextlib.suppress(OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except Exception:
            self.proc.kill()
            self.proc.wait(5)


class World:
    """What one test uses: the hosts' clients, a context of the test's own (root
    namespace, over loopback) to look at the objects, and the clean-up of all of it."""

    def __init__(self, net: _netns.Hosts, server: RedisServer) -> None:
        self.net = net
        self.server = server
        self.prefix = "p" + uuid.uuid4().hex[:8]
        self.url = f"redis://{net.server_address}:{server.port}/0"
        self.ctx = polysync.get_context("redis", url=server.url, prefix=self.prefix)
        self.hosts: dict[int, Host] = {}
        self.names: set[str] = set()

    def host(self, index: int) -> Host:
        self.hosts[index] = Host(self.net, index, self.url, self.prefix)
        return self.hosts[index]

    def open(self, kind: str, name: str, *args: Any, hosts: list[Host]) -> Any:
        """Open *name* on each of *hosts* (as object ``x``) and here; returns ours."""
        self.names.add(name)
        for h in hosts:
            h.ok("open", obj="x", kind=kind, args=list(args), name=name)
        return getattr(self.ctx, kind)(*args, name=name)

    def store_log(self) -> list[dict[str, Any]]:
        """The fenced store's accepted writes, in order."""
        raw = self.server.command("LRANGE", f"{self.prefix}:store:log", 0, -1)
        return [json.loads(entry) for entry in raw]

    def keys(self) -> list[str]:
        found: list[str] = []
        cursor = "0"
        while True:
            cursor, batch = self.server.command("SCAN", cursor, "MATCH", f"{self.prefix}:*")
            found += batch
            if cursor == "0":
                return found

    def close(self) -> None:
        try:
            self.net.heal_all()  # first: the hosts then leave cleanly
        finally:
            for h in self.hosts.values():
                h.stop()
        for name in self.names:
            self.ctx.unlink(name)
        for key in (f"{self.prefix}:store:top", f"{self.prefix}:store:log"):
            self.server.command("DEL", key)
        # Nothing permanent is left: what remains (a message to a waiter) expires.
        lasting = [k for k in self.keys() if int(self.server.command("PTTL", k)) < 0]
        for key in self.keys():
            self.server.command("DEL", key)
        assert not lasting, f"keys left without a TTL: {lasting}"


@pytest.fixture
def world(net: _netns.Hosts, server: RedisServer) -> Iterator[World]:
    w = World(net, server)
    try:
        yield w
    finally:
        w.close()


def _queued(obj: Any, n: int, what: str) -> None:
    wait_for(lambda: int(obj.statistics().waiting) >= n, 15.0, what, interval=0.01)


def _no_overlap(intervals: list[tuple[str, float, float]], capacity: int = 1) -> None:
    """At no moment do more than *capacity* of the (who, start, end) intervals overlap."""
    points = sorted(
        [(start, 1, who) for who, start, _ in intervals]
        + [(end, -1, who) for who, _, end in intervals]
    )
    held: list[str] = []
    for _, step, who in points:  # at a tie an end sorts first: touching is not overlapping
        if step == 1:
            held.append(who)
            assert len(held) <= capacity, f"held at once: {held} (intervals {intervals})"
        else:
            held.remove(who)


# -- a holder cut off ---------------------------------------------------------------------


@pytest.mark.parametrize("how", ["silent", "link"])
def test_a_lock_holder_cut_off_learns_lost_and_another_host_takes_over(
    world: World, how: str, record_property: Callable[[str, object], None]
) -> None:
    a, b = world.host(0), world.host(1)
    mine = world.open("Lock", "L", hosts=[a, b])
    got = a.ok("acquire", obj="x", timeout=5)
    assert got["result"] is True
    token_a = got["token"]
    assert a.ok("write", obj="x", token=token_a)["accepted"] is True
    waiting_b = b.send("acquire", obj="x", timeout=LEASE + PARTITION + 10)
    _queued(mine, 1, "B queued behind A")
    time.sleep(LEASE / 2)  # a renewal or more went through: A's lease is A's own by now

    cut = time.monotonic()
    world.net.cut(0, how)
    lost = a.event("lost", "x", timeout=LEASE + LOST_MARGIN + 5)
    got_b = waiting_b(LEASE + TAKEOVER_MARGIN + 10)
    assert lost is not None, "the cut-off holder was never told its lease was lost"
    assert lost["lost"] is True
    assert got_b.get("result") is True, got_b
    token_b = got_b["token"]
    learned, taken = lost["t"] - cut, got_b["at"] - cut
    record_property("lost_after_cut_s", round(learned, 3))
    record_property("taken_after_cut_s", round(taken, 3))
    record_property("tokens", [token_a, token_b])
    print(
        f"[{how}] A learned lost {learned:.3f} s after the cut; B took it {taken:.3f} s "
        f"after the cut; tokens A={token_a} B={token_b}"
    )
    assert learned <= LEASE + LOST_MARGIN, f"A learned lost {learned:.2f} s after the cut"
    assert LEASE * 0.5 <= taken <= LEASE + TAKEOVER_MARGIN, f"B took it {taken:.2f} s after"
    assert lost["t"] <= got_b["at"], "A still believed it held the lock when B got it"
    assert token_b > token_a
    assert a.ok("state", obj="x")["lost"] is True
    assert b.ok("write", obj="x", token=token_b)["accepted"] is True

    time.sleep(max(0.0, cut + PARTITION - time.monotonic()))
    world.net.heal(0)
    # The old holder's write is refused by the fence; its release says the lease was lost.
    assert a.ok("write", obj="x", token=token_a, wait=20)["accepted"] is False
    released = a.call("release", obj="x", wait=20)
    assert released.get("error") == "LeaseLostError", released
    done_b = b.ok("release", obj="x")
    again = a.ok("acquire", obj="x", timeout=10)
    assert again["result"] is True
    assert again["token"] > token_b
    assert a.ok("state", obj="x")["lost"] is False
    assert a.ok("write", obj="x", token=again["token"])["accepted"] is True
    done_a = a.ok("release", obj="x")

    _no_overlap(
        [
            ("A", got["at"], lost["t"]),
            ("B", got_b["at"], done_b["at"]),
            ("A again", again["at"], done_a["at"]),
        ]
    )
    assert [w["token"] for w in world.store_log()] == [token_a, token_b, again["token"]]
    assert len(a.events("lost")) == 1  # on_lost ran once
    assert mine.statistics().locked is False


def test_an_rlock_holder_cut_off_learns_lost_and_its_last_release_says_so(world: World) -> None:
    a, b = world.host(0), world.host(1)
    mine = world.open("RLock", "R", hosts=[a, b])
    got = a.ok("acquire", obj="x", timeout=5)
    assert a.ok("acquire", obj="x", timeout=5)["result"] is True  # depth 2
    waiting_b = b.send("acquire", obj="x", timeout=LEASE + PARTITION + 10)
    _queued(mine, 1, "B queued behind A")
    time.sleep(LEASE / 2)

    cut = time.monotonic()
    world.net.cut(0)
    lost = a.event("lost", "x", timeout=LEASE + LOST_MARGIN + 5)
    got_b = waiting_b(LEASE + TAKEOVER_MARGIN + 10)
    assert lost is not None
    assert got_b.get("result") is True, got_b
    assert lost["t"] - cut <= LEASE + LOST_MARGIN
    assert got_b["at"] - cut <= LEASE + TAKEOVER_MARGIN
    assert lost["t"] <= got_b["at"]
    assert got_b["token"] > got["token"]

    time.sleep(max(0.0, cut + PARTITION - time.monotonic()))
    world.net.heal(0)
    assert "error" not in a.call("release", obj="x")  # depth 2 -> 1: nothing to ask
    assert a.call("release", obj="x", wait=20).get("error") == "LeaseLostError"
    done_b = b.ok("release", obj="x")
    again = a.ok("acquire", obj="x", timeout=10)
    assert again["token"] > got_b["token"]
    done_a = a.ok("release", obj="x")
    _no_overlap(
        [
            ("A", got["at"], lost["t"]),
            ("B", got_b["at"], done_b["at"]),
            ("A again", again["at"], done_a["at"]),
        ]
    )


def test_a_semaphore_permit_cut_off_passes_to_a_waiter_and_only_that_one(world: World) -> None:
    a, b, c = world.host(0), world.host(1), world.host(2)
    mine = world.open("Semaphore", "S", 2, hosts=[a, b, c])
    got_a = a.ok("acquire", obj="x", timeout=5)
    got_b = b.ok("acquire", obj="x", timeout=5)
    waiting_c = c.send("acquire", obj="x", timeout=LEASE + PARTITION + 10)
    _queued(mine, 1, "C queued for a permit")
    time.sleep(LEASE / 2)

    cut = time.monotonic()
    world.net.cut(0)
    lost = a.event("lost", "x", timeout=LEASE + LOST_MARGIN + 5)
    got_c = waiting_c(LEASE + TAKEOVER_MARGIN + 10)
    assert lost is not None
    assert got_c.get("result") is True, got_c
    assert lost["t"] - cut <= LEASE + LOST_MARGIN
    assert got_c["at"] - cut <= LEASE + TAKEOVER_MARGIN
    assert lost["t"] <= got_c["at"]
    assert got_c["token"] > max(got_a["token"], got_b["token"])
    assert b.ok("state", obj="x")["lost"] is False  # B's permit was never in doubt
    assert not b.events("lost")

    time.sleep(max(0.0, cut + PARTITION - time.monotonic()))
    world.net.heal(0)
    assert a.call("release", obj="x", wait=20).get("error") == "LeaseLostError"
    done_b = b.ok("release", obj="x")
    done_c = c.ok("release", obj="x")
    assert mine.get_value() == 2  # the lost permit came back once, not twice
    _no_overlap(
        [
            ("A", got_a["at"], lost["t"]),
            ("B", got_b["at"], done_b["at"]),
            ("C", got_c["at"], done_c["at"]),
        ],
        capacity=2,
    )


# -- a waiter cut off ---------------------------------------------------------------------


@pytest.mark.parametrize("holder", ["releases at once", "releases later", "cut off too"])
def test_a_waiter_cut_off_while_queued_holds_up_the_next_for_a_second_past_the_lease(
    world: World, holder: str, record_property: Callable[[str, object], None]
) -> None:
    """A waiter cut off while queued is passed over: its grant lapses after the claim
    window (0.5 s). Only a grant made within the waiter's last BLPOP, which the server
    still holds for it, can be popped on its behalf: popped is claimed, so that one is
    the waiter's until its lease runs out. Either way the next live waiter holds the
    lock within about a second past the lease."""
    a, b, c = world.host(0), world.host(1), world.host(2)
    mine = world.open("Lock", "W", hosts=[a, b, c])
    got_c = c.ok("acquire", obj="x", timeout=5)
    waiting_a = a.send("acquire", obj="x", timeout=30)
    _queued(mine, 1, "A queued")
    time.sleep(LEASE / 2)
    cut = time.monotonic()
    world.net.cut(0)
    waiting_b = b.send("acquire", obj="x", timeout=30)
    _queued(mine, 2, "B queued behind A, whose entry is still live")
    bound = HANDOFF_BOUND
    if holder == "releases at once":
        free = c.ok("release", obj="x")["at"]
        bound += LEASE  # A's last BLPOP may still be blocked on the server: see above
    elif holder == "releases later":
        # A's last BLPOP has ended on the server; its queue entry is live for 5 s.
        time.sleep(max(0.0, cut + 2.5 - time.monotonic()))
        free = c.ok("release", obj="x")["at"]
    else:
        # The holder is cut off as well: its lease runs out at most LEASE after the cut.
        world.net.cut(2)
        free = cut + LEASE
    got_b = waiting_b(LEASE + HANDOFF_BOUND + 10)
    assert got_b.get("result") is True, got_b
    delay = got_b["at"] - free
    record_property("next_waiter_delay_s", round(delay, 3))
    print(f"[{holder}] B got the lock {delay:.3f} s after it was free")
    assert delay <= bound, f"B got it {delay:.2f} s after it was free"
    assert got_b["token"] > got_c["token"]
    end_c = free
    if holder == "cut off too":
        lost_c = c.event("lost", "x", timeout=5)
        assert lost_c is not None
        assert lost_c["t"] <= got_b["at"]
        end_c = lost_c["t"]
    # The cut-off waiter's own acquire() ends with a clear error soon, never a grant.
    gave_up = waiting_a(10)
    record_property("cut_off_waiter_gave_up_s", round(gave_up["t1"] - cut, 3))
    print(f"[{holder}] A's acquire() failed {gave_up['t1'] - cut:.3f} s after the cut")
    assert gave_up.get("error") == "BackendConnectionError", gave_up
    assert gave_up["t1"] - cut <= 5.0, f"A's acquire ended {gave_up['t1'] - cut:.1f} s after"

    world.net.heal(0)
    world.net.heal(2)
    done_b = b.ok("release", obj="x")
    again = a.ok("acquire", obj="x", timeout=10)
    assert again["result"] is True
    assert again["token"] > got_b["token"]
    done_a = a.ok("release", obj="x")
    if holder == "cut off too":
        assert c.call("release", obj="x", wait=20).get("error") == "LeaseLostError"
    wait_for(lambda: int(mine.statistics().waiting) == 0, 10.0, "nobody left queued")
    _no_overlap(
        [
            ("C", got_c["at"], end_c),
            ("B", got_b["at"], done_b["at"]),
            ("A", again["at"], done_a["at"]),
        ]
    )


# -- the caller's own bounds --------------------------------------------------------------


def test_calls_during_a_cut_end_within_their_bounds_and_lost_comes_on_time(
    world: World,
) -> None:
    a = world.host(0)
    world.open("Lock", "T", hosts=[a])
    for obj in ("y", "w"):
        a.ok("open", obj=obj, kind="Lock", name="T")
    assert a.ok("acquire", obj="x", timeout=5)["result"] is True
    # Another thread of A waits behind x: when its wait fails, its clean-up is retried
    # from the renewer's thread, which must still tell x's loss on time.
    waiting = a.send("acquire", obj="w", timeout=30)
    wait_for(lambda: int(world.ctx.Lock(name="T").statistics().waiting) == 1, 15.0, "queued")
    time.sleep(LEASE / 2)
    cut = time.monotonic()
    world.net.cut(0)
    try:
        # On a connection that goes silent, then on new ones (each attempt drops the
        # connection it timed out on): at most 1 s (the floor for a short timeout).
        for attempt in range(3):
            r = a.call("acquire", obj="y", timeout=0.5)
            assert r.get("error") == "BackendConnectionError", (attempt, r)
            assert r["t1"] - r["t0"] <= 2.0, (attempt, r["t1"] - r["t0"])
        # A new thread (a new connection) with no timeout of its own: its connect and
        # handshake are bounded by 1 s.
        r = a.call("open", obj="z", kind="Lock", name="T2")
        assert r.get("error") == "BackendConnectionError", r
        assert r["t1"] - r["t0"] <= 2.0, r["t1"] - r["t0"]
        lost = a.event("lost", "x", timeout=5)
        assert lost is not None
        assert lost["t"] - cut <= LEASE + LOST_MARGIN, lost["t"] - cut
        gave_up = waiting(10)
        assert gave_up.get("error") == "BackendConnectionError", gave_up
        assert gave_up["t1"] - cut <= 5.0
    finally:
        world.net.heal(0)
    assert a.ok("acquire", obj="y", timeout=10)["result"] is True  # x's lease lapsed
    assert a.call("release", obj="x", wait=20).get("error") == "LeaseLostError"
    a.ok("release", obj="y")
