"""The source tree keeps the shape the README's layout describes.

Import direction is checked by the import-linter contracts in pyproject.toml (`./dev lint`); these
tests check what those contracts cannot say: module size, and private modules staying private.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("schemas", "broker", "agents")
MAX_LINES = 520
"""About 500: a module past this wants splitting by concern."""


def _sources() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _private_prefix(module: str) -> str | None:
    """The package that owns `module` if a part of its dotted name is private (``a.b._c.d``)."""
    parts = module.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            owner = ".".join(parts[:i])
            # A private name in a module belongs to that module's package.
            if (ROOT / owner.replace(".", "/")).with_suffix(".py").is_file():
                owner = owner.rpartition(".")[0]
            return owner
    return None


def test_no_source_module_is_much_over_500_lines() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in _sources()
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}


def test_no_module_imports_another_packages_private_module() -> None:
    offenders: list[str] = []
    for path in _sources():
        here = _module_name(path)
        package = here if path.name == "__init__.py" else here.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for target in targets:
                owner = _private_prefix(target)
                if owner is not None and owner.split(".")[0] in PACKAGES and owner != package:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {target}")
    assert offenders == []
