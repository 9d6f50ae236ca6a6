"""Read-only queries on a bench world's SQLite files (plain sqlite3 on a worker thread, committed
data only): progress while the flow runs, the outcomes, messages and money once it is over."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agents.service.paths import Paths

__all__ = ["WorldFiles"]


class WorldFiles:
    """Read-only queries on a world's SQLite files; every call opens, reads and closes."""

    def __init__(self, paths: Paths, codes: Sequence[str]) -> None:
        self.stores = {code: paths.store(code) for code in codes}
        self.ledgers = {code: paths.ledger(code) for code in codes}
        self.report = paths.report()

    @staticmethod
    def _query(path: Path, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if not path.exists():
            return []
        db = sqlite3.connect(path, timeout=30.0)
        try:
            return list(db.execute(sql, params).fetchall())
        finally:
            db.close()

    async def query(self, path: Path, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return await asyncio.to_thread(self._query, path, sql, params)

    async def open_receiving(self) -> int:
        """Applications still open at their receiving agencies (cheap: the open cases' index)."""
        total = 0
        for path in self.stores.values():
            for (count,) in await self.query(
                path, "SELECT COUNT(*) FROM cases WHERE open = 1 AND role = 'receiving'"
            ):
                total += int(count or 0)
        return total

    async def progress(self, *, complete: bool = False) -> dict[str, int]:
        """Open cases (receiving, all), unpublished outbox rows, the reconciler's unsent envelopes;
        with ``complete`` also the cases that reached an outgoing agency and the reconciled ones
        (those two scan whole tables: asked only once the rest says the flow is over)."""
        totals = {"open_receiving": 0, "open": 0, "unpublished": 0}
        for path in self.stores.values():
            rows = await self.query(
                path,
                "SELECT (SELECT COUNT(*) FROM cases WHERE open = 1 AND role = 'receiving'), "
                "(SELECT COUNT(*) FROM cases WHERE open = 1), "
                "(SELECT COUNT(*) FROM outbox WHERE published_at IS NULL)",
            )
            if rows:
                for key, value in zip(totals, rows[0], strict=True):
                    totals[key] += int(value or 0)
        unsent = await self.query(self.report, "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL")
        totals["reconciler_unsent"] = int(unsent[0][0] or 0) if unsent else 0
        if complete:
            outgoing = 0
            for path in self.stores.values():
                for (count,) in await self.query(
                    path, "SELECT COUNT(*) FROM cases WHERE role = 'outgoing'"
                ):
                    outgoing += int(count or 0)
            reconciled = await self.query(
                self.report, "SELECT COUNT(*) FROM cases WHERE status != 'open'"
            )
            totals["outgoing_cases"] = outgoing
            totals["reconciled"] = int(reconciled[0][0] or 0) if reconciled else 0
        return totals

    async def cases(self) -> dict[str, dict[uuid.UUID, tuple[str, str | None, str, str]]]:
        """Per agency: case id -> (state, rejection reason, created_at, updated_at)."""
        result: dict[str, dict[uuid.UUID, tuple[str, str | None, str, str]]] = {}
        for code, path in self.stores.items():
            rows = await self.query(
                path,
                "SELECT case_id, state, json_extract(data, '$.rejection_reason'), created_at, "
                "updated_at FROM cases",
            )
            result[code] = {uuid.UUID(r[0]): (r[1], r[2], r[3], r[4]) for r in rows}
        return result

    async def first_publish(self) -> str | None:
        """When the first agent published its first message (a drain's real start)."""
        first: str | None = None
        for path in self.stores.values():
            for (earliest,) in await self.query(path, "SELECT MIN(published_at) FROM outbox"):
                first = min(filter(None, (first, earliest)), default=None)
        return first

    async def published(self) -> tuple[int, int, str | None]:
        """(agents' published outbox rows, the reconciler's sent envelopes, the last stamp)."""
        agents, last = 0, None
        for path in self.stores.values():
            for count, latest in await self.query(
                path, "SELECT COUNT(*), MAX(published_at) FROM outbox WHERE published_at IS NOT NULL"
            ):
                agents += int(count or 0)
                last = max(filter(None, (last, latest)), default=None)
        reconciler = 0
        for count, latest in await self.query(
            self.report, "SELECT COUNT(*), MAX(sent_at) FROM outbox WHERE sent_at IS NOT NULL"
        ):
            reconciler += int(count or 0)
            last = max(filter(None, (last, latest)), default=None)
        return agents, reconciler, last

    async def money(self) -> tuple[int, int]:
        """(total balance, total paid out) over every agency's ledger, in fen."""
        balance = paid = 0
        for path in self.ledgers.values():
            for b, p in await self.query(
                path,
                "SELECT (SELECT COALESCE(SUM(balance_fen), 0) FROM accounts), "
                "(SELECT COALESCE(SUM(amount_fen), 0) FROM payouts)",
            ):
                balance += int(b)
                paid += int(p)
        return balance, paid

    async def reconciled(self) -> dict[str, int]:
        rows = await self.query(self.report, "SELECT status, COUNT(*) FROM cases GROUP BY status")
        return {str(status): int(count) for status, count in rows}
