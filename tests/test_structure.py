"""The shape of the code (docs/architecture.md): the core imports no signer, signers are found
in their package, and no function grows past what a reader takes in at once."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import signers
from signers.base import Signer

ROOT = Path(__file__).resolve().parent.parent
MAX_FUNCTION_LINES = 80


def sources(*parts: str) -> list[Path]:
    found = []
    for part in parts:
        path = ROOT / part
        found += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return found


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_the_core_imports_no_signer():
    for path in sources("signaction"):
        leaks = {m for m in imported_modules(path) if m == "signers" or m.startswith("signers.")}
        assert not leaks, f"{path.relative_to(ROOT)} imports {sorted(leaks)}"


def test_no_function_is_longer_than_80_lines():
    long = []
    for path in sources("entrypoint.py", "signaction", "signers"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines})")
    assert not long, long


def test_every_signer_has_a_name_a_summary_and_a_config_section():
    schema = json.loads((ROOT / "schemas" / "config.schema.json").read_text())
    for name, cls in signers.available().items():
        assert issubclass(cls, Signer) and cls.name == name and cls.summary
        assert cls.section in schema["properties"], f"{name}: no schema section {cls.section}"
