"""The test suite's own rule: no test module imports another test module.

Helpers, fakes and fixtures live once in ``tests/support``; a test module (``test_*.py``) or a
``conftest.py`` that another module imports becomes a hidden library, whose tests run twice and
whose helpers are copied again by the next writer who does not find them. This walks every
module under ``tests/`` and ``bench/`` with ``ast`` (no import is executed) and names each
import of a test module.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def is_test_module(dotted: str) -> bool:
    """Whether ``dotted`` names a test module of this repository's suite."""
    parts = dotted.split(".")
    return parts[0] == "tests" and (parts[-1].startswith("test_") or parts[-1] == "conftest")


def imported(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, dotted module name) of every absolute import in ``tree``; ``from a import b``
    yields ``a.b`` too, since ``b`` may be a module."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"


def test_imports_of_test_modules_are_found() -> None:
    tree = ast.parse("from tests.wire import conftest\nimport tests.unit.test_x\n")
    found = [name for _, name in imported(tree) if is_test_module(name)]
    assert found == ["tests.wire.conftest", "tests.unit.test_x"]
    assert not is_test_module("tests.support.fixtures")
    assert not is_test_module("keyturn.test_x")


def test_no_test_module_imports_another() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: imports {name}"
        for folder in ("tests", "bench")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for line, name in imported(ast.parse(path.read_text(), str(path)))
        if is_test_module(name)
    ]
    assert not offenders, "move these into tests/support:\n" + "\n".join(offenders)
