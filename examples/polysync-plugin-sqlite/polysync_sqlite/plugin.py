"""The plugin hook: registers the sqlite backend by name, importing neither it nor sqlite3."""

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
            "sqlite",
            "polysync_sqlite.backend:SqliteBackend",
            install_hint="pip install -e examples/polysync-plugin-sqlite",
            description="rows of one SQLite file shared by one host's processes (waits poll)",
            distribution="polysync-plugin-sqlite",
        )
    )
