"""Deprecated location: self-training moved to :mod:`samprompt.classifiers.selftrain` (issue 15).

Re-exports it for old imports; new code imports ``samprompt.classifiers.selftrain``.
"""

from __future__ import annotations

from samprompt.classifiers import selftrain as _moved
from samprompt.classifiers.selftrain import *  # the whole public surface, re-exported

__all__ = list(_moved.__all__)
