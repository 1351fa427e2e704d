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
            install_hint="pip install polysync  (posix_ipc is a default dependency)",
            platforms=("linux", "darwin", "freebsd"),
            description="POSIX named semaphores and shared memory (posix_ipc), one host",
        )
    )
    registry.register(
        BackendSpec(
            "thread",
            "polysync.backends.thread:ThreadBackend",
            description="in-process reference backend (threads of one process)",
        )
    )


@hookimpl(trylast=True)
def polysync_default_backend(platform: str) -> str | None:
    return "windows" if platform == "win32" else "posix"
