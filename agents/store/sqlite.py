"""`SqliteStore`: the embedded store, one SQLite file per agency.

SQLite has one writer. Every transaction is ``BEGIN IMMEDIATE`` (it takes the write lock at the
start, so two writers queue instead of failing half-way with SQLITE_BUSY at their first write), and
an `asyncio.Lock` serialises this process's coroutines on its single connection: reads outside a
transaction take the lock too, so they never run inside someone else's open transaction.
WAL journal with ``synchronous=FULL``: a committed transaction survives a power cut, which matters
because the broker message is acked right after the commit.
"""

# S608: the only interpolated SQL fragments are this module's column-list constants; every
# value is a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import date
from pathlib import Path
from typing import Any
from uuid import UUID

import aiosqlite
import structlog

from agents.clock import Clock, SystemClock
from agents.store._codec import dumps, loads, mask_key, parse_ts, ts
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
from agents.store.migrations import migrate_sqlite
from schemas.errors import TransientError

__all__ = ["SqliteStore", "SqliteTransaction"]

log = structlog.get_logger(__name__)

_CASE_COLUMNS = (
    "case_id, role, state, person_key, counterpart, message_version, open, due_date, "
    "whose_turn, data, created_at, updated_at, version"
)
_OUTBOX_COLUMNS = (
    "id, message_id, recipient, message_type, routing_key, body, headers, created_at, published_at"
)


def _case(row: sqlite3.Row | tuple[Any, ...]) -> CaseRecord:
    return CaseRecord(
        case_id=UUID(row[0]),
        role=row[1],
        state=row[2],
        person_key=row[3],
        counterpart=row[4],
        message_version=row[5],
        open=bool(row[6]),
        due_date=date.fromisoformat(row[7]) if row[7] is not None else None,
        whose_turn=row[8],
        data=loads(row[9]),
        created_at=parse_ts(row[10]),
        updated_at=parse_ts(row[11]),
        version=row[12],
    )


