"""Sphinx directives that generate the run-config reference from the pydantic models, at build time.

* ``.. config-reference:: samprompt.runner.config:RunConfig`` renders one table row per key (dotted path,
  nested models expanded in place: ``split.fractions``, ``pipeline.prompts[].params``) with its type, its
  default, its allowed range and its description (the field's ``description``, else the model's
  Google-style ``Attributes:`` entry).
* ``.. component-params::`` renders, per registry (CAM extractors, pseudo maskers, prompt strategies,
  segmenters), every registered built-in component's ``Params`` keys the same way: what goes under
  ``params`` in a config.

Nothing is written by hand, so the page cannot drift from the code.
"""

from __future__ import annotations

import enum
import importlib
import inspect
import re
import types
import typing
from collections.abc import Iterator
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

log = logging.getLogger(__name__)

_BOUNDS = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"), ("min_length", "len >="),
           ("max_length", "len <="), ("multiple_of", "multiple of"))
_MAX_DEPTH = 6


def _is_model(tp: Any) -> bool:
    from pydantic import BaseModel

    return inspect.isclass(tp) and issubclass(tp, BaseModel)


def type_name(tp: Any) -> str:
    """Readable name of an annotation: ``int | None``, ``list[str]``, ``Literal['a', 'b']``, ``Path``."""
    if tp is type(None):
        return "None"
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join('...' if a is Ellipsis else type_name(a) for a in args)}]" if args else name
    if inspect.isclass(tp):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _models_in(tp: Any) -> Iterator[tuple[str, Any]]:
    """``(suffix, model)`` of the pydantic models an annotation holds: ``""`` direct, ``"[]"`` in a list."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if _is_model(tp):
        yield "", tp
    elif origin is typing.Annotated:
        yield from _models_in(args[0])
    elif origin in (typing.Union, types.UnionType):
        for a in args:
            yield from _models_in(a)
    elif origin in (list, tuple, typing.Sequence) and args:
        for s, m in _models_in(args[0]):
            yield "[]" + s, m


def attribute_docs(cls: type) -> dict[str, str]:
    """``{name: text}`` from the ``Attributes:`` (or ``Params:``) section of a Google-style docstring."""
    doc = inspect.cleandoc(cls.__dict__.get("__doc__") or "")
    out: dict[str, str] = {}
    section, name = False, None
    for line in doc.splitlines():
        if re.match(r"^(Attributes|Params):\s*$", line):
            section, name = True, None
            continue
        if not section:
            continue
        if line and not line.startswith(" "):
            section, name = False, None
            continue
        m = re.match(r"^ {4}(\w+)(?: \([^)]*\))?: ?(.*)$", line)
        if m:
            name = m.group(1)
            out[name] = m.group(2).strip()
        elif name and line.startswith("        "):
            out[name] += " " + line.strip()
    return out


def _default(field: Any) -> str:
    from pydantic_core import PydanticUndefined

    if field.default_factory is not None:
        try:
            value = field.default_factory()
        except TypeError:  # a factory that takes the validated data
            return "(computed)"
    elif field.default is PydanticUndefined:
        return "**required**"
    else:
        value = field.default
    if _is_model(type(value)):
        return "(see keys below)"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, list) and value and _is_model(type(value[0])):
        value = [v.model_dump(mode="json", exclude_defaults=True) for v in value]
    text = repr(value)
    return f"``{text}``" if len(text) <= 60 else f"``{text[:57]}...``"


def _union_metadata(annotation: Any) -> list[Any]:
    """The constraints of the ``Annotated`` members of a union (``Annotated[float, Field(ge=0)] | Literal["fit"]``)."""
    out: list[Any] = []
    for member in typing.get_args(annotation):
        if typing.get_origin(member) is typing.Annotated:
            for extra in typing.get_args(member)[1:]:
                out += list(getattr(extra, "metadata", None) or [extra])
    return out


def _range(field: Any) -> str:
    parts = []
    for meta in list(field.metadata) or _union_metadata(field.annotation):
        for attr, sym in _BOUNDS:
            v = getattr(meta, attr, None)
            if v is not None:
                parts.append(f"{sym} {v}")
    return ", ".join(parts)


_SHORT_MEMBER = re.compile(r":(?:py:)?(?:meth|attr):`~?([A-Za-z_][\w]*(?:\(\))?)`")


def _cell(text: str) -> str:
    """One table cell; a short member reference (``:meth:`embed```) resolves only inside its class's page,
    so it becomes a literal here."""
    return _SHORT_MEMBER.sub(r"``\1``", text.replace("\n", " ")).strip() or " "


def model_rows(model: Any, prefix: str = "", depth: int = 0, owner: type | None = None) -> list[
        tuple[str, str, str, str, str]]:
    """``(key, type, default, range, description)`` of every field of ``model``, nested models expanded.

    Descriptions: the field's ``description``, else the ``Attributes:`` / ``Params:`` entries of the
    model's classes (base classes first, so a subclass overrides) and of ``owner`` (a component class).
    """
    docs: dict[str, str] = {}
    for k in (*reversed(model.__mro__), *(inspect.getmro(owner)[::-1] if owner else ())):
        if k.__module__.startswith("samprompt"):
            docs.update(attribute_docs(k))
    rows: list[tuple[str, str, str, str, str]] = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{field.alias or name}"
        desc = field.description or docs.get(name, "")
        rows.append((key, type_name(field.annotation), _default(field), _range(field), desc))
        if depth < _MAX_DEPTH:
            for suffix, sub in _models_in(field.annotation):
                if sub.model_fields:
                    rows.extend(model_rows(sub, f"{key}{suffix}.", depth + 1))
    return rows


def _table(rows: list[tuple[str, str, str, str, str]], source: str) -> list[str]:
    lines = [".. list-table::", "   :header-rows: 1", "   :widths: 22 16 14 10 38", "",
             "   * - key", "     - type", "     - default", "     - range", "     - description"]
    for key, tp, default, rng, desc in rows:
        lines += [f"   * - ``{key}``", f"     - ``{_cell(tp)}``", f"     - {_cell(default)}",
                  f"     - {_cell(rng)}", f"     - {_cell(desc)}"]
    return [*lines, ""]


def _load(spec: str) -> Any:
    module, _, attr = spec.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


class _Base(SphinxDirective):
    def _render(self, lines: list[str]) -> list[nodes.Node]:
        node = nodes.section()
        node.document = self.state.document
        nested_parse_with_titles(self.state, StringList(lines, source=self.env.docname), node)
        return list(node.children)


class ConfigReference(_Base):
    """``.. config-reference:: module:Model`` — every key of a pydantic model as a table."""

    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        try:
            model = _load(self.arguments[0])
        except (ImportError, AttributeError) as e:
            log.warning("config-reference: cannot import %s: %s", self.arguments[0], e, location=self.get_location())
            return []
        return self._render(_table(model_rows(model), self.arguments[0]))


class ComponentParams(_Base):
    """``.. component-params::`` — every built-in component's ``Params`` keys, per registry."""

    has_content = False
    KINDS = (("CAM extractors", "CAM_EXTRACTORS", "pipeline.cam"),
             ("Pseudo maskers", "MASKERS", "pipeline.masker"),
             ("Prompt strategies", "PROMPT_STRATEGIES", "pipeline.prompts[]"),
             ("Segmenters", "SEGMENTERS", "pipeline.segmenter"))

    def run(self) -> list[nodes.Node]:
        import samprompt

        lines: list[str] = []
        for title, attr, where in self.KINDS:
            reg = getattr(samprompt, attr)
            plugins = set(reg.plugin_names())
            lines += [title, "~" * len(title), ""]
            for name in reg.names():
                if name in plugins:
                    continue
                cls = reg.get(name)
                params = getattr(cls, "Params", None)
                head = f"``{where}.name: {name}`` (:class:`{cls.__module__}.{cls.__qualname__}`)"
                if params is None or not params.model_fields:
                    lines += [f"* {head}: no parameters.", ""]
                    continue
                lines += [f"* {head}", ""]
                rows = model_rows(params, f"{where}.params.", owner=cls)
                lines += ["  " + x if x else "" for x in _table(rows, name)]
        return self._render(lines)


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("config-reference", ConfigReference)
    app.add_directive("component-params", ComponentParams)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
