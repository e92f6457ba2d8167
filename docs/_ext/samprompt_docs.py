"""Sphinx helpers for the samprompt docs: generated API pages and a CLI reference from argparse.

* At ``builder-inited`` the API pages are (re)written into ``samprompt_api_dir`` (``api``) from
  :data:`API_GROUPS`: one page per module that exists and imports, one index grouping them. A module
  that does not exist yet is left out silently; one that exists but fails to import is a build warning
  (so ``-W`` fails). Each object is documented once, in the module that defines it.
* Reference helpers: short names (``:class:`Prompt```) and re-export paths
  (``samprompt.segmenters.Segmenter``) resolve to the one documented object; pydantic models get a
  readable signature; napoleon's misreading of ``#: prose: more prose`` is undone.
* The ``argparse-cli`` directive renders an :class:`argparse.ArgumentParser` (and its sub-commands)
  returned by a ``module:function`` that builds it. When the module does not exist, a note says so.
"""

from __future__ import annotations

import argparse
import ast
import functools
import importlib
import importlib.util
import inspect
import pkgutil
import re
import shutil
import sys
from pathlib import Path
from typing import Any, ClassVar

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

log = logging.getLogger(__name__)

#: API index: (section title, modules). A package name followed by ``.*`` also adds its public
#: sub-modules (those not starting with ``_``) in alphabetical order.
API_GROUPS: list[tuple[str, list[str]]] = [
    (
        "Pipeline and configuration",
        ["samprompt", "samprompt.pipeline", "samprompt.config", "samprompt.errors"],
    ),
    (
        "Components and registries",
        [
            "samprompt.component",
            "samprompt.registry",
            "samprompt.cams",
            "samprompt.cams.*",
            "samprompt.maskers",
            "samprompt.maskers.*",
            "samprompt.prompts",
            "samprompt.prompts.*",
            "samprompt.proposals",
            "samprompt.proposals.*",
            "samprompt.segmenters",
            "samprompt.segmenters.*",
        ],
    ),
    ("Geometry and metrics", ["samprompt.preprocess", "samprompt.regions", "samprompt.metrics"]),
    (
        "Data and classifiers",
        ["samprompt.data", "samprompt.data.*", "samprompt.classifiers", "samprompt.classifiers.*"],
    ),
    (
        "Runs, reports and the command line",
        [
            "samprompt.runner",
            "samprompt.runner.*",
            "samprompt.report",
            "samprompt.report.*",
            "samprompt.export",
            "samprompt.export.*",
            "samprompt.cli",
        ],
    ),
    ("Sample data and test helpers", ["samprompt.sample", "samprompt.testing"]),
]

