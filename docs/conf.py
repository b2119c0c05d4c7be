"""Sphinx configuration for the provstore documentation.

Built with warnings as errors (``nox -s docs``, and ``tests/test_docs.py`` in CI):
``sphinx-build -W --keep-going -b html docs build/docs``.
"""

from __future__ import annotations

from pathlib import Path

import provstore

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

# docs/_static/openlineage-facets-1.json is the schema the OpenLineage facets' _schemaURL names.
html_static_path = ["_static"] if (Path(__file__).parent / "_static").is_dir() else []

html_theme = "furo"
html_title = f"provstore {release}"
html_show_sourcelink = False
