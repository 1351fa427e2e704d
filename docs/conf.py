"""Sphinx configuration for the polysync documentation (Markdown pages through MyST).

Build with warnings as errors:

    python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

from __future__ import annotations

project = "polysync"
author = "the polysync authors"
copyright = "the polysync authors"  # noqa: A001  (Sphinx's own setting name)

try:
    from polysync import __version__ as release
except ImportError:  # building without the package installed: autodoc pages will say so
    release = "unknown"
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
]
# No intersphinx: the build must not need the network.

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True}

nitpicky = False
# polysync.Lock and polysync.aio.Lock share a short name: an annotation that says ``Lock``
# in polysync.aio links to the first of them instead of warning that there are two.
suppress_warnings = ["ref.python"]

# furo: a maintained theme with a sidebar of the four sections (pyproject: the docs extra).
html_theme = "furo"
html_title = f"polysync {release}"
