"""Sphinx configuration of dirtylog's API reference.

Build it (warnings are errors, as in CI) from the repository root, with dirtylog installed:

    pip install ".[docs]" && sphinx-build -W --keep-going -b html docs docs/_build/html

autodoc imports the *installed* dirtylog (its compiled core is not in the source tree), so this
file does not put the source tree on sys.path.
"""
from __future__ import annotations

import dirtylog

project = "dirtylog"
author = "dirtylog developers"
copyright = "2026, dirtylog developers"
release = dirtylog.__version__
version = release

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon"]
exclude_patterns = ["_build"]
root_doc = "index"

autodoc_default_options = {"members": True, "show-inheritance": True, "member-order": "bysource"}
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_class_signature = "separated"
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = "alabaster"
html_title = f"dirtylog {release}"
html_theme_options = {"description": "Dirty-page tracking and live migration, simulated", "fixed_sidebar": True}
