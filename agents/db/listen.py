"""PostgreSQL ``LISTEN``: call back on every notification of a channel until cancelled.

The store and the reconciliation report wake their relays this way when another process commits
outbox rows (the committing transaction says ``NOTIFY``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import asyncpg

__all__ = ["listen_until_cancelled"]


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
