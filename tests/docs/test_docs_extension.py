"""The docs' Sphinx extension (``docs/_ext/samprompt_docs.py``): CLI pages from a parser, API module lists.

Each Sphinx build here is a two-page project in ``tmp_path`` with warnings as errors, so it takes a
second or two and never touches ``docs/``.
"""

from __future__ import annotations

import html
import re
import sys
import textwrap
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
sys.path.insert(0, str(DOCS / "_ext"))

import samprompt_docs

FAKE_CLI = """
import argparse

def build_parser():
    p = argparse.ArgumentParser(prog="fake", description="A fake tool.")
    p.add_argument("--level", type=int, default=3, help="how much")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    go = sub.add_parser("go", help="go somewhere", description="Go somewhere.")
    go.add_argument("where", help="the place")
    go.add_argument("--speed", choices=["slow", "fast"], default="slow", help="how fast")
    return p
"""


def build(tmp_path: Path, body: str, conf: str = "", pages: dict[str, str] | None = None) -> str:
    from sphinx.application import Sphinx

    src = tmp_path / "src"
    src.mkdir()
    (src / "conf.py").write_text(
        'extensions = ["samprompt_docs"]\nnitpicky = True\n' + conf, encoding="utf-8"
    )
    (src / "index.rst").write_text("Test\n====\n\n" + textwrap.dedent(body), encoding="utf-8")
    for name, text in (pages or {}).items():
        (src / name).write_text(text, encoding="utf-8")
    app = Sphinx(
        str(src),
        str(src),
        str(tmp_path / "out"),
        str(tmp_path / "doctrees"),
        "html",
        status=None,
        warningiserror=True,
        freshenv=True,
    )
    app.build()
    page = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    return html.unescape(re.sub(r"<[^>]+>", "", page))  # the page's text


def test_cli_page_is_generated_from_the_parser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "fake_cli.py").write_text(FAKE_CLI, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    text = build(tmp_path, ".. argparse-cli:: fake_cli:build_parser\n")
    for expected in (
        "usage: fake [-h] [--level LEVEL] COMMAND ...",
        "A fake tool.",
        "how much (default: 3)",
        "fake go",
        "go somewhere",
        "the place",
        "--speed SPEED",
        "Choices: slow, fast.",
    ):
        assert expected in text, expected


def test_cli_page_without_the_module_says_so(tmp_path: Path) -> None:
    assert "is not part of this build yet" in build(
        tmp_path, ".. argparse-cli:: not_a_module_here:build_parser\n"
    )


def test_fallback_function_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "fake_cli2.py").write_text(
        FAKE_CLI.replace("def build_parser", "def _parser"), encoding="utf-8"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "A fake tool." in build(
        tmp_path, ".. argparse-cli:: fake_cli2:build_parser\n   :fallback: _parser\n"
    )


def test_api_lists_only_modules_that_exist() -> None:
    found = samprompt_docs.resolve_modules(
        ["samprompt.metrics", "samprompt.not_written_yet", "samprompt.nothing_here.*", "samprompt.prompts.*"],
        set(),
    )
    assert found[0] == "samprompt.metrics" and {"samprompt.prompts.base", "samprompt.prompts.builtin"} <= set(
        found
    )
    assert all(name.startswith("samprompt.prompts.") for name in found[1:])
    assert "samprompt.prompts.base" not in samprompt_docs.resolve_modules(
        ["samprompt.prompts.*"], {"samprompt.prompts.base"}
    )


def test_every_object_is_documented_once_where_it_is_defined() -> None:
    modules = ["samprompt", "samprompt.prompts", "samprompt.prompts.base", "samprompt.errors"]
    plan = samprompt_docs._plan(modules)
    own, reexports = plan["samprompt"]
    assert "Prompt" not in own and "samprompt.prompts.base.Prompt" in reexports
    assert "samprompt.prompts.PROMPT_STRATEGIES" in reexports and "samprompt.errors.ConfigError" in reexports
    assert (
        "PROMPT_STRATEGIES" in plan["samprompt.prompts"][0] and "Prompt" not in plan["samprompt.prompts"][0]
    )
    assert "Prompt" in plan["samprompt.prompts.base"][0]


TOCTREE = """
.. toctree::

   other
   quality
"""


@pytest.mark.parametrize("present", [False, True])
def test_optional_page_is_linked_only_when_it_exists(tmp_path: Path, present: bool) -> None:
    pages = {"other.rst": "Other\n=====\n"}
    if present:
        pages["quality.rst"] = "Quality numbers\n===============\n"
    text = build(tmp_path, TOCTREE, conf='samprompt_optional_pages = ["quality"]\n', pages=pages)
    assert "Other" in text and ("Quality numbers" in text) == present
