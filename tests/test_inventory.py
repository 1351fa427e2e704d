"""Tests of ``polysync ls`` and ``polysync gc`` (listing and orphan collection) on real objects:
posix in /dev/shm with SIGKILLed processes, redis on a private server, thread, and a plugin
that cannot list."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import polysync
from polysync import cli
from polysync.kernel import Capability, Kind, Listed

from .conftest import polysync_shm_entries, wait_until
from .redis_servers import RedisServer
from .test_cli import _env, _held_by_child, _redis_keys, _run

pytestmark = pytest.mark.timeout(120)

POSIX = pytest.mark.skipif(
    not sys.platform.startswith("linux")
    or not any(name == "posix" and ok for name, ok, _ in polysync.available_backends()),
    reason="posix listing needs Linux's /dev/shm",
)


def _rows(out: str) -> dict[str, list[str]]:
    """The ``polysync ls`` table as {name: [kind, state]} (the header and footer left out)."""
    rows = {}
    for line in out.splitlines()[1:]:
        if not line.strip() or " named object" in line:
            continue
        cells = [c for c in line.split("  ") if c.strip()]
        rows[cells[0].strip()] = [c.strip() for c in cells[1:]]
    return rows


@pytest.fixture
def base() -> Iterator[str]:
    """A fresh name stem; every posix object named from it is unlinked after the test."""
    stem = f"inv-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    yield stem
    ctx = polysync.get_context("posix")
    for listed in ctx.list_objects() if sys.platform.startswith("linux") else []:
        if listed.name.startswith(stem):
            ctx.unlink(listed.name)


# -- the contract -----------------------------------------------------------------------------


def test_a_backend_declaring_listing_must_list() -> None:
    from polysync._attach import check_backend
    from polysync.derived import BaseBackend

    class Liar(BaseBackend):
        name = "liar"
        capabilities = frozenset({Capability.LISTING})

    with pytest.raises(polysync.BackendError, match=r"'listing'.*Listable"):
        check_backend(Liar())

    class Honest(Liar):
        def list_primitives(self) -> list[Listed]:
            return []

    check_backend(Honest())


# -- posix ------------------------------------------------------------------------------------


@POSIX
def test_ls_shows_posix_objects_with_kind_state_and_holder(
    base: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = polysync.get_context("posix")
    hashed = f"{base}/weird name ü"  # hashed POSIX name: the sidecar keeps the user's name
    objs = [
        ctx.BoundedSemaphore(3, name=hashed),
        ctx.Event(name=f"{base}-event"),
        ctx.Barrier(3, name=f"{base}-barrier"),
    ]
    objs[0].acquire()
    objs[1].set()
    try:
        with _held_by_child("posix", {}, "lock", f"{base}-lock") as child:
            status, out, err = _run(["ls", "--backend", "posix"], capsys)
            assert (status, err) == (0, "")
            assert out.splitlines()[0].split() == ["NAME", "KIND", "STATE"]
            rows = _rows(out)
            assert rows[f"{base}-lock"] == ["lock", f"locked by pid {child.pid}@{os.uname()[1]}"]
            assert rows[hashed] == ["bounded_semaphore(3)", "value 2/3"]
            assert rows[f"{base}-event"] == ["event", "set"]
            assert rows[f"{base}-barrier"] == ["barrier(3 parties)", "0/3 waiting"]
            status, out, err = _run(["ls", "--backend", "posix", "--json"], capsys)
            assert status == 0
            data = json.loads(out)
            assert data["backend"] == "posix"
            ours = {o["name"]: o for o in data["objects"] if o["name"].startswith(base)}
            assert set(ours) == {hashed, f"{base}-event", f"{base}-barrier", f"{base}-lock"}
            lock = ours[f"{base}-lock"]
            assert list(lock) == ["name", "kind", "parameter", "summary", "state", "note"]
            assert (lock["kind"], lock["note"]) == ("lock", None)
            assert lock["state"]["holder"]["pid"] == child.pid
            assert list(lock["state"]) == [
                f for f in cli._INSPECT_FIELDS if f not in ("name", "backend", "kind")
            ]
            assert (ours[hashed]["parameter"], ours[hashed]["state"]["value"]) == (3, 2)
            # Listing took nothing: the child still holds the lock.
            probe = ctx.Lock(name=f"{base}-lock")
            try:
                assert not probe.acquire(False)
            finally:
                probe.close()
    finally:
        for obj in objs:
            obj.close()
    sidecar = _sidecar_of(hashed)
    assert sidecar in polysync_shm_entries()
    ctx.unlink(hashed)
    assert sidecar not in polysync_shm_entries()  # unlinked with its block
    assert hashed not in {listed.name for listed in ctx.list_objects()}


def _sidecar_of(user_name: str) -> str:
    from polysync.backends.posix import names
    from polysync.kernel import ObjectName, Scope

    digest = names.hashed_digest(names.posix_name(ObjectName(Scope.NAMED, user_name, "c")))
    assert digest is not None
    return names.sidecar_file(digest)


_LEAVER = r"""
import json, os, sys, threading, time
spawned = []
_spawn = os.posix_spawn
def spy(*args, **kwargs):
    pid = _spawn(*args, **kwargs)
    spawned.append(pid)
    return pid
