"""Sphinx configuration of the samprompt documentation.

Build (as CI does; warnings are errors, references are checked)::

    python -m sphinx -W --keep-going -n -b html docs docs/_build/html

Cross-references into other projects' docs (Python, NumPy, PyTorch, pydantic) need their intersphinx
inventories, which are downloaded. The build machines have no network, so intersphinx is OFF unless
``SAMPROMPT_DOCS_INTERSPHINX=1`` is set; without it, references to those projects render as plain text
(``nitpick_ignore_regex`` below lists those projects, plus samprompt's private modules).

Two parts are generated at build time by ``_ext/samprompt_docs.py``: the API pages (``docs/api/``, one per
module that exists in the installed package) and the CLI page (from ``samprompt.cli``'s parser).
"""

from __future__ import annotations

import os
import sys
from datetime import date
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))

import samprompt

project = "samprompt"
author = "samprompt developers"
copyright = f"{date.today().year}, {author}"
release = samprompt.__version__
version = ".".join(release.split(".")[:2])

# No sphinx.ext.viewcode: highlighting every module's source costs a quarter of the build time.
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "myst_parser",
    "samprompt_docs",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "plugin_example/**", "results/**", "**/.pytest_cache", "Thumbs.db", ".DS_Store"]
# Pages written separately that may not exist yet; the index lists them, and while one is missing it is
# taken out of the toctree (see _ext/samprompt_docs.py).
samprompt_optional_pages = ["quality"]

# -- autodoc / napoleon ---------------------------------------------------------------------------
# Members are listed per page by _ext/samprompt_docs.py (each object documented once, where it is defined).
autodoc_default_options = {
    "show-inheritance": True,
    "member-order": "bysource",
    "special-members": "__call__",  # a component's __call__ is its contract
    "exclude-members": "model_config",  # pydantic's, with pydantic's docstring
}
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
# Keep the aliases the code writes (NDArray[np.float32]) instead of their expansion.
autodoc_type_aliases = {"NDArray": "numpy.typing.NDArray", "ArrayLike": "numpy.typing.ArrayLike"}
autosummary_generate = False  # the API pages are written by _ext/samprompt_docs.py
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_custom_sections = [("Params", "params_style")]  # components list their Params fields this way
napoleon_attr_annotations = False  # pydantic's Annotated[...] field types are noise
python_use_unqualified_type_names = True
samprompt_api_dir = "api"  # generated: docs/api/ is rebuilt on every build (and git-ignored)
# Modules (or ``package.*``) left out of the API pages, e.g. one that exists but is not ready to document.
samprompt_api_exclude: list[str] = []

# -- cross-references -------------------------------------------------------------------------------
nitpicky = True
_EXTERNAL = {
    "python": ("https://docs.python.org/3", None),
    "numpy": ("https://numpy.org/doc/stable", None),
    "torch": ("https://docs.pytorch.org/docs/stable", None),
    "PIL": ("https://pillow.readthedocs.io/en/stable", None),
    "pydantic": ("https://docs.pydantic.dev/latest", None),
}
if os.environ.get("SAMPROMPT_DOCS_INTERSPHINX") == "1":
    intersphinx_mapping = _EXTERNAL
else:
    intersphinx_mapping = {}
# Targets that only an intersphinx inventory could resolve: the standard library and third-party types.
_STDLIB = (
    r"abc|argparse|collections|contextlib|dataclasses|enum|importlib|io|logging|os|pathlib|re|types|Path"
)
_THIRD_PARTY = (
    r"numpy|np|NDArray|ArrayLike|torch|nn|torchvision|torchcam|segment_anything|Sam|pydantic|pydantic_core"
    r"|annotated_types|typing_extensions|PIL|Image|skimage|scipy"
)
nitpick_ignore_regex = [
    (r"py:.*", rf"({_STDLIB})(\..*)?"),
    (r"py:.*", rf"({_THIRD_PARTY})(\..*)?"),
    # samprompt's own: private modules (not documented) and type variables.
    (r"py:.*", r"samprompt\._.*|samprompt\.registry\.(T|_C)|samprompt\.data\.prefetch\._[TR]"),
]

# -- HTML -------------------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"samprompt {release}"
html_static_path: list[str] = []
myst_heading_anchors = 3
# Quotes and ellipses only: "--flag" in CLI help and prose must stay two hyphens, not become an en dash.
smartquotes_action = "qe"
