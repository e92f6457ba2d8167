"""Typed errors raised by samprompt.

Every error names what is at fault: a file, a config location, a pipeline stage or a component.
They all derive from :class:`SampromptError`, so ``except SampromptError`` catches anything the
library raises on purpose, while programming errors (bugs) still surface as ordinary exceptions.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "PluginError",
    "RegistryError",
    "SampromptError",
    "StageError",
    "UnknownComponentError",
    "stage_errors",
]


class SampromptError(Exception):
    """Base class of every error samprompt raises on purpose."""


class RegistryError(SampromptError, ValueError):
    """A registry was used wrongly, e.g. a name registered twice without ``override=True``."""


class UnknownComponentError(RegistryError, KeyError):
    """A component name is not registered.

    Attributes:
        kind: The registry's kind, e.g. ``"prompt strategy"``.
        name: The name that was asked for.
        available: Every name the registry knows (built-in and plugin).
        suggestion: The closest available name, or ``None``.
    """

    def __init__(self, kind: str, name: str, available: list[str], suggestion: str | None) -> None:
        self.kind = kind
        self.name = name
        self.available = available
        self.suggestion = suggestion
        hint = f" Did you mean {suggestion!r}?" if suggestion else ""
        listing = ", ".join(repr(n) for n in available) or "(none)"
        super().__init__(f"unknown {kind} {name!r}.{hint} Available: {listing}.")

    def __str__(self) -> str:  # KeyError would repr() the message otherwise
        return str(self.args[0])

    def __reduce__(self) -> tuple[Any, ...]:  # picklable (e.g. raised in a worker process)
        return (type(self), (self.kind, self.name, self.available, self.suggestion))


class PluginError(SampromptError, ImportError):
    """A plugin's entry point could not be loaded.

    Attributes:
        distribution: Name of the installed distribution that declares the entry point.
        entry_point: The entry point's ``name = value`` text.
    """

    def __init__(self, message: str, *, distribution: str | None, entry_point: str) -> None:
        self.distribution = distribution
        self.entry_point = entry_point
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_plugin_error, (type(self), str(self.args[0]), self.distribution, self.entry_point))


class ConfigError(SampromptError, ValueError):
    """A configuration is invalid. The message names the location (``segmenter.params.checkpoint``).

    Attributes:
        problems: Every problem found, as ``(config path, message)`` pairs, when the error reports
            several at once (:func:`samprompt.config.raise_problems`); empty for a single-problem error,
            whose message says it all.
    """

    def __init__(self, message: str, problems: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.problems: tuple[tuple[str, str], ...] = tuple((str(a), str(b)) for a, b in problems)

    def __reduce__(self) -> tuple[Any, ...]:  # picklable with its problems
        return (type(self), (str(self.args[0]) if self.args else "", self.problems))


class DataError(SampromptError, ValueError):
    """An input file or data set is unusable. The message names the file."""


class CheckpointError(SampromptError, ValueError):
    """A checkpoint file cannot be loaded safely or does not fit the model. The message names the file."""


class StageError(SampromptError, RuntimeError):
    """A pipeline stage failed. The original exception is chained as ``__cause__``.

    Attributes:
        stage: ``"cam"``, ``"masker"``, ``"prompt"``, ``"embed"`` or ``"decode"`` (or a runner stage).
        component: Registered name (or class name) of the component that failed.
    """

    def __init__(self, stage: str, component: str, message: str) -> None:
        self.stage = stage
        self.component = component
        self.message = message
        super().__init__(f"stage {stage!r} (component {component!r}) failed: {message}")

    def __reduce__(self) -> tuple[Any, ...]:  # picklable (e.g. raised in a prompt worker process)
        return (type(self), (self.stage, self.component, self.message))


def _rebuild_plugin_error(cls: type[PluginError], message: str, distribution: str | None,
                          entry_point: str) -> PluginError:
    return cls(message, distribution=distribution, entry_point=entry_point)


@contextmanager
def stage_errors(stage: str, component: str) -> Iterator[None]:
    """Re-raise any exception of the block as a :class:`StageError` naming ``stage`` and ``component``
    (the original chained as ``__cause__``); a :class:`StageError` passes through unchanged."""
    try:
        yield
    except StageError:
        raise
    except Exception as exc:  # re-raised with the stage named, cause chained
        raise StageError(stage, component, f"{type(exc).__name__}: {exc}") from exc
