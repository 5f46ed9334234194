"""Sphinx configuration: the API reference, built from the package's docstrings (numpydoc style).

Build: python -m sphinx -W -b html docs docs/_build/html   (from the repository's root)
"""

import sys
from pathlib import Path

# the source tree's package, so the docs build from a checkout without installing it
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from fastbptt import __version__  # noqa: E402

project = "fastbptt"
author = "the fastbptt developers"
copyright = "the fastbptt developers"
version = release = __version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon"]
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
autodoc_default_options = {"members": True, "member-order": "bysource"}
autodoc_typehints = "description"  # annotations shown beside each parameter, not in a long signature
autodoc_class_signature = "separated"  # a class's __init__ signature as its own entry

source_suffix = {".rst": "restructuredtext"}
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path = []
