"""The distribution's name: ``polysync-primitives`` (PyPI's ``polysync`` is another project)."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DIST = "polysync-primitives"


def test_the_installed_distribution_is_polysync_primitives() -> None:
    dist = metadata.distribution(DIST)
    assert dist.metadata["Name"] == DIST
    assert "polysync" in (dist.read_text("top_level.txt") or "polysync").split()
    assert DIST in metadata.packages_distributions()["polysync"]


def _texts() -> list[Path]:
    found = [ROOT / "README.md", ROOT / "pyproject.toml", *sorted((ROOT / "docs").glob("*.md"))]
    found += sorted((ROOT / "polysync").rglob("*.py"))
    examples = ROOT / "examples"
    if examples.is_dir():
        found += sorted(p for p in examples.rglob("*") if p.suffix in {".md", ".toml", ".py"})
    return found


# ``pip install polysync`` / ``polysync[extra]`` / a dependency on "polysync" would all
# install the unrelated project.
_WRONG = re.compile(
    r"pip install [\"']?polysync(?![-\w])"  # pip install polysync
    r"|(?<![\w-])polysync\["  # polysync[extra]
    r"|dependencies\s*=.*[\"']polysync[\"'<>=~! ;]"  # dependencies = ["polysync"]
)


@pytest.mark.parametrize("path", _texts(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_text_installs_the_unrelated_polysync(path: Path) -> None:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        assert not _WRONG.search(line), f"{path.name}:{number} names PyPI's polysync: {line}"
