"""Sphinx configuration of the almadeliver API reference (autodoc + napoleon: numpydoc docstrings).

Built by ``tests/test_docs.py`` with warnings as errors: ``python -m sphinx -W -b html docs build/docs``.
"""
project = "almadeliver"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon"]
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
autodoc_typehints = "none"              # the numpydoc sections say the types, with units
autodoc_member_order = "bysource"
exclude_patterns = ["_build", "*.ipynb_checkpoints"]
html_theme = "alabaster"
