"""Which backends exist: ``BackendSpec`` records, the plugin manager, and lazy backend loading.

The plugin manager is built on first use, never at ``import polysync``. It loads
polysync's built-in plugin and every entry point in the group ``polysync``, unless
``POLYSYNC_DISABLE_PLUGIN_AUTOLOAD`` is set; ``POLYSYNC_BLOCK_PLUGINS`` (comma-separated
entry-point names) blocks chosen plugins. A backend's module is imported only when a
context for it is requested.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from polysync.errors import BackendUnavailableError, UnknownBackendError

if TYPE_CHECKING:
    import pluggy

    from polysync.kernel import Backend, Capability

__all__ = ["BackendRegistry", "BackendSpec", "get_registry"]

ENTRY_POINT_GROUP = "polysync"
DISABLE_AUTOLOAD_ENV = "POLYSYNC_DISABLE_PLUGIN_AUTOLOAD"
BLOCK_ENV = "POLYSYNC_BLOCK_PLUGINS"


@dataclass(frozen=True)
class BackendSpec:
    """What a plugin registers: a name and where the backend class lives, not the class."""

    #: The name passed to ``get_context``.
    name: str
    #: ``"package.module:ClassName"`` of a backend class (usually a
    #: :class:`~polysync.derived.BaseBackend` subclass).
    target: str
    #: The command that installs what the backend needs, shown when its import fails.
    install_hint: str = ""
    #: ``sys.platform`` prefixes it runs on; empty means everywhere.
    platforms: tuple[str, ...] = ()
    #: One line for ``polysync backends``.
    description: str = ""
    #: The distribution providing it (found from the target's top-level package if empty).
    distribution: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("-", "_").isidentifier():
            raise ValueError(f"backend name {self.name!r} must be a non-empty identifier")
        module, sep, attr = self.target.partition(":")
        if not module or not sep or not attr:
            raise ValueError(f"backend target {self.target!r} must look like 'module:Class'")

    def runs_here(self, platform: str = sys.platform) -> bool:
        return not self.platforms or any(platform.startswith(p) for p in self.platforms)

    def provided_by(self) -> str:
        if self.distribution:
            return self.distribution
        from importlib.metadata import packages_distributions

        top = self.target.split(".", 1)[0].split(":", 1)[0]
        dists = packages_distributions().get(top)
        return dists[0] if dists else top


class BackendRegistry:
    """The registered backends, keyed by name."""

    def __init__(self) -> None:
        self._specs: dict[str, BackendSpec] = {}
        self._classes: dict[str, type[Backend]] = {}
        self._lock = threading.Lock()
        self.plugin_manager: pluggy.PluginManager | None = None

    def register(self, spec: BackendSpec) -> None:
        """Add *spec*; a second spec under the same name is an error naming both targets."""
        old = self._specs.get(spec.name)
        if old is not None and old.target != spec.target:
            raise ValueError(
                f"backend {spec.name!r} is registered twice: {old.target} and {spec.target}"
            )
        self._specs[spec.name] = spec

    def names(self) -> list[str]:
        return sorted(self._specs)

    def specs(self) -> list[BackendSpec]:
        return [self._specs[n] for n in self.names()]

    def get(self, name: str) -> BackendSpec:
        """The spec registered as *name*, or an error listing the names and the closest."""
        spec = self._specs.get(name)
        if spec is not None:
            return spec
        names = self.names()
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UnknownBackendError(
            f"no polysync backend is registered as {name!r}{hint} "
            f"(registered: {', '.join(names) or 'none'})"
        )

    def load(self, name: str) -> type[Backend]:
        """Import and return the backend class for *name* (cached)."""
        cls = self._classes.get(name)
        if cls is not None:
            return cls
        spec = self.get(name)
        if not spec.runs_here():
            raise BackendUnavailableError(
                f"the {name!r} backend runs on {', '.join(spec.platforms)}, not on {sys.platform}"
            )
        loaded = self._import(spec)
        with self._lock:
            self._classes[name] = loaded
        return loaded

    def _import(self, spec: BackendSpec) -> type[Backend]:
        module_name, _, attr = spec.target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            hint = f": {spec.install_hint}" if spec.install_hint else ""
            raise BackendUnavailableError(
                f"the {spec.name!r} backend cannot be imported here ({exc}){hint}"
            ) from exc
        loaded = getattr(module, attr, None)
        if loaded is None:
            raise BackendUnavailableError(
                f"the {spec.name!r} backend's target {spec.target} names nothing in {module_name}"
            )
        result: type[Backend] = loaded
        return result

    def declared_capabilities(self, name: str) -> frozenset[Capability] | None:
        """What *name* declares, even on a platform it does not run on (``None``: unknown).

        Backend modules import cleanly everywhere (their platform's libraries load on
        first use), so this works for documentation and ``polysync backends``.
        """
        try:
            return self._import(self.get(name)).capabilities
        except Exception:  # not importable here: a missing dependency or a broken plugin
            return None

    def availability(self, name: str) -> tuple[bool, str]:
        """Whether *name* can be used here, and why not."""
        try:
            self.load(name)
        except BackendUnavailableError as exc:
            return False, str(exc)
        except Exception as exc:  # a broken plugin must not break the listing
            return False, f"importing it failed: {type(exc).__name__}: {exc}"
        return True, "available"

    def default_name(self) -> str:
        env = os.environ.get("POLYSYNC_BACKEND")
        if env:
            return env
        assert self.plugin_manager is not None
        chosen: str | None = self.plugin_manager.hook.polysync_default_backend(
            platform=sys.platform
        )
        return chosen or "posix"


_registry: BackendRegistry | None = None
_registry_lock = threading.Lock()


def _build() -> BackendRegistry:
    import pluggy

    from polysync import backends, hookspecs

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(backends, name="polysync.builtin")
    for blocked in filter(None, (b.strip() for b in os.environ.get(BLOCK_ENV, "").split(","))):
        pm.set_blocked(blocked)
    if not os.environ.get(DISABLE_AUTOLOAD_ENV):
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    pm.check_pending()
    registry = BackendRegistry()
    registry.plugin_manager = pm
    pm.hook.polysync_register_backends(registry=registry)
    return registry


def get_registry() -> BackendRegistry:
    """The process-wide registry, built (and plugins loaded) on first call."""
    global _registry
    if _registry is None:
        with _registry_lock:
            if _registry is None:
                _registry = _build()
    return _registry


def reset_registry() -> None:
    """Forget the registry so the next use reloads plugins (for tests and plugin authors)."""
    global _registry
    with _registry_lock:
        _registry = None
