"""`PostgresReport`: the reconciler's report on PostgreSQL (``JIEXU_DATABASE_URL``), via asyncpg.

The same tables as the SQLite report (`agents.reconcile.report`): cases (a few columns to query on
and the whole `ReconciledCase` as jsonb), statement requests, outbox, inbox; in a schema of its own
(``reconcile_<code>``, as an agency's store lives in ``agency_<code>``), brought up to date by
`_MIGRATIONS` when a report opens. Several ``jiexu reconcile`` processes share one schema:

* **one case, one writer at a time: a row lock.** `PostgresTransaction.load` reads the case with
  ``SELECT ... FOR UPDATE``, so a second unit of work on the same case waits until the first has
  committed and then reads what it wrote (READ COMMITTED); no update is lost. A case that does not
  exist yet has no row to lock: `load` then takes a transaction-scoped advisory lock on the case id
  and reads again, so two processes creating the same case also take turns.
* **a message handled once:** the inbox is keyed by (sender, message id); `mark_handled` inserts
  ``ON CONFLICT DO NOTHING``, which waits for a concurrent insert of the same key to commit and
  then reports the duplicate.
* **the outbox claimed with a lease** (`claim_queued`, as `agents.store.postgres.PostgresStore`'s
  ``claim_unpublished``): ``FOR UPDATE SKIP LOCKED``, then held until ``claimed_until``; a row a
  relay claimed before goes out marked as a possible re-send. A dead process holds rows only until
  its lease ends. Statement requests and results have content-derived ids and the outbox is unique
  by message id, so the same request planned twice is queued once.
* a commit that queued envelopes notifies ``jiexu_report_<schema>`` (`watch_commits`), waking the
  relay of every process at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeAlias
from uuid import UUID

import asyncpg
import structlog

from agents.db.postgres import TRANSIENT, check_schema, listen_until_cancelled
from agents.domain.clock import Clock, SystemClock
from agents.reconcile.records import CaseStatus, ReconciledCase, RequestRow
from agents.reconcile.report_base import QueuedEnvelope, ReportQueries, by_overdue
from schemas.envelope import Envelope
from schemas.errors import TransientError
from schemas.registry import encode_envelope

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    _Connection: TypeAlias = asyncpg.Connection | PoolConnectionProxy[asyncpg.Record]

__all__ = ["PostgresReport", "PostgresTransaction"]

log = structlog.get_logger(__name__)

_MIGRATION_LOCK = 0x6A69657875_7265  # "jiexure": the report's migrations, any constant will do
_MIGRATIONS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (
        1,
        "cases, statement requests, outbox with claims, inbox by (sender, message id)",
        (
            """CREATE TABLE cases (
                case_id uuid PRIMARY KEY,
                outgoing text,
                receiving text,
                status text NOT NULL CHECK (status IN ('open', 'matched', 'mismatched')),
                stuck boolean NOT NULL,
                day date,
                checked_at timestamptz,
                updated_at timestamptz NOT NULL,
                record jsonb NOT NULL
            )""",
            "CREATE INDEX cases_status ON cases (status, checked_at)",
            "CREATE INDEX cases_stuck ON cases (case_id) WHERE stuck",
            """CREATE TABLE requests (
                message_id uuid PRIMARY KEY,
                case_id uuid NOT NULL,
                recipient text NOT NULL,
                purpose text NOT NULL CHECK (purpose IN ('final', 'probe')),
                round integer NOT NULL
            )""",
            """CREATE TABLE outbox (
                seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                message_id uuid NOT NULL UNIQUE,
                case_id uuid NOT NULL,
                recipient text NOT NULL,
                type text NOT NULL,
                envelope text NOT NULL,
                created_at timestamptz NOT NULL,
                sent_at timestamptz,
                claimed_by text,
                claimed_until timestamptz,
                claims integer NOT NULL DEFAULT 0
            )""",
            "CREATE INDEX outbox_unsent ON outbox (seq) WHERE sent_at IS NULL",
            "CREATE INDEX outbox_case ON outbox (case_id, seq)",
            """CREATE TABLE inbox (
                sender text NOT NULL,
                message_id uuid NOT NULL,
                case_id uuid NOT NULL,
                type text NOT NULL,
                handled_at timestamptz NOT NULL,
                PRIMARY KEY (sender, message_id)
            )""",
            "CREATE INDEX inbox_handled_at ON inbox (handled_at)",
        ),
    ),
    (
        2,
        "inbox: whether the copy handled came marked republished",
        ("ALTER TABLE inbox ADD COLUMN republished boolean NOT NULL DEFAULT false",),
    ),
    # Never edit a migration once shipped: append.
)
_VERSION_TABLE = """CREATE TABLE IF NOT EXISTS schema_version (
    version integer PRIMARY KEY,
    description text NOT NULL,
    applied_at timestamptz NOT NULL
)"""


def _record(text: str) -> ReconciledCase:
    return ReconciledCase.model_validate_json(text)


async def _migrate(conn: _Connection) -> list[int]:
    applied: list[int] = []
    for version, description, statements in _MIGRATIONS:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            await conn.execute(_VERSION_TABLE)
            if await conn.fetchval("SELECT 1 FROM schema_version WHERE version = $1", version):
                continue
            for statement in statements:
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO schema_version (version, description, applied_at) "
                "VALUES ($1, $2, now())",
                version,
                description,
            )
            applied.append(version)
    if applied:
        log.info("report.migrated", dialect="postgres", versions=applied)
    return applied


class PostgresTransaction:
    """One unit of work on a `PostgresReport` (`agents.reconcile.report_base.ReportStoreTransaction`)."""

    def __init__(self, conn: _Connection) -> None:
        self._conn = conn

    async def mark_handled(
        self, envelope: Envelope, at: datetime, *, republished: bool = False
    ) -> bool:
        status = await self._conn.execute(
            "INSERT INTO inbox (sender, message_id, case_id, type, handled_at, republished) "
            "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            envelope.sender,
            envelope.message_id,
            envelope.case_id,
            envelope.type,
            at,
            republished,
        )
        return bool(status == "INSERT 0 1")

    async def load(self, case_id: UUID) -> ReconciledCase | None:
        sql = "SELECT record::text FROM cases WHERE case_id = $1 FOR UPDATE"
        text = await self._conn.fetchval(sql, case_id)
        if text is None:
            # No row to lock yet: whoever creates the case takes this lock first; the second
            # reads again after the first committed, and finds (and locks) its row.
            await self._conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext(current_schema()), hashtext($1))",
                str(case_id),
            )
            text = await self._conn.fetchval(sql, case_id)
        return _record(text) if text is not None else None

    async def save(self, record: ReconciledCase, at: datetime) -> None:
        await self._conn.execute(
            "INSERT INTO cases (case_id, outgoing, receiving, status, stuck, day, checked_at, "
            "updated_at, record) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb) "
            "ON CONFLICT (case_id) DO UPDATE SET outgoing = EXCLUDED.outgoing, "
            "receiving = EXCLUDED.receiving, status = EXCLUDED.status, stuck = EXCLUDED.stuck, "
            "day = EXCLUDED.day, checked_at = EXCLUDED.checked_at, "
            "updated_at = EXCLUDED.updated_at, record = EXCLUDED.record",
            record.case_id,
            record.outgoing,
            record.receiving,
            record.status,
            record.stuck,
            record.day,
            record.checked_at,
            at,
            record.model_dump_json(),
        )

    async def request(self, message_id: UUID) -> RequestRow | None:
        row = await self._conn.fetchrow(
            "SELECT message_id, case_id, recipient, purpose, round FROM requests "
            "WHERE message_id = $1",
            message_id,
        )
        if row is None:
            return None
        return RequestRow(
            row["message_id"], row["case_id"], row["recipient"], row["purpose"], int(row["round"])
        )

    async def add_request(self, row: RequestRow) -> None:
        await self._conn.execute(
            "INSERT INTO requests (message_id, case_id, recipient, purpose, round) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            row.message_id,
            row.case_id,
            row.recipient,
            row.purpose,
            row.round,
        )

    async def enqueue(self, envelope: Envelope, at: datetime) -> bool:
        status = await self._conn.execute(
            "INSERT INTO outbox (message_id, case_id, recipient, type, envelope, created_at) "
            "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (message_id) DO NOTHING",
            envelope.message_id,
            envelope.case_id,
            envelope.recipient,
            envelope.type,
            encode_envelope(envelope).decode("utf-8"),
            at,
        )
        if status != "INSERT 0 1":
            return False
        # Delivered at commit, never for a rolled-back unit of work (`watch_commits`).
        await self._conn.execute("SELECT pg_notify('jiexu_report_' || current_schema(), '')")
        return True


class PostgresReport(ReportQueries):
    """The reconciler's store in one PostgreSQL schema; several processes may share it.
    Open with ``await PostgresReport.open(dsn, schema=...)``."""

    def __init__(self, pool: asyncpg.Pool, schema: str, clock: Clock | None = None) -> None:
        self._pool = pool
        self.schema = schema
        self._clock = clock or SystemClock()

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        schema: str = "reconcile_000000",
        clock: Clock | None = None,
        min_size: int = 1,
        max_size: int = 10,
    ) -> PostgresReport:
        """Connect, create ``schema`` if needed and bring it up to date."""
        check_schema(schema)
        try:
            admin = await asyncpg.connect(dsn)
            try:
                # Two processes starting together may both try: the loser's error is harmless.
                with contextlib.suppress(asyncpg.UniqueViolationError, asyncpg.DuplicateSchemaError):
                    await admin.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            finally:
                await admin.close()
            pool = await asyncpg.create_pool(
                dsn, min_size=min_size, max_size=max_size, server_settings={"search_path": schema}
            )
        except TRANSIENT as exc:
            raise TransientError(f"cannot reach PostgreSQL: {exc}") from exc
        try:
            async with pool.acquire() as conn:
                await _migrate(conn)
        except BaseException:
            await pool.close()
            raise
        return cls(pool, schema, clock)

    @staticmethod
    async def exists(dsn: str, schema: str) -> bool:
        """Whether ``schema`` holds a report (read-only: nothing is created)."""
        conn = await asyncpg.connect(dsn)
        try:
            found = await conn.fetchval(
                "SELECT 1 FROM information_schema.tables WHERE table_schema = $1 "
                "AND table_name = 'schema_version'",
                schema,
            )
            return found is not None
        finally:
            await conn.close()

    async def close(self) -> None:
        await self._pool.close()

    async def schema_version(self) -> int:
        """The report's schema version (a small read: the reconciler's readiness check)."""
        return int(await self._val("SELECT COALESCE(MAX(version), 0) FROM schema_version"))

    async def watch_commits(self, on_change: Callable[[], None]) -> None:
        """Call ``on_change`` whenever a unit of work that queued envelopes commits, in any
        process sharing the schema (``LISTEN jiexu_report_<schema>``), until cancelled."""
        await listen_until_cancelled(self._pool, f"jiexu_report_{self.schema}", on_change)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresTransaction]:
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                yield PostgresTransaction(conn)
        except TRANSIENT as exc:
            raise TransientError(f"report unavailable: {exc}") from exc

    async def insert_into_empty(
        self, rows: Mapping[str, tuple[Sequence[str], Sequence[Sequence[Any]]]]
    ) -> dict[str, int]:
        """Insert ``rows`` (table -> columns, rows) in one transaction if every one of those
        tables is empty; else insert nothing and return the rows each non-empty table holds."""
        async with self._pool.acquire() as conn, conn.transaction():
            held = {t: int(await conn.fetchval(f"SELECT COUNT(*) FROM {t}")) for t in rows}  # noqa: S608
            if any(held.values()):
                return {t: n for t, n in held.items() if n}
            for table, (columns, found) in rows.items():
                await conn.copy_records_to_table(
                    table, records=[tuple(r) for r in found], columns=list(columns),
                    schema_name=self.schema,
                )
        return {}

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        try:
            return list(await self._pool.fetch(sql, *args))
        except TRANSIENT as exc:
            raise TransientError(f"report unavailable: {exc}") from exc

    async def _val(self, sql: str, *args: Any) -> Any:
        rows = await self._fetch(sql, *args)
        return rows[0][0] if rows else None

    async def _records(self, sql: str, *args: Any) -> list[ReconciledCase]:
        return [_record(row[0]) for row in await self._fetch(sql, *args)]

    # -- the consumer's replay check and the outbox ----------------------------------------------
    async def handled(self, sender: str, message_id: UUID) -> bool:
        return await self._val(
            "SELECT 1 FROM inbox WHERE sender = $1 AND message_id = $2", sender, message_id
        ) is not None

    async def handled_republished(self, sender: str, message_id: UUID) -> bool:
        return await self._val(
            "SELECT 1 FROM inbox WHERE sender = $1 AND message_id = $2 AND republished",
            sender,
            message_id,
        ) is not None

    async def prune_inbox(self, before: datetime) -> int:
        """Forget the messages handled before ``before`` (outside the freshness window)."""
        return int(
            await self._val(
                "WITH gone AS (DELETE FROM inbox WHERE handled_at < $1 RETURNING 1) "
                "SELECT count(*) FROM gone",
                before,
            )
        )

    @staticmethod
    def _queued(row: asyncpg.Record) -> QueuedEnvelope:
        return QueuedEnvelope(
            int(row["seq"]),
            Envelope.model_validate_json(row["envelope"]),
            row["created_at"],
            int(row["prior_claims"]),
        )

    async def queued(self, limit: int) -> list[QueuedEnvelope]:
        """The oldest unsent envelopes, claimed or not."""
        rows = await self._fetch(
            "SELECT seq, envelope, created_at, claims AS prior_claims FROM outbox "
            "WHERE sent_at IS NULL ORDER BY seq LIMIT $1",
            limit,
        )
        return [self._queued(row) for row in rows]

    async def claim_queued(
        self, claimant: str, *, limit: int = 100, lease_s: float = 30.0
    ) -> list[QueuedEnvelope]:
        # SKIP LOCKED: a relay claiming at the same moment takes the next rows instead of
        # waiting for these; the lease (claimed_until) keeps them ours after the commit.
        now = self._clock.now()
        rows = await self._fetch(
            "UPDATE outbox SET claimed_by = $1, claimed_until = $2, claims = claims + 1 "
            "WHERE seq IN (SELECT seq FROM outbox WHERE sent_at IS NULL "
            "AND (claimed_until IS NULL OR claimed_until <= $3 OR claimed_by = $1) "
            "ORDER BY seq LIMIT $4 FOR UPDATE SKIP LOCKED) "
            "RETURNING seq, envelope, created_at, claims - 1 AS prior_claims",
            claimant,
            now + timedelta(seconds=lease_s),
            now,
            limit,
        )
        return sorted((self._queued(row) for row in rows), key=lambda queued: queued.seq)

    async def mark_sent_seqs(self, seqs: Sequence[int], at: datetime) -> None:
        """Stamp queued envelopes as sent by outbox position (idempotent)."""
        if seqs:
            await self._fetch(
                "UPDATE outbox SET sent_at = $1 WHERE seq = ANY($2::bigint[]) AND sent_at IS NULL",
                at,
                list(seqs),
            )

    async def outbox(self, case_id: UUID | None = None) -> list[tuple[Envelope, bool]]:
        """Queued envelopes (of one case), oldest first, each with whether it was sent."""
        rows = await self._fetch(
            "SELECT envelope, sent_at IS NOT NULL FROM outbox "
            "WHERE $1::uuid IS NULL OR case_id = $1 ORDER BY seq",
            case_id,
        )
        return [(Envelope.model_validate_json(row[0]), bool(row[1])) for row in rows]

    # -- queries ----------------------------------------------------------------------------------
    async def case(self, case_id: UUID) -> ReconciledCase | None:
        found = await self._records("SELECT record::text FROM cases WHERE case_id = $1", case_id)
        return found[0] if found else None

    async def cases(self, status: CaseStatus | None = None) -> list[ReconciledCase]:
        """Cases (with ``status``), ordered by case id."""
        return await self._records(
            "SELECT record::text FROM cases WHERE $1::text IS NULL OR status = $1 ORDER BY case_id",
            status,
        )

    async def open_cases_started_before(
        self, day: date, *, after: UUID | None = None, limit: int = 500
    ) -> list[ReconciledCase]:
        """One page (by case id, after ``after``) of the open cases whose clock started before
        ``day``: the form sent, or the case ended (dates as ISO text compare as dates)."""
        return await self._records(
            "SELECT record::text FROM cases WHERE status = 'open' "
            "AND ($1::uuid IS NULL OR case_id > $1) "
            "AND COALESCE(record->>'terminal_on', record->>'form_sent_on') < $2 "
            "ORDER BY case_id LIMIT $3",
            after,
            day.isoformat(),
            limit,
        )

    async def stuck_cases(self) -> list[ReconciledCase]:
        """Open cases past their due date, oldest overdue first."""
        return by_overdue(
            await self._records("SELECT record::text FROM cases WHERE stuck ORDER BY case_id")
        )

    async def latest_mismatches(self, limit: int = 20) -> list[ReconciledCase]:
        return await self._records(
            "SELECT record::text FROM cases WHERE status = 'mismatched' "
            "ORDER BY checked_at DESC NULLS LAST, case_id LIMIT $1",
            limit,
        )

    async def reconciled(self, day: date | None = None) -> list[ReconciledCase]:
        return await self._records(
            "SELECT record::text FROM cases WHERE status <> 'open' "
            "AND ($1::date IS NULL OR day = $1) ORDER BY case_id",
            day,
        )

    async def counts(self) -> dict[str, int]:
        """Cases per status (``open``, ``matched``, ``mismatched``) and ``stuck`` (open, overdue)."""
        rows = await self._fetch(
            "SELECT status, COUNT(*), COUNT(*) FILTER (WHERE stuck) FROM cases GROUP BY status"
        )
        counts = {"open": 0, "matched": 0, "mismatched": 0, "stuck": 0}
        for status, count, stuck in rows:
            counts[status] = int(count)
            if status == "open":
                counts["stuck"] = int(stuck)
        return counts

    async def pair_states(self) -> dict[tuple[str | None, str | None, str], int]:
        """Cases per (outgoing, receiving, state), as `ReconciliationReport.pair_states`."""
        rows = await self._fetch(
            "SELECT outgoing, receiving, CASE WHEN status <> 'open' THEN status "
            "WHEN record->>'terminal' IS NULL THEN 'in_progress' "
            "ELSE 'awaiting_result' END AS state, COUNT(*) FROM cases GROUP BY 1, 2, 3"
        )
        return {(out, rec, state): int(n) for out, rec, state, n in rows}

    async def mismatched_fields(self) -> dict[str, int]:
        """Cases mismatched now, by each field that differs (a case counts once per field)."""
        rows = await self._fetch(
            "SELECT d->>'field', COUNT(DISTINCT c.case_id) FROM cases c "
            "CROSS JOIN LATERAL jsonb_array_elements(CASE WHEN jsonb_typeof("
            "c.record->'result'->'differences') = 'array' THEN c.record->'result'->'differences' "
            "ELSE '[]'::jsonb END) AS d WHERE c.status = 'mismatched' GROUP BY 1"
        )
        return {str(name): int(n) for name, n in rows if name is not None}

    async def money_in_flight(self) -> dict[tuple[str | None, str | None], int]:
        """Per (outgoing, receiving), in fen: what the form copies say was transferred, over the
        open cases with no terminal notice yet."""
        rows = await self._fetch(
            "SELECT outgoing, receiving, "
            "SUM(COALESCE((record->'form'->>'amount_transferred')::bigint, 0)) FROM cases "
            "WHERE status = 'open' AND record->>'terminal' IS NULL "
            "AND record->>'form' IS NOT NULL GROUP BY 1, 2"
        )
        return {(out, rec): int(fen) for out, rec, fen in rows if fen}
