"""`jiexu reconcile --import-report`: a reconciler's SQLite report copied into an empty PostgreSQL
report answers every question as the file did (figures, counts, totals, summary, unsent envelopes,
the inbox's duplicates and republished marks), and a target that holds anything is refused."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from uuid import UUID

import pytest
from typer.testing import CliRunner

from agents.cli import app
from agents.domain.clock import ManualClock
from agents.reconcile.figures import take_exchange_figures
from agents.reconcile.report import ReconciliationReport
from agents.reconcile.report_import import ReportImportRefused, import_sqlite_report
from agents.reconcile.report_postgres import PostgresReport
from agents.reconcile.stores import open_report
from agents.service.paths import Paths
from broker.delivery import DeliveryInfo
from tests.integration.postgres_support import PostgresSchema, fresh_database
from tests.unit.report_world import RECONCILER, at, form, open_report_world
from tests.unit.test_reconcile_figures import OUT, build

pytestmark = pytest.mark.integration


async def _sqlite_report(path: Path) -> None:
    """The figures tests' history (matched, mismatched, overdue with requests, a lone form), and
    one copy that came marked republished."""
    world = await open_report_world(path)
    try:
        await build(world)
        marked = DeliveryInfo(
            agency=RECONCILER, routing_key=None, redelivered=False, attempt=1,
            publisher_user=None, republished=True,
        )
        await world.deliver(OUT, form(2_000), UUID(int=7), delivery=marked)
    finally:
        await world.report.close()


def _inbox(path: Path) -> list[tuple[str, str, int]]:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT sender, message_id, republished FROM inbox").fetchall()
    finally:
        db.close()


@pytest.fixture
async def target(postgres_schema: PostgresSchema) -> AsyncIterator[PostgresReport]:
    report = await PostgresReport.open(postgres_schema.url, schema=postgres_schema.name, max_size=2)
    try:
        yield report
    finally:
        await report.close()


async def test_the_imported_report_answers_as_the_file_did(
    tmp_path: Path, target: PostgresReport
) -> None:
    path = tmp_path / "report.db"
    await _sqlite_report(path)
    copied = await import_sqlite_report(path, target)
    assert copied["cases"] == 6 and copied["inbox"] > copied["cases"] and copied["outbox"] > 0
    assert copied["requests"] > 0

    source = await ReconciliationReport.open(path)
    try:
        clock = ManualClock(at(date(2026, 3, 10), 12))
        assert await take_exchange_figures(target, clock) == await take_exchange_figures(source, clock)
        assert await target.counts() == await source.counts()
        assert await target.control_totals() == await source.control_totals()
        assert await target.summary(50) == await source.summary(50)
        assert [q.envelope for q in await target.queued(100)] == [
            q.envelope for q in await source.queued(100)
        ]
    finally:
        await source.close()
    inbox = _inbox(path)
    for sender, message_id, republished in inbox:
        assert await target.handled(sender, UUID(message_id))
        assert await target.handled_republished(sender, UUID(message_id)) is bool(republished)
    assert sum(r for *_, r in inbox) == 1

    # Once more into the same report: refused, nothing merged.
    before = await target.counts()
    with pytest.raises(ReportImportRefused, match="already holds 6 cases"):
        await import_sqlite_report(path, target)
    assert await target.counts() == before


async def test_no_sqlite_report_is_refused_in_one_line(tmp_path: Path, target: PostgresReport) -> None:
    with pytest.raises(ReportImportRefused, match="no SQLite report at"):
        await import_sqlite_report(tmp_path / "missing.db", target)


async def test_the_command_imports_into_reconcile_000000_and_says_what_to_fix(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    path = Paths(data_dir=data_dir).report()
    path.parent.mkdir(parents=True)
    await _sqlite_report(path)
    runner = CliRunner()

    def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
        result = runner.invoke(app, ["reconcile", "--data-dir", str(data_dir), *args], env=env)
        return result.exit_code, result.stdout, result.stderr

    code, _, err = await asyncio.to_thread(run, "--import-report", env={"JIEXU_DATABASE_URL": ""})
    assert code == 2 and err.count("\n") == 1 and "give --database-url" in err

    databases = fresh_database("jiexu_import")
    url = await anext(databases)
    try:
        code, out, err = await asyncio.to_thread(
            run, "--import-report", "--json", env={"JIEXU_DATABASE_URL": url}
        )
        assert code == 0, err
        result = json.loads(out)
        assert result["schema"] == "reconcile_000000" and result["rows"]["cases"] == 6
        imported = await open_report(path, database_url=url, pool_size=1)
        try:
            assert (await imported.counts())["matched"] == 2
        finally:
            await imported.close()
        code, _, err = await asyncio.to_thread(
            run, "--import-report", env={"JIEXU_DATABASE_URL": url}
        )
        assert code == 2 and err.count("\n") == 1 and "never merges" in err
    finally:
        await databases.aclose()
