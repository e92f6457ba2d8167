"""The ``>>>`` examples of the documentation pages and of the library's docstrings are executed.

Pages: every ``docs/*.rst`` / ``docs/*.md`` is run with :func:`doctest.testfile` (one test per page), so
an example that no longer matches the code fails here. Docstrings: :func:`doctest.testmod` on every
public module of the installed package (one test per module that has examples).
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import pkgutil
from pathlib import Path

import pytest

import samprompt

DOCS = Path(__file__).resolve().parents[2] / "docs"
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
PAGES = sorted(p for p in [*DOCS.glob("*.rst"), *DOCS.glob("*.md")])


def _modules_with_examples() -> list[str]:
    """Public modules whose source holds a ``>>>`` example (read as text: nothing is imported here)."""
    names = []
    for info in pkgutil.walk_packages(samprompt.__path__, "samprompt.", onerror=lambda name: None):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    found = ["samprompt"]
    for name in sorted(names):
        spec = importlib.util.find_spec(name)
        if (
            spec is not None
            and spec.origin
            and spec.origin.endswith(".py")
            and _has_examples(Path(spec.origin))
        ):
            found.append(name)
    return found


def _has_examples(path: Path) -> bool:
    return ">>>" in path.read_text(encoding="utf-8")


@pytest.mark.parametrize("page", [p for p in PAGES if _has_examples(p)], ids=lambda p: p.name)
def test_page_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    result = doctest.testfile(
        str(page),
        module_relative=False,
        optionflags=FLAGS,
        verbose=False,
        globs={"tmp_path": tmp_path},
        encoding="utf-8",
    )
    assert result.attempted > 0
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in docs/{page.name} failed"


def test_pages_with_examples_are_found() -> None:
    names = {p.name for p in PAGES if _has_examples(p)}
    assert {"quickstart.rst", "concepts.rst"} <= names


@pytest.mark.parametrize("module_name", _modules_with_examples())
def test_docstring_examples_run(module_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:  # a module needing an optional dependency
        pytest.skip(f"{module_name} does not import here: {exc}")
    finder = doctest.DocTestFinder(exclude_empty=True)
    tests = [t for t in finder.find(module, module_name, extraglobs={"tmp_path": tmp_path}) if t.examples]
    assert tests, f"{module_name} has '>>>' in its source but no docstring example was found"
    monkeypatch.chdir(tmp_path)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, (
        f"{result.failed} of {result.attempted} docstring examples in {module_name} failed"
    )
