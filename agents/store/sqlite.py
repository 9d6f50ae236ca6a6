"""`SqliteStore`: the embedded store, one SQLite file per agency.

SQLite has one writer. Units of work go through `agents.db.sqlite.SqliteDb`: each one runs
inside ``BEGIN IMMEDIATE`` ... ``COMMIT`` (the write lock is taken first, so two writers queue
instead of failing half-way with SQLITE_BUSY), its statements inline on the event loop, and units
that queue up while a commit is in flight share the next commit (group commit, one savepoint per
unit: a unit that fails rolls back alone). Reads outside a unit of work use a second connection and
see committed data only. WAL journal with ``synchronous=FULL``: a committed transaction survives a
power cut, which matters because the broker message is acked right after the commit — and a unit's
``async with`` returns only after that commit.
"""

# S608: the only interpolated SQL fragments are this module's column-list constants; every
# value is a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import structlog

from agents.db.codec import dumps, loads, mask_key, parse_ts, ts
from agents.db.sqlite import DEFAULT_MAX_GROUP, SqliteDb
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
from agents.store.migrations import LEGACY_SENDER, migrate_sqlite

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
        claims=row[9] if len(row) > 9 else 0,
    )


class SqliteTransaction:
    """The unit of work on a `SqliteStore` (see `agents.store.base.StoreTransaction`).

    Every statement runs inline on the writer connection, inside the unit's savepoint.
    """

    def __init__(self, db: sqlite3.Connection, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    def _all(self, sql: str, params: Sequence[Any]) -> list[Any]:
        cursor = self._db.execute(sql, params)
        try:
            return cursor.fetchall()
        finally:
            cursor.close()

    def _write(self, sql: str, params: Sequence[Any]) -> int:
        cursor = self._db.execute(sql, params)
        try:
            return cursor.rowcount
        finally:
            cursor.close()

    async def get_case(self, case_id: UUID) -> CaseRecord | None:
        rows = self._all(f"SELECT {_CASE_COLUMNS} FROM cases WHERE case_id = ?", (str(case_id),))
        return _case(rows[0]) if rows else None

    async def find_open_case(
        self, person_key: str, role: CaseRole | None = None
    ) -> CaseRecord | None:
        sql = f"SELECT {_CASE_COLUMNS} FROM cases WHERE person_key = ? AND open = 1"
        params: list[Any] = [person_key]
        if role is not None:
            sql += " AND role = ?"
            params.append(role)
        rows = self._all(sql, params)
        return _case(rows[0]) if rows else None

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
                self._write(
                    f"INSERT INTO cases ({_CASE_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
                    (str(record.case_id), *values),
                )
            elif self._write(
                "UPDATE cases SET role = ?, state = ?, person_key = ?, counterpart = ?, "
                "message_version = ?, open = ?, due_date = ?, whose_turn = ?, data = ?, "
                "created_at = ?, updated_at = ?, version = version + 1 "
                "WHERE case_id = ? AND version = ?",
                (*values, str(record.case_id), record.version),
            ) != 1:
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
            self._write(
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
        # What was written is what the caller gave, at the next version: no need to read it back.
        return replace(record, version=record.version + 1)

    async def add_outbox(self, messages: Sequence[OutboxMessage]) -> list[OutboxMessage]:
        added: list[OutboxMessage] = []
        for message in messages:
            rows = self._all(
                "INSERT INTO outbox (message_id, recipient, message_type, routing_key, body, "
                "headers, created_at, published_at) VALUES (?, ?, ?, ?, ?, ?, ?, NULL) "
                f"RETURNING {_OUTBOX_COLUMNS}",
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
            added.append(_outbox(rows[0]))
        return added

    async def record_inbox(
        self, consumer: str, message_id: UUID, *, sender: str, republished: bool = False
    ) -> bool:
        # A row from before migration 2 (sender unknown) counts for every sender.
        return self._write(
            "INSERT INTO inbox (consumer, sender, message_id, handled_at, republished) "
            "SELECT ?, ?, ?, ?, ? "
            "WHERE NOT EXISTS (SELECT 1 FROM inbox WHERE consumer = ? AND sender = ? "
            "AND message_id = ?) ON CONFLICT DO NOTHING",
            (
                consumer,
                sender,
                str(message_id),
                ts(self._clock.now()),
                int(republished),
                consumer,
                LEGACY_SENDER,
                str(message_id),
            ),
        ) == 1

    async def claim_business_key(self, consumer: str, key: str) -> bool:
        return self._write(
            "INSERT INTO business_keys (consumer, key, claimed_at) VALUES (?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            (consumer, key, ts(self._clock.now())),
        ) == 1

    async def hold_message(
        self, case_id: UUID, message_id: UUID, body: bytes, reason: str
    ) -> bool:
        return self._write(
            "INSERT INTO held_messages (case_id, message_id, body, reason, held_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (str(case_id), str(message_id), body, reason, ts(self._clock.now())),
        ) == 1

    async def take_held(self, case_id: UUID) -> list[HeldMessage]:
        rows = self._all(
            "SELECT case_id, message_id, body, reason, held_at FROM held_messages "
            "WHERE case_id = ? ORDER BY id",
            (str(case_id),),
        )
        if rows:
            self._write("DELETE FROM held_messages WHERE case_id = ?", (str(case_id),))
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

    def __init__(self, db: SqliteDb, clock: Clock) -> None:
        self._db = db
        self.path = db.path
        self._clock = clock

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        clock: Clock | None = None,
        synchronous: str = "FULL",
        max_group: int = DEFAULT_MAX_GROUP,
    ) -> SqliteStore:
        """Open (creating if needed) the store file and bring its schema up to date.

        ``synchronous``: SQLite's setting for the file; keep ``FULL`` (the default) wherever an
        acked message must survive a power cut. ``max_group``: units of work per commit at most.
        """
        db = await SqliteDb.open(
            path, setup=migrate_sqlite, synchronous=synchronous, max_group=max_group, name="store"
        )
        return cls(db, clock if clock is not None else SystemClock())

    def data_version(self) -> int:
        """SQLite's ``PRAGMA data_version`` on the reader connection: it changes whenever another
        connection commits to the file (another process's, or this store's own writer)."""
        return int(self._db.read("PRAGMA data_version")[0][0])

    async def watch_commits(
        self, on_change: Callable[[], None], *, floor_s: float = 0.005, ceiling_s: float = 0.05
    ) -> None:
        """Call ``on_change`` soon after any commit to the file, until cancelled or closed: the
        relay's wake, so that a row another process committed (``jiexu apply``) goes out within
        ``ceiling_s`` instead of at the relay's next poll. Checks ``data_version`` every
        ``floor_s`` right after a change, backing off to ``ceiling_s`` while nothing changes (a
        check is a read of the WAL index in shared memory: no disk I/O)."""
        try:
            last = self.data_version()
        except sqlite3.ProgrammingError:
            return
        delay = floor_s
        while True:
            await asyncio.sleep(delay)
            try:
                current = self.data_version()
            except sqlite3.ProgrammingError:  # closed
                return
            if current != last:
                last, delay = current, floor_s
                on_change()
            else:
                delay = min(delay * 2, ceiling_s)

    @property
    def commits(self) -> tuple[int, int]:
        """(database commits, units of work committed) since opening: how well commits group."""
        return self._db.commits, self._db.units

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteTransaction]:
        async with self._db.transaction() as conn:
            yield SqliteTransaction(conn, self._clock)

    def _fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return self._db.read(sql, params)

    async def fetch_unpublished(self, limit: int = 100) -> list[OutboxMessage]:
        rows = self._fetchall(
            f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT ?",
            (limit,),
        )
        return [_outbox(row) for row in rows]

    async def claim_unpublished(
        self, claimant: str, *, limit: int = 100, lease_s: float = 30.0
    ) -> list[OutboxMessage]:
        # One process per file, so no race between claimants; the lease is kept all the same,
        # so the method means what it means on PostgreSQL. The writer's lock serialises claims.
        now = self._clock.now()
        async with self._db.transaction() as conn:
            rows = conn.execute(
                f"UPDATE outbox SET claimed_by = ?, claimed_until = ?, claims = claims + 1 "
                f"WHERE id IN (SELECT id FROM outbox WHERE published_at IS NULL "
                f"AND (claimed_until IS NULL OR claimed_until <= ? OR claimed_by = ?) "
                f"ORDER BY id LIMIT ?) RETURNING {_OUTBOX_COLUMNS}, claims - 1",
                (claimant, ts(now + timedelta(seconds=lease_s)), ts(now), claimant, limit),
            ).fetchall()
        return sorted((_outbox(row) for row in rows), key=lambda m: m.id)

    async def has_handled(self, consumer: str, message_id: UUID, *, sender: str) -> bool:
        rows = self._fetchall(
            "SELECT 1 FROM inbox WHERE consumer = ? AND message_id = ? AND sender IN (?, ?)",
            (consumer, str(message_id), sender, LEGACY_SENDER),
        )
        return bool(rows)

    async def handled_republished(self, consumer: str, message_id: UUID, *, sender: str) -> bool:
        rows = self._fetchall(
            "SELECT 1 FROM inbox WHERE consumer = ? AND message_id = ? AND sender = ? "
            "AND republished = 1",
            (consumer, str(message_id), sender),
        )
        return bool(rows)

    async def prune_inbox(self, before: datetime) -> int:
        async with self._db.transaction() as conn:
            return conn.execute("DELETE FROM inbox WHERE handled_at < ?", (ts(before),)).rowcount

    async def mark_published(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        stamp = ts(self._clock.now())
        async with self._db.transaction() as conn:
            conn.executemany(
                "UPDATE outbox SET published_at = ? WHERE id = ? AND published_at IS NULL",
                [(stamp, row_id) for row_id in ids],
            )

    async def get_case(self, case_id: UUID) -> CaseRecord | None:
        rows = self._fetchall(
            f"SELECT {_CASE_COLUMNS} FROM cases WHERE case_id = ?", (str(case_id),)
        )
        return _case(rows[0]) if rows else None

    async def history(self, case_id: UUID) -> list[Transition]:
        rows = self._fetchall(
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
        rows = self._fetchall("SELECT state, COUNT(*) FROM cases GROUP BY state")
        return {row[0]: row[1] for row in rows}

    async def cases_due_before(self, day: date) -> list[CaseRecord]:
        rows = self._fetchall(
            f"SELECT {_CASE_COLUMNS} FROM cases WHERE open = 1 AND due_date IS NOT NULL "
            "AND due_date < ? ORDER BY due_date, created_at",
            (day.isoformat(),),
        )
        return [_case(row) for row in rows]

    async def find_cases_by_person(self, person_key: str) -> list[CaseRecord]:
        rows = self._fetchall(
            f"SELECT {_CASE_COLUMNS} FROM cases WHERE person_key = ? ORDER BY created_at",
            (person_key,),
        )
        return [_case(row) for row in rows]

    async def list_cases(
        self, *, open_only: bool = False, states: Collection[str] | None = None
    ) -> list[CaseRecord]:
        conditions: list[str] = []
        params: list[Any] = []
        if open_only:
            conditions.append("open = 1")
        if states is not None:
            if not states:
                return []
            conditions.append(f"state IN ({', '.join('?' for _ in states)})")
            params.extend(states)
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        rows = self._fetchall(
            f"SELECT {_CASE_COLUMNS} FROM cases{where} ORDER BY created_at, case_id", params
        )
        return [_case(row) for row in rows]

    async def held_messages(self) -> list[HeldMessage]:
        rows = self._fetchall(
            "SELECT case_id, message_id, body, reason, held_at FROM held_messages ORDER BY id"
        )
        return [_held(row) for row in rows]

    async def schema_versions(self) -> list[int]:
        """The migrations applied to this file, in order (for operators and tests)."""
        rows = self._fetchall("SELECT version FROM schema_version ORDER BY version")
        return [row[0] for row in rows]

    async def close(self) -> None:
        await self._db.close()
