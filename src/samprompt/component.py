"""The common base of every pluggable component: validated parameters and a config round trip.

A component class declares its parameters as a pydantic model (a subclass of :class:`ComponentParams`,
``extra="forbid"``, so a typo fails with its location) and names it as the generic argument of its base
class; instances receive the parameters as keyword arguments and read them, typed, from ``self.params``::

    class MyBoxParams(ComponentParams):
        margin: float = 0.0

    class MyBox(PromptStrategy[MyBoxParams]):
        def make_prompt(self, mask, cam, image=None):
            ...  # self.params.margin is a float for mypy and at run time

    MyBox(margin=3).params.margin  # 3.0
    MyBox(margni=3)                # ConfigError: MyBox.params.margni: Extra inputs are not permitted

The model is found at run time from the generic argument and stored as the class attribute ``Params``
(what config validation reads). The older style — a nested ``class Params(ComponentParams)`` in the class
body, on an unparametrised base — works the same at run time; only the generic form lets a type checker
see the fields. :meth:`Component.to_config` gives ``{"name": ..., "params": {...}}``, the form used in
pipeline and run configs, and :meth:`samprompt.registry.Registry.create` rebuilds the object from it.
"""

from __future__ import annotations

import typing
from typing import Any, ClassVar, Generic, cast, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError
from typing_extensions import TypeVar

from samprompt.errors import ConfigError

__all__ = ["Component", "ComponentParams", "P_co", "format_validation_error", "params_model_of"]


class ComponentParams(BaseModel):
    """Base of every component's parameter model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


#: The parameter model of a component class (covariant: a ``PromptStrategy[BoxParams]`` is a
#: ``PromptStrategy``; defaults to :class:`ComponentParams` for an unparametrised base).
P_co = TypeVar("P_co", bound=ComponentParams, covariant=True, default=ComponentParams)


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


def params_model_of(cls: type) -> type[ComponentParams] | None:
    """The parameter model named as generic argument in ``cls``'s own bases, e.g. ``BoxParams`` for
    ``class Box(PromptStrategy[BoxParams])``; ``None`` when no base of ``cls`` is parametrised with one.
    For a base parametrised with a type variable (a generic intermediate class such as
    ``class Base(Segmenter[ParamsT])``), the variable's default, else its bound, is the model.

    Raises:
        TypeError: If a component base is parametrised with a class that is not a
            :class:`ComponentParams` subclass.
    """
    for base in cls.__dict__.get("__orig_bases__", ()):
        origin = get_origin(base)
        if not (isinstance(origin, type) and issubclass(origin, Component)):
            continue
        for arg in get_args(base):
            if isinstance(arg, typing.TypeVar):  # a generic intermediate class: its default, else bound
                default = getattr(arg, "__default__", None)
                arg = default if isinstance(default, type) else arg.__bound__
            if not isinstance(arg, type):
                continue
            if not issubclass(arg, ComponentParams):
                raise TypeError(
                    f"{cls.__qualname__}: the parameter model {arg.__qualname__} given to "
                    f"{origin.__qualname__}[...] must subclass samprompt.component.ComponentParams"
                )
            return arg
    return None


class Component(Generic[P_co]):
    """Base class of all registered components (CAM extractors, maskers, strategies, segmenters).

    Generic over the parameter model ``P_co`` (see the module docstring).

    Attributes:
        params: The validated parameters, an instance of :attr:`Params`.
        registered_name: Name under which the class is registered (set by the registry), or ``None``.
    """

    #: The class's parameter model: the generic argument, a nested ``class Params``, or inherited.
    Params: ClassVar[type[ComponentParams]] = ComponentParams
    registered_name: ClassVar[str | None] = None
    params: P_co

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        model = params_model_of(cls)
        if model is None:
            return
        own = cls.__dict__.get("Params")
        if own is None:
            cls.Params = model
        elif not (isinstance(own, type) and issubclass(own, model)):
            raise TypeError(
                f"{cls.__qualname__}.Params must be {model.__qualname__} (the generic argument) or a "
                f"subclass of it, got {own!r}; name the model once, as the generic argument"
            )

    def __init__(self, **params: Any) -> None:
        try:
            self.params = cast(P_co, self.Params(**params))
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
