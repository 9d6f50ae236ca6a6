"""Versioned schema migrations, applied when a store opens.

One list of migrations, each with the SQL for SQLite and for PostgreSQL: the same logical schema in
two dialects. `schema_version` records what has been applied; opening a store applies what is
missing, each migration in its own transaction together with its `schema_version` row, so a crash
half-way leaves a consistent, resumable schema. Reopening applies nothing. Never edit a migration
that has shipped: append a new one.

Dialect mapping: UUID -> TEXT (SQLite) / uuid; timestamps -> ISO 8601 TEXT in UTC / timestamptz;
dates -> ISO TEXT / date; JSON -> TEXT / jsonb; bytes -> BLOB / bytea; booleans -> INTEGER 0/1 /
boolean.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    import sqlite3

    import asyncpg
    from asyncpg.pool import PoolConnectionProxy

__all__ = [
    "LEGACY_SENDER",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Migration",
    "migrate_postgres",
    "migrate_sqlite",
]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    sqlite: tuple[str, ...]
    postgres: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "cases, history, outbox, inbox, business keys, held messages",
        sqlite=(
            """CREATE TABLE cases (
                case_id TEXT PRIMARY KEY,
                role TEXT NOT NULL CHECK (role IN ('outgoing', 'receiving')),
                state TEXT NOT NULL,
                person_key TEXT NOT NULL,
                counterpart TEXT NOT NULL,
                message_version INTEGER NOT NULL,
                open INTEGER NOT NULL CHECK (open IN (0, 1)),
                due_date TEXT,
                whose_turn TEXT,
                data TEXT NOT NULL,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                version INTEGER NOT NULL
            )""",
            "CREATE UNIQUE INDEX cases_one_open_per_person ON cases (person_key) WHERE open = 1",
            "CREATE INDEX cases_person ON cases (person_key, created_at)",
            "CREATE INDEX cases_open_due ON cases (due_date) WHERE open = 1",
            """CREATE TABLE transitions (
                case_id TEXT NOT NULL REFERENCES cases (case_id),
                seq INTEGER NOT NULL,
                at TEXT NOT NULL,
                from_state TEXT,
                to_state TEXT NOT NULL,
                event TEXT NOT NULL,
                detail TEXT NOT NULL,
                PRIMARY KEY (case_id, seq)
            )""",
            """CREATE TABLE outbox (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                message_id TEXT NOT NULL UNIQUE,
                recipient TEXT NOT NULL,
                message_type TEXT NOT NULL,
                routing_key TEXT NOT NULL,
                body BLOB NOT NULL,
                headers TEXT NOT NULL,
                created_at TEXT NOT NULL,
                published_at TEXT
            )""",
            "CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL",
            """CREATE TABLE inbox (
                consumer TEXT NOT NULL,
                message_id TEXT NOT NULL,
                handled_at TEXT NOT NULL,
                PRIMARY KEY (consumer, message_id)
            )""",
            """CREATE TABLE business_keys (
                consumer TEXT NOT NULL,
                key TEXT NOT NULL,
                claimed_at TEXT NOT NULL,
                PRIMARY KEY (consumer, key)
            )""",
            """CREATE TABLE held_messages (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                case_id TEXT NOT NULL,
                message_id TEXT NOT NULL,
                body BLOB NOT NULL,
                reason TEXT NOT NULL,
                held_at TEXT NOT NULL,
                UNIQUE (case_id, message_id)
            )""",
        ),
        postgres=(
            """CREATE TABLE cases (
                case_id uuid PRIMARY KEY,
                role text NOT NULL CHECK (role IN ('outgoing', 'receiving')),
                state text NOT NULL,
                person_key text NOT NULL,
                counterpart text NOT NULL,
                message_version integer NOT NULL,
                open boolean NOT NULL,
                due_date date,
                whose_turn text,
                data jsonb NOT NULL,
                created_at timestamptz NOT NULL,
                updated_at timestamptz NOT NULL,
                version integer NOT NULL
            )""",
            "CREATE UNIQUE INDEX cases_one_open_per_person ON cases (person_key) WHERE open",
            "CREATE INDEX cases_person ON cases (person_key, created_at)",
            "CREATE INDEX cases_open_due ON cases (due_date) WHERE open",
            """CREATE TABLE transitions (
                case_id uuid NOT NULL REFERENCES cases (case_id),
                seq integer NOT NULL,
                at timestamptz NOT NULL,
                from_state text,
                to_state text NOT NULL,
                event text NOT NULL,
                detail jsonb NOT NULL,
                PRIMARY KEY (case_id, seq)
            )""",
            """CREATE TABLE outbox (
                id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                message_id uuid NOT NULL UNIQUE,
                recipient text NOT NULL,
                message_type text NOT NULL,
                routing_key text NOT NULL,
                body bytea NOT NULL,
                headers jsonb NOT NULL,
                created_at timestamptz NOT NULL,
                published_at timestamptz
            )""",
            "CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL",
            """CREATE TABLE inbox (
                consumer text NOT NULL,
                message_id uuid NOT NULL,
                handled_at timestamptz NOT NULL,
                PRIMARY KEY (consumer, message_id)
            )""",
            """CREATE TABLE business_keys (
                consumer text NOT NULL,
                key text NOT NULL,
                claimed_at timestamptz NOT NULL,
                PRIMARY KEY (consumer, key)
            )""",
            """CREATE TABLE held_messages (
                id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                case_id uuid NOT NULL,
                message_id uuid NOT NULL,
                body bytea NOT NULL,
                reason text NOT NULL,
                held_at timestamptz NOT NULL,
                UNIQUE (case_id, message_id)
            )""",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        2,
        "inbox keyed by (consumer, sender, message_id); handled_at indexed for retention",
        # Rows from before this migration have sender '' (unknown): they count as handled for any
        # sender (the store checks both) until retention prunes them.
        sqlite=(
            """CREATE TABLE inbox_v2 (
                consumer TEXT NOT NULL,
                sender TEXT NOT NULL,
                message_id TEXT NOT NULL,
                handled_at TEXT NOT NULL,
                PRIMARY KEY (consumer, sender, message_id)
            )""",
            "INSERT INTO inbox_v2 (consumer, sender, message_id, handled_at) "
            "SELECT consumer, '', message_id, handled_at FROM inbox",
            "DROP TABLE inbox",
            "ALTER TABLE inbox_v2 RENAME TO inbox",
            "CREATE INDEX inbox_handled_at ON inbox (handled_at)",
        ),
        postgres=(
            "ALTER TABLE inbox ADD COLUMN sender text NOT NULL DEFAULT ''",
            "ALTER TABLE inbox ALTER COLUMN sender DROP DEFAULT",
            "ALTER TABLE inbox DROP CONSTRAINT inbox_pkey",
            "ALTER TABLE inbox ADD PRIMARY KEY (consumer, sender, message_id)",
            "CREATE INDEX inbox_handled_at ON inbox (handled_at)",
        ),
    ),
    # Never edit a migration once shipped: append.
    Migration(
        3,
        "outbox claims: which relay holds a row, until when, how often it was claimed",
        sqlite=(
            "ALTER TABLE outbox ADD COLUMN claimed_by TEXT",
            "ALTER TABLE outbox ADD COLUMN claimed_until TEXT",
            "ALTER TABLE outbox ADD COLUMN claims INTEGER NOT NULL DEFAULT 0",
        ),
        postgres=(
            "ALTER TABLE outbox ADD COLUMN claimed_by text",
            "ALTER TABLE outbox ADD COLUMN claimed_until timestamptz",
            "ALTER TABLE outbox ADD COLUMN claims integer NOT NULL DEFAULT 0",
        ),
    ),
    Migration(
        4,
        "inbox: whether the copy handled came marked republished (its late original is stale)",
        sqlite=(
            "ALTER TABLE inbox ADD COLUMN republished INTEGER NOT NULL DEFAULT 0 "
            "CHECK (republished IN (0, 1))",
        ),
        postgres=("ALTER TABLE inbox ADD COLUMN republished boolean NOT NULL DEFAULT false",),
    ),
)

LEGACY_SENDER = ""
"""The inbox's sender for rows recorded before migration 2: they match every sender."""