os.posix_spawn = spy  # to learn the pid of this process's cleanup tracker
import polysync
ctx = polysync.get_context("posix")
lock = ctx.Lock(); lock.acquire()                  # anonymous, held
sem = ctx.Semaphore(2); sem.acquire()              # anonymous, one permit taken
event = ctx.Event()                                # anonymous, with a parked waiter
threading.Thread(target=event.wait, daemon=True).start()
while event.statistics().waiting != 1:
    time.sleep(0.01)
named = ctx.Lock(name=sys.argv[1]); named.acquire()  # named: gc must never take it
print(json.dumps({"tracker": spawned[0], "tracker_id": os.environ["POLYSYNC_POSIX_TRACKER"]}),
      flush=True)
sys.stdin.readline()
"""


def _gc(capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, Any]:
    status, out, err = _run(["gc", "--backend", "posix", "--json", *extra], capsys)
    assert (status, err) == (0, "")
    result: dict[str, Any] = json.loads(out)
    return result


@POSIX
def test_gc_removes_what_a_sigkilled_process_left_and_nothing_a_live_one_uses(
    base: str, capsys: pytest.CaptureFixture[str]
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _LEAVER, f"{base}-named"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=_env(),  # its own cleanup tracker
    )
    tracker = 0
    try:
        assert child.stdout is not None
        said = json.loads(child.stdout.readline())
        tracker, tracker_id = said["tracker"], said["tracker_id"]

        def left() -> set[str]:
            return {
                e
                for e in polysync_shm_entries()
                if f"-a-{tracker_id}-" in e or e.startswith(f"sem.polysync-w-{child.pid}-")
            }

        theirs = left()
        assert any("-a-" in e for e in theirs)  # anonymous cells
        assert any("-w-" in e for e in theirs)  # the parked thread's waiter semaphore
        # Its tracker dies first: nobody will clean up after the child now. While the
        # child lives, gc must leave all of it alone (the child maps every file).
        os.kill(tracker, signal.SIGKILL)
        assert wait_until(lambda: tracker_id not in _listening_trackers())
        found = _gc(capsys)
        assert not {o["what"] for o in found["orphans"]} & {f"/dev/shm/{e}" for e in theirs}
        assert left() == theirs
        child.kill()
        child.wait(timeout=10)
        # Dead now: a dry run names every file it left and removes none.
        found = _gc(capsys, "--dry-run")
        assert found["dry_run"] is True
        named = {o["what"]: o["reason"] for o in found["orphans"]}
        assert {f"/dev/shm/{e}" for e in theirs} <= set(named)
        assert any("tracker" in named[f"/dev/shm/{e}"] for e in theirs if "-a-" in e)
        assert left() == theirs
        status, out, err = _run(["gc", "--backend", "posix"], capsys)
        assert (status, err) == (0, "")
        for entry in theirs:
            assert f"removed /dev/shm/{entry}  (" in out
        assert left() == set()
        # The named lock it held stays (named objects live until unlinked), still held by
        # the dead child, and listed.
        listed = {listed.name: listed for listed in polysync.get_context("posix").list_objects()}
        assert listed[f"{base}-named"].kind is Kind.LOCK
        status, out, _ = _run(["ls", "--backend", "posix"], capsys)
        assert _rows(out)[f"{base}-named"] == ["lock", f"locked by pid {child.pid}@{os.uname()[1]}"]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
        if tracker:
            _kill_quietly(tracker)
        for entry in polysync_shm_entries():
            if f"-w-{child.pid}-" in entry or (tracker and f"-a-{said['tracker_id']}-" in entry):
                _unlink_entry(entry)


def _listening_trackers() -> set[str]:
    from polysync.backends.posix import inventory

    return inventory._live_trackers()


def _kill_quietly(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _unlink_entry(entry: str) -> None:
    import posix_ipc

    try:
        if entry.startswith("sem."):
            posix_ipc.unlink_semaphore("/" + entry[4:])
        else:
            posix_ipc.unlink_shared_memory("/" + entry)
    except posix_ipc.ExistentialError:
        pass


@POSIX
def test_gc_spares_the_objects_of_a_live_tracker(capsys: pytest.CaptureFixture[str]) -> None:
    ctx = polysync.get_context("posix")
    lock, event = ctx.Lock(), ctx.Event()
    try:
        mine = {
            e
            for e in polysync_shm_entries()
            for obj in (lock, event)
            if obj._object_name.key.replace(":", "-") in e
        }
        assert len(mine) == 2
        found = _gc(capsys)
        assert mine <= polysync_shm_entries()
        assert not {f"/dev/shm/{e}" for e in mine} & {o["what"] for o in found["orphans"]}
        assert lock.acquire(timeout=1)
        lock.release()
    finally:
        lock.close()
        event.close()


# -- redis ------------------------------------------------------------------------------------


@pytest.fixture
def redis_ctx(redis_server: RedisServer) -> Iterator[tuple[polysync.Context, list[str]]]:
    """A redis context with its own prefix, and its CLI arguments; no key may be left."""
    pytest.importorskip("redis")
    options = {"url": redis_server.url, "prefix": "inv" + uuid.uuid4().hex[:8]}
    argv = ["--backend", "redis", *(f"--option={k}={v}" for k, v in options.items())]
    ctx = polysync.get_context("redis", **options)
    yield ctx, argv
    for listed in ctx.list_objects():
        ctx.unlink(listed.name)
    _drop_anonymous(redis_server, options["prefix"])
    assert _redis_keys(redis_server, options["prefix"]) == [], "a test left keys behind"


def _drop_anonymous(server: RedisServer, prefix: str) -> None:
    """Delete the keys of anonymous objects under *prefix* (closed: they would expire)."""
    import redis

    raw = redis.Redis.from_url(server.url)
    try:
        for key in raw.scan_iter(match=f"{prefix}:{{a:*"):
            raw.delete(key)
    finally:
        raw.close()


def test_ls_shows_redis_objects_by_scan(
    redis_ctx: tuple[polysync.Context, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    ctx, argv = redis_ctx
    options = dict(o.split("=", 1) for o in (a.removeprefix("--option=") for a in argv[2:]))
    status, out, err = _run(["ls", *argv], capsys)
    assert (status, err) == (0, "")
    assert out.startswith("no named objects on redis")
    sem = ctx.Semaphore(2, name="a{b}")  # braces: a hashed tag, the name kept beside it
    cond = ctx.Condition(name="c")
    anonymous = ctx.Lock()
    try:
        with _held_by_child("redis", options, "lock", "held") as child:
            status, out, err = _run(["ls", *argv], capsys)
            assert (status, err) == (0, "")
            rows = _rows(out)
            assert set(rows) == {"a{b}", "c", "c.lock", "held"}  # no anonymous object
            assert rows["a{b}"] == ["semaphore(2)", "value 2"]
            assert rows["c"] == ["condition", "0 waiting"]
            kind, state = rows["held"]
            assert kind == "lock"
            assert state.startswith(f"locked by pid {child.pid}@")
            assert "lease left" in state
            status, out, err = _run(["ls", *argv, "--json"], capsys)
            data = json.loads(out)
            assert data["backend"] == "redis"
            held = next(o for o in data["objects"] if o["name"] == "held")
            assert held["state"]["holder"]["pid"] == child.pid
            assert held["state"]["last_fencing_token"] == child.token
            assert isinstance(held["state"]["holder_lease_remaining"], float)
    finally:
        for obj in (sem, cond, anonymous):
            obj.close()
    ctx.unlink("a{b}")
    assert "a{b}" not in {listed.name for listed in ctx.list_objects()}


_WAITER = r"""
import json, sys
import polysync
ctx = polysync.get_context("redis", **json.loads(sys.argv[1]))
lock = ctx.Lock(name="busy")
print("waiting", flush=True)
lock.acquire(timeout=60)
"""


def test_gc_removes_stale_redis_keys_and_a_killed_waiters_queue_entry(
    redis_ctx: tuple[polysync.Context, list[str]],
    redis_server: RedisServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import redis

    from polysync.backends.redis.server import LIVENESS

    ctx, argv = redis_ctx
    options = dict(o.split("=", 1) for o in (a.removeprefix("--option=") for a in argv[2:]))
    prefix = options["prefix"]
    raw = redis.Redis.from_url(redis_server.url)
    lock = ctx.Lock(name="busy")
    live_anonymous = ctx.Semaphore(2)
    try:
        assert lock.acquire(timeout=5)
        # What a late call leaves once an anonymous object expired: a part with no meta
        # key and no TTL, which nothing reaches or expires.
        raw.rpush(f"{prefix}:{{a:gone}}:q", "x")
        raw.set(f"{prefix}:{{a:gone}}:f", 7)
        raw.set(f"{prefix}:{{a:ttl}}:f", 7, px=60_000)  # has a TTL: it goes by itself
        waiter = subprocess.Popen(
            [sys.executable, "-c", _WAITER, json.dumps(options)],
            stdout=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        try:
            assert waiter.stdout is not None
            assert waiter.stdout.readline().strip() == "waiting"
            assert wait_until(lambda: lock.statistics().waiting == 1)
            status, out, _ = _run(["gc", *argv, "--json", "--dry-run"], capsys)
            found = {o["what"] for o in json.loads(out)["orphans"]}
            assert f"{prefix}:{{a:gone}}:q" in found
            assert not any(":q " in what for what in found)  # the waiter lives: kept
            waiter.kill()
            waiter.wait(timeout=10)
        finally:
            if waiter.poll() is None:
                waiter.kill()
                waiter.wait(timeout=10)
        time.sleep(LIVENESS + 0.5)  # its entry's liveness lapses: the server can tell now
        status, out, err = _run(["gc", *argv, "--dry-run"], capsys)
        assert (status, err) == (0, "")
        assert f"would remove {prefix}:{{a:gone}}:f  (no meta key" in out
        assert f"would remove {prefix}:{{a:gone}}:q  (no meta key" in out
        assert f"would remove {prefix}:{{n:busy}}:q entry {prefix}:{{n:busy}}:w:" in out
        assert "{a:ttl}" not in out
        assert raw.exists(f"{prefix}:{{a:gone}}:q", f"{prefix}:{{a:gone}}:f") == 2
        status, out, err = _run(["gc", *argv], capsys)
        assert (status, err) == (0, "")
        assert out.splitlines()[-1] == "removed 3 orphans on the redis backend"
        assert raw.exists(f"{prefix}:{{a:gone}}:q", f"{prefix}:{{a:gone}}:f") == 0
        assert raw.llen(f"{prefix}:{{n:busy}}:q") == 0
        assert raw.exists(f"{prefix}:{{a:ttl}}:f") == 1
        # The live objects work on.
        assert live_anonymous.acquire(timeout=5)
        live_anonymous.release()
        lock.release()
        assert lock.acquire(timeout=5)
        lock.release()
    finally:
        lock.close()
        live_anonymous.close()
        raw.close()


# -- thread, and a backend that cannot list ------------------------------------------------------


def test_ls_and_gc_on_the_thread_backend(capsys: pytest.CaptureFixture[str]) -> None:
    ctx = polysync.get_context("thread")
    name = f"inv-thread-{uuid.uuid4().hex[:6]}"
    lock = ctx.Lock(name=name)
    lock.acquire()
    try:
        status, out, _ = _run(["ls", "--backend", "thread"], capsys)
        assert status == 0
        assert _rows(out)[name] == ["lock", "locked"]
        status, out, _ = _run(["gc", "--backend", "thread"], capsys)
        assert (status, out) == (0, "nothing to remove on the thread backend\n")
    finally:
        lock.release()
        lock.close()
        ctx.unlink(name)
    status, out, _ = _run(["ls", "--backend", "thread", "--json"], capsys)
    assert name not in {o["name"] for o in json.loads(out)["objects"]}


@pytest.mark.parametrize(("command", "what"), [("ls", "list its objects"), ("gc", "collect")])
def test_a_backend_that_cannot_list_says_so_in_one_line(
    command: str, what: str, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    pytest.importorskip("polysync_sqlite")
    argv = [command, "--backend", "sqlite", "--option", f"path={tmp_path / 'db.sqlite'}"]
    status, out, err = _run(argv, capsys)
    assert status == 1
    assert out == ""
    assert err.startswith(f"polysync: error: the 'sqlite' backend cannot {what}")
    assert len(err.strip().splitlines()) == 1
    with pytest.raises(polysync.BackendError):
        polysync.get_context("sqlite", path=str(tmp_path / "db.sqlite")).list_objects()


@pytest.mark.parametrize("command", [["ls"], ["gc"], ["gc", "--dry-run"]])
def test_ls_and_gc_on_an_unreachable_redis_say_so_in_one_line(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("redis")
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    status, out, err = _run(
        [*command, "--backend", "redis", f"--option=url=redis://127.0.0.1:{port}/0"], capsys
    )
    assert (status, out) == (1, "")
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("polysync: error: the redis server at redis://127.0.0.1:")
    assert "cannot be reached" in err


@POSIX
def test_ls_notes_unfinished_blocks_and_unrecorded_hashed_names(
    base: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import posix_ipc

    from polysync.backends.posix import names
    from polysync.kernel import ObjectName, Scope

    ctx = polysync.get_context("posix")
    # A creator that died before writing its header's magic: all zeros.
    unfinished = posix_ipc.SharedMemory(f"/polysync-n-{base}-half.c", posix_ipc.O_CREX, 0o600, 64)
    unfinished.close_fd()
    # A hashed block whose sidecar is missing (as an older polysync made them).
    hashed = f"{base} old"
    ctx.Event(name=hashed).close()
    cells = names.posix_name(ObjectName(Scope.NAMED, hashed, "c"))
    digest = names.hashed_digest(cells)
    assert digest is not None
    posix_ipc.unlink_shared_memory(names.sidecar_name(digest))
    try:
        listed = {entry.name: entry for entry in ctx.list_objects()}
        half = listed[f"{base}-half"]
        assert (half.kind, half.parameter) == (None, 0)
        assert half.note is not None
        assert "unfinished" in half.note
        old = listed[cells]
        assert old.kind is Kind.EVENT
        assert old.note is not None
        assert "not recorded" in old.note
        assert hashed not in listed
        status, out, _ = _run(["ls", "--backend", "posix"], capsys)
        assert status == 0
        kind, state, note = _rows(out)[f"{base}-half"]  # the note after two spaces
        assert (kind, state, note.startswith("(unfinished")) == ("?", "?", True)
    finally:
        ctx.unlink(hashed)
        posix_ipc.unlink_shared_memory(f"/polysync-n-{base}-half.c")
    assert cells not in {entry.name for entry in ctx.list_objects()}


def test_ls_on_a_redis_cluster_scans_every_primary(redis_cluster: Any) -> None:
    pytest.importorskip("redis")
    prefix = "invc" + uuid.uuid4().hex[:8]
    ctx = polysync.get_context("redis", url=redis_cluster.url, cluster=True, prefix=prefix)
    made = [f"obj-{i}" for i in range(12)]  # spread over the slots of every primary
    try:
        for name in made:
            ctx.Event(name=name).close()
        assert len({redis_cluster.node_for(f"{prefix}:{{n:{n}}}:k").port for n in made}) > 1
        assert [entry.name for entry in ctx.list_objects()] == sorted(made)
        assert ctx.collect_orphans(dry_run=True) == []
    finally:
        for name in made:
            ctx.unlink(name)
        ctx.backend.close()
    assert ctx.list_objects() == []


_PARKER = r"""
import sys, threading, time
import polysync
event = polysync.get_context("posix").Event(name=sys.argv[1])
threading.Thread(target=event.wait, daemon=True).start()
while event.statistics().waiting < 1:
    time.sleep(0.01)
