"""The backend registry: plugin discovery, lazy import, and the errors users see."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import polysync
from polysync.registry import BackendRegistry, BackendSpec, get_registry, reset_registry

from .conftest import run_python

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def fresh_registry() -> Iterator[None]:
    reset_registry()
    yield
    reset_registry()


def test_import_loads_no_backend_and_no_plugin() -> None:
    out = run_python(
        "import sys, polysync; "
        "print(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('posix_ipc', 'pluggy', 'redis', 'billiard') "
        "or m.startswith('polysync.backends') or m == 'polysync.registry'))"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_builtins_are_registered() -> None:
    names = get_registry().names()
    assert "posix" in names
    assert "thread" in names


def test_unknown_backend_lists_names_and_closest() -> None:
    with pytest.raises(polysync.UnknownBackendError) as info:
        polysync.get_context("posxi")
    message = str(info.value)
    assert "'posxi'" in message
    assert "did you mean 'posix'?" in message
    assert "(registered: " in message
    assert "posix" in message.split("registered: ")[1]
    assert "thread" in message.split("registered: ")[1]
    assert isinstance(info.value, LookupError)


def test_unknown_option_is_a_type_error_listing_accepted() -> None:
    with pytest.raises(TypeError, match=r"unknown option\(s\) bogus; accepted: .*\burl\b"):
        polysync.get_context("redis", bogus=1)
    with pytest.raises(TypeError, match=r"unknown option\(s\) url; accepted: none"):
        polysync.get_context("posix", url="redis://x")
    with pytest.raises(TypeError, match=r"unknown option\(s\) url; accepted: none"):
        polysync.get_context("thread", url="redis://x")


def test_backend_name_must_be_a_string() -> None:
    with pytest.raises(TypeError, match="backend must be a str"):
        polysync.get_context(3)  # type: ignore[arg-type]


def test_missing_dependency_gives_install_command() -> None:
    registry = BackendRegistry()
    registry.register(
        BackendSpec("ghost", "polysync_ghost_module:Backend", install_hint="pip install ghost")
    )
    with pytest.raises(polysync.BackendUnavailableError, match="pip install ghost") as info:
        registry.load("ghost")
    assert isinstance(info.value, ImportError)
    assert registry.availability("ghost")[0] is False


def test_wrong_platform_is_unavailable() -> None:
    registry = BackendRegistry()
    registry.register(
        BackendSpec("win", "polysync.backends.thread:ThreadBackend", platforms=("win32",))
    )
    with pytest.raises(polysync.BackendUnavailableError, match="runs on win32"):
        registry.load("win")


def test_conflicting_registration_is_an_error() -> None:
    registry = BackendRegistry()
    registry.register(BackendSpec("x", "a.b:C"))
    with pytest.raises(ValueError, match="registered twice"):
        registry.register(BackendSpec("x", "a.b:D"))


@pytest.mark.parametrize("target", ["nocolon", ":Cls", "mod:"])
def test_spec_target_is_checked(target: str) -> None:
    with pytest.raises(ValueError, match="module:Class"):
        BackendSpec("x", target)


def test_default_backend_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYSYNC_BACKEND", "thread")
    assert polysync.get_context().name == "thread"
    monkeypatch.delenv("POLYSYNC_BACKEND")
    expected = "windows" if sys.platform == "win32" else "posix"
    assert polysync.get_context().name == expected
    assert polysync.Lock().context.name == expected


def _write_plugin(root: Path, dist: str, module: str, backend: str) -> None:
    (root / f"{module}.py").write_text(
        textwrap.dedent(
            f"""
            from polysync.hookspecs import hookimpl
            from polysync.registry import BackendSpec

            @hookimpl
            def polysync_register_backends(registry):
                registry.register(BackendSpec(
                    {backend!r}, "{module}_impl:Backend", description="example plugin"))

            @hookimpl
            def polysync_default_backend(platform):
                return {backend!r}
            """
        )
    )
    (root / f"{module}_impl.py").write_text(
        textwrap.dedent(
            f"""
            from polysync.backends.thread import ThreadBackend

            class Backend(ThreadBackend):
                name = {backend!r}
            """
        )
    )
    info = root / f"{dist}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[polysync]\n{backend} = {module}\n")
    (info / "top_level.txt").write_text(f"{module}\n{module}_impl\n")


@pytest.fixture
def example_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_registry: None) -> str:
    _write_plugin(tmp_path, "polysync_example", "psexample", "example")
    monkeypatch.syspath_prepend(str(tmp_path))
    return "example"


def test_entry_point_plugin_is_found(example_plugin: str) -> None:
    registry = get_registry()
    assert example_plugin in registry.names()
    spec = registry.get(example_plugin)
    assert spec.provided_by() == "polysync_example"
    ctx = polysync.get_context(example_plugin)
    lock = ctx.Lock()
    assert lock.acquire(False)
    # a plugin can override the default backend; polysync's own answer runs last
    assert registry.default_name() == example_plugin


def test_autoload_can_be_disabled(example_plugin: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYSYNC_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert example_plugin not in get_registry().names()


def test_plugin_can_be_blocked(example_plugin: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYSYNC_BLOCK_PLUGINS", "example")
    assert example_plugin not in get_registry().names()
    assert "posix" in get_registry().names()


def test_available_backends_reports_each() -> None:
    rows = {name: (ok, why) for name, ok, why in polysync.available_backends()}
    assert rows["posix"] == (True, "available")
    assert rows["thread"] == (True, "available")
