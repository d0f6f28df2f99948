"""What README.md and docs/ name must exist, so the docs cannot drift from the code unnoticed.

Checked without running anything: every ``python -m pipelines.X`` command is a module with a ``main``;
every backticked dotted name under a project package imports (module, then attributes); every
backticked project path and every relative link points at a file (and a ``#anchor`` at a heading).
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGES = ("arena_schema", "features", "stacking", "encoders", "pipelines")
DIRS = ("features", "stacking", "encoders", "pipelines", "tests", "benchmarks", "docs")
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

COMMAND = re.compile(r"python -m (pipelines(?:\.\w+)+)")
CODE_SPAN = re.compile(r"`([^`]+)`")  # a span may wrap onto the next line
DOTTED = re.compile(rf"^((?:{'|'.join(PACKAGES)})(?:\.\w+)+)")
PATH = re.compile(rf"^(?:{'|'.join(DIRS)})/[\w./-]*$")
FROM_IMPORT = re.compile(rf"^from ((?:{'|'.join(PACKAGES)})[\w.]*) import ([\w, ]+)$", re.M)
LINK = re.compile(r"\]\(([^)\s]+)\)")
FILE_SUFFIXES = {"py", "md", "json", "csv", "txt"}  # `arena_schema.py` is a path, not a name
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in paths]


def _text(doc: Path) -> str:
    return doc.read_text(encoding="utf-8")


def _prose(doc: Path) -> str:
    """The text outside fenced blocks (a fence's backticks would pair with inline ones)."""
    return FENCE.sub("", _text(doc))


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(doc: Path) -> set[str]:
    body = FENCE.sub("", _text(doc))
    return {_slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", body, re.M)}


def _resolve(name: str) -> object:
    """Import the longest module prefix of ``name``, then walk the rest as attributes."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)  # AttributeError: the docs name something that is not there
        return obj
    raise ModuleNotFoundError(name)


@pytest.mark.parametrize("doc", DOCS, ids=_ids(DOCS))
def test_commands_exist_and_have_main(doc: Path) -> None:
    modules = set(COMMAND.findall(_text(doc)))
    for module in sorted(modules):
        path = ROOT / Path(*module.split(".")).with_suffix(".py")
        assert path.is_file(), f"{doc.name}: `python -m {module}`: no {path.relative_to(ROOT)}"
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert "main" in names, f"{doc.name}: `python -m {module}` has no main()"


@pytest.mark.parametrize("doc", DOCS, ids=_ids(DOCS))
def test_dotted_names_resolve(doc: Path) -> None:
    names = {  # `from pipelines.x import a, b` in code blocks
        f"{module}.{name.strip()}"
        for block in FENCE.findall(_text(doc))
        for module, imported in FROM_IMPORT.findall(block)
        for name in imported.split(",")
    }
    for span in CODE_SPAN.findall(_prose(doc)):
        match = DOTTED.match(span.strip())
        if match and match.group(1).rsplit(".", 1)[-1] not in FILE_SUFFIXES:
            names.add(match.group(1))
    for name in sorted(names):
        try:
            _resolve(name)
        except (ImportError, AttributeError) as error:
            pytest.fail(f"{doc.name}: `{name}` does not resolve ({error})")


@pytest.mark.parametrize("doc", DOCS, ids=_ids(DOCS))
def test_project_paths_exist(doc: Path) -> None:
    """Backticked paths such as `pipelines/data/battles.py` (placeholders like DIR/ or <name> are not paths)."""
    for span in sorted(set(CODE_SPAN.findall(_prose(doc)))):
        span = span.strip()
        if PATH.match(span):
            assert (ROOT / span.rstrip("/")).exists(), f"{doc.name}: `{span}` does not exist"


@pytest.mark.parametrize("doc", DOCS, ids=_ids(DOCS))
def test_relative_links_exist(doc: Path) -> None:
    for target in sorted(set(LINK.findall(_prose(doc)))):
        if re.match(r"^[a-z]+:", target):
            continue  # https:, mailto:
        file_part, _, anchor = target.partition("#")
        path = (doc.parent / file_part).resolve() if file_part else doc
        assert path.exists(), f"{doc.name}: link ({target}) points at nothing"
        if anchor and path.suffix == ".md":
            assert anchor in _anchors(path), f"{doc.name}: link ({target}): no such heading"


def test_readme_is_short() -> None:
    """The README is a newcomer's page; write-ups live in docs/."""
    assert len(_text(ROOT / "README.md").splitlines()) <= 150


def test_every_doc_is_linked_from_the_readme_or_another_doc() -> None:
    """A write-up nobody links to is lost; generated results under docs/*/ are linked by their write-up."""
    linked = set()
    for doc in DOCS:
        for target in LINK.findall(_text(doc)):
            if not re.match(r"^[a-z]+:", target) and target.partition("#")[0]:
                linked.add((doc.parent / target.partition("#")[0]).resolve())
    orphans = [d for d in sorted((ROOT / "docs").glob("*.md")) if d.resolve() not in linked]
    assert not orphans, f"not linked from any doc: {_ids(orphans)}"
