"""The Python examples in README.md and docs/*.md run as pasted: each ```python block defines or
imports every name it reads. A new user's walk (2026-12-06) pasted README's pyfunc example and
docs/serving.md's Arrow client and got `NameError: name 'history' is not defined` (and `url`):
the examples read names that no line of them set."""

from __future__ import annotations

import ast
import builtins
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def python_blocks() -> list[tuple[str, str]]:
    """(page:line, source) of every ```python block of the pages users read."""
    blocks = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in BLOCK.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            blocks.append((f"{page.relative_to(ROOT)}:{line}", match.group(1)))
    return blocks


def unbound_names(source: str) -> set[str]:
    """Names the block reads that it never imports, assigns, defines or takes as a parameter,
    and that are not builtins: what a paste into a fresh interpreter stops at."""
    tree = ast.parse(source)
    bound = set(dir(builtins))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            bound |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            bound.add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
    read = {
        node.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)
    }
    return read - bound


def test_the_pages_hold_python_examples() -> None:
    """The check below reads something: README's model and pyfunc examples at least."""
    where = [where for where, _ in python_blocks()]
    assert sum(w.startswith("README.md") for w in where) >= 2, where


EXAMPLES = [pytest.param(where, source, id=where) for where, source in python_blocks()]


@pytest.mark.parametrize(("where", "source"), EXAMPLES)
def test_python_example_defines_every_name_it_reads(where: str, source: str) -> None:
    missing = unbound_names(source)
    assert not missing, f"{where}: the example reads {sorted(missing)} without setting them"


def test_unbound_names_finds_a_name_read_but_never_set() -> None:
    assert unbound_names("import pandas as pd\nrows = pd.DataFrame([{'v': history}])\n") == {
        "history"
    }
    assert unbound_names("def f(x):\n    return x\nprint(f(1))\n") == set()
