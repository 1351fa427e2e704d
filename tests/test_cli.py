"""Tests of the ``polysync`` command line (``--version``, ``backends``, ``inspect``, ``rm``,
``demo``) and of the demo's checks."""

from __future__ import annotations

import json
import multiprocessing
import operator
import os
import pickle
import re
import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

import polysync
from polysync import cli, demo
from polysync.registry import BackendRegistry, BackendSpec

from .conftest import polysync_shm_entries
from .redis_servers import RedisServer

pytestmark = pytest.mark.timeout(120)

SCENARIOS = list(demo.SCENARIOS)
PASS_LINE = re.compile(r"^PASS  (\w+)\s", re.MULTILINE)
FAIL_LINE = re.compile(r"^FAIL  (\w+)\s", re.MULTILINE)
POSIX = pytest.mark.skipif(
    not any(name == "posix" and ok for name, ok, _ in polysync.available_backends()),
    reason="the posix backend does not run here",
)


def _env() -> dict[str, str]:
    """The environment for a child ``polysync``: default backend, its own cleanup tracker."""
    env = dict(os.environ)
    for var in ("POLYSYNC_BACKEND", "POLYSYNC_POSIX_TRACKER"):
        env.pop(var, None)
    return env


def _polysync(*args: str, timeout: float = 100) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "polysync", *args],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=timeout,
        check=False,
    )


# -- polysync backends -----------------------------------------------------------------------


