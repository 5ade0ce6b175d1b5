"""The import rules of the module map (docs/INTERFACES.md): jobctl, the launcher and the trainer meet in contract/
only, and contract/ imports none of them nor MindSpore. Every import counts (function-level, type-only)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# package -> the project packages it may import (besides itself)
ALLOWED = {"contract": set(), "launcher": {"contract"}, "trainer": {"contract"}, "jobctl": {"contract"}}
SHIMS = {"trainer/launch.py": {"launcher"}}  # `python -m trainer.launch`, what rendered Jobs run
FOREIGN = {"mindspore", "numpy"}  # contract/ stays MindSpore-free (numpy comes with it)


def imported(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_packages_import_only_what_the_map_allows(package: str) -> None:
    bad = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        allowed = ALLOWED[package] | SHIMS.get(rel, set()) | {package}
        wrong = (imported(path) & set(ALLOWED)) - allowed
        if package == "contract":
            wrong |= imported(path) & FOREIGN
        if wrong:
            bad[rel] = sorted(wrong)
    assert bad == {}
