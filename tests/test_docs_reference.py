"""The reference documents every public object: each has an autodoc entry in docs/*.md."""

from __future__ import annotations

import importlib
import re
import types
from pathlib import Path

import pytest

import polysync

ROOT = Path(__file__).resolve().parent.parent
_DIRECTIVE = re.compile(
    r"^\.\. auto(?:class|function|exception|data|module|attribute)::\s+(\S+)", re.M
)
# The modules whose public names a user or a plugin author imports (``__all__`` where the
# module has one, else every name without a leading underscore that is not a module).
PUBLIC_MODULES = ["polysync", "polysync.aio", "polysync.kernel", "polysync.errors",
                  "polysync.registry", "polysync.testing", "polysync.hookspecs",
                  "polysync.instrument", "polysync.otel"]  # fmt: skip


def _documented() -> set[str]:
    found: set[str] = set()
    for page in (ROOT / "docs").glob("*.md"):
        found.update(_DIRECTIVE.findall(page.read_text(encoding="utf-8")))
    return found


def _public(module_name: str) -> list[tuple[str, object]]:
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None) or [
        n for n in vars(module) if not n.startswith("_") and n != "annotations"
    ]
    # A name the module merely imported (typing helpers, pluggy) is not its API.
    return [
        (name, getattr(module, name))
        for name in names
        if not isinstance(getattr(module, name), types.ModuleType)
        and getattr(getattr(module, name), "__module__", module_name).startswith("polysync")
    ]


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_public_object_has_a_reference_entry(module_name: str) -> None:
    documented = _documented()
    missing = []
    for name, value in _public(module_name):
        # An object re-exported as polysync.X is documented once, under either name.
        candidates = {f"{module_name}.{name}"}
        if getattr(polysync, name, None) is value:
            candidates.add(f"polysync.{name}")
        home = getattr(value, "__module__", None)
        if isinstance(home, str):
            candidates.add(f"{home}.{name}")
        if not candidates & documented:
            missing.append(f"{module_name}.{name}")
    assert not missing, f"not in the reference (docs/*.md autodoc entries): {missing}"
