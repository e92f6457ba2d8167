"""Registries of named components, with lazy plugin discovery through entry points.

There is one :class:`Registry` per component kind. Built-in components register themselves with the
:meth:`Registry.register` decorator when their module is imported; third-party packages declare entry
points in one of the groups below (entry-point name = registered name, value = ``module:Class``)::

    [project.entry-points."samprompt.prompt_strategies"]
    my_box = "my_pkg.strategies:MyBox"

Listing names reads only entry-point *metadata*; no plugin code is imported until a plugin is asked
for by name, and a plugin that fails to import raises :class:`~samprompt.errors.PluginError` naming
its distribution without affecting any other component. Setting the environment variable
``SAMPROMPT_DISABLE_PLUGINS=1`` switches discovery off.
"""

from __future__ import annotations

import difflib
import importlib
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Generic, TypeVar, cast

from samprompt.errors import PluginError, RegistryError, UnknownComponentError

__all__ = ["DISABLE_PLUGINS_ENV", "Registry", "plugins_disabled"]

log = logging.getLogger(__name__)

T = TypeVar("T")
_C = TypeVar("_C")

#: Environment variable that switches entry-point discovery off when set to ``1``/``true``/``yes``.
DISABLE_PLUGINS_ENV = "SAMPROMPT_DISABLE_PLUGINS"


def plugins_disabled() -> bool:
    """Return whether entry-point discovery is switched off by :data:`DISABLE_PLUGINS_ENV`."""
    return os.environ.get(DISABLE_PLUGINS_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class _PluginSpec:
    entry_point: metadata.EntryPoint
    distribution: str | None


class Registry(Generic[T]):
    """A name → class registry for one component kind.

    Args:
        kind: Human-readable kind used in messages, e.g. ``"prompt strategy"``.
        group: Entry-point group scanned for plugins, e.g. ``"samprompt.prompt_strategies"``.
        base: Base class every registered class must subclass (checked on registration), or ``None``.
        builtin_modules: Modules imported (once, on first use) to register the built-in components.

    Example:
        >>> from samprompt.registry import Registry
        >>> reg = Registry("greeter", "example.greeters", base=None)
        >>> @reg.register("hello")
        ... class Hello:
        ...     pass
        >>> reg.get("hello") is Hello
        True
        >>> reg.names()
        ['hello']
    """

    def __init__(
        self,
        kind: str,
        group: str,
        base: type[T] | None,
        builtin_modules: tuple[str, ...] = (),
    ) -> None:
        self.kind = kind
        self.group = group
        self.base = base
        self._builtin_modules = builtin_modules
        self._builtins_loaded = not builtin_modules
        self._items: dict[str, type[T]] = {}
        self._plugin_cache: dict[str, _PluginSpec] | None = None

    # ------------------------------------------------------------------ registration
    def register(self, name: str | None = None, *, override: bool = False) -> Callable[[_C], _C]:
        """Class decorator registering ``cls`` under ``name`` (default: ``cls.__name__``).

        Raises:
            RegistryError: If the name is taken and ``override`` is false, or ``cls`` does not subclass
                the registry's base class.
        """

        def decorator(cls: _C) -> _C:  # returns the object itself, typed as it is
            self.add(name or str(getattr(cls, "__name__", cls)), cast("type[T]", cls), override=override)
            return cls

        return decorator

    def add(self, name: str, cls: type[T], *, override: bool = False) -> None:
        """Register ``cls`` under ``name``; see :meth:`register`."""
        if not isinstance(name, str) or not name.strip():
            raise RegistryError(f"{self.kind} name must be a non-empty string, got {name!r}")
        if self.base is not None and not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise RegistryError(
                f"cannot register {cls!r} as {self.kind} {name!r}: it must subclass {self.base.__name__}"
            )
        if name in self._items and self._items[name] is not cls and not override:
            raise RegistryError(
                f"{self.kind} name {name!r} is already registered to "
                f"{self._items[name].__module__}.{self._items[name].__qualname__}; "
                "pass override=True to replace it"
            )
        self._items[name] = cls
        # Record the registered name on the class so components can report it in configs/errors.
        if getattr(cls, "__dict__", {}).get("registered_name") is None:
            try:
                cls.registered_name = name  # type: ignore[attr-defined]
            except (AttributeError, TypeError):  # pragma: no cover - exotic classes
                pass

    def remove(self, name: str) -> None:
        """Unregister ``name`` (a no-op when it is not registered). Mostly useful in tests."""
        self._items.pop(name, None)

    # ------------------------------------------------------------------ discovery
    def _ensure_builtins(self) -> None:
        if not self._builtins_loaded:
            self._builtins_loaded = True
            for module in self._builtin_modules:
                importlib.import_module(module)

    def _plugins(self) -> dict[str, _PluginSpec]:
        if plugins_disabled():
            return {}
        if self._plugin_cache is None:
            found: dict[str, _PluginSpec] = {}
            for ep in metadata.entry_points(group=self.group):
                dist = ep.dist.metadata["Name"] if ep.dist is not None else None
                if ep.name in found:
                    log.warning(
                        "%s %r is declared by several distributions (%s, %s); using the first",
                        self.kind, ep.name, found[ep.name].distribution, dist,
                    )
                    continue
                found[ep.name] = _PluginSpec(ep, dist)
            self._plugin_cache = found
        return self._plugin_cache

    def refresh(self) -> None:
        """Forget the cached entry-point listing (call after installing a plugin at run time)."""
        self._plugin_cache = None

    def names(self) -> list[str]:
        """All available names, built-in and plugin, sorted. Imports no plugin code."""
        self._ensure_builtins()
        return sorted(set(self._items) | set(self._plugins()))

    def plugin_names(self) -> dict[str, str | None]:
        """Names offered by entry points, mapped to their distribution. Imports no plugin code."""
        return {name: spec.distribution for name, spec in self._plugins().items()}

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name: str) -> type[T]:
        """Return the class registered as ``name``, loading its plugin if needed.

        Raises:
            UnknownComponentError: If no built-in or plugin has that name (lists names, suggests one).
            PluginError: If the plugin's module fails to import or its object is unusable.
        """
        self._ensure_builtins()
        if name in self._items:
            return self._items[name]
        spec = self._plugins().get(name)
        if spec is None:
            available = self.names()
            close = difflib.get_close_matches(str(name), available, n=1, cutoff=0.5)
            raise UnknownComponentError(self.kind, str(name), available, close[0] if close else None)
        ep = spec.entry_point
        where = f"distribution {spec.distribution!r}" if spec.distribution else "an unknown distribution"
        try:
            obj = ep.load()
        except Exception as exc:  # any import-time failure of third-party code
            raise PluginError(
                f"{self.kind} plugin {name!r} from {where} failed to load "
                f"({ep.name} = {ep.value}): {type(exc).__name__}: {exc}",
                distribution=spec.distribution,
                entry_point=f"{ep.name} = {ep.value}",
            ) from exc
        try:
            self.add(name, obj)
        except RegistryError as exc:
            raise PluginError(
                f"{self.kind} plugin {name!r} from {where} is unusable: {exc}",
                distribution=spec.distribution,
                entry_point=f"{ep.name} = {ep.value}",
            ) from exc
        return self._items[name]

    def create(self, name: str, params: Mapping[str, Any] | None = None) -> T:
        """Instantiate the component ``name`` with keyword ``params`` (validated by the component)."""
        cls = self.get(name)
        return cls(**dict(params or {}))

    def __repr__(self) -> str:
        return f"Registry(kind={self.kind!r}, group={self.group!r})"
