"""Pseudo maskers: turn a CAM into a binary pseudo mask."""

from samprompt.maskers.base import MaskerParams, PseudoMasker
from samprompt.registry import Registry

#: Registry of pseudo maskers; plugins use the entry-point group ``samprompt.pseudo_maskers``.
MASKERS: Registry[PseudoMasker] = Registry(
    "pseudo masker",
    "samprompt.pseudo_maskers",
    PseudoMasker,
    builtin_modules=("samprompt.maskers.builtin",),
)

__all__ = ["MASKERS", "MaskerParams", "PseudoMasker"]
