"""Prompt strategies: turn a pseudo mask (and its CAM) into a :class:`Prompt`."""

from samprompt.prompts.base import Emits, Prompt, PromptStrategy
from samprompt.registry import Registry

#: Registry of prompt strategies; plugins use the entry-point group ``samprompt.prompt_strategies``.
PROMPT_STRATEGIES: Registry[PromptStrategy] = Registry(
    "prompt strategy",
    "samprompt.prompt_strategies",
    PromptStrategy,
    builtin_modules=("samprompt.prompts.builtin", "samprompt.prompts.candidates"),
)

__all__ = ["PROMPT_STRATEGIES", "Emits", "Prompt", "PromptStrategy"]
