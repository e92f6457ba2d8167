"""Importing an optional dependency with an error that says which extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from samprompt.errors import ConfigError

__all__ = ["MissingExtraError", "require"]


class MissingExtraError(ConfigError, ImportError):
    """A component needs a package that is not installed; the message names the extra to install."""


def require(module: str, *, component: str, package: str, extra: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming the extra that provides it.

    Args:
        module: Dotted module to import (``"sam2.build_sam"``).
        component: Who needs it, e.g. ``"segmenter 'sam2'"``.
        package: The distribution's name, for the message (``"sam2"``).
        extra: samprompt extra that installs it (``"sam2"`` → ``pip install 'samprompt[sam2]'``).

    Returns:
        The imported module.

    Raises:
        MissingExtraError: If the import fails (the original ImportError is chained).
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{component} needs the {package} package: pip install 'samprompt[{extra}]' ({exc})"
        ) from exc