def _outbox(row: sqlite3.Row | tuple[Any, ...]) -> OutboxMessage:
    return OutboxMessage(
        id=row[0],
        message_id=UUID(row[1]),
        recipient=row[2],
        message_type=row[3],
        routing_key=row[4],
        body=bytes(row[5]),
        headers=loads(row[6]),
        created_at=parse_ts(row[7]),
        published_at=parse_ts(row[8]) if row[8] is not None else None,
    )


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class SqliteTransaction:
    """The unit of work on a `SqliteStore` (see `agents.store.base.StoreTransaction`)."""

    def __init__(self, db: aiosqlite.Connection, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def _fetchone(self, sql: str, params: Sequence[Any]) -> Any:
        cursor = await self._db.execute(sql, params)
        return await cursor.fetchone()

    async def get_case(self, case_id: UUID) -> CaseRecord | None:
        row = await self._fetchone(
            f"SELECT {_CASE_COLUMNS} FROM cases WHERE case_id = ?", (str(case_id),)
        )
        return _case(row) if row is not None else None

    async def find_open_case(
        self, person_key: str, role: CaseRole | None = None
    ) -> CaseRecord | None:
        sql = f"SELECT {_CASE_COLUMNS} FROM cases WHERE person_key = ? AND open = 1"
        params: list[Any] = [person_key]
        if role is not None:
            sql += " AND role = ?"
            params.append(role)
        row = await self._fetchone(sql, params)
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
            int(record.open),
            record.due_date.isoformat() if record.due_date is not None else None,
            record.whose_turn,
            dumps(record.data),
            ts(record.created_at),
            ts(record.updated_at),
        )
        try:
            if record.version == 0:
                await self._db.execute(
                    f"INSERT INTO cases ({_CASE_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
                    (str(record.case_id), *values),
                )
            else:
                cursor = await self._db.execute(
                    "UPDATE cases SET role = ?, state = ?, person_key = ?, counterpart = ?, "
                    "message_version = ?, open = ?, due_date = ?, whose_turn = ?, data = ?, "
                    "created_at = ?, updated_at = ?, version = version + 1 "
                    "WHERE case_id = ? AND version = ?",
                    (*values, str(record.case_id), record.version),
                )
                if cursor.rowcount != 1:
                    raise ConcurrentCaseUpdate(
                        f"case {record.case_id} is no longer at version {record.version}"
                    )
        except sqlite3.IntegrityError as exc:
            # Which unique index fires first is the engine's choice: ask which rule was broken.
            if record.version == 0 and await self.get_case(record.case_id) is not None:
                raise ConcurrentCaseUpdate(f"case {record.case_id} already exists") from exc
            if "person_key" in str(exc):
                raise DuplicateOpenCase(mask_key(record.person_key)) from exc
            raise
        if transition is not None:
            await self._db.execute(
                "INSERT INTO transitions (case_id, seq, at, from_state, to_state, event, detail) "
                "SELECT ?, COALESCE(MAX(seq), 0) + 1, ?, ?, ?, ?, ? "
                "FROM transitions WHERE case_id = ?",
                (
                    str(transition.case_id),
                    ts(transition.at),
                    transition.from_state,
                    transition.to_state,
                    transition.event,
                    dumps(transition.detail),
                    str(transition.case_id),
                ),
            )
        stored = await self.get_case(record.case_id)
        assert stored is not None
        return stored

    async def add_outbox(self, messages: Sequence[OutboxMessage]) -> list[OutboxMessage]:
        added: list[OutboxMessage] = []
        for message in messages:
            cursor = await self._db.execute(
                "INSERT INTO outbox (message_id, recipient, message_type, routing_key, body, "
                "headers, created_at, published_at) VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
                (
                    str(message.message_id),
                    message.recipient,
                    message.message_type,
                    message.routing_key,
                    message.body,
                    dumps(message.headers),
                    ts(message.created_at),
                ),
            )
            row_id = cursor.lastrowid
            assert row_id is not None
            row = await self._fetchone(
                f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE id = ?", (row_id,)
            )
            added.append(_outbox(row))
        return added

    async def record_inbox(self, consumer: str, message_id: UUID) -> bool:
        cursor = await self._db.execute(
            "INSERT INTO inbox (consumer, message_id, handled_at) VALUES (?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            (consumer, str(message_id), ts(self._clock.now())),
        )
        return cursor.rowcount == 1

    async def claim_business_key(self, consumer: str, key: str) -> bool:
        cursor = await self._db.execute(
            "INSERT INTO business_keys (consumer, key, claimed_at) VALUES (?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            (consumer, key, ts(self._clock.now())),
        )
        return cursor.rowcount == 1

    async def hold_message(
        self, case_id: UUID, message_id: UUID, body: bytes, reason: str
    ) -> bool:
        cursor = await self._db.execute(
            "INSERT INTO held_messages (case_id, message_id, body, reason, held_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (str(case_id), str(message_id), body, reason, ts(self._clock.now())),
        )
        return cursor.rowcount == 1

    async def take_held(self, case_id: UUID) -> list[HeldMessage]:
        cursor = await self._db.execute(
            "SELECT case_id, message_id, body, reason, held_at FROM held_messages "
            "WHERE case_id = ? ORDER BY id",
            (str(case_id),),
        )
        rows = await cursor.fetchall()
        await self._db.execute("DELETE FROM held_messages WHERE case_id = ?", (str(case_id),))
        return [_held(row) for row in rows]


def _held(row: sqlite3.Row | tuple[Any, ...]) -> HeldMessage:
    return HeldMessage(
        case_id=UUID(row[0]),
        message_id=UUID(row[1]),
        body=bytes(row[2]),
        reason=row[3],
        held_at=parse_ts(row[4]),
    )


