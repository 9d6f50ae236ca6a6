"""The pure domain stays pure: importing `agents.domain` or any module in it loads no driver, no logging."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import agents.domain

FORBIDDEN = ("aio_pika", "aiormq", "asyncpg", "aiosqlite", "httpx", "structlog", "sqlite3")
ALLOWED_TOP_LEVEL = {"pydantic", "chinese_calendar", "schemas"}
"""Besides the standard library and `agents.domain` itself."""

ROOT = Path(agents.domain.__file__).parent
REPO = ROOT.parent.parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


FILES = sorted(ROOT.rglob("*.py"))
MODULES = [_module_name(path) for path in FILES]


def test_every_module_of_the_domain_is_checked() -> None:
    assert "agents.domain" in MODULES
    assert {"agents.domain.case", "agents.domain.case.dispatch", "agents.domain.workdays"} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_importing_a_domain_module_loads_no_driver_and_no_logging(module: str) -> None:
    code = (
        "import importlib, json, sys\n"
        f"importlib.import_module({module!r})\n"
        f"print(json.dumps(sorted(name for name in {FORBIDDEN!r} if name in sys.modules)))\n"
        "print(json.dumps(sorted(name for name in sys.modules if name.split('.')[0] == 'agents')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO, timeout=60
    )
    forbidden_line, agents_line = result.stdout.strip().splitlines()
    assert json.loads(forbidden_line) == []
    loaded = json.loads(agents_line)
    assert [name for name in loaded if name != "agents" and not name.startswith("agents.domain")] == []


@pytest.mark.parametrize("path", FILES, ids=MODULES)
def test_a_domain_module_imports_only_the_standard_library_pydantic_chinesecalendar_and_schemas(
    path: Path,
) -> None:
    imported: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module is not None:
            imported.add(node.module)
    foreign = sorted(
        name
        for name in imported
        if name.split(".")[0] not in sys.stdlib_module_names
        and name.split(".")[0] not in ALLOWED_TOP_LEVEL
        and name != "agents.domain"
        and not name.startswith("agents.domain.")
    )
    assert foreign == []
