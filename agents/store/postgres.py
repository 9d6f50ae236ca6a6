"""`PostgresStore`: the production store on PostgreSQL (``JIEXU_DATABASE_URL``), via asyncpg.

Each agency lives in its own PostgreSQL schema (``schema=`` at open, default ``jiexu``), set as the
pool's ``search_path``: several agencies (or tests) can share one database without seeing each
other. Several replicas of one agency share the schema; inside a transaction `get_case` and
`find_open_case` lock the case row (``SELECT ... FOR UPDATE``) so replicas handling messages of the
same case take turns, and the version check in `save_case` catches anything that slips through.
"""

# S608: the only interpolated SQL fragments are this module's column-list constants; every
# value is a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeAlias
from uuid import UUID

import asyncpg
import structlog

from agents.db.codec import dumps, loads, mask_key
from agents.db.postgres import TRANSIENT, check_schema, listen_until_cancelled
from agents.domain.clock import Clock, SystemClock
from agents.store.base import (
    CaseRecord,
    CaseRole,
    ConcurrentCaseUpdate,
    DuplicateOpenCase,
    HeldMessage,
    OutboxMessage,
    StoreError,
    Transition,
)
from agents.store.migrations import LEGACY_SENDER, migrate_postgres
from schemas.errors import TransientError

__all__ = ["PostgresStore", "PostgresTransaction"]

log = structlog.get_logger(__name__)

_CASE_COLUMNS = (
    "case_id, role, state, person_key, counterpart, message_version, open, due_date, "
    "whose_turn, data, created_at, updated_at, version"
)
_OUTBOX_COLUMNS = (
    "id, message_id, recipient, message_type, routing_key, body, headers, created_at, published_at"
)
_HELD_COLUMNS = "case_id, message_id, body, reason, held_at"

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    _Connection: TypeAlias = asyncpg.Connection | PoolConnectionProxy[asyncpg.Record]


def _case(row: asyncpg.Record) -> CaseRecord:
    return CaseRecord(
        case_id=row["case_id"],
        role=row["role"],
        state=row["state"],
        person_key=row["person_key"],
        counterpart=row["counterpart"],
        message_version=row["message_version"],
        open=row["open"],
        due_date=row["due_date"],
        whose_turn=row["whose_turn"],
        data=row["data"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        version=row["version"],
    )


def _outbox(row: asyncpg.Record) -> OutboxMessage:
    return OutboxMessage(
        id=row["id"],
        message_id=row["message_id"],
        recipient=row["recipient"],
        message_type=row["message_type"],
        routing_key=row["routing_key"],
        body=bytes(row["body"]),
        headers=row["headers"],
        created_at=row["created_at"],
        published_at=row["published_at"],
        claims=row.get("prior_claims", 0),
    )


def _held(row: asyncpg.Record) -> HeldMessage:
    return HeldMessage(
        case_id=row["case_id"],
        message_id=row["message_id"],
        body=bytes(row["body"]),
        reason=row["reason"],
        held_at=row["held_at"],
    )


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "jsonb", schema="pg_catalog", encoder=dumps, decoder=loads, format="text"
    )
    await conn.set_type_codec(
        "json", schema="pg_catalog", encoder=json.dumps, decoder=json.loads, format="text"
    )


