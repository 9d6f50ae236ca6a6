"""A fresh reconciler's report on either backend, for the tests that run on both."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from agents.domain.clock import Clock
from agents.reconcile.report import ReconciliationReport
from agents.reconcile.report_base import ReportStore
from agents.reconcile.report_postgres import PostgresReport
from tests.integration.postgres_support import fresh_schema

__all__ = ["BACKENDS", "open_test_report"]

BACKENDS = ("sqlite", "postgres")


@asynccontextmanager
async def open_test_report(backend: str, path: Path, clock: Clock) -> AsyncIterator[ReportStore]:
    """An empty report: a SQLite file at ``path``, or a fresh PostgreSQL schema (dropped after;
    the test is skipped when no PostgreSQL answers, as `fresh_schema` says)."""
    if backend == "sqlite":
        report: ReportStore = await ReconciliationReport.open(path)
        try:
            yield report
        finally:
            await report.close()
        return
    schemas = fresh_schema()
    schema = await anext(schemas)
    try:
        report = await PostgresReport.open(schema.url, schema=schema.name, clock=clock, max_size=4)
        try:
            yield report
        finally:
            await report.close()
    finally:
        await schemas.aclose()