def test_backends_lists_posix_and_thread_with_capabilities(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("POLYSYNC_BACKEND", raising=False)
    assert cli.main(["backends"]) == 0
    out = capsys.readouterr().out
    lines = {line.lstrip("* ").split()[0]: line for line in out.splitlines() if line.strip()}
    assert "posix" in lines
    assert "thread" in lines
    assert lines["posix"].startswith("*")  # the default on this platform
    assert "cross-process" in lines["posix"]
    assert "shared-cells" in lines["posix"]
    assert "cross-process" not in lines["thread"]
    assert "named" in lines["thread"]
    assert "polysync-primitives" in lines["thread"]  # the providing distribution
    assert "default backend: posix" in out


def test_backends_json_parses_and_matches_the_backend_classes() -> None:
    result = _polysync("backends", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["default"] == "posix"
    by_name = {b["name"]: b for b in data["backends"]}
    assert {"posix", "thread"} <= set(by_name)
    for name in ("posix", "thread"):
        entry = by_name[name]
        assert entry["available"] is True
        assert entry["reason"] is None
        assert entry["provided_by"] == "polysync-primitives"
        assert entry["description"]
        caps = polysync.get_context(name).capabilities
        assert set(entry["capabilities"]) == {c.value for c in caps}
    assert by_name["posix"]["default"] is True
    assert by_name["thread"]["default"] is False
    assert "cross-process" in by_name["posix"]["capabilities"]
    assert "cross-process" not in by_name["thread"]["capabilities"]


def test_backends_shows_why_a_backend_is_unavailable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = BackendRegistry()
    registry.register(BackendSpec("thread", "polysync.backends.thread:ThreadBackend"))
    registry.register(
        BackendSpec(
            "ghost",
            "polysync_no_such_module:GhostBackend",
            install_hint="pip install ghost",
            description="a backend whose module is missing",
            distribution="ghost-dist",
        )
    )
    monkeypatch.setattr("polysync.registry.get_registry", lambda: registry)
    monkeypatch.setenv("POLYSYNC_BACKEND", "thread")
    assert cli.main(["backends", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    ghost = next(b for b in data["backends"] if b["name"] == "ghost")
    assert ghost["available"] is False
    assert ghost["capabilities"] is None
    assert "pip install ghost" in ghost["reason"]
    assert ghost["provided_by"] == "ghost-dist"
    assert cli.main(["backends"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^\s+ghost\s+no\s+\?\s+ghost-dist", out, re.MULTILINE)
    assert "unavailable: " in out
    assert "pip install ghost" in out


def test_backends_survives_a_plugin_that_breaks_on_import(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "polysync_broken_plugin.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = BackendRegistry()
    registry.register(BackendSpec("thread", "polysync.backends.thread:ThreadBackend"))
    registry.register(BackendSpec("broken", "polysync_broken_plugin:Backend"))
    monkeypatch.setattr("polysync.registry.get_registry", lambda: registry)
    monkeypatch.setenv("POLYSYNC_BACKEND", "thread")
    assert cli.main(["backends", "--json"]) == 0
    by_name = {b["name"]: b for b in json.loads(capsys.readouterr().out)["backends"]}
    assert by_name["broken"]["available"] is False
    assert "RuntimeError: boom" in by_name["broken"]["reason"]
    assert by_name["thread"]["available"] is True


# -- polysync --version -------------------------------------------------------------------------


def test_version_is_the_distributions(capsys: pytest.CaptureFixture[str]) -> None:
    expected = f"polysync {metadata.version('polysync-primitives')}"
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == expected
    result = _polysync("--version", timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


# -- polysync inspect and rm: helpers ------------------------------------------------------------

_HOLDER = """
import json, sys
import polysync
backend, options, kind, name = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
ctx = polysync.get_context(backend, **options)
obj = ctx.Lock(name=name) if kind == "lock" else ctx.Semaphore(3, name=name)
assert obj.acquire(timeout=10)
print("held", obj.fencing_token, flush=True)
sys.stdin.readline()  # until the test lets go (or its end closes the pipe)
obj.release()
obj.close()
"""


@dataclass(frozen=True)
class _Holder:
    """The child process holding an object: its pid and the fencing token it holds."""

    pid: int
    token: int | None


@contextmanager
def _held_by_child(
    backend: str, options: dict[str, Any], kind: str, name: str
) -> Iterator[_Holder]:
    """A child process that holds the lock (or one permit of the semaphore) *name*."""
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, backend, json.dumps(options), kind, name],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()  # the child acquires within its own 10 s bound
        said, _, token = line.strip().partition(" ")
        assert said == "held", child.stderr.read() if child.stderr else ""
        yield _Holder(child.pid, None if token == "None" else int(token))
    finally:
        try:
            child.communicate("\n", timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout=10)


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = cli.main(argv)
    out, err = capsys.readouterr()
    return status, out, err


def _table(out: str) -> dict[str, str]:
    """The two-column table of ``polysync inspect`` as {field: value}."""
    rows = {}
    for line in out.splitlines():
        label, _, value = re.split(r"(\s{2,})", line.strip(), maxsplit=1)
        rows[label] = value
    return rows


def _redis_keys(server: RedisServer, prefix: str) -> list[bytes]:
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(server.url)
    try:
        return sorted(client.scan_iter(match=f"{prefix}:*"))  # tests only: polysync never lists
    finally:
        client.close()


@pytest.fixture
def redis_argv(redis_server: RedisServer) -> Iterator[tuple[list[str], dict[str, Any]]]:
    """The CLI arguments (and get_context options) of a redis context with its own prefix."""
    pytest.importorskip("redis")
    options = {"url": redis_server.url, "prefix": "cli" + uuid.uuid4().hex[:8]}
    yield ["--backend", "redis", *(f"--option={k}={v}" for k, v in options.items())], options
    assert _redis_keys(redis_server, str(options["prefix"])) == [], "a test left keys behind"


@pytest.fixture
def posix_name() -> Iterator[str]:
    """A fresh name, unlinked (with its condition lock) after the test."""
    name = f"cli-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    yield name
    ctx = polysync.get_context("posix")
    for leftover in (name, f"{name}.lock"):
        ctx.unlink(leftover)


# -- polysync inspect ----------------------------------------------------------------------------


@POSIX
def test_inspect_a_posix_lock_held_by_another_process_shows_its_pid(
    posix_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with _held_by_child("posix", {}, "lock", posix_name) as child:
        status, out, err = _run(["inspect", posix_name, "--backend", "posix"], capsys)
        assert status == 0, err
        rows = _table(out)
        assert rows["name"] == posix_name
        assert rows["kind"] == "lock"
        assert rows["backend"].startswith("posix")
        assert rows["locked"] == "yes"
        assert rows["holder pid"] == str(child.pid)
        assert rows["waiting"] == "0"
        assert isinstance(child.token, int)
        assert rows["last fencing token"] == str(child.token)
        assert "fencing token" not in rows  # the inspecting handle holds nothing
        assert "holder lease left" not in rows  # posix has no leases
        status, out, err = _run(["inspect", posix_name, "--backend", "posix", "--json"], capsys)
        assert status == 0, err
        data = json.loads(out)
        assert list(data) == list(cli._INSPECT_FIELDS)
        assert data["locked"] is True
        assert data["holder"]["pid"] == child.pid
        assert data["last_fencing_token"] == child.token
        assert (data["fencing_token"], data["holder_lease_remaining"]) == (None, None)
        # Inspecting took nothing: the child still holds it.
        lock = polysync.get_context("posix").Lock(name=posix_name)
        try:
            assert not lock.acquire(False)
        finally:
            lock.close()


@POSIX
def test_inspect_runs_as_a_command(posix_name: str) -> None:
    with _held_by_child("posix", {}, "semaphore", posix_name):
        result = _polysync("inspect", posix_name, "--backend", "posix", "--json", timeout=30)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["kind"], data["value"], data["backend"]) == ("semaphore", 2, "posix")
    assert isinstance(data["last_fencing_token"], int)


def test_inspect_a_redis_lock_held_by_another_process_shows_its_pid(
    redis_argv: tuple[list[str], dict[str, Any]],
    redis_server: RedisServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv, options = redis_argv
    with _held_by_child("redis", options, "lock", "jobs") as child:
        keys = _redis_keys(redis_server, options["prefix"])
        status, out, err = _run(["inspect", "jobs", *argv], capsys)
        assert status == 0, err
        rows = _table(out)
        assert (rows["kind"], rows["locked"]) == ("lock", "yes")
        assert rows["holder pid"] == str(child.pid)
        assert rows["holder host"]
        assert isinstance(child.token, int)
        assert rows["last fencing token"] == str(child.token)
        assert rows["holder lease left"].endswith(" s")
        assert "lease left" not in rows  # the inspecting handle holds nothing
        status, out, err = _run(["inspect", "jobs", *argv, "--json"], capsys)
        assert status == 0, err
        data = json.loads(out)
        assert list(data) == list(cli._INSPECT_FIELDS)
        assert data["holder"]["pid"] == child.pid
        assert data["backend"] == "redis"
        assert data["last_fencing_token"] == child.token
        assert 0 < data["holder_lease_remaining"] <= 30  # the default lease
        assert (data["fencing_token"], data["lease_remaining"]) == (None, None)
        assert _redis_keys(redis_server, options["prefix"]) == keys  # nothing written
    polysync.get_context("redis", **options).unlink("jobs")


def test_inspect_a_redis_semaphore(
    redis_argv: tuple[list[str], dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    argv, options = redis_argv
    with _held_by_child("redis", options, "semaphore", "slots") as child:
        status, out, err = _run(["inspect", "slots", *argv], capsys)
        assert status == 0, err
        rows = _table(out)
        assert (rows["kind"], rows["value"], rows["waiting"]) == ("semaphore", "2", "0")
        assert rows["last fencing token"] == str(child.token)
        status, out, _ = _run(["inspect", "slots", *argv, "--json"], capsys)
        data = json.loads(out)
        assert data["value"] == 2
        assert data["last_fencing_token"] == child.token
        assert 0 < data["holder_lease_remaining"] <= 30
    polysync.get_context("redis", **options).unlink("slots")


_MAKE: dict[str, Any] = {
    "lock": lambda ctx, n: ctx.Lock(name=n),
    "rlock": lambda ctx, n: ctx.RLock(name=n),
    "semaphore": lambda ctx, n: ctx.Semaphore(4, name=n),
    "bounded_semaphore": lambda ctx, n: ctx.BoundedSemaphore(2, name=n),
    "event": lambda ctx, n: ctx.Event(name=n),
    "condition": lambda ctx, n: ctx.Condition(name=n),
    "barrier": lambda ctx, n: ctx.Barrier(3, name=n),
}
_EXPECTED: dict[str, dict[str, object]] = {
    "lock": {"locked": False, "holder": None, "last_fencing_token": None},
    "rlock": {"locked": False},
    "semaphore": {"value": 4},
    "bounded_semaphore": {"value": 2},
    "event": {"is_set": False},
    "condition": {"waiting": 0},
    "barrier": {"parties": 3, "broken": False, "waiting": 0},
}


@pytest.mark.parametrize("backend", [pytest.param("posix", marks=POSIX), "thread"])
@pytest.mark.parametrize("kind", list(_MAKE))
def test_inspect_tells_every_kind(
    backend: str, kind: str, posix_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = polysync.get_context(backend)
    obj = _MAKE[kind](ctx, posix_name)
    try:
        status, out, err = _run(["inspect", posix_name, "--backend", backend, "--json"], capsys)
        assert status == 0, err
        data = json.loads(out)
        assert data["kind"] == kind
        for field, value in _EXPECTED[kind].items():
            assert data[field] == value, field
        status, out, err = _run(["inspect", posix_name, "--backend", backend], capsys)
        assert status == 0, err
        assert _table(out)["kind"] == kind
    finally:
        obj.unlink()
        obj.close()


@pytest.mark.parametrize("kind", ["condition", "barrier", "bounded_semaphore"])
def test_inspect_tells_every_kind_on_redis(
    kind: str,
    redis_argv: tuple[list[str], dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv, options = redis_argv
    obj = _MAKE[kind](polysync.get_context("redis", **options), "thing")
    try:
        status, out, err = _run(["inspect", "thing", *argv, "--json"], capsys)
        assert status == 0, err
        data = json.loads(out)
        assert data["kind"] == kind
        for field, value in _EXPECTED[kind].items():
            assert data[field] == value, field
    finally:
        obj.unlink()
        obj.close()


@POSIX
def test_inspect_a_missing_posix_name_says_so_and_leaves_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = polysync_shm_entries()
    status, out, err = _run(["inspect", "no-such-object", "--backend", "posix"], capsys)
    assert status == 1
    assert out == ""
    assert err == "polysync: no object named 'no-such-object' on the posix backend\n"
    assert polysync_shm_entries() <= before


def test_inspect_a_missing_redis_name_says_so_and_writes_nothing(
    redis_argv: tuple[list[str], dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    argv, _ = redis_argv  # the fixture checks that no key was written
    status, _, err = _run(["inspect", "nothing-here", *argv, "--json"], capsys)
    assert status == 1
    assert err == "polysync: no object named 'nothing-here' on the redis backend\n"


def test_context_open_finds_thread_objects_in_this_process_only() -> None:
    ctx = polysync.get_context("thread")
    lock = ctx.Condition(ctx.Lock(), name="cli-thread-cond")
    try:
        opened = ctx.open("cli-thread-cond")
        assert isinstance(opened, polysync.Condition)
        assert opened.lock.closed  # made with a lock of its own: a closed stand-in
        assert opened.statistics().waiting == 0
        opened.close()
    finally:
        lock.unlink()
        lock.close()
    with pytest.raises(polysync.NotFoundError):
        ctx.open("cli-thread-cond")
    result = _polysync("inspect", "cli-thread-cond", "--backend", "thread", timeout=30)
    assert result.returncode == 1  # another process never sees the thread backend's objects


# -- polysync rm -----------------------------------------------------------------------------------


@POSIX
def test_rm_removes_posix_objects_and_names_the_missing_ones(
    posix_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = polysync.get_context("posix")
    first, second = f"{posix_name}-a", f"{posix_name}-b"
    objs = [ctx.Lock(name=first), ctx.Event(name=second)]
    for obj in objs:
        obj.close()
    before = polysync_shm_entries()
    try:
        argv = ["rm", first, f"{posix_name}-missing", second, "--backend", "posix"]
        status, out, err = _run(argv, capsys)
        assert status == 1
        assert out.splitlines() == [f"removed {first!r}", f"removed {second!r}"]
        assert err == f"polysync: no object named '{posix_name}-missing' on the posix backend\n"
        for name in (first, second):
            with pytest.raises(polysync.NotFoundError):
                ctx.open(name)
            status, _, err = _run(["inspect", name, "--backend", "posix"], capsys)
            assert (status, "no object named" in err) == (1, True)
        assert not any(posix_name in entry for entry in polysync_shm_entries())
        assert polysync_shm_entries() < before
        status, out, err = _run(["rm", first, second, "--backend", "posix"], capsys)
        assert status == 1
        assert f"no objects named {first!r}, {second!r}" in err
    finally:
        for name in (first, second):
            ctx.unlink(name)


def test_rm_removes_redis_objects(
    redis_argv: tuple[list[str], dict[str, Any]],
    redis_server: RedisServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv, options = redis_argv
    ctx = polysync.get_context("redis", **options)
    ctx.Semaphore(2, name="s").close()
    ctx.Barrier(2, name="b").close()
    assert _redis_keys(redis_server, options["prefix"])
    status, out, err = _run(["rm", "s", "b", *argv], capsys)
    assert (status, err) == (0, "")
    assert out.splitlines() == ["removed 's'", "removed 'b'"]
    assert _redis_keys(redis_server, options["prefix"]) == []
    with pytest.raises(polysync.NotFoundError):
        ctx.open("s")
    status, _, err = _run(["rm", "s", *argv], capsys)
    assert status == 1
    assert err == "polysync: no object named 's' on the redis backend\n"


# -- polysync inspect and rm: errors -------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        (["inspect", "x", "--backend", "no-such-backend"], 2, "no-such-backend"),
        (["rm", "x", "--backend", "no-such-backend"], 2, "no-such-backend"),
        (["inspect", "x", "--backend", "thread", "--option", "bogus=1"], 2, "unknown option"),
        (["rm", "x", "--backend", "thread", "--option", "bogus"], 2, "KEY=VALUE"),
        (["inspect", "", "--backend", "thread"], 2, "non-empty"),
        (["rm", "--backend", "thread"], 2, "required"),
        (["inspect", "x", "--backend", "redis", "--option", "prefix=a{b"], 2, "braces"),
    ],
)
def test_inspect_and_rm_refuse_bad_input_in_one_line(
    argv: list[str], status: int, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    got, _, err = _run(argv, capsys)
    assert got == status
    assert message in err
    assert "Traceback" not in err
    if "usage:" not in err:  # argparse's own usage errors print the usage line first
        assert len(err.strip().splitlines()) == 1, err


def test_an_unreachable_redis_is_one_line_and_status_1() -> None:
    pytest.importorskip("redis")
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"--option=url=redis://127.0.0.1:{port}/0"
    for command in (["inspect", "x"], ["rm", "x", "y"]):
        result = _polysync(*command, "--backend", "redis", url, timeout=60)
        assert result.returncode == 1
        assert result.stdout == ""
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("polysync: error: the redis server at redis://127.0.0.1:")
        assert "cannot be reached" in lines[0]


# -- polysync demo: passing runs -----------------------------------------------------------------


def _assert_all_pass(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stdout + result.stderr
    assert PASS_LINE.findall(result.stdout) == SCENARIOS, result.stdout
    assert not FAIL_LINE.findall(result.stdout)
    assert re.search(r"^total: PASS 6/6 ", result.stdout, re.MULTILINE)
    assert "Traceback" not in result.stderr


@POSIX
def test_demo_passes_on_posix_with_spawned_processes() -> None:
    result = _polysync("demo", "--backend", "posix")
    _assert_all_pass(result)
    assert "as processes (spawn start method)" in result.stdout


@POSIX
@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_demo_passes_on_posix_with_other_start_methods(method: str) -> None:
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {method} start method here")
    result = _polysync("demo", "--backend", "posix", "--start-method", method)
    _assert_all_pass(result)
    assert f"as processes ({method} start method)" in result.stdout


@POSIX
def test_demo_default_backend_runs_processes() -> None:
    result = _polysync("demo", "--only", "lock", "--start-method", "fork")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "polysync demo on posix" in result.stdout
    assert PASS_LINE.findall(result.stdout) == ["lock"]


def test_demo_on_thread_backend_runs_threads() -> None:
    result = _polysync("demo", "--backend", "thread")
    _assert_all_pass(result)
    assert "as threads" in result.stdout
    assert "as processes" not in result.stdout


def test_demo_workers_option_scales_the_scenarios(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo", "--backend", "thread", "--workers", "6"]) == 0
    out = capsys.readouterr().out
    assert "counter=150/150 (6 workers x 25)" in out
    assert "6/6 waiters released" in out
    assert "6 workers x 3 phases, action ran 3x" in out


@POSIX
def test_demo_leaves_nothing_in_dev_shm() -> None:
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm")
    # Name this run's objects: its cleanup tracker's id is in every anonymous object's name,
    # its pid in its waiters' and shared blocks' names (other processes may use /dev/shm too).
    code = (
        "import os, sys\n"
        "from polysync.backends.posix import tracker as _tracker\n"
        "print('TAG', _tracker.own_tracker_id(), os.getpid(), file=sys.stderr, flush=True)\n"
        "from polysync.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, "demo", "--backend", "posix"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=100,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    tag = re.search(r"^TAG (\S+) (\d+)$", result.stderr, re.MULTILINE)
    assert tag is not None, result.stderr
    tracker, pid = tag.groups()
    markers = (f"-{tracker}-", f"polysync-demo-{pid}-", f"polysync-w-{pid}-")

    def ours() -> list[str]:
        return [n for n in os.listdir("/dev/shm") if any(m in n for m in markers)]

    deadline = time.monotonic() + 10
    while ours() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ours() == []


# -- polysync demo: bad input ------------------------------------------------------------------


def test_unknown_backend_exits_2_naming_the_registered_ones() -> None:
    result = _polysync("demo", "--backend", "no-such-backend")
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "no-such-backend" in lines[0]
    assert "posix" in lines[0]
    assert "thread" in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--backend", "thread", "--option", "bogus=1"], "unknown option"),
        (["demo", "--backend", "thread", "--worker-kind", "process"], "cross-process"),
        (["demo", "--backend", "thread", "--option", "no-equals"], "KEY=VALUE"),
        (["demo", "--backend", "thread", "--workers", "1"], "between 2 and 64"),
        (["demo", "--backend", "thread", "--timeout", "0"], "(0, 3600)"),
        (["demo", "--only", "nope"], "invalid choice"),
        ([], "required"),
    ],
)
def test_bad_input_exits_2_with_a_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_unknown_default_backend_from_the_environment_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("POLYSYNC_BACKEND", "no-such-backend")
    assert cli.main(["demo"]) == 2
    assert "no-such-backend" in capsys.readouterr().err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--start-method" in out
    assert "self-test-fail" not in out  # the hidden sabotage switch


def test_option_values_are_read_as_json_else_text() -> None:
    assert cli._option("port=6379") == ("port", 6379)
    assert cli._option("ssl=true") == ("ssl", True)
    assert cli._option("host=redis.local") == ("host", "redis.local")
    assert cli._option("url=a=b") == ("url", "a=b")


# -- polysync demo: every check can fail -----------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_sabotaged_scenario_fails_on_threads(
    scenario: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["demo", "--backend", "thread", "--timeout", "0.5", "--only", scenario]
    assert cli.main([*argv, "--self-test-fail", scenario]) == 1
    out = capsys.readouterr().out
    assert FAIL_LINE.findall(out) == [scenario], out
    assert re.search(r"^total: FAIL 0/1 ", out, re.MULTILINE)
    assert cli.main(argv) == 0  # the same scenario, unbroken, passes
    assert PASS_LINE.findall(capsys.readouterr().out) == [scenario]


@POSIX
def test_sabotaged_scenarios_fail_on_processes() -> None:
    result = _polysync(
        "demo",
        "--backend",
        "posix",
        "--timeout",
        "1",
        "--self-test-fail",
        "lock",
        "--self-test-fail",
        "semaphore",
        "--self-test-fail",
        "barrier",
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert FAIL_LINE.findall(result.stdout) == ["lock", "semaphore", "barrier"]
    assert PASS_LINE.findall(result.stdout) == ["rlock", "event", "condition"]
    assert "lost)" in result.stdout
    assert "workers were inside at once, limit 3" in result.stdout
    assert re.search(r"^total: FAIL 3/6 ", result.stdout, re.MULTILINE)


def test_check_lock() -> None:
    assert demo.check_lock(100, 100).passed
    bad = demo.check_lock(99, 100)
    assert not bad.passed
    assert "1 lost" in bad.problems[0]


def _rlock_facts(**changes: object) -> demo.RLockFacts:
    good = {
        "depth": 4,
        "depth_reached": 4,
        "depth_after_release": 0,
        "blocked_while_held": True,
        "non_owner_release_refused": True,
        "still_held_after_refusal": True,
        "reacquired": True,
        "reentered": True,
        "over_release_refused": True,
    }
    return demo.RLockFacts(**{**good, **changes})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "broken",
    [
        {"depth_reached": 3},
        {"depth_after_release": 1},
        {"blocked_while_held": False},
        {"non_owner_release_refused": False},
        {"still_held_after_refusal": False},
        {"reacquired": False},
        {"reentered": False},
        {"over_release_refused": False},
    ],
)
def test_check_rlock(broken: dict[str, object]) -> None:
    assert demo.check_rlock(_rlock_facts()).passed
    outcome = demo.check_rlock(_rlock_facts(**broken))
    assert not outcome.passed
    assert len(outcome.problems) == 1


def test_check_semaphore() -> None:
    assert demo.check_semaphore(3, 3, 8, 8, 0, 3).passed
    assert "limit 3" in demo.check_semaphore(4, 3, 8, 8, 0, 3).problems[0]
    assert "over-serialised" in demo.check_semaphore(2, 3, 8, 8, 0, 3).problems[0]
    assert demo.check_semaphore(2, 3, 2, 2, 0, 3).passed  # 2 workers can only reach 2
    assert not demo.check_semaphore(3, 3, 8, 7, 0, 3).passed
    assert not demo.check_semaphore(3, 3, 8, 8, 1, 3).passed
    assert not demo.check_semaphore(3, 3, 8, 8, 0, 2).passed
    assert not demo.check_semaphore(3, 3, 8, 8, 0, 3, bounded_refused=False).passed


def test_check_event() -> None:
    assert demo.check_event([1, 1, 1], 0, True, True).passed
    assert not demo.check_event([1, 2, 1], 0, True, True).passed  # one wait() timed out
    assert not demo.check_event([1, 0, 1], 0, True, True).passed  # one never returned
    assert not demo.check_event([1, 1, 1], 1, True, True).passed  # one returned early
    assert not demo.check_event([1, 1, 1], 0, False, True).passed
    assert not demo.check_event([1, 1, 1], 0, True, False).passed


def test_check_condition() -> None:
    assert demo.check_condition([1] * 6, [3, 3], 3).passed
    lost = demo.check_condition([1, 0, 1, 1, 1, 1], [3, 2], 3)
    assert not lost.passed
    assert "never consumed: [1]" in lost.problems[0]
    doubled = demo.check_condition([1, 2, 1, 1, 1, 1], [4, 3], 3)
    assert "more than once: [1]" in doubled.problems[0]
    assert not demo.check_condition([1] * 6, [4, 2], 3).passed  # one consumer starved


def test_check_barrier() -> None:
    good = [[1, 2, 3, 4], [4, 3, 2, 1], [2, 1, 4, 3]]
    assert demo.check_barrier(4, 3, 3, 0, 0, good).passed
    assert not demo.check_barrier(4, 3, 2, 0, 0, good).passed  # action ran too few times
    assert not demo.check_barrier(4, 3, 3, 1, 0, good).passed  # action ran early
    assert not demo.check_barrier(4, 3, 3, 0, 1, good).passed  # a worker passed too soon
    dup = [[1, 2, 3, 4], [1, 1, 2, 3], [2, 1, 4, 3]]
    assert "phase 1" in demo.check_barrier(4, 3, 3, 0, 0, dup).problems[0]


# -- the demo's machinery ------------------------------------------------------------------------


def test_shared_ints_pickle_to_the_same_memory_and_destroy_removes_the_file() -> None:
    cells = demo.SharedInts.create(4)
    try:
        other = pickle.loads(pickle.dumps(cells))
        other[2] = -7
        assert cells[2] == -7
        assert cells.read(0, 4) == [0, 0, -7, 0]
        other.close()
        assert Path(cells.path).exists()
    finally:
        cells.destroy()
    assert not Path(cells.path).exists()
    with pytest.raises(ValueError, match="closed"):
        cells[0]


def _spawn_harness(timeout: float) -> demo.Harness:
    return demo.Harness(
        polysync.get_context("thread"),
        multiprocessing.get_context("spawn"),
        workers=2,
        timeout=timeout,
        sabotage=False,
    )


def test_a_stuck_worker_process_is_killed_and_reported() -> None:
    harness = _spawn_harness(timeout=20)
    with harness.stack:
        crew = harness.crew()
        crew.start("sleeper", time.sleep, 60.0)
        assert crew.go()
        started = time.monotonic()
        problems = crew.join(budget=0.5)
    assert time.monotonic() - started < 15
    assert problems == ["sleeper: stuck past the deadline, killed"]


def test_a_worker_exception_is_reported() -> None:
    harness = _spawn_harness(timeout=20)
    with harness.stack:
        crew = harness.crew()
        crew.start("divider", operator.truediv, 1, 0)
        crew.go()
        problems = crew.join()
    assert len(problems) == 1
    assert problems[0].startswith("divider: ZeroDivisionError")


def test_worker_kind_follows_the_cross_process_capability() -> None:
    assert demo.worker_kind(polysync.get_context("thread")) == "thread"
    assert demo.worker_kind(polysync.get_context("thread"), "thread") == "thread"
    with pytest.raises(ValueError, match="cross-process"):
        demo.worker_kind(polysync.get_context("thread"), "process")


def test_a_reader_that_goes_away_ends_the_command_quietly() -> None:
    """``polysync backends | true``: the pipe closes before the table is written."""
    done = subprocess.run(
        f"{shlex.quote(sys.executable)} -m polysync backends | true; exit ${{PIPESTATUS[0]}}",
        shell=True, executable="/bin/bash", capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert done.stderr == ""  # no traceback, no "Exception ignored" at exit
    assert done.returncode == 141
