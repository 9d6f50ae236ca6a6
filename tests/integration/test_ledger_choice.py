"""`open_ledger`: ``JIEXU_LEDGER`` picks the adapter; every wrong setting is one clear
`LedgerConfigError`. Agency adapters are loaded from a module written to a temporary directory
(on ``sys.path``, as ``PYTHONPATH`` would put it) and from an entry point of a package
"installed" there (a ``*.dist-info`` directory).
"""

from __future__ import annotations

import random
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import uuid4

import asyncpg
import pytest

from agents.domain.clock import SystemClock
from agents.ledger import LedgerPort
from agents.ledger.choice import (
    LedgerConfigError,
    ledger_settings_from_env,
    open_ledger,
    resolve_ledger_factory,
)
from agents.ledger.postgres import PostgresLedger
from agents.ledger.sqlite import SqliteLedger
from agents.testing.fakes import InMemoryLedger
from agents.testing.ledger_contract import person
from tests.integration.postgres_support import PostgresSchema

AGENCY = "360400"

ADAPTER = '''
from agents.testing.fakes import InMemoryLedger

SEEN = []


def make(context):
    SEEN.append(context)
    return InMemoryLedger(context.agency)


async def make_async(context):
    return InMemoryLedger(context.agency)


class Holder:
    build = staticmethod(make)


NOT_A_FUNCTION = 42


def not_a_ledger(context):
    class HalfLedger:
        async def lookup(self, id_number):
            return None

    return HalfLedger()
'''


@pytest.fixture
def adapter_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory on sys.path holding `agency_books.py` (unique per test: a fresh module)."""
    where = tmp_path / "site"
    where.mkdir()
    (where / "agency_books.py").write_text(textwrap.dedent(ADAPTER), encoding="utf-8")
    monkeypatch.syspath_prepend(str(where))
    monkeypatch.delitem(__import__("sys").modules, "agency_books", raising=False)
    return where


async def opened(spec: str | None, tmp_path: Path, **urls: str | None) -> LedgerPort:
    return await open_ledger(
        spec, agency=AGENCY, path=tmp_path / "data" / AGENCY / "ledger.db", **urls
    )


@pytest.mark.parametrize("spec", [None, "", " sqlite "])
async def test_sqlite_is_the_default_and_lives_in_the_agency_data_directory(
    tmp_path: Path, spec: str | None
) -> None:
    ledger = await opened(spec, tmp_path)
    try:
        assert isinstance(ledger, SqliteLedger)
        assert ledger.path == tmp_path / "data" / AGENCY / "ledger.db"
        assert ledger.region == AGENCY
    finally:
        await ledger.close()


@pytest.fixture
async def agency_schema(postgres_schema: PostgresSchema) -> AsyncIterator[str]:
    """A random agency code whose ``ledger_<code>`` schema is dropped afterwards."""
    code = f"{random.randrange(10**6):06d}"
    yield code
    conn = await asyncpg.connect(postgres_schema.url)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS ledger_{code} CASCADE")
    finally:
        await conn.close()


@pytest.mark.parametrize("which", ["ledger_url", "database_url"])
async def test_postgres_uses_the_ledger_url_else_the_store_url(
    tmp_path: Path, postgres_schema: PostgresSchema, agency_schema: str, which: str
) -> None:
    urls = {"ledger_url": None, "database_url": None, which: postgres_schema.url}
    ledger = await open_ledger(
        "postgres", agency=agency_schema, path=tmp_path / "unused.db", **urls
    )
    try:
        assert isinstance(ledger, PostgresLedger)
        assert ledger.schema == f"ledger_{agency_schema}"
        await ledger.put_account(person())
        entry = await ledger.terminate_and_debit(uuid4(), person().id_number, 100)
        assert entry.balance_after_fen == person().balance_fen - 100
    finally:
        await ledger.close()
    assert not (tmp_path / "unused.db").exists()


async def test_postgres_without_a_dsn_says_which_setting_to_give(tmp_path: Path) -> None:
    with pytest.raises(LedgerConfigError, match="set JIEXU_LEDGER_URL"):
        await opened("postgres", tmp_path)


@pytest.mark.parametrize("factory", ["make", "make_async", "Holder.build"])
async def test_a_module_factory_outside_the_package_is_loaded(
    tmp_path: Path, adapter_dir: Path, factory: str
) -> None:
    ledger = await opened(
        f"agency_books:{factory}", tmp_path, database_url="postgresql://store", ledger_url=None
    )
    assert isinstance(ledger, InMemoryLedger)
    assert ledger.region == AGENCY
    assert isinstance(ledger, LedgerPort)
    await ledger.close()


async def test_the_factory_gets_the_agency_clock_path_and_dsns(
    tmp_path: Path, adapter_dir: Path
) -> None:
    clock = SystemClock()
    await open_ledger(
        "agency_books:make",
        agency=AGENCY,
        path=tmp_path / "ledger.db",
        database_url="postgresql://store",
        ledger_url="postgresql://books",
        clock=clock,
    )
    import agency_books  # type: ignore[import-not-found]

    (context,) = agency_books.SEEN
    assert (context.agency, context.clock, context.path) == (AGENCY, clock, tmp_path / "ledger.db")
    assert (context.database_url, context.ledger_url) == ("postgresql://store", "postgresql://books")
    assert (context.postgres_url, context.data_dir) == ("postgresql://books", tmp_path)


async def test_an_installed_entry_point_names_an_adapter(
    tmp_path: Path, adapter_dir: Path
) -> None:
    info = adapter_dir / "agency_books-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: agency-books\nVersion: 1.0\n", encoding="utf-8"
    )
    (info / "entry_points.txt").write_text(
        "[jiexu.ledgers]\ncorebooks = agency_books:make_async\nbroken = agency_books:missing\n",
        encoding="utf-8",
    )
    ledger = await opened("corebooks", tmp_path)
    assert isinstance(ledger, InMemoryLedger)
    with pytest.raises(LedgerConfigError, match=r"entry point 'broken'.*does not load"):
        resolve_ledger_factory("broken")
    with pytest.raises(LedgerConfigError, match=r"\(broken, corebooks\)"):
        resolve_ledger_factory("nosuch")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("oracle", r"unknown ledger 'oracle' in JIEXU_LEDGER: use sqlite, postgres"),
        ("no_such_module_here:make", r"cannot import 'no_such_module_here'.*PYTHONPATH"),
        ("agency_books:nothing", r"'agency_books' has no attribute 'nothing'"),
        ("agency_books:Holder.nothing", r"has no attribute 'Holder.nothing'"),
        ("agency_books:NOT_A_FUNCTION", r"is not callable \(its type is int\)"),
        ("agency_books:", r"is not package.module:factory"),
        (":make", r"is not package.module:factory"),
        (
            "agency_books:not_a_ledger",
            r"built a HalfLedger, not a ledger: it lacks terminate_and_debit, credit, pay_out, "
            r"statement, close",
        ),
    ],
)
async def test_a_wrong_setting_is_one_clear_error(
    tmp_path: Path, adapter_dir: Path, spec: str, message: str
) -> None:
    with pytest.raises(LedgerConfigError, match=message) as raised:
        await opened(spec, tmp_path)
    assert "\n" not in str(raised.value)


def test_the_settings_come_from_jiexu_ledger_and_jiexu_ledger_url() -> None:
    assert ledger_settings_from_env({}) == ("sqlite", None)
    assert ledger_settings_from_env(
        {"JIEXU_LEDGER": " postgres ", "JIEXU_LEDGER_URL": "postgresql://books"}
    ) == ("postgres", "postgresql://books")
