"""The Redis test servers themselves: start, kill/restart, ACL, unix socket, cluster, sentinel."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from . import redis_servers as rs
from .redis_servers import (
    RedisCluster,
    RedisSentinel,
    RedisServer,
    RedisSupportError,
    RespConnection,
    RespError,
    fixtures,
    pid_alive,
    processes,
)

ROOT = Path(__file__).resolve().parent.parent


def _gone(pid: int, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > end:
            return False
        time.sleep(0.02)
    return True


@pytest.mark.timeout(30)
def test_server_answers_ping_without_persistence(redis_server: RedisServer) -> None:
    assert redis_server.port not in rs.RESERVED_PORTS
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    assert redis_server.ping()
    assert redis_server.command("CONFIG", "GET", "save") == ["save", ""]
    assert redis_server.command("CONFIG", "GET", "appendonly") == ["appendonly", "no"]
    assert redis_server.command("CONFIG", "GET", "bind")[1] == "127.0.0.1"
    with redis_server.connect() as conn:
        assert conn.command("SET", "support:k", "v") == "OK"
        assert conn.command("GET", "support:k") == "v"
        assert conn.command("DEL", "support:k") == 1


@pytest.mark.timeout(30)
def test_kill_and_restart_on_the_same_port(redis_server_fresh: RedisServer) -> None:
    server = redis_server_fresh
    port, old_pid = server.port, server.pid
    assert old_pid is not None
    server.command("SET", "survives", "no")
    server.kill()
    assert _gone(old_pid)
    assert not server.running
    assert not server.ping(timeout=0.2)
    server.restart()
    assert server.port == port
    assert server.pid != old_pid
    assert server.ping()
    assert server.command("GET", "survives") is None  # fresh, empty data
    server.restart()  # restart also works on a running server
    assert server.ping()
    assert server.port == port


@pytest.mark.timeout(30)
def test_suspend_resume_and_pause(redis_server_fresh: RedisServer) -> None:
    server = redis_server_fresh
    server.suspend()
    try:
        assert not server.ping(timeout=0.3)
    finally:
        server.resume()
    assert server.ping()
    timer = server.pause(0.3)
    assert timer is not None
    started = time.monotonic()
    assert server.ping(timeout=3.0)  # answered once the timer resumed it
    assert time.monotonic() - started >= 0.2
    server.pause(0.1, block=True)
    assert server.ping()


@pytest.mark.timeout(30)
def test_stop_is_graceful_even_when_suspended() -> None:
    rs.require_redis()
    server = RedisServer().start()
    pid = server.pid
    assert pid is not None
    directory = server.dir
    server.suspend()
    server.stop()
    assert _gone(pid)
    assert directory is not None
    assert not directory.exists()
    server.stop()  # idempotent


@pytest.mark.timeout(30)
def test_password_is_required() -> None:
    rs.require_redis()
    with RedisServer(password="s3cret pw") as server:
        assert server.url == f"redis://:s3cret%20pw@127.0.0.1:{server.port}/0"
        with RespConnection(server.port) as anonymous, pytest.raises(RespError, match="NOAUTH"):
            anonymous.command("GET", "x")
        with pytest.raises(RespError):
            RespConnection(server.port, password="wrong").close()
        assert server.ping()  # the support code authenticates


@pytest.mark.timeout(30)
def test_acl_user() -> None:
    rs.require_redis()
    with RedisServer(username="alice", password="pw") as server:
        assert server.url == f"redis://alice:pw@127.0.0.1:{server.port}/0"
        with server.connect() as conn:
            assert conn.command("ACL", "WHOAMI") == "alice"
        with RespConnection(server.port) as anonymous, pytest.raises(RespError):
            anonymous.command("GET", "x")  # the default user is off
        with pytest.raises(RespError):
            RespConnection(server.port, username="alice", password="nope").close()
        with pytest.raises(RespError):
            RespConnection(server.port, password="pw").close()  # AUTH as `default`


@pytest.mark.timeout(30)
def test_unix_socket(tmp_path: Path) -> None:
    rs.require_redis()
    path = tmp_path / "r.sock"
    with RedisServer(unixsocket=path) as server:
        assert server.unix_url == f"unix://{path}?db=0"
        assert path.exists()
        with server.connect(unix=True) as conn:
            assert conn.command("PING") == "PONG"
        assert server.ping()  # TCP still works
    with RedisServer(unixsocket=True, password="pw") as server:
        assert server.unix_url == f"unix://:pw@{server.unixsocket}?db=0"
        with server.connect(unix=True) as conn:
            assert conn.command("PING") == "PONG"


@pytest.mark.timeout(30)
def test_urls_parse_with_redis_py(tmp_path: Path) -> None:
    redis = pytest.importorskip("redis")
    rs.require_redis()
    with RedisServer(username="bob", password="p@ss:w/rd", unixsocket=True) as server:
        for url in (server.url, server.unix_url):
            client = redis.Redis.from_url(url, socket_timeout=5)
            try:
                assert client.acl_whoami() in ("bob", b"bob")
            finally:
                client.close()


@pytest.mark.timeout(60)
def test_cluster_is_ok_and_a_key_lands_on_its_node(redis_cluster: RedisCluster) -> None:
    assert len(redis_cluster.nodes) == 3
    assert redis_cluster.url == redis_cluster.urls[0]
    assert all(port not in rs.RESERVED_PORTS for _, port in redis_cluster.nodes)
    for server in redis_cluster.servers:
        info = rs.parse_info(server.command("CLUSTER", "INFO"))
        assert info["cluster_state"] == "ok"
        assert info["cluster_size"] == "3"
    owner = redis_cluster.node_for("polysync:support:key")
    assert owner.command("SET", "polysync:support:key", "1") == "OK"
    for server in redis_cluster.servers:
        if server is owner:
            continue
        with pytest.raises(RespError, match=rf"MOVED \d+ 127\.0\.0\.1:{owner.port}"):
            server.command("GET", "polysync:support:key")
    assert owner.command("DEL", "polysync:support:key") == 1


@pytest.mark.timeout(60)
def test_cluster_with_redis_py(redis_cluster: RedisCluster) -> None:
    redis = pytest.importorskip("redis")
    client = redis.RedisCluster.from_url(redis_cluster.url, socket_timeout=5)
    try:
        for i in range(20):  # keys spread over the three nodes
            assert client.set(f"support:{i}", i)
        assert client.get("support:7") == b"7"
        assert client.delete(*[f"support:{i}" for i in range(20)]) == 20
    finally:
        client.close()


@pytest.mark.timeout(60)
def test_sentinel_knows_the_master(redis_sentinel: RedisSentinel) -> None:
    assert redis_sentinel.service_name == "mymaster"
    (host, port) = redis_sentinel.sentinels[0]
    assert host == "127.0.0.1"
    assert port not in rs.RESERVED_PORTS
    reply = redis_sentinel.sentinel.command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster")
    assert reply == ["127.0.0.1", str(redis_sentinel.master.port)]
    assert redis_sentinel.master_state()["flags"] == "master"
    assert redis_sentinel.master.ping()


@pytest.mark.timeout(60)
def test_sentinel_with_redis_py(redis_sentinel: RedisSentinel) -> None:
    redis = pytest.importorskip("redis")
    sentinel = redis.sentinel.Sentinel(redis_sentinel.sentinels, socket_timeout=5)
    assert sentinel.discover_master("mymaster") == redis_sentinel.master_address
    master = sentinel.master_for("mymaster", socket_timeout=5)
    try:
        assert master.ping()
    finally:
        master.close()


@pytest.mark.timeout(90)
def test_every_process_is_gone_after_stop() -> None:
    rs.require_redis("redis-server", "redis-cli")
    server = RedisServer(unixsocket=True).start()
    cluster = RedisCluster().start()
    sentinel = RedisSentinel().start()
    pids = [p for p in (server.pid, *cluster.pids, *sentinel.pids) if p is not None]
    assert len(pids) == 6
    assert all(pid_alive(p) for p in pids)
    ports = [server.port, *(p for _, p in cluster.nodes), *(p for _, p in sentinel.sentinels)]
    dirs = [s.dir for s in (server, *cluster.servers, sentinel.master, sentinel.sentinel)]
    server.stop()
    cluster.stop()
    sentinel.stop()
    assert all(_gone(p) for p in pids)
    assert not set(pids) & set(rs.live_pids())
    assert all(processes._port_free(p) for p in ports)
    assert all(d is not None and not d.exists() for d in dirs)


@pytest.mark.timeout(30)
def test_a_forked_child_does_not_stop_its_parents_servers(
    redis_server_fresh: RedisServer,
) -> None:
    pid = os.fork()
    if pid == 0:  # the child: what its atexit would run
        try:
            rs.stop_all()
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status)
    assert redis_server_fresh.running
    assert redis_server_fresh.ping()


@pytest.mark.timeout(30)
def test_a_failed_start_says_why() -> None:
    rs.require_redis()
    server = RedisServer(extra_args=["--no-such-directive", "1"])
    with pytest.raises(RedisSupportError, match=r"exited with code .*\n.*\nlog:\n") as info:
        server.start(timeout=10)
    assert "no-such-directive" in str(info.value)
    assert not server.running
    assert server.dir is None  # the temporary directory went with it
    server.stop()


@pytest.mark.timeout(30)
def test_the_reserved_port_is_refused() -> None:
    with pytest.raises(RedisSupportError, match="reserved"):
        RedisServer(6379).start()
    with pytest.raises(ValueError, match="reserved"):
        RespConnection(6379)


_ORPHAN_CHECK = """
import ctypes, os, shutil, signal, subprocess, sys, time
# A subreaper: the orphaned redis-server is re-parented to this process, which reaps it,
# instead of lingering as a zombie under init.
ctypes.CDLL(None, use_errno=True).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER
child = subprocess.Popen(
    [sys.executable, "-c",
     "import sys, time; sys.path.insert(0, sys.argv[1]);"
     "from tests.redis_servers import RedisServer;"
     "s = RedisServer().start(); print(s.pid, s.dir, flush=True); time.sleep(60)",
     sys.argv[1]],
    stdout=subprocess.PIPE, text=True,
)
pid_text, directory = child.stdout.readline().split()
pid = int(pid_text)
os.kill(pid, 0)
os.kill(child.pid, signal.SIGKILL)  # no atexit, no finalizer: only PDEATHSIG is left
child.wait(10)
end = time.monotonic() + 10
while time.monotonic() < end:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        print("killed by signal", os.WTERMSIG(status) if os.WIFSIGNALED(status) else None)
        break
    time.sleep(0.02)
else:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    print("survived")
shutil.rmtree(directory, ignore_errors=True)  # nobody was left to remove it
"""


@pytest.mark.timeout(30)
def test_a_server_dies_with_the_process_that_started_it() -> None:
    rs.require_redis()
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux-only")
    done = subprocess.run(
        [sys.executable, "-c", _ORPHAN_CHECK, str(ROOT)],
        capture_output=True,
        text=True,
        timeout=25,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"killed by signal {int(signal.SIGKILL)}", done.stdout


@pytest.mark.timeout(30)
def test_missing_binary_skips_or_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    # Where each module looks the binaries up: require_redis and the start of a server.
    monkeypatch.setattr(fixtures, "find_binary", lambda name: None)
    monkeypatch.setattr(processes, "find_binary", lambda name: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="redis-server not installed"):
        rs.require_redis()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y redis-server"):
        rs.require_redis()
    server = RedisServer(unixsocket=True)
    directory = server.dir
    with pytest.raises(RedisSupportError, match="not installed"):
        server.start()
    assert directory is not None
    assert not directory.exists()
