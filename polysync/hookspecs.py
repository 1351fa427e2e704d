"""The pluggy hook specifications a backend plugin implements, and the marker it uses.

A plugin is a cheap module (it must not import the backend's dependencies) exposed in the
entry-point group ``polysync``::

    from polysync.hookspecs import hookimpl
    from polysync.registry import BackendSpec

    @hookimpl
    def polysync_register_backends(registry):
        registry.register(BackendSpec("mine", "mypkg.backend:MyBackend",
                                      install_hint="pip install mypkg[backend]"))
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from polysync.registry import BackendRegistry

__all__ = ["hookimpl", "polysync_default_backend", "polysync_register_backends"]

PROJECT = "polysync"

hookspec = pluggy.HookspecMarker(PROJECT)
#: Decorate a plugin's hook functions with this.
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def polysync_register_backends(registry: BackendRegistry) -> None:
    """Register backends by calling ``registry.register(BackendSpec(...))``.

    Registration is data: do not import the backend's module or its dependencies here.
    """


@hookspec(firstresult=True)
def polysync_default_backend(platform: str) -> str | None:
    """Name the default backend for *platform* (``sys.platform``), or ``None`` to pass.

    polysync's own answer runs last, so any installed plugin can override it.
    """
