"""polysync's built-in backends, registered through the same hook as third-party plugins."""

from __future__ import annotations

from typing import TYPE_CHECKING

from polysync.hookspecs import hookimpl

if TYPE_CHECKING:
    from polysync.registry import BackendRegistry


@hookimpl
def polysync_register_backends(registry: BackendRegistry) -> None:
    from polysync.registry import BackendSpec

    registry.register(
        BackendSpec(
            "posix",
            "polysync.backends.posix:PosixBackend",
            install_hint="pip install polysync-primitives  (posix_ipc is a default dependency)",
            # macOS lacks sem_timedwait and sem_getvalue, which timeouts and lock checks need.
            platforms=("linux", "freebsd"),
            description="POSIX named semaphores and shared memory (posix_ipc), one host",
        )
    )
    registry.register(
        BackendSpec(
            "windows",
            "polysync.backends.windows:WindowsBackend",
            install_hint="pip install polysync-primitives  (ctypes only, nothing more)",
            platforms=("win32",),
            description="kernel32 semaphores, mutexes, events and file mappings, one session",
        )
    )
    registry.register(
        BackendSpec(
            "thread",
            "polysync.backends.thread:ThreadBackend",
            description="in-process reference backend (threads of one process)",
        )
    )
    registry.register(
        BackendSpec(
            "redis",
            "polysync.backends.redis:RedisBackend",
            install_hint="pip install 'polysync-primitives[redis]'",
            description="Redis (standalone, Sentinel or Cluster): processes on many hosts",
        )
    )
    registry.register(
        BackendSpec(
            "postgres",
            "polysync.backends.postgres:PostgresBackend",
            install_hint="pip install 'polysync-primitives[postgres]'",
            description="PostgreSQL (session advisory locks, LISTEN/NOTIFY): many hosts",
        )
    )


@hookimpl(trylast=True)
def polysync_default_backend(platform: str) -> str | None:
    return "windows" if platform == "win32" else "posix"