class SqliteStore:
    """The store on one SQLite file. Open with `await SqliteStore.open(path)`."""

    def __init__(self, db: aiosqlite.Connection, path: Path, clock: Clock) -> None:
        self._db = db
        self.path = path
        self._clock = clock
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str | Path, *, clock: Clock | None = None) -> SqliteStore:
        """Open (creating if needed) the store file and bring its schema up to date."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: no implicit transactions; this module issues BEGIN/COMMIT itself.
        db = await aiosqlite.connect(path, isolation_level=None)
        try:
            await db.execute("PRAGMA busy_timeout = 10000")
            await db.execute("PRAGMA journal_mode = WAL")
            await db.execute("PRAGMA synchronous = FULL")
            await db.execute("PRAGMA foreign_keys = ON")
            await migrate_sqlite(db)
        except BaseException:
            await db.close()
            raise
        return cls(db, path, clock if clock is not None else SystemClock())

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteTransaction]:
        async with self._lock:
            try:
                await self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if _is_busy(exc):
                    raise TransientError(f"store busy: {exc}") from exc
                raise
            try:
                yield SqliteTransaction(self._db, self._clock)
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise
            try:
                await self._db.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                await self._db.execute("ROLLBACK")
                if _is_busy(exc):
                    raise TransientError(f"store busy at commit: {exc}") from exc
                raise

    async def _fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        async with self._lock:
            cursor = await self._db.execute(sql, params)
            return list(await cursor.fetchall())

    async def fetch_unpublished(self, limit: int = 100) -> list[OutboxMessage]:
        rows = await self._fetchall(
            f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT ?",
            (limit,),
        )
        return [_outbox(row) for row in rows]

    async def has_handled(self, consumer: str, message_id: UUID) -> bool:
        rows = await self._fetchall(
            "SELECT 1 FROM inbox WHERE consumer = ? AND message_id = ?", (consumer, str(message_id))
        )
        return bool(rows)

    async def mark_published(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        async with self._lock:
            await self._db.executemany(
                "UPDATE outbox SET published_at = ? WHERE id = ? AND published_at IS NULL",
                [(ts(self._clock.now()), row_id) for row_id in ids],
            )

    async def get_case(self, case_id: UUID) -> CaseRecord | None:
        rows = await self._fetchall(
            f"SELECT {_CASE_COLUMNS} FROM cases WHERE case_id = ?", (str(case_id),)
        )
        return _case(rows[0]) if rows else None

    async def history(self, case_id: UUID) -> list[Transition]:
        rows = await self._fetchall(
            "SELECT case_id, seq, at, from_state, to_state, event, detail FROM transitions "
            "WHERE case_id = ? ORDER BY seq",
            (str(case_id),),
        )
        return [
            Transition(
                case_id=UUID(row[0]),
                seq=row[1],
                at=parse_ts(row[2]),
                from_state=row[3],
                to_state=row[4],
                event=row[5],
                detail=loads(row[6]),
            )
            for row in rows
        ]

    async def cases_by_state(self) -> dict[str, int]:
        rows = await self._fetchall("SELECT state, COUNT(*) FROM cases GROUP BY state")
        return {row[0]: row[1] for row in rows}

    async def cases_due_before(self, day: date) -> list[CaseRecord]:
        rows = await self._fetchall(
            f"SELECT {_CASE_COLUMNS} FROM cases WHERE open = 1 AND due_date IS NOT NULL "
            "AND due_date < ? ORDER BY due_date, created_at",
            (day.isoformat(),),
        )
        return [_case(row) for row in rows]

    async def find_cases_by_person(self, person_key: str) -> list[CaseRecord]:
        rows = await self._fetchall(
            f"SELECT {_CASE_COLUMNS} FROM cases WHERE person_key = ? ORDER BY created_at",
            (person_key,),
        )
        return [_case(row) for row in rows]

    async def list_cases(self, *, open_only: bool = False) -> list[CaseRecord]:
        where = " WHERE open = 1" if open_only else ""
        rows = await self._fetchall(
            f"SELECT {_CASE_COLUMNS} FROM cases{where} ORDER BY created_at, case_id"
        )
        return [_case(row) for row in rows]

    async def held_messages(self) -> list[HeldMessage]:
        rows = await self._fetchall(
            "SELECT case_id, message_id, body, reason, held_at FROM held_messages ORDER BY id"
        )
        return [_held(row) for row in rows]

    async def schema_versions(self) -> list[int]:
        """The migrations applied to this file, in order (for operators and tests)."""
        rows = await self._fetchall("SELECT version FROM schema_version ORDER BY version")
        return [row[0] for row in rows]

    async def close(self) -> None:
        async with self._lock:
            await self._db.close()
