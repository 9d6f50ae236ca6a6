"""What the PostgreSQL adapters (store, ledger, reconciliation report) share: the errors a retry
may cure, the check of a schema name, and ``LISTEN`` (the store and the report wake their relays
this way when another process commits outbox rows: the committing transaction says ``NOTIFY``)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable

import asyncpg

__all__ = ["TRANSIENT", "check_schema", "listen_until_cancelled"]

TRANSIENT: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.TooManyConnectionsError,
)
"""Errors that a retry may cure: lost connections, deadlocks, serialization failures, shutdown."""

_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def check_schema(schema: str) -> str:
    """`schema`, if it is a lower-case SQL identifier (it is put into SQL text); else ValueError."""
    if not _SCHEMA_RE.match(schema):
        raise ValueError(f"schema must be a lower-case SQL identifier, not {schema!r}")
    return schema


async def listen_until_cancelled(pool: asyncpg.Pool, channel: str, on_change: Callable[[], None]) -> None:
    """Hold one pooled connection listening on `channel`; `on_change` on each notification."""

    def notified(*_args: object) -> None:
        on_change()

    async with pool.acquire() as conn:
        await conn.add_listener(channel, notified)
        try:
            await asyncio.Event().wait()
        finally:
            with contextlib.suppress(Exception):
                await conn.remove_listener(channel, notified)
