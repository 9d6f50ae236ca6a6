"""The reconciler's own store: one SQLite file of cases, statement requests, outbox and inbox.

The default adapter of `agents.reconcile.report_base.ReportStore`, for one reconciler process
(`agents.reconcile.report_postgres.PostgresReport` is the one several processes share).

Each case is one row: a few columns to query on and the whole `ReconciledCase` as JSON. A handled
message, the case it changed, the requests it issued and the envelopes it queued commit in one
transaction (`ReconciliationReport.transaction`, a unit of work of `agents.db.sqlite.SqliteDb`:
group commit, one savepoint per unit); `agents.service.relay.OutboxRelay` publishes queued
envelopes afterwards (through `agents.reconcile.outbox.ReportOutbox`) and marks them sent, so a
crash in between re-sends them with the same message ids, marked as re-sends.

The queries serve ``jiexu reconcile --report`` and ``jiexu status``: counts per outcome, latest
mismatches, pending and stuck cases, control totals per pair of agencies per day; and the
reconciler's national view on ``/metrics`` (`agents.reconcile.figures`): cases, overdue cases and
money in flight per pair of agencies, mismatches by field.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from agents.db.codec import parse_ts, ts
from agents.db.sqlite import SqliteDb
from agents.reconcile.records import (
    CaseStatus,
    Purpose,
    ReconciledCase,
    RequestRow,
    StoredStatement,
    Terminal,
)
from agents.reconcile.report_base import QueuedEnvelope, ReportQueries, by_overdue
from schemas.envelope import Envelope
from schemas.registry import encode_envelope

__all__ = [
    "CaseStatus",
    "Purpose",
    "QueuedEnvelope",
    "ReconciledCase",
    "ReconciliationReport",
    "ReportTransaction",
    "RequestRow",
    "StoredStatement",
    "Terminal",
]

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS cases (
        case_id TEXT PRIMARY KEY,
        outgoing TEXT,
        receiving TEXT,
        status TEXT NOT NULL CHECK (status IN ('open', 'matched', 'mismatched')),
        stuck INTEGER NOT NULL,
        day TEXT,
        checked_at TEXT,
        updated_at TEXT NOT NULL,
        record TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS cases_status ON cases (status, checked_at)",
    """CREATE TABLE IF NOT EXISTS requests (
        message_id TEXT PRIMARY KEY,
        case_id TEXT NOT NULL,
        recipient TEXT NOT NULL,
        purpose TEXT NOT NULL CHECK (purpose IN ('final', 'probe')),
        round INTEGER NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        message_id TEXT NOT NULL UNIQUE,
        case_id TEXT NOT NULL,
        recipient TEXT NOT NULL,
        type TEXT NOT NULL,
        envelope TEXT NOT NULL,
        created_at TEXT NOT NULL,
        sent_at TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox (sent_at, seq)",
    # Keyed by (sender, message_id) like an agency's inbox (schema 2): another agency sending the
    # same id (ids are predictable) cannot make the reconciler take the real message for a replay.
    """CREATE TABLE IF NOT EXISTS inbox (
        sender TEXT NOT NULL,
        message_id TEXT NOT NULL,
        case_id TEXT NOT NULL,
        type TEXT NOT NULL,
        handled_at TEXT NOT NULL,
        republished INTEGER NOT NULL DEFAULT 0 CHECK (republished IN (0, 1)),
        PRIMARY KEY (sender, message_id)
    )""",
    "CREATE INDEX IF NOT EXISTS inbox_handled_at ON inbox (handled_at)",
)
_SCHEMA_VERSION = 3
_INBOX_V1_TO_V2 = (
    # Schema 1 keyed the inbox by message_id alone; its rows already name their sender.
    "ALTER TABLE inbox RENAME TO inbox_v1",
    _SCHEMA[-2],
    "INSERT INTO inbox (sender, message_id, case_id, type, handled_at) "
    "SELECT sender, message_id, case_id, type, handled_at FROM inbox_v1",
    "DROP TABLE inbox_v1",
)
_INBOX_V2_TO_V3 = (
    # Whether the copy handled came marked republished (its late original is stale, not a replay).
    "ALTER TABLE inbox ADD COLUMN republished INTEGER NOT NULL DEFAULT 0 "
    "CHECK (republished IN (0, 1))",
)