class PostgresTransaction:
    """The unit of work on a `PostgresStore` (see `agents.store.base.StoreTransaction`)."""

    def __init__(self, conn: _Connection, clock: Clock) -> None:
        self._conn = conn
        self._clock = clock

    async def get_case(self, case_id: UUID) -> CaseRecord | None:
        row = await self._conn.fetchrow(
            f"SELECT {_CASE_COLUMNS} FROM cases WHERE case_id = $1 FOR UPDATE", case_id
        )
        return _case(row) if row is not None else None

    async def find_open_case(
        self, person_key: str, role: CaseRole | None = None
    ) -> CaseRecord | None:
        row = await self._conn.fetchrow(
            f"SELECT {_CASE_COLUMNS} FROM cases WHERE person_key = $1 AND open "
            "AND ($2::text IS NULL OR role = $2) FOR UPDATE",
            person_key,
            role,
        )
        return _case(row) if row is not None else None

    async def save_case(
        self, record: CaseRecord, transition: Transition | None = None
    ) -> CaseRecord:
        if transition is not None and transition.case_id != record.case_id:
            raise StoreError("the transition belongs to another case")
        values = (
            record.role,
            record.state,
            record.person_key,
            record.counterpart,
            record.message_version,
            record.open,
            record.due_date,
            record.whose_turn,
            dict(record.data),
            record.created_at,
            record.updated_at,
        )
        try:
            # A savepoint keeps the outer transaction usable when a constraint fails, so the
            # caller may still decide what to do (e.g. record a rejection) after the error.
            async with self._conn.transaction():
                if record.version == 0:
                    row = await self._conn.fetchrow(
                        f"INSERT INTO cases ({_CASE_COLUMNS}) VALUES "
                        "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 1) "
                        f"RETURNING {_CASE_COLUMNS}",
                        record.case_id,
                        *values,
                    )
                else:
                    row = await self._conn.fetchrow(
                        "UPDATE cases SET role = $1, state = $2, person_key = $3, "
                        "counterpart = $4, message_version = $5, open = $6, due_date = $7, "
                        "whose_turn = $8, data = $9, created_at = $10, updated_at = $11, "
                        "version = version + 1 WHERE case_id = $12 AND version = $13 "
                        f"RETURNING {_CASE_COLUMNS}",
                        *values,
                        record.case_id,
                        record.version,
                    )
                    if row is None:
                        raise ConcurrentCaseUpdate(
                            f"case {record.case_id} is no longer at version {record.version}"
                        )
        except asyncpg.UniqueViolationError as exc:
            # Which unique index fires first is the engine's choice: ask which rule was broken.
            exists = await self._conn.fetchval(
                "SELECT 1 FROM cases WHERE case_id = $1", record.case_id
            )
            if record.version == 0 and exists is not None:
                raise ConcurrentCaseUpdate(f"case {record.case_id} already exists") from exc
            if exc.constraint_name == "cases_one_open_per_person":
                raise DuplicateOpenCase(mask_key(record.person_key)) from exc
            raise
        if transition is not None:
            await self._conn.execute(
                "INSERT INTO transitions (case_id, seq, at, from_state, to_state, event, detail) "
                "SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4, $5, $6 "
                "FROM transitions WHERE case_id = $1",
                transition.case_id,
                transition.at,
                transition.from_state,
                transition.to_state,
                transition.event,
                dict(transition.detail),
            )
        assert row is not None
        return _case(row)

    async def add_outbox(self, messages: Sequence[OutboxMessage]) -> list[OutboxMessage]:
        added: list[OutboxMessage] = []
        for message in messages:
            row = await self._conn.fetchrow(
                "INSERT INTO outbox (message_id, recipient, message_type, routing_key, body, "
                "headers, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) "
                f"RETURNING {_OUTBOX_COLUMNS}",
                message.message_id,
                message.recipient,
                message.message_type,
                message.routing_key,
                message.body,
                dict(message.headers),
                message.created_at,
            )
            assert row is not None
            added.append(_outbox(row))
        if added:
            # Delivered at commit (never for a rolled-back transaction): `watch_commits` wakes
            # the relay of whichever process listens on this schema.
            await self._conn.execute("SELECT pg_notify('jiexu_outbox_' || current_schema(), '')")
        return added

    async def record_inbox(
        self, consumer: str, message_id: UUID, *, sender: str, republished: bool = False
    ) -> bool:
        # A row from before migration 2 (sender unknown) counts for every sender.
        status = await self._conn.execute(
            "INSERT INTO inbox (consumer, sender, message_id, handled_at, republished) "
            "SELECT $1, $2, $3, $4, $6 "
            "WHERE NOT EXISTS (SELECT 1 FROM inbox WHERE consumer = $1 AND sender = $5 "
            "AND message_id = $3) ON CONFLICT DO NOTHING",
            consumer,
            sender,
            message_id,
            self._clock.now(),
            LEGACY_SENDER,
            republished,
        )
        return bool(status == "INSERT 0 1")

    async def claim_business_key(self, consumer: str, key: str) -> bool:
        status = await self._conn.execute(
            "INSERT INTO business_keys (consumer, key, claimed_at) VALUES ($1, $2, $3) "
            "ON CONFLICT DO NOTHING",
            consumer,
            key,
            self._clock.now(),
        )
        return bool(status == "INSERT 0 1")

    async def hold_message(
        self, case_id: UUID, message_id: UUID, body: bytes, reason: str
    ) -> bool:
        status = await self._conn.execute(
            "INSERT INTO held_messages (case_id, message_id, body, reason, held_at) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            case_id,
            message_id,
            body,
            reason,
            self._clock.now(),
        )
        return bool(status == "INSERT 0 1")

    async def take_held(self, case_id: UUID) -> list[HeldMessage]:
        rows = await self._conn.fetch(
            "WITH taken AS (DELETE FROM held_messages WHERE case_id = $1 "
            f"RETURNING id, {_HELD_COLUMNS}) SELECT {_HELD_COLUMNS} FROM taken ORDER BY id",
            case_id,
        )
        return [_held(row) for row in rows]


