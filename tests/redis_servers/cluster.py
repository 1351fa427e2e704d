"""A private Redis cluster, :class:`RedisCluster`: three masters and no replicas."""

from __future__ import annotations

import subprocess

from .processes import RedisSupportError, _require, free_port, wait_for
from .resp import parse_info
from .server import RedisServer


class RedisCluster:
    """Three cluster-enabled masters (no replicas), joined by ``redis-cli --cluster create``."""

    def __init__(self, masters: int = 3, node_timeout_ms: int = 5000) -> None:
        if masters < 3:
            raise ValueError("redis-cli --cluster create needs at least 3 masters")
        self.servers: list[RedisServer] = []
        used: list[int] = []
        for i in range(masters):
            port = free_port(avoid=used)
            bus = free_port(avoid=[*used, port])
            used += [port, bus]
            extra = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                str(node_timeout_ms),
                "--cluster-port",
                str(bus),
            ]
            self.servers.append(RedisServer(port, extra_args=extra, name=f"cluster{i}"))

    @property
    def nodes(self) -> list[tuple[str, int]]:
        return [s.address for s in self.servers]

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]

    @property
    def url(self) -> str:
        return self.servers[0].url

    def start(self, timeout: float = 60.0) -> RedisCluster:
        """Start the nodes, create the cluster, wait for ``cluster_state:ok`` everywhere."""
        cli = _require("redis-cli")
        try:
            for s in self.servers:
                s.start()
            hosts = [f"{h}:{p}" for h, p in self.nodes]
            done = subprocess.run(
                [cli, "--cluster", "create", *hosts, "--cluster-replicas", "0", "--cluster-yes"],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
            if done.returncode != 0:
                raise RedisSupportError(
                    f"redis-cli --cluster create failed ({done.returncode}):\n"
                    f"{done.stdout}\n{done.stderr}"
                )
            count = len(self.servers)

            def ok() -> bool:
                for s in self.servers:
                    info = parse_info(s.command("CLUSTER", "INFO"))
                    if info.get("cluster_state") != "ok":
                        return False
                    if info.get("cluster_slots_ok") != "16384":
                        return False
                    if info.get("cluster_known_nodes") != str(count):
                        return False
                return True

            wait_for(ok, timeout, "cluster_state:ok on every node", interval=0.1)
        except BaseException:
            self.stop()
            raise
        return self

    def node_for(self, key: str) -> RedisServer:
        """The master that serves *key*'s hash slot."""
        slot = int(self.servers[0].command("CLUSTER", "KEYSLOT", key))
        for entry in self.servers[0].command("CLUSTER", "SLOTS"):
            low, high, master = int(entry[0]), int(entry[1]), entry[2]
            if low <= slot <= high:
                port = int(master[1])
                for s in self.servers:
                    if s.port == port:
                        return s
        raise RedisSupportError(f"no node serves slot {slot}")

    def stop(self) -> None:
        for s in self.servers:
            s.stop()

    @property
    def pids(self) -> list[int]:
        return [s.pid for s in self.servers if s.pid is not None]

    def __enter__(self) -> RedisCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
