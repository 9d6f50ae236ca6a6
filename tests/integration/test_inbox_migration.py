"""Migration 2 keys the inbox by sender; rows recorded before it (sender unknown) still stop a
replay from any sender until retention prunes them. SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import asyncpg

from agents.store.base import Store
from agents.store.migrations import MIGRATIONS
from agents.store.postgres import PostgresStore
from agents.store.sqlite import SqliteStore
from tests.integration.postgres_support import PostgresSchema

B, C = "441900", "440300"


async def _legacy_row_counts_for_every_sender(store: Store, legacy: UUID) -> None:
    assert await store.schema_versions() == [m.version for m in MIGRATIONS]
    assert await store.has_handled("agent", legacy, sender=B)
    assert await store.has_handled("agent", legacy, sender=C)
    async with store.transaction() as tx:
        assert not await tx.record_inbox("agent", legacy, sender=B)
    fresh = uuid4()
    async with store.transaction() as tx:
        assert await tx.record_inbox("agent", fresh, sender=B)
        assert await tx.record_inbox("agent", fresh, sender=C)
    assert await store.prune_inbox(datetime.now(UTC) - timedelta(days=1)) == 1  # the legacy row
    assert not await store.has_handled("agent", legacy, sender=B)


async def test_sqlite_inbox_rows_from_before_migration_2_still_count(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    legacy = uuid4()
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, description TEXT NOT NULL, "
        "applied_at TEXT NOT NULL)"
    )
    for statement in MIGRATIONS[0].sqlite:
        db.execute(statement)
    db.execute("INSERT INTO schema_version VALUES (1, 'v1', '2026-01-01T00:00:00+00:00')")
    db.execute(
        "INSERT INTO inbox (consumer, message_id, handled_at) VALUES ('agent', ?, ?)",
        (str(legacy), "2026-01-01T00:00:00+00:00"),
    )
    db.commit()
    db.close()
    store = await SqliteStore.open(path)
    try:
        await _legacy_row_counts_for_every_sender(store, legacy)
    finally:
        await store.close()


async def test_postgres_inbox_rows_from_before_migration_2_still_count(
    postgres_schema: PostgresSchema,
) -> None:
    legacy = uuid4()
    conn = await asyncpg.connect(postgres_schema.url)
    try:
        await conn.execute(f"CREATE SCHEMA {postgres_schema.name}")
        await conn.execute(f"SET search_path TO {postgres_schema.name}")
        await conn.execute(
            "CREATE TABLE schema_version (version integer PRIMARY KEY, description text NOT NULL, "
            "applied_at timestamptz NOT NULL)"
        )
        for statement in MIGRATIONS[0].postgres:
            await conn.execute(statement)
        await conn.execute("INSERT INTO schema_version VALUES (1, 'v1', now())")
        await conn.execute(
            "INSERT INTO inbox (consumer, message_id, handled_at) VALUES ('agent', $1, $2)",
            legacy,
            datetime(2026, 1, 1, tzinfo=UTC),
        )
    finally:
        await conn.close()
    store = await PostgresStore.open(postgres_schema.url, schema=postgres_schema.name)
    try:
        await _legacy_row_counts_for_every_sender(store, legacy)
    finally:
        await store.close()
