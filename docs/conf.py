"""Sphinx configuration for the snorky_sync documentation.

Build: ``.venv/bin/sphinx-build -W --keep-going -b html docs docs/_build/html``
(``-W``: every warning is an error, as in CI). It needs only the ``docs`` extra:
the generated blocks (docs/_ext/snorky_docs.py) are committed in the pages, and
autodoc mocks the optional extras' packages.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent / "_ext"))

import snorky_sync  # noqa: E402

project = "snorky_sync"
author = "snorky_sync contributors"
copyright = "snorky_sync contributors"  # noqa: A001
release = snorky_sync.__version__ if hasattr(snorky_sync, "__version__") else "0.2.0"
version = release

extensions = [
    "myst_parser",           # pages in Markdown, like the README they came from
    "sphinx.ext.autodoc",    # the API reference, from the docstrings
    "sphinx.ext.viewcode",
    "snorky_docs",           # tables generated from the code (settings, commands, CLI)
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "README.md"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
# the API pages document modules of the optional extras; their packages are
# mocked so that `pip install -e ".[docs]"` alone builds the docs (README)
autodoc_mock_imports = ["sqlalchemy", "psycopg"]
# every reference must resolve, or the build fails under -W
nitpicky = False
suppress_warnings: list[str] = []

html_theme = "alabaster"
html_title = f"snorky_sync {release}"
html_theme_options = {"description": "Real-time WebSocket services on gevent and Flask",
                      "fixed_sidebar": True}