class PostgresStore:
    """The store in one PostgreSQL schema. Open with `await PostgresStore.open(dsn)`."""

    def __init__(self, pool: asyncpg.Pool, schema: str, clock: Clock) -> None:
        self._pool = pool
        self.schema = schema
        self._clock = clock

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        schema: str = "jiexu",
        clock: Clock | None = None,
        min_size: int = 1,
        max_size: int = 10,
    ) -> PostgresStore:
        """Connect, create `schema` if needed and bring it up to date."""
        check_schema(schema)
        try:
            admin = await asyncpg.connect(dsn)
            try:
                await admin.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            finally:
                await admin.close()
            pool = await asyncpg.create_pool(
                dsn,
                min_size=min_size,
                max_size=max_size,
                init=_init_connection,
                server_settings={"search_path": schema},
            )
        except TRANSIENT as exc:
            raise TransientError(f"cannot reach PostgreSQL: {exc}") from exc
        try:
            async with pool.acquire() as pooled:
                await migrate_postgres(pooled)
        except BaseException:
            await pool.close()
            raise
        return cls(pool, schema, clock if clock is not None else SystemClock())

    async def watch_commits(self, on_change: Callable[[], None]) -> None:
        """Call ``on_change`` whenever a transaction that added outbox rows to this schema
        commits, in any process (``LISTEN jiexu_outbox_<schema>``), until cancelled. Holds one
        pooled connection while it runs."""
        await listen_until_cancelled(self._pool, f"jiexu_outbox_{self.schema}", on_change)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresTransaction]:
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                yield PostgresTransaction(conn, self._clock)
        except TRANSIENT as exc:
            raise TransientError(f"store unavailable: {exc}") from exc

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        try:
            return list(await self._pool.fetch(sql, *args))
        except TRANSIENT as exc:
            raise TransientError(f"store unavailable: {exc}") from exc

    async def fetch_unpublished(self, limit: int = 100) -> list[OutboxMessage]:
        rows = await self._fetch(
            f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE published_at IS NULL "
            "ORDER BY id LIMIT $1",
            limit,
        )
        return [_outbox(row) for row in rows]

    async def claim_unpublished(
        self, claimant: str, *, limit: int = 100, lease_s: float = 30.0
    ) -> list[OutboxMessage]:
        # SKIP LOCKED: a replica claiming at the same moment takes the next rows instead of
        # waiting for these; the lease (claimed_until) keeps them ours after the commit.
        now = self._clock.now()
        rows = await self._fetch(
            f"UPDATE outbox SET claimed_by = $1, claimed_until = $2, claims = claims + 1 "
            f"WHERE id IN (SELECT id FROM outbox WHERE published_at IS NULL "
            f"AND (claimed_until IS NULL OR claimed_until <= $3 OR claimed_by = $1) "
            f"ORDER BY id LIMIT $4 FOR UPDATE SKIP LOCKED) "
            f"RETURNING {_OUTBOX_COLUMNS}, claims - 1 AS prior_claims",
            claimant,
            now + timedelta(seconds=lease_s),
            now,
            limit,
        )
        return sorted((_outbox(row) for row in rows), key=lambda m: m.id)

    async def has_handled(self, consumer: str, message_id: UUID, *, sender: str) -> bool:
        rows = await self._fetch(
            "SELECT 1 FROM inbox WHERE consumer = $1 AND message_id = $2 AND sender IN ($3, $4)",
            consumer,
            message_id,
            sender,
            LEGACY_SENDER,
        )
        return bool(rows)

    async def handled_republished(self, consumer: str, message_id: UUID, *, sender: str) -> bool:
        rows = await self._fetch(
            "SELECT 1 FROM inbox WHERE consumer = $1 AND message_id = $2 AND sender = $3 "
            "AND republished",
            consumer,
            message_id,
            sender,
        )
        return bool(rows)

    async def prune_inbox(self, before: datetime) -> int:
        rows = await self._fetch(
            "WITH gone AS (DELETE FROM inbox WHERE handled_at < $1 RETURNING 1) "
            "SELECT count(*) FROM gone",
            before,
        )
        return int(rows[0][0])

    async def mark_published(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        await self._fetch(
            "UPDATE outbox SET published_at = $1 WHERE id = ANY($2::bigint[]) "
            "AND published_at IS NULL",
            self._clock.now(),
            list(ids),
        )

    async def get_case(self, case_id: UUID) -> CaseRecord | None:
        rows = await self._fetch(f"SELECT {_CASE_COLUMNS} FROM cases WHERE case_id = $1", case_id)
        return _case(rows[0]) if rows else None

    async def history(self, case_id: UUID) -> list[Transition]:
        rows = await self._fetch(
            "SELECT case_id, seq, at, from_state, to_state, event, detail FROM transitions "
            "WHERE case_id = $1 ORDER BY seq",
            case_id,
        )
        return [
            Transition(
                case_id=row["case_id"],
                seq=row["seq"],
                at=row["at"],
                from_state=row["from_state"],
                to_state=row["to_state"],
                event=row["event"],
                detail=row["detail"],
            )
            for row in rows
        ]

    async def cases_by_state(self) -> dict[str, int]:
        rows = await self._fetch("SELECT state, COUNT(*) AS n FROM cases GROUP BY state")
        return {row["state"]: row["n"] for row in rows}

    async def cases_due_before(self, day: date) -> list[CaseRecord]:
        rows = await self._fetch(
            f"SELECT {_CASE_COLUMNS} FROM cases WHERE open AND due_date < $1 "
            "ORDER BY due_date, created_at",
            day,
        )
        return [_case(row) for row in rows]

    async def find_cases_by_person(self, person_key: str) -> list[CaseRecord]:
        rows = await self._fetch(
            f"SELECT {_CASE_COLUMNS} FROM cases WHERE person_key = $1 ORDER BY created_at",
            person_key,
        )
        return [_case(row) for row in rows]

    async def list_cases(
        self, *, open_only: bool = False, states: Collection[str] | None = None
    ) -> list[CaseRecord]:
        conditions: list[str] = []
        params: list[Any] = []
        if open_only:
            conditions.append("open")
        if states is not None:
            params.append(list(states))
            conditions.append(f"state = ANY(${len(params)}::text[])")
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        rows = await self._fetch(
            f"SELECT {_CASE_COLUMNS} FROM cases{where} ORDER BY created_at, case_id", *params
        )
        return [_case(row) for row in rows]

    async def held_messages(self) -> list[HeldMessage]:
        rows = await self._fetch(f"SELECT {_HELD_COLUMNS} FROM held_messages ORDER BY id")
        return [_held(row) for row in rows]

    async def schema_versions(self) -> list[int]:
        """The migrations applied to this schema, in order (for operators and tests)."""
        rows = await self._fetch("SELECT version FROM schema_version ORDER BY version")
        return [row["version"] for row in rows]

    async def close(self) -> None:
        await self._pool.close()