class ReportTransaction:
    """Reads and writes inside one unit of work (statements run inline on the writer)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def _all(self, sql: str, params: Sequence[Any]) -> list[Any]:
        return self._db.execute(sql, params).fetchall()

    async def handled(self, sender: str, message_id: UUID) -> bool:
        return bool(
            self._all(
                "SELECT 1 FROM inbox WHERE sender = ? AND message_id = ?", (sender, str(message_id))
            )
        )

    async def mark_handled(
        self, envelope: Envelope, at: datetime, *, republished: bool = False
    ) -> bool:
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO inbox "
            "(message_id, case_id, type, sender, handled_at, republished) VALUES (?, ?, ?, ?, ?, ?)",
            (
                str(envelope.message_id),
                str(envelope.case_id),
                envelope.type,
                envelope.sender,
                ts(at),
                int(republished),
            ),
        )
        return cursor.rowcount == 1

    async def load(self, case_id: UUID) -> ReconciledCase | None:
        rows = self._all("SELECT record FROM cases WHERE case_id = ?", (str(case_id),))
        return ReconciledCase.model_validate_json(rows[0][0]) if rows else None

    async def save(self, record: ReconciledCase, at: datetime) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO cases "
            "(case_id, outgoing, receiving, status, stuck, day, checked_at, updated_at, record) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                str(record.case_id),
                record.outgoing,
                record.receiving,
                record.status,
                int(record.stuck),
                record.day.isoformat() if record.day else None,
                ts(record.checked_at) if record.checked_at else None,
                ts(at),
                record.model_dump_json(),
            ),
        )

    async def request(self, message_id: UUID) -> RequestRow | None:
        rows = self._all(
            "SELECT message_id, case_id, recipient, purpose, round FROM requests WHERE message_id = ?",
            (str(message_id),),
        )
        if not rows:
            return None
        row = rows[0]
        return RequestRow(UUID(row[0]), UUID(row[1]), row[2], row[3], int(row[4]))

    async def add_request(self, row: RequestRow) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO requests (message_id, case_id, recipient, purpose, round) "
            "VALUES (?, ?, ?, ?, ?)",
            (str(row.message_id), str(row.case_id), row.recipient, row.purpose, row.round),
        )

    async def enqueue(self, envelope: Envelope, at: datetime) -> bool:
        """Queue an envelope to publish; False if one with its message id is already queued."""
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO outbox (message_id, case_id, recipient, type, envelope, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                str(envelope.message_id),
                str(envelope.case_id),
                envelope.recipient,
                envelope.type,
                encode_envelope(envelope).decode("utf-8"),
                ts(at),
            ),
        )
        return cursor.rowcount == 1


def _setup(db: sqlite3.Connection) -> None:
    db.execute("BEGIN IMMEDIATE")
    try:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        # Version 1's inbox is rebuilt at the current shape; version 2's gains a column.
        for statement in {1: _INBOX_V1_TO_V2, 2: _INBOX_V2_TO_V3}.get(version, ()):
            db.execute(statement)
        for statement in _SCHEMA:
            db.execute(statement)
        db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


class ReconciliationReport(ReportQueries):
    """The reconciler's store on one SQLite file (`agents.reconcile.report_base.ReportStore`).
    Open with ``await ReconciliationReport.open(path)``; one process uses it at a time."""

    def __init__(self, db: SqliteDb) -> None:
        self._db = db
        self.path = db.path

    @classmethod
    async def open(cls, path: str | Path) -> ReconciliationReport:
        return cls(await SqliteDb.open(path, setup=_setup, name="reconciliation store"))

    async def close(self) -> None:
        await self._db.close()

    async def schema_version(self) -> int:
        """The store's schema version (a small read: the reconciler's readiness check)."""
        rows = await self._all("PRAGMA user_version")
        return int(rows[0][0])

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[ReportTransaction]:
        async with self._db.transaction() as conn:
            yield ReportTransaction(conn)

    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return self._db.read(sql, params)

    # -- the consumer's replay check and the outbox ----------------------------------------------
    async def handled(self, sender: str, message_id: UUID) -> bool:
        rows = await self._all(
            "SELECT 1 FROM inbox WHERE sender = ? AND message_id = ?", (sender, str(message_id))
        )
        return bool(rows)

    async def handled_republished(self, sender: str, message_id: UUID) -> bool:
        rows = await self._all(
            "SELECT 1 FROM inbox WHERE sender = ? AND message_id = ? AND republished = 1",
            (sender, str(message_id)),
        )
        return bool(rows)

    async def prune_inbox(self, before: datetime) -> int:
        """Forget the messages handled before ``before`` (outside the freshness window)."""
        async with self._db.transaction() as conn:
            return conn.execute("DELETE FROM inbox WHERE handled_at < ?", (ts(before),)).rowcount

    async def queued(self, limit: int) -> list[QueuedEnvelope]:
        """The oldest unsent envelopes with their outbox position and the time they were queued."""
        rows = await self._all(
            "SELECT seq, envelope, created_at FROM outbox WHERE sent_at IS NULL ORDER BY seq LIMIT ?",
            (limit,),
        )
        return [
            QueuedEnvelope(int(row[0]), Envelope.model_validate_json(row[1]), parse_ts(row[2]))
            for row in rows
        ]

    async def claim_queued(
        self, claimant: str, *, limit: int = 100, lease_s: float = 30.0
    ) -> list[QueuedEnvelope]:
        """The queued rows: the file is one process's, its relay the only one, so there is
        nobody to claim them from (a restarted reconciler marks its re-sends by their age,
        `agents.service.relay.OutboxRelay`)."""
        return await self.queued(limit)

    async def mark_sent_seqs(self, seqs: Sequence[int], at: datetime) -> None:
        """Stamp queued envelopes as sent by outbox position (idempotent), in one unit of work."""
        if not seqs:
            return
        async with self._db.transaction() as conn:
            conn.executemany(
                "UPDATE outbox SET sent_at = ? WHERE seq = ? AND sent_at IS NULL",
                [(ts(at), seq) for seq in seqs],
            )

    async def outbox(self, case_id: UUID | None = None) -> list[tuple[Envelope, bool]]:
        """Queued envelopes (of one case), oldest first, each with whether it was sent."""
        sql = "SELECT envelope, sent_at FROM outbox"
        params: tuple[Any, ...] = ()
        if case_id is not None:
            sql += " WHERE case_id = ?"
            params = (str(case_id),)
        rows = await self._all(sql + " ORDER BY seq", params)
        return [(Envelope.model_validate_json(row[0]), row[1] is not None) for row in rows]

    # -- queries ----------------------------------------------------------------------------------
    async def case(self, case_id: UUID) -> ReconciledCase | None:
        rows = await self._all("SELECT record FROM cases WHERE case_id = ?", (str(case_id),))
        return ReconciledCase.model_validate_json(rows[0][0]) if rows else None

    async def cases(self, status: CaseStatus | None = None) -> list[ReconciledCase]:
        """Cases (with ``status``), ordered by case id."""
        if status is None:
            rows = await self._all("SELECT record FROM cases ORDER BY case_id")
        else:
            rows = await self._all(
                "SELECT record FROM cases WHERE status = ? ORDER BY case_id", (status,)
            )
        return [ReconciledCase.model_validate_json(row[0]) for row in rows]

    async def open_cases_started_before(
        self, day: date, *, after: UUID | None = None, limit: int = 500
    ) -> list[ReconciledCase]:
        """One page (by case id, after ``after``) of the open cases whose clock started before
        ``day``: the form sent, or the case ended. What a sweep has to look at; the others cannot
        be overdue yet, and are neither read nor parsed."""
        rows = await self._all(
            "SELECT record FROM cases WHERE status = 'open' AND case_id > ? AND "
            "COALESCE(json_extract(record, '$.terminal_on'), json_extract(record, '$.form_sent_on')) < ? "
            "ORDER BY case_id LIMIT ?",
            (str(after) if after is not None else "", day.isoformat(), limit),
        )
        return [ReconciledCase.model_validate_json(row[0]) for row in rows]

    async def stuck_cases(self) -> list[ReconciledCase]:
        """Open cases past their due date (money in flight with no terminal notice, or a terminal
        notice with no result), oldest overdue first."""
        rows = await self._all("SELECT record FROM cases WHERE stuck = 1 ORDER BY case_id")
        return by_overdue([ReconciledCase.model_validate_json(row[0]) for row in rows])

    async def latest_mismatches(self, limit: int = 20) -> list[ReconciledCase]:
        rows = await self._all(
            "SELECT record FROM cases WHERE status = 'mismatched' "
            "ORDER BY checked_at DESC, case_id LIMIT ?",
            (limit,),
        )
        return [ReconciledCase.model_validate_json(row[0]) for row in rows]

    async def counts(self) -> dict[str, int]:
        """Cases per status (``open``, ``matched``, ``mismatched``) and ``stuck`` (open, overdue)."""
        rows = await self._all("SELECT status, COUNT(*), SUM(stuck) FROM cases GROUP BY status")
        counts = {"open": 0, "matched": 0, "mismatched": 0, "stuck": 0}
        for status, count, stuck in rows:
            counts[status] = int(count)
            if status == "open":
                counts["stuck"] = int(stuck or 0)
        return counts

    # -- the national view (`agents.reconcile.figures`) -------------------------------------------
    async def pair_states(self) -> dict[tuple[str | None, str | None, str], int]:
        """Cases per (outgoing, receiving, state). ``state``: ``in_progress`` (no terminal notice
        yet), ``awaiting_result`` (ended, not reconciled yet), ``matched``, ``mismatched``. An
        agency not known yet is None (a form copy does not name the receiving agency: it is learnt
        from the completion or rejection notice, or from a statement)."""
        rows = await self._all(
            "SELECT outgoing, receiving, CASE WHEN status != 'open' THEN status "
            "WHEN json_extract(record, '$.terminal') IS NULL THEN 'in_progress' "
            "ELSE 'awaiting_result' END AS state, COUNT(*) FROM cases GROUP BY 1, 2, 3"
        )
        return {(out, rec, state): int(n) for out, rec, state, n in rows}

    async def mismatched_fields(self) -> dict[str, int]:
        """Cases mismatched now, by each field that differs (a case counts once per field)."""
        rows = await self._all(
            "SELECT json_extract(d.value, '$.field'), COUNT(DISTINCT cases.case_id) "
            "FROM cases, json_each(cases.record, '$.result.differences') AS d "
            "WHERE cases.status = 'mismatched' GROUP BY 1"
        )
        return {str(name): int(n) for name, n in rows if name is not None}

    async def money_in_flight(self) -> dict[tuple[str | None, str | None], int]:
        """Per (outgoing, receiving), in fen: what the outgoing agency's form copy says it
        transferred, over the open cases with no terminal notice yet."""
        rows = await self._all(
            "SELECT outgoing, receiving, "
            "SUM(COALESCE(json_extract(record, '$.form.amount_transferred'), 0)) FROM cases "
            "WHERE status = 'open' AND json_extract(record, '$.terminal') IS NULL "
            "AND json_extract(record, '$.form') IS NOT NULL GROUP BY 1, 2"
        )
        return {(out, rec): int(fen) for out, rec, fen in rows if fen}

    async def reconciled(self, day: date | None = None) -> list[ReconciledCase]:
        """The cases with a result (that ended on ``day``)."""
        sql = "SELECT record FROM cases WHERE status != 'open'"
        params: tuple[Any, ...] = ()
        if day is not None:
            sql += " AND day = ?"
            params = (day.isoformat(),)
        rows = await self._all(sql + " ORDER BY case_id", params)
        return [ReconciledCase.model_validate_json(row[0]) for row in rows]