print("parked", flush=True)
sys.stdin.readline()
"""


@POSIX
def test_gc_takes_a_sigkilled_waiter_off_a_named_events_queue(
    base: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = polysync.get_context("posix")
    name = f"{base}-event"
    event = ctx.Event(name=name)
    parker = subprocess.Popen(
        [sys.executable, "-c", _PARKER, name],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        assert parker.stdout is not None
        assert parker.stdout.readline().strip() == "parked"
        ours = f"{name!r} (Event): 1 parked waiter(s)"
        assert ours not in {o["what"] for o in _gc(capsys, "--dry-run")["orphans"]}  # alive
        parker.kill()
        parker.wait(timeout=10)
        assert event.statistics().waiting == 1  # the dead waiter is still queued
        found = {o["what"]: o["reason"] for o in _gc(capsys, "--dry-run")["orphans"]}
        assert found[ours] == "their processes are gone"
        assert event.statistics().waiting == 1  # a dry run changes nothing
        assert ours in {o["what"] for o in _gc(capsys)["orphans"]}
        assert event.statistics().waiting == 0
        assert ours not in {o["what"] for o in _gc(capsys)["orphans"]}
        event.set()  # still a working Event
        assert event.wait(0)
    finally:
        if parker.poll() is None:
            parker.kill()
            parker.wait(timeout=10)
        event.close()
        ctx.unlink(name)
