"""Which report the reconciler opens: PostgreSQL when a database URL is configured, else SQLite.

``JIEXU_DATABASE_URL`` chooses, as it does for the agents' stores: with it the report is the
schema ``reconcile_<code>`` of that database (`agents.reconcile.report_postgres.PostgresReport`),
which several ``jiexu reconcile`` processes may share; without it, the SQLite file
`agents.service.paths.Paths.report` (`agents.reconcile.report.ReconciliationReport`), one process's.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from agents.domain.clock import Clock
from agents.reconcile.report import ReconciliationReport
from agents.reconcile.report_base import ReportStore
from broker.names import RECONCILER_CODE

__all__ = ["open_report", "report_exists", "report_schema"]


def report_schema(code: str = RECONCILER_CODE) -> str:
    """The PostgreSQL schema of the reconciler ``code``'s report."""
    return f"reconcile_{code}"


async def open_report(
    path: Path,
    *,
    database_url: str | None = None,
    code: str = RECONCILER_CODE,
    clock: Clock | None = None,
    pool_size: int = 10,
) -> ReportStore:
    """The report: its schema in PostgreSQL when ``database_url`` is given, else the SQLite file
    at ``path``."""
    if database_url:
        # Imported here: asyncpg is loaded only where PostgreSQL is configured.
        from agents.reconcile.report_postgres import PostgresReport

        return await PostgresReport.open(
            database_url, schema=report_schema(code), clock=clock, max_size=pool_size
        )
    return await ReconciliationReport.open(path)


async def report_exists(
    path: Path, *, database_url: str | None = None, code: str = RECONCILER_CODE
) -> bool:
    """Whether a report is there to read (nothing is created)."""
    if database_url:
        from agents.reconcile.report_postgres import PostgresReport

        return await PostgresReport.exists(database_url, report_schema(code))
    return await asyncio.to_thread(path.exists)
