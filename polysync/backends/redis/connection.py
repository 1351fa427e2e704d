"""How the redis backend connects: options to a redis-py client, secret-free descriptions.

Supported: ``url`` (redis://, rediss:// with TLS, unix://, with ACL username and
password), an existing redis-py ``client`` or ``connection_pool``, Sentinel
(``sentinel`` addresses plus ``service_name``) and Redis Cluster (``cluster=True``).
Passwords never appear in descriptions or error messages.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import redis
import redis.cluster
import redis.sentinel

from polysync.errors import BackendUnavailableError

#: Connection arguments that recreate a client elsewhere (redis-py adds internal ones).
_PORTABLE = (
    "host",
    "port",
    "db",
    "username",
    "password",
    "path",
    "socket_timeout",
    "socket_connect_timeout",
    "socket_keepalive",
    "client_name",
    "protocol",
    "ssl_cert_reqs",
    "ssl_ca_certs",
    "ssl_certfile",
    "ssl_keyfile",
)


def mask(url: str) -> str:
    """*url* with any password replaced by ``***``."""
    return re.sub(r"(?<=://)([^:@/]*):[^@/]*@", r"\1:***@", url)


#: The protocol of the clients polysync builds. The scripts' replies are plain RESP2
#: values, and RESP2 needs no HELLO round trip on each new connection; redis-py 8 made
#: RESP3 its default. A client passed in keeps whatever protocol it was given.
PROTOCOL = 2
#: The longest one non-blocking operation may take when the client sets no socket
#: timeout of its own (redis-py before 8 sets none: a frozen server would hold a caller
#: forever). Clients polysync builds get it as their socket timeout unless told otherwise.
OP_TIMEOUT = 5.0


#: The options that each say where the server is; at most one may be given.
_SOURCES = ("url", "client", "connection_pool", "sentinel")


def connect(settings: Mapping[str, Any]) -> Any:
    """A redis-py client (``Redis`` or ``RedisCluster``) for the backend's *settings*."""
    given = [name for name in _SOURCES if settings.get(name)]
    if len(given) > 1:
        raise TypeError(
            f"the redis backend takes one of {', '.join(_SOURCES)}, not several: got "
            f"{', '.join(given)}"
        )
    client = settings.get("client")
    if client is not None:
        return client
    pool = settings.get("connection_pool")
    if pool is not None:
        if not isinstance(pool, redis.ConnectionPool):
            raise TypeError(
                f"connection_pool must be a redis.ConnectionPool, not {type(pool).__name__}"
            )
        return redis.Redis(connection_pool=pool)
    kwargs = settings.get("connection_kwargs")
    if kwargs:
        kwargs = {"protocol": PROTOCOL, "socket_timeout": OP_TIMEOUT, **kwargs}
        if settings.get("cluster"):
            return redis.cluster.RedisCluster(**kwargs)
        return redis.Redis(**kwargs)
    sentinels = settings.get("sentinel")
    if sentinels:
        service = settings.get("service_name")
        if not service:
            raise TypeError("the redis backend's sentinel option needs service_name as well")
        extra = {k: settings[k] for k in ("username", "password") if settings.get(k)}
        sentinel_cls: Any = redis.sentinel.Sentinel  # partly untyped in redis-py
        sentinel = sentinel_cls(
            [tuple(s) for s in sentinels], protocol=PROTOCOL, socket_timeout=OP_TIMEOUT, **extra
        )
        return sentinel.master_for(service, **extra)
    url = settings.get("url")
    if not url:
        raise TypeError(
            "the redis backend needs url= (redis://host:port/db), client=, "
            "connection_pool=, or sentinel= with service_name="
        )
    if settings.get("cluster"):
        return redis.cluster.RedisCluster.from_url(
            url, protocol=PROTOCOL, socket_timeout=OP_TIMEOUT
        )
    return redis.Redis.from_url(url, protocol=PROTOCOL, socket_timeout=OP_TIMEOUT)


def picklable(settings: Mapping[str, Any]) -> dict[str, Any]:
    """*settings* with a live client replaced by the arguments that reconnect it."""
    out = dict(settings)
    client = out.pop("client", None)
    pool = out.pop("connection_pool", None)
    if client is None and pool is None:
        return out
    if isinstance(client, redis.cluster.RedisCluster):
        node: Any = client.get_default_node()  # type: ignore[no-untyped-call]
        out["connection_kwargs"] = {"host": node.host, "port": node.port}
        out["cluster"] = True
        return out
    if pool is None:
        pool = getattr(client, "connection_pool", None)
    if pool is None:
        raise BackendUnavailableError(
            "this redis client cannot be re-created in another process: pass url= instead"
        )
    kwargs = {k: v for k, v in pool.connection_kwargs.items() if k in _PORTABLE}
    connection_class = getattr(pool, "connection_class", None)
    if connection_class is redis.UnixDomainSocketConnection:
        kwargs["unix_socket_path"] = kwargs.pop("path", None)
    elif connection_class is redis.SSLConnection:
        kwargs["ssl"] = True
    out["connection_kwargs"] = kwargs
    return out


def describe(settings: Mapping[str, Any]) -> str:
    """Where the objects live, without secrets."""
    if settings.get("client") is not None:
        return "a redis-py client"
    if settings.get("connection_pool") is not None:
        return "a redis-py connection pool"
    if settings.get("sentinel"):
        return f"sentinel service {settings.get('service_name')!r}"
    if settings.get("connection_kwargs"):
        kw = settings["connection_kwargs"]
        return f"{kw.get('host') or kw.get('unix_socket_path')}:{kw.get('port', '')}"
    return mask(str(settings.get("url")))
