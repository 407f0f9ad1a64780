"""DESIGN.md's import rules, checked on the source (no imports executed)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = {"pcigate", "schemas", "gateway", "evidence", "tui", "reports"}


def imports_of(source: str, package: str) -> set[str]:
    """Absolute module names a source file imports; relative imports count as ``package`` itself."""
    mods: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            mods.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                mods.add(package)
            elif node.module:
                mods.add(node.module)
    return mods


def imported_modules(package: str) -> dict[str, set[str]]:
    return {
        str(path.relative_to(ROOT)): imports_of(path.read_text(), package)
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def top(mod: str) -> str:
    return mod.split(".", 1)[0]


def test_every_package_exists_and_has_sources() -> None:
    for package in OURS:
        assert (ROOT / package / "__init__.py").is_file(), package
        assert imported_modules(package) is not None


def test_schemas_imports_nothing_of_ours() -> None:
    """The contract package stays importable by any consumer: stdlib and its few libraries only."""
    allowed = set(sys.stdlib_module_names) | {"pydantic", "jsonschema", "referencing", "rfc8785", "schemas"}
    for path, mods in imported_modules("schemas").items():
        bad = {m for m in mods if top(m) not in allowed}
        assert not bad, f"{path} imports {bad}"


@pytest.mark.parametrize("package", ["gateway", "evidence"])
def test_core_never_imports_ui_or_pdf_or_each_other(package: str) -> None:
    other = ({"gateway", "evidence"} - {package}).pop()
    for path, mods in imported_modules(package).items():
        bad = {m for m in mods if top(m) in {"textual", "weasyprint", "tui", "reports", other}}
        assert not bad, f"{path} imports {bad}"


@pytest.mark.parametrize("package", ["tui", "reports"])
def test_ui_and_reports_use_only_evidence_read_api_and_no_gateway(package: str) -> None:
    for path, mods in imported_modules(package).items():
        bad = {
            m
            for m in mods
            if top(m) == "gateway" or (top(m) == "evidence" and m not in {"evidence", "evidence.api"})
        }
        assert not bad, f"{path} imports {bad}: use evidence's read API (evidence.api) and NATS"


def test_rule_checker_sees_violations() -> None:
    """The checker must catch imports in every form, or the rules above could never fail."""
    source = "\n".join(
        [
            "import textual",
            "from gateway.session import x",
            "from . import y",
            "if True:",
            "    import weasyprint.css",
        ]
    )
    assert imports_of(source, "evidence") == {"textual", "gateway.session", "evidence", "weasyprint.css"}