SCHEMA_VERSION = MIGRATIONS[-1].version

_SQLITE_VERSION_TABLE = """CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at TEXT NOT NULL
)"""
_POSTGRES_VERSION_TABLE = """CREATE TABLE IF NOT EXISTS schema_version (
    version integer PRIMARY KEY,
    description text NOT NULL,
    applied_at timestamptz NOT NULL
)"""
# Any constant will do: it only has to be the same for every replica opening the same database.
_POSTGRES_MIGRATION_LOCK = 0x6A6965787500  # "jiexu\0"


def migrate_sqlite(db: sqlite3.Connection) -> list[int]:
    """Apply the missing migrations to a SQLite database (an autocommit connection, called on the
    thread that owns it).

    Returns the versions applied now (empty when the schema was already current).
    """
    applied: list[int] = []
    for migration in MIGRATIONS:
        # BEGIN IMMEDIATE takes the write lock first, so two processes opening the same file
        # cannot both decide a migration is missing.
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(_SQLITE_VERSION_TABLE)
            done = db.execute(
                "SELECT 1 FROM schema_version WHERE version = ?", (migration.version,)
            ).fetchall()
            if not done:
                for statement in migration.sqlite:
                    db.execute(statement)
                db.execute(
                    "INSERT INTO schema_version (version, description, applied_at) "
                    "VALUES (?, ?, ?)",
                    (
                        migration.version,
                        migration.description,
                        datetime.now(UTC).isoformat(),
                    ),
                )
                applied.append(migration.version)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    if applied:
        log.info("store.migrated", dialect="sqlite", versions=applied)
    return applied


async def migrate_postgres(
    conn: asyncpg.Connection | PoolConnectionProxy[asyncpg.Record],
) -> list[int]:
    """Apply the missing migrations in the connection's current schema (its search_path)."""
    applied: list[int] = []
    for migration in MIGRATIONS:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _POSTGRES_MIGRATION_LOCK)
            await conn.execute(_POSTGRES_VERSION_TABLE)
            done = await conn.fetchval(
                "SELECT 1 FROM schema_version WHERE version = $1", migration.version
            )
            if done is None:
                for statement in migration.postgres:
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_version (version, description, applied_at) "
                    "VALUES ($1, $2, now())",
                    migration.version,
                    migration.description,
                )
                applied.append(migration.version)
    if applied:
        log.info("store.migrated", dialect="postgres", versions=applied)
    return applied
