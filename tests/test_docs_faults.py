"""docs/faults.md stays in step with the suite: every test it names exists, and every table row names one."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def test_every_fault_names_tests_that_exist():
    text = (ROOT / "docs" / "faults.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| fault")]
    rows = [r for r in rows if not set(r) <= set("|- ")]
    assert len(rows) >= 30
    defined: dict[str, set[str]] = {}
    for row in rows:
        refs = REFERENCE.findall(row)
        assert refs, f"a fault without a test: {row}"
        for path, name in refs:
            if path not in defined:
                tree = ast.parse((ROOT / path).read_text())
                defined[path] = {
                    n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
                }
            assert name in defined[path], f"docs/faults.md names {path}::{name}, which does not exist"
