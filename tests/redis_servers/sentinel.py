"""A private Redis sentinel, :class:`RedisSentinel`: a master, a sentinel, maybe a replica."""

from __future__ import annotations

from typing import Any

from .processes import RedisSupportError, _Managed, _require, free_port, wait_for
from .resp import HOST, RespConnection
from .server import RedisServer


class _SentinelProcess(_Managed):
    def __init__(self, master_port: int, service_name: str) -> None:
        super().__init__("sentinel", free_port())
        self.master_port = master_port
        self.service_name = service_name

    def _args(self) -> list[str]:
        assert self.dir is not None
        conf = self.dir / "sentinel.conf"  # sentinel rewrites its config: it must be writable
        conf.write_text(
            "\n".join(
                [
                    f"port {self.port}",
                    f"bind {HOST}",
                    "daemonize no",
                    f"dir {self.dir}",
                    'logfile ""',
                    f"sentinel monitor {self.service_name} {HOST} {self.master_port} 1",
                    f"sentinel down-after-milliseconds {self.service_name} 5000",
                    f"sentinel failover-timeout {self.service_name} 10000",
                    "",
                ]
            )
        )
        return [_require("redis-server"), str(conf), "--sentinel"]

    def command(self, *args: object, timeout: float = 5.0) -> Any:
        with RespConnection(self.port, timeout=timeout) as conn:
            return conn.command(*args)

    def _ready(self) -> bool:
        return bool(self.command("PING", timeout=1.0) == "PONG")


class RedisSentinel:
    """One master and one sentinel monitoring it as :attr:`service_name` (quorum 1).

    ``RedisSentinel(replica=True)`` adds a replica of the master, so that
    :meth:`failover` can promote it.
    """

    def __init__(self, service_name: str = "mymaster", *, replica: bool = False) -> None:
        self.service_name = service_name
        self.master = RedisServer(name="sentinel-master")
        self.sentinel = _SentinelProcess(self.master.port, service_name)
        self.replica = (
            RedisServer(
                name="sentinel-replica", extra_args=["--replicaof", HOST, str(self.master.port)]
            )
            if replica
            else None
        )

    @property
    def sentinels(self) -> list[tuple[str, int]]:
        return [(HOST, self.sentinel.port)]

    @property
    def master_address(self) -> tuple[str, int]:
        return self.master.address

    def master_state(self) -> dict[str, str]:
        """``SENTINEL MASTER <service>`` as a dict."""
        flat = self.sentinel.command("SENTINEL", "MASTER", self.service_name)
        return dict(zip(flat[::2], flat[1::2], strict=True))

    def start(self, timeout: float = 30.0) -> RedisSentinel:
        """Start both; wait until the sentinel has heard from the master (INFO received)."""
        try:
            self.master.start()
            self.sentinel._spawn()

            def knows_master() -> bool:
                addr = self.sentinel.command(
                    "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service_name
                )
                if addr != [HOST, str(self.master.port)]:
                    return False
                state = self.master_state()
                return (
                    state.get("flags") == "master"
                    and int(state.get("info-refresh", "1000000000")) < 60_000
                    and state.get("role-reported") == "master"
                )

            wait_for(knows_master, timeout, "sentinel reports the master", interval=0.05)
            if self.replica is not None:
                self.replica.start()
                replica = self.replica

                def replica_ready() -> bool:
                    link = replica.info("replication").get("master_link_status")
                    known = self.sentinel.command("SENTINEL", "REPLICAS", self.service_name)
                    return link == "up" and len(known) > 0

                wait_for(replica_ready, timeout, "the replica is in sync and known", interval=0.05)
        except BaseException:
            self.stop()
            raise
        return self

    def failover(self, timeout: float = 30.0) -> None:
        """Promote the replica (``SENTINEL FAILOVER``) and wait until it is the master."""
        replica = self.replica
        if replica is None:
            raise RedisSupportError("failover needs RedisSentinel(replica=True)")
        self.sentinel.command("SENTINEL", "FAILOVER", self.service_name)

        def promoted() -> bool:
            addr = self.sentinel.command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service_name)
            role = replica.info("replication").get("role")
            old = self.master.info("replication")
            return (
                addr == [HOST, str(replica.port)]
                and role == "master"
                and old.get("role") == "slave"
                and old.get("master_link_status") == "up"
            )

        wait_for(promoted, timeout, "the replica is promoted", interval=0.05)

    def stop(self) -> None:
        self.sentinel.stop()
        if self.replica is not None:
            self.replica.stop()
        self.master.stop()

    @property
    def pids(self) -> list[int]:
        servers = (self.master, self.sentinel, self.replica)
        return [s.pid for s in servers if s is not None and s.pid is not None]

    def __enter__(self) -> RedisSentinel:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
