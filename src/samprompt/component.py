"""The common base of every pluggable component: validated parameters and a config round trip.

A component class declares its parameters as a nested pydantic model named ``Params`` (with
``extra="forbid"``, so a typo fails with its location) and receives them as keyword arguments::

    class MyBox(PromptStrategy):
        class Params(ComponentParams):
            margin: float = 0.0

    MyBox(margin=3).params.margin  # 3.0
    MyBox(margni=3)                # ConfigError: MyBox.params.margni: Extra inputs are not permitted

:meth:`Component.to_config` gives ``{"name": ..., "params": {...}}``, the form used in pipeline and run
configs, and :meth:`samprompt.registry.Registry.create` rebuilds the object from it by name.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from samprompt.errors import ConfigError

__all__ = ["Component", "ComponentParams", "format_validation_error"]


class ComponentParams(BaseModel):
    """Base of every component's ``Params`` model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def format_validation_error(exc: ValidationError, prefix: str) -> str:
    """Render a pydantic error as ``prefix.loc: message`` lines (one per problem).

    Args:
        exc: The validation error.
        prefix: Location of the validated object, e.g. ``"segmenter.params"`` (may be empty).
    """
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        where = ".".join(x for x in (prefix, loc) if x) or "(root)"
        lines.append(f"{where}: {err['msg']}")
    return "; ".join(lines)


class Component:
    """Base class of all registered components (CAM extractors, maskers, strategies, segmenters).

    Attributes:
        params: The validated parameters (an instance of the class's ``Params`` model).
        registered_name: Name under which the class is registered (set by the registry), or ``None``.
    """

    Params: ClassVar[type[ComponentParams]] = ComponentParams
    registered_name: ClassVar[str | None] = None

    def __init__(self, **params: Any) -> None:
        try:
            self.params = self.Params(**params)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, f"{self.name}.params")) from exc

    @property
    def name(self) -> str:
        """Registered name of the component's class, or its class name when unregistered."""
        return type(self).__dict__.get("registered_name") or type(self).__name__

    def to_config(self) -> dict[str, Any]:
        """Return ``{"name": registered name, "params": JSON-ready parameters}``."""
        return {"name": self.name, "params": self.params.model_dump(mode="json")}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.model_dump().items())
        return f"{type(self).__name__}({args})"