def _exists(name: str) -> bool:
    """Whether ``name`` is a module file or a package with ``__init__.py`` (imports only its parents)."""
    try:
        spec = importlib.util.find_spec(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and name.startswith(exc.name):  # a parent package itself is missing
            return False
        raise
    # A folder without __init__.py is a namespace package: not a documented module (yet).
    return spec is not None and spec.origin not in (None, "namespace")


def _submodules(package: str) -> list[str]:
    if not _exists(package):
        return []
    mod = importlib.import_module(package)
    paths = getattr(mod, "__path__", None)
    if paths is None:
        return []
    return sorted(f"{package}.{m.name}" for m in pkgutil.iter_modules(paths) if not m.name.startswith("_"))


def resolve_modules(entries: list[str], exclude: set[str]) -> list[str]:
    """Expand ``pkg.*`` entries and keep the modules that exist, in order, without duplicates."""
    out: list[str] = []
    for entry in entries:
        if entry in exclude or entry[:-2] in exclude:
            continue
        try:
            names = _submodules(entry[:-2]) if entry.endswith(".*") else [entry]
            names = [n for n in names if n not in out and n not in exclude and _exists(n)]
        except Exception as exc:  # noqa: BLE001 - a package that exists but fails to import
            log.warning("API: %s left out: %s: %s", entry, type(exc).__name__, exc, type="samprompt")
            continue
        out.extend(names)
    return out


@functools.cache
def _assigned_names(module: str) -> frozenset[str]:
    """Names a module binds at top level by assignment (``X = ...``, ``X: T = ...``), not by import."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return frozenset()
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    names: set[str] = set()
    for stmt in tree.body:
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [getattr(stmt, "target", None)]
        names.update(t.id for t in targets if isinstance(t, ast.Name))
    return frozenset(names)


def _home(obj: Any, name: str, modules: list[str], module: str) -> str | None:
    """Full name under which ``obj`` (exported by ``module`` as ``name``) is documented.

    Classes and functions live in their ``__module__``; data (registries, constants, aliases) in the
    documented module that assigns it. ``None`` when that is ``module`` itself or no documented module.
    """
    if inspect.isclass(obj) or inspect.isfunction(obj):
        home = getattr(obj, "__module__", None)
        qualname = getattr(obj, "__qualname__", name)
        if home == module or home not in modules:
            return None
        return f"{home}.{qualname}"
    if name in _assigned_names(module):
        return None
    for other in modules:
        if (
            other != module
            and name in _assigned_names(other)
            and getattr(importlib.import_module(other), name, None) is obj
        ):
            return f"{other}.{name}"
    return None


def _plan(modules: list[str]) -> dict[str, tuple[list[str], list[str]]]:
    """For each module: (names documented there, canonical names of what it re-exports).

    An object is documented once, in the module that defines it, even when only a package's
    ``__all__`` (not its own module's) names it.
    """
    own: dict[str, list[str]] = {m: [] for m in modules}
    reexports: dict[str, list[str]] = {m: [] for m in modules}
    for name in modules:
        mod = importlib.import_module(name)
        for export in getattr(mod, "__all__", None) or ():
            obj = getattr(mod, export, None)
            home = _home(obj, export, modules, name) if obj is not None else None
            if home is None:
                own[name].append(export)
                continue
            reexports[name].append(home)
            home_module, _, attr = home.rpartition(".")
            if home_module in own and "." not in attr:
                home_all = getattr(importlib.import_module(home_module), "__all__", None)
                if home_all is not None and attr not in home_all and attr not in own[home_module]:
                    own[home_module].append(attr)
    return {m: (own[m], reexports[m]) for m in modules}


def _module_page(name: str, own: list[str], reexports: list[str]) -> str:
    """The reST of one module's page: its docstring, its own members, links to what it re-exports."""
    from sphinx.pycode import ModuleAnalyzer

    mod = importlib.import_module(name)
    title = f"``{name}``"
    lines = [title, "=" * len(title), "", f".. automodule:: {name}"]
    undocumented_data: list[str] = []
    if getattr(mod, "__all__", None) is None:
        lines.append("   :members:")
    else:
        attr_docs = ModuleAnalyzer.for_module(name).find_attr_docs()
        members = []
        for member in own:
            obj = getattr(mod, member, None)
            is_code = inspect.isclass(obj) or inspect.isfunction(obj) or inspect.ismodule(obj)
            if not is_code and ("", member) not in attr_docs:
                undocumented_data.append(member)  # autodoc skips it under :members:; document it explicitly
            else:
                members.append(member)
        if members:
            lines.append(f"   :members: {', '.join(members)}")
    lines.append("")
    for member in undocumented_data:
        lines += [f".. autodata:: {name}.{member}", ""]
    if reexports:
        lines += [
            ".. rubric:: Re-exported here",
            "",
            f"Importable as ``from {name} import ...``; each is documented in its own module.",
            "",
            ".. currentmodule:: None",
            "",
            ".. autosummary::",
            "   :nosignatures:",
            "",
            *[f"   ~{home}" for home in reexports],
            "",
        ]
    return "\n".join(lines)


#: Modules that have API pages in this build (filled by :func:`generate_api_pages`).
_SAMPROMPT_MODULES: set[str] = set()


def generate_api_pages(app: Sphinx) -> None:
    """Write ``<samprompt_api_dir>/index.rst`` and one page per existing module (at ``builder-inited``)."""
    if not app.config.samprompt_api_dir:
        return
    out = Path(app.srcdir) / app.config.samprompt_api_dir
    if out.exists():
        shutil.rmtree(out)
    out.mkdir()
    exclude = set(app.config.samprompt_api_exclude)
    all_modules = resolve_modules([m for _, ms in API_GROUPS for m in ms], exclude)
    documented: list[str] = []
    plan = _plan(all_modules)
    for name in all_modules:
        try:
            page = _module_page(name, *plan[name])
        except Exception as exc:  # noqa: BLE001 - any import failure is a docs build error
            log.warning(
                "API page for %s not written: %s: %s", name, type(exc).__name__, exc, type="samprompt"
            )
            continue
        (out / f"{name}.rst").write_text(page, encoding="utf-8")
        documented.append(name)
    _SAMPROMPT_MODULES.update(documented)
    index = [
        "API reference",
        "=============",
        "",
        "Generated from the docstrings of every public module present in this build. Most users need only",
        "what :mod:`samprompt` itself exports; the pages below document each object where it is defined.",
        "",
    ]
    for title, entries in API_GROUPS:
        names = [n for n in resolve_modules(entries, exclude) if n in documented]
        if not names:
            continue
        index += [title, "-" * len(title), "", ".. toctree::", "   :maxdepth: 1", ""]
        index += [f"   {n}" for n in names]
        index.append("")
    (out / "index.rst").write_text("\n".join(index), encoding="utf-8")


# ---------------------------------------------------------------------------------------------- CLI
def _action_names(action: argparse.Action) -> str:
    if action.option_strings:
        names = ", ".join(action.option_strings)
        if action.nargs != 0:
            metavar = action.metavar or action.dest.upper()
            names += f" {metavar if isinstance(metavar, str) else ' '.join(metavar)}"
        return names
    return str(action.metavar or action.dest)


def _help_text(action: argparse.Action, parser: argparse.ArgumentParser) -> str:
    text = action.help or ""
    if text == argparse.SUPPRESS:
        return ""
    if "%" in text:
        params = {**vars(action), "prog": parser.prog}
        params = {k: getattr(v, "__name__", v) for k, v in params.items()}
        if params.get("choices") is not None:
            params["choices"] = ", ".join(str(c) for c in params["choices"])
        try:
            text = text % params
        except (KeyError, TypeError, ValueError):
            pass
    default = action.default
    if (
        action.option_strings
        and action.nargs != 0
        and default not in (None, argparse.SUPPRESS)
        and "default" not in text.lower()
    ):
        text = f"{text} (default: {default})".strip()
    if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
        text = f"{text} Choices: {', '.join(str(c) for c in action.choices)}.".strip()
    return text


def render_parser(parser: argparse.ArgumentParser, node_id: str) -> list[nodes.Node]:
    """Docutils nodes describing ``parser`` and, recursively, its sub-commands (no reST parsing of help)."""
    out: list[nodes.Node] = []
    rubric = nodes.rubric(text=parser.prog, ids=[node_id])
    out.append(rubric)
    usage = parser.format_usage().strip()
    out.append(nodes.literal_block(usage, usage))
    if parser.description:
        out.append(nodes.paragraph(text=parser.description))
    subparsers: list[tuple[str, argparse.ArgumentParser]] = []
    items = nodes.definition_list()
    for action in parser._actions:  # argparse exposes no public iterator over its actions
        if isinstance(action, argparse._HelpAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                if sub in [s for _, s in subparsers]:
                    continue  # an alias
                subparsers.append((name, sub))
                item = nodes.definition_list_item()
                item += nodes.term("", "", nodes.literal(text=name))
                item += nodes.definition("", nodes.paragraph(text=helps.get(name) or ""))
                items += item
            continue
        help_text = _help_text(action, parser)
        if help_text == "" and action.help == argparse.SUPPRESS:
            continue
        item = nodes.definition_list_item()
        item += nodes.term("", "", nodes.literal(text=_action_names(action)))
        item += nodes.definition("", nodes.paragraph(text=help_text))
        items += item
    if len(items):
        out.append(items)
    if parser.epilog:
        out.append(nodes.paragraph(text=parser.epilog))
    for name, sub in subparsers:
        out.extend(render_parser(sub, f"{node_id}-{nodes.make_id(name)}"))
    return out


class ArgparseCli(SphinxDirective):
    """``.. argparse-cli:: package.module:function`` — document the parser the function returns.

    Options: ``:prog:`` overrides the program name; ``:fallback:`` names other functions of the module
    to try, in order, when ``function`` does not exist. A missing module gives a note, not an error.
    """

    required_arguments = 1
    option_spec: ClassVar[dict[str, Any]] = {"prog": directives.unchanged, "fallback": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        target = self.arguments[0]
        module_name, _, func_name = target.partition(":")
        if not _exists(module_name):
            note = nodes.note()
            note += nodes.paragraph(
                text=f"The command line ({module_name}) is not part of this build yet; this page fills in "
                "from its parser once it is."
            )
            return [note]
        module = importlib.import_module(module_name)
        candidates = [func_name or "build_parser", *self.options.get("fallback", "").split()]
        build = next((getattr(module, n) for n in candidates if callable(getattr(module, n, None))), None)
        if build is None:
            log.warning(
                "argparse-cli: %s has none of %s",
                module_name,
                ", ".join(f"{n}()" for n in candidates),
                location=self.get_location(),
            )
            return []
        parser = build()
        if not isinstance(parser, argparse.ArgumentParser):
            log.warning(
                "argparse-cli: %s() returned %r, not an ArgumentParser",
                target,
                parser,
                location=self.get_location(),
            )
            return []
        if "prog" in self.options:
            parser.prog = self.options["prog"]
        return render_parser(parser, nodes.make_id(f"cli-{parser.prog}"))


# ---------------------------------------------------------------------------------------------- references
def _canonical_name(dotted: str) -> str | None:
    """``samprompt.segmenters.Segmenter.embed`` → ``samprompt.segmenters.base.Segmenter.embed``."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        rest = parts[i:]
        if not rest:
            return None
        owner = getattr(obj, rest[0], None)
        if inspect.isclass(owner) or inspect.isfunction(owner):
            return ".".join([owner.__module__, owner.__qualname__, *rest[1:]])
        if owner is not None and len(rest) == 1:  # data: the module that assigns it
            for module in sorted(_SAMPROMPT_MODULES):
                if (
                    rest[0] in _assigned_names(module)
                    and getattr(sys.modules.get(module), rest[0], None) is owner
                ):
                    return f"{module}.{rest[0]}"
        return None
    return None


def _inherited_name(module: str | None, cls_path: str | None, target: str) -> str | None:
    """``(samprompt.prompts.builtin, BoxStrategy, __call__)`` → where the class inherits it from."""
    if not module or not cls_path or not module.startswith("samprompt"):
        return None
    try:
        owner: Any = importlib.import_module(module)
        for part in cls_path.split("."):
            owner = getattr(owner, part)
    except (ImportError, AttributeError):
        return None
    head = target.split(".")[0]
    for base in inspect.getmro(owner) if inspect.isclass(owner) else ():
        if head in vars(base):
            return f"{base.__module__}.{base.__qualname__}.{target}"
    return None


def clean_signature(
    app: Sphinx,
    what: str,
    name: str,
    obj: Any,
    options: Any,
    signature: str | None,
    return_annotation: str | None,
) -> tuple[str | None, str | None] | None:
    """``=<factory>`` (a dataclass default factory) is not Python, and breaks signature parsing."""
    if signature and "<factory>" in signature:
        return signature.replace("<factory>", "..."), return_annotation
    return None


def pydantic_signature(
    app: Sphinx,
    what: str,
    name: str,
    obj: Any,
    options: Any,
    signature: str | None,
    return_annotation: str | None,
) -> tuple[str, str] | None:
    """Show a pydantic model's constructor as its field names and defaults (pydantic's own signature is
    full of ``Annotated[..., Ge(...)]`` metadata that is neither readable nor linkable)."""
    try:
        from pydantic import BaseModel
    except ImportError:  # pragma: no cover - pydantic is a dependency
        return None
    if what != "class" or not (inspect.isclass(obj) and issubclass(obj, BaseModel)):
        return None
    args = []
    for field_name, field in obj.model_fields.items():
        if field.is_required():
            args.append(field_name)
        elif field.default_factory is not None:
            args.append(f"{field_name}=...")
        else:
            args.append(f"{field_name}={field.default!r}")
    return (f"(*, {', '.join(args)})" if args else "()"), ""


def _private_alias(module: str | None, target: str) -> bool:
    """Whether ``target`` names, in ``module``, an undocumented alias or a third-party module.

    Signatures keep the names the code writes (``StrPath``, ``Image.Image``); those that are not
    samprompt objects with a page of their own are shown as plain text instead of a broken link.
    """
    if not module or not module.startswith("samprompt"):
        return False
    head = getattr(sys.modules.get(module), target.split(".")[0], None)
    if head is None:
        return False
    if inspect.ismodule(head):
        return not head.__name__.startswith("samprompt")
    return not (inspect.isclass(head) or inspect.isfunction(head))


def resolve_short_reference(
    app: Sphinx, env: Any, node: Any, contnode: nodes.Element
) -> nodes.Element | None:
    """Resolve a short samprompt name (``Prompt``, ``Segmenter.embed_batch``) left unresolved by Sphinx.

    Docstrings write ``:class:`Prompt``` where Sphinx wants the full name. The name is looked up as a
    suffix of every documented ``samprompt`` object; among several, the ones sharing the longest prefix
    with the reference's own module/class win. Only a unique answer resolves; otherwise Sphinx warns.
    """
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "").lstrip(".~")
    domain = env.get_domain("py")
    if target.startswith("samprompt."):
        # A re-export path (samprompt.segmenters.Segmenter.embed): follow the object to where it lives.
        canonical = _canonical_name(target)
        if canonical is None or canonical not in domain.objects:
            return None
        obj = domain.objects[canonical]
        from sphinx.util.nodes import make_refnode

        return make_refnode(app.builder, node["refdoc"], obj.docname, obj.node_id, contnode, canonical)
    if not target:
        return None
    inherited = _inherited_name(node.get("py:module"), node.get("py:class"), target)
    if inherited is not None and inherited in domain.objects:
        obj = domain.objects[inherited]
        from sphinx.util.nodes import make_refnode

        return make_refnode(app.builder, node["refdoc"], obj.docname, obj.node_id, contnode, inherited)
    objtypes = set(domain.objtypes_for_role(node["reftype"]) or ())
    found = [
        (full, obj)
        for full, obj in domain.objects.items()
        if full.startswith("samprompt.")
        and full.endswith("." + target)
        and (not objtypes or obj.objtype in objtypes)
    ]
    if len(found) > 1:
        context = ".".join(p for p in (node.get("py:module"), node.get("py:class")) if p)

        def shared(full: str) -> int:
            n = 0
            for a, b in zip(full.split("."), context.split(".")):
                if a != b:
                    break
                n += 1
            return n

        best = max(shared(full) for full, _ in found)
        found = [f for f in found if shared(f[0]) == best]
    if len(found) != 1:
        return contnode if _private_alias(node.get("py:module"), target) else None
    full, obj = found[0]
    from sphinx.util.nodes import make_refnode

    return make_refnode(app.builder, node["refdoc"], obj.docname, obj.node_id, contnode, full)


def repair_prose_attribute_docs(
    app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    """Undo napoleon's reading of ``#: Some prose: more prose`` as ``type: description``.

    Napoleon takes the text before the first colon of a data/attribute docstring as its type. When that
    "type" has a space outside brackets it is prose, so the line is put back together.
    """
    if what not in ("data", "attribute"):
        return
    for i, line in enumerate(lines):
        if not line.startswith(":type: "):
            continue
        kind = line[len(":type: ") :]
        depth, prose = 0, False
        for ch in kind:
            depth += ch in "[({"
            depth -= ch in "])}"
            prose = prose or (ch == " " and depth == 0 and "|" not in kind)
        if prose:
            del lines[i]
            while lines and not lines[-1].strip():
                lines.pop()
            if lines:
                lines[0] = f"{kind}: {lines[0]}"
        return


def drop_missing_optional_pages(app: Sphinx, docname: str, source: list[str]) -> None:
    """Take optional pages (``samprompt_optional_pages``) that do not exist out of the root toctree.

    A page written separately (``quality``) may land after the docs; until then the index must not
    point at it, and the build must not warn.
    """
    if docname != app.config.root_doc:
        return
    for page in app.config.samprompt_optional_pages:
        if not any((Path(app.srcdir) / f"{page}{suffix}").exists() for suffix in app.config.source_suffix):
            source[0] = re.sub(rf"^[ \t]+{re.escape(page)}[ \t]*\n", "", source[0], flags=re.MULTILINE)


def setup(app: Sphinx) -> dict[str, Any]:
    app.setup_extension("sphinx.ext.autodoc")
    app.setup_extension("sphinx.ext.autosummary")
    app.add_config_value("samprompt_api_dir", "", "env")
    app.add_config_value("samprompt_api_exclude", [], "env")
    app.add_config_value("samprompt_optional_pages", [], "env")
    app.connect("source-read", drop_missing_optional_pages)
    app.connect("builder-inited", generate_api_pages)
    app.add_directive("argparse-cli", ArgparseCli)
    app.setup_extension("samprompt_config_ref")  # config-reference / component-params directives
    app.connect("missing-reference", resolve_short_reference)
    app.connect("autodoc-process-signature", pydantic_signature)
    app.connect("autodoc-process-signature", clean_signature)
    # After napoleon (priority 500), which turns the first "x: y" of an attribute docstring into a type.
    app.connect("autodoc-process-docstring", repair_prose_attribute_docs, priority=600)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
