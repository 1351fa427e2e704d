"""A tiny RESP2 client for the private servers, so the tests need no Redis client library.

It never talks to the machine's own Redis: :class:`RespConnection` refuses the
:data:`RESERVED_PORTS` over TCP, and every private server binds :data:`HOST`.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Sequence
from typing import Any

HOST = "127.0.0.1"
#: The machine's own Redis: never used, never touched.
RESERVED_PORTS = frozenset({6379, 16379, 26379})


class RespError(Exception):
    """An error reply (``-ERR ...``) from the server."""


def _encode(args: Sequence[object]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class RespConnection:
    """One blocking connection speaking RESP2; replies decoded to ``str``/``int``/lists."""

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = HOST,
        unix_path: str | None = None,
        password: str | None = None,
        username: str | None = None,
        timeout: float = 5.0,
    ) -> None:
        if port in RESERVED_PORTS and unix_path is None:
            raise ValueError(f"port {port} is reserved for the machine's own Redis")
        if unix_path is not None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            target: Any = unix_path
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            target = (host, port)
        try:
            self.sock.connect(target)
        except OSError:
            self.sock.close()
            raise
        self._file = self.sock.makefile("rb")
        if password is not None:
            auth: list[object] = ["AUTH", username, password] if username else ["AUTH", password]
            self.command(*auth)

    def command(self, *args: object) -> Any:
        """Send one command and return its reply; an error reply raises :class:`RespError`."""
        self.sock.sendall(_encode(args))
        return self._read()

    def _read(self) -> Any:
        line = self._file.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("connection closed by the server")
        kind, body = line[:1], line[1:-2]
        if kind == b"+":
            return body.decode()
        if kind == b"-":
            raise RespError(body.decode())
        if kind == b":":
            return int(body)
        if kind == b"$":
            size = int(body)
            if size < 0:
                return None
            data = self._file.read(size + 2)
            return data[:-2].decode(errors="replace")
        if kind == b"*":
            count = int(body)
            return None if count < 0 else [self._read() for _ in range(count)]
        raise ConnectionError(f"unexpected reply {line!r}")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> RespConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def parse_info(text: str) -> dict[str, str]:
    """``INFO`` / ``CLUSTER INFO`` text as a dict."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if ":" in line and not line.startswith("#"):
            key, _, value = line.partition(":")
            out[key.strip()] = value.strip()
    return out
