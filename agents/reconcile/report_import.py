"""Copy a reconciler's SQLite report into an empty PostgreSQL report (``jiexu reconcile
--import-report``): the way from one reconciler on a file to several sharing a schema.

Everything is copied as it stands, in one PostgreSQL transaction: the cases with their records and
results, the statement requests, the outbox (sent and unsent, in order; an unsent envelope goes
out from the PostgreSQL report's relay), and the inbox (so a message handled before the move is
still a duplicate after it). The SQLite file is first brought to the current schema, then read
only; it is left in place. A target that already holds anything is refused: the import never
merges two histories. Stop the reconciler before the import, and start the new ones after it.
"""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import date
from pathlib import Path
from typing import Any
from uuid import UUID

from agents.db.codec import parse_ts
from agents.reconcile.report import ReconciliationReport
from agents.reconcile.report_postgres import PostgresReport

__all__ = ["ReportImportRefused", "import_sqlite_report"]


class ReportImportRefused(ValueError):
    """The import cannot go ahead (no SQLite report, or a target that is not empty); one line."""


def _ts(text: str | None) -> Any:
    return parse_ts(text) if text is not None else None


def _uuid(text: str) -> UUID:
    return UUID(text)


# table -> (columns, one function per column turning SQLite's value into PostgreSQL's)
_TABLES: dict[str, tuple[tuple[str, ...], tuple[Any, ...]]] = {
    "cases": (
        ("case_id", "outgoing", "receiving", "status", "stuck", "day", "checked_at", "updated_at",
         "record"),
        (_uuid, str, str, str, bool, date.fromisoformat, _ts, _ts, str),
    ),
    "requests": (
        ("message_id", "case_id", "recipient", "purpose", "round"),
        (_uuid, _uuid, str, str, int),
    ),
    "outbox": (
        ("message_id", "case_id", "recipient", "type", "envelope", "created_at", "sent_at"),
        (_uuid, _uuid, str, str, str, _ts, _ts),
    ),
    "inbox": (
        ("sender", "message_id", "case_id", "type", "handled_at", "republished"),
        (str, _uuid, _uuid, str, _ts, bool),
    ),
}
_ORDER = {"outbox": "seq", "cases": "case_id", "requests": "message_id", "inbox": "message_id"}


def _convert(row: tuple[Any, ...], converters: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(None if value is None else f(value) for value, f in zip(row, converters, strict=True))


def read_sqlite_report(path: Path) -> dict[str, tuple[tuple[str, ...], list[tuple[Any, ...]]]]:
    """Every row of the report at ``path``, converted for PostgreSQL, per table."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows: dict[str, tuple[tuple[str, ...], list[tuple[Any, ...]]]] = {}
        for table, (columns, converters) in _TABLES.items():
            found = db.execute(
                f"SELECT {', '.join(columns)} FROM {table} ORDER BY {_ORDER[table]}"  # noqa: S608
            ).fetchall()
            rows[table] = (columns, [_convert(tuple(r), converters) for r in found])
        return rows
    finally:
        db.close()


async def import_sqlite_report(path: Path, target: PostgresReport) -> dict[str, int]:
    """Copy the SQLite report at ``path`` into ``target`` (which must be empty); the rows copied
    per table. `ReportImportRefused` when there is no report at ``path`` or ``target`` holds
    anything."""
    if not await asyncio.to_thread(path.is_file):
        raise ReportImportRefused(f"no SQLite report at {path}: check --data-dir")
    report = await ReconciliationReport.open(path)  # brings an older file to the current schema
    await report.close()
    rows = await asyncio.to_thread(read_sqlite_report, path)
    held = await target.insert_into_empty(rows)
    if held:
        raise ReportImportRefused(
            f"the PostgreSQL report (schema {target.schema}) already holds "
            + ", ".join(f"{n} {table}" for table, n in held.items())
            + ": the import never merges two reports; use an empty database or schema"
        )
    return {table: len(found) for table, (_, found) in rows.items()}
