"""Sphinx configuration for the provstore documentation.

Built with warnings as errors (``nox -s docs``, and ``tests/test_docs.py`` in CI):
``sphinx-build -W --keep-going -b html docs build/docs``.
"""

from __future__ import annotations

from typing import Any

from sphinx.application import Sphinx

import provstore

# Bind the facade's ``tracker`` (the function) before anything imports the submodule of the
# same name: once ``provstore.tracker`` the module is imported (by ``from provstore import
# Tracker``, say) it shadows the lazily loaded function on the package.
from provstore import tracker as _tracker  # noqa: F401

project = "provstore"
author = "the provstore authors"
copyright = "the provstore authors"
release = provstore.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "sphinx_click",
]

exclude_patterns = ["_build"]
language = "en"

# The benchmark suite writes benchmarks.rst (``python -m benchmarks --report ...``) and may
# point it at _static/benchmarks.png; a checkout without the picture must still build.
suppress_warnings = ["image.not_readable"]

autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "signature"
autodoc_preserve_defaults = True

html_theme = "furo"
html_title = f"provstore {release}"
html_show_sourcelink = False


def _click_line_blocks(app: Sphinx, ctx: Any, lines: list[str]) -> None:
    r"""Keep the line breaks of ``\b`` paragraphs (the examples) of command help.

    Click keeps a paragraph's line breaks when a line holding only ``\b``, a backspace
    character, comes before it, and sphinx-click renders such a paragraph as a line block. In
    a raw docstring that line is a backslash and a ``b`` instead, which neither recognises;
    render it the same way.
    """
    out: list[str] = []
    keep = False
    for line in lines:
        if line.strip() == "\\b":
            keep = True
            continue
        if not line.strip():
            keep = False
        out.append(f"| {line}" if keep else line)
    lines[:] = out


def setup(app: Sphinx) -> None:
    """Connect the hook above."""
    app.connect("sphinx-click-process-description", _click_line_blocks)
