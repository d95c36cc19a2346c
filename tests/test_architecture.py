"""The layers hold (README "Architecture"): import-linter's contracts, no import hidden inside a function, and every
contract file named in one module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from importlinter.cli import lint_imports

import kagglemlc

PACKAGE = Path(kagglemlc.__file__).parent
ROOT = PACKAGE.parents[1]
CONTRACT_NAME = re.compile(r"^[\w.{}-]+\.(parquet|json|csv|pkl|md|yaml)$|^fold\d+$|^checkpoint(\.tmp|\.old)?$")
# peft's and sentence-transformers' files, not ours
THEIR_FILES = {"adapter_config.json", "modules.json", "config_sentence_transformers.json"}



def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_import_linter_contracts_are_kept(monkeypatch):
    monkeypatch.chdir(ROOT)  # the contracts are in pyproject.toml
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml")) == 0


def test_no_module_imports_kagglemlc_inside_a_function():
    """Imports inside functions are how cycles hide; only the CLI defers its imports (`--help` starts fast)."""
    hidden = []
    for path in _modules():
        if path.name == "cli.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if isinstance(inner, ast.ImportFrom) and (inner.module or "").startswith("kagglemlc"):
                        hidden.append(f"{path.relative_to(PACKAGE)}:{inner.lineno} {inner.module}")
    assert hidden == []


def test_contract_files_are_named_in_core_paths_only():
    """Code (not docs) spells no contract file or folder name outside core/paths.py."""
    spelled = []
    for path in _modules():
        if path.relative_to(PACKAGE).as_posix() == "core/paths.py":
            continue
        tree = ast.parse(path.read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        }
        for node in ast.walk(tree):
            code = isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
            if code and CONTRACT_NAME.match(node.value) and node.value not in THEIR_FILES:
                spelled.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.value!r}")
    assert spelled == []
