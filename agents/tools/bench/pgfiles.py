"""`PostgresWorldFiles`: the queries of `agents.tools.bench.files.WorldFiles` on a bench world whose
stores and ledgers are in PostgreSQL (``agency_<code>`` and ``ledger_<code>`` schemas of one
database), and so is the reconciler's report (schema ``reconcile_000000``). One connection, kept
until `close`.
"""

# S608: the interpolated fragments are schema names made from 6-digit agency codes.
# ruff: noqa: S608

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
from yarl import URL

from agents.reconcile.stores import report_schema
from agents.service.paths import Paths
from agents.tools.bench.files import WorldFiles
from broker.names import RECONCILER_CODE

__all__ = ["PostgresWorldFiles", "create_database", "drop_database"]


async def create_database(server: str, name: str) -> str:
    """Make database ``name`` on ``server`` (a DSN); returns the new database's DSN."""
    admin = await asyncpg.connect(server)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    return str(URL(server).with_path(f"/{name}"))


async def drop_database(server: str, dsn: str) -> None:
    """Drop the database ``dsn`` names, disconnecting whoever is still on it."""
    name = URL(dsn).path.lstrip("/")
    admin = await asyncpg.connect(server)
    try:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
        )
        await admin.execute(f"DROP DATABASE IF EXISTS {name}")
    finally:
        await admin.close()


_REPORT = report_schema(RECONCILER_CODE)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


class PostgresWorldFiles(WorldFiles):
    """`WorldFiles` over PostgreSQL stores, ledgers and report (``dsn``)."""

    def __init__(self, paths: Paths, codes: Sequence[str], dsn: str) -> None:
        super().__init__(paths, codes)
        self.codes = list(codes)
        self.dsn = dsn
        self._conn: asyncpg.Connection | None = None

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        # One connection for the world's whole life: the bench polls often, and a connection
        # per poll costs the server a process start each time.
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(self.dsn)
        try:
            return list(await self._conn.fetch(sql, *args))
        except asyncpg.UndefinedTableError:
            return []  # not created yet: the agents have not opened their stores

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def _each_store(self, sql: str) -> list[asyncpg.Record]:
        return [row for code in self.codes for row in await self._fetch(sql.format(s=f"agency_{code}"))]

    async def open_receiving(self) -> int:
        rows = await self._each_store(
            "SELECT COUNT(*) AS n FROM {s}.cases WHERE open AND role = 'receiving'"
        )
        return sum(int(r["n"]) for r in rows)

    async def progress(self, *, complete: bool = False) -> dict[str, int]:
        totals = {"open_receiving": 0, "open": 0, "unpublished": 0}
        for row in await self._each_store(
            "SELECT (SELECT COUNT(*) FROM {s}.cases WHERE open AND role = 'receiving') AS a, "
            "(SELECT COUNT(*) FROM {s}.cases WHERE open) AS b, "
            "(SELECT COUNT(*) FROM {s}.outbox WHERE published_at IS NULL) AS c"
        ):
            for key, value in zip(totals, (row["a"], row["b"], row["c"]), strict=True):
                totals[key] += int(value or 0)
        unsent = await self._fetch(f"SELECT COUNT(*) AS n FROM {_REPORT}.outbox WHERE sent_at IS NULL")
        totals["reconciler_unsent"] = int(unsent[0]["n"] or 0) if unsent else 0
        if complete:
            rows = await self._each_store(
                "SELECT COUNT(*) AS n FROM {s}.cases WHERE role = 'outgoing'"
            )
            reconciled = await self._fetch(
                f"SELECT COUNT(*) AS n FROM {_REPORT}.cases WHERE status != 'open'"
            )
            totals["outgoing_cases"] = sum(int(r["n"]) for r in rows)
            totals["reconciled"] = int(reconciled[0]["n"] or 0) if reconciled else 0
        return totals

    async def cases(self) -> dict[str, dict[uuid.UUID, tuple[str, str | None, str, str]]]:
        result: dict[str, dict[uuid.UUID, tuple[str, str | None, str, str]]] = {}
        for code in self.codes:
            rows = await self._fetch(
                f"SELECT case_id, state, data->>'rejection_reason' AS reason, created_at, "
                f"updated_at FROM agency_{code}.cases"
            )
            result[code] = {
                r["case_id"]: (r["state"], r["reason"], r["created_at"].isoformat(),
                               r["updated_at"].isoformat())
                for r in rows
            }
        return result

    async def first_publish(self) -> str | None:
        stamps = [
            r["t"] for r in await self._each_store("SELECT MIN(published_at) AS t FROM {s}.outbox")
        ]
        return _iso(min((t for t in stamps if t is not None), default=None))

    async def published(self) -> tuple[int, int, str | None]:
        agents, last = 0, None
        for row in await self._each_store(
            "SELECT COUNT(*) AS n, MAX(published_at) AS t FROM {s}.outbox "
            "WHERE published_at IS NOT NULL"
        ):
            agents += int(row["n"] or 0)
            latest = _iso(row["t"])
            last = max(filter(None, (last, latest)), default=None)
        reconciler = 0
        for row in await self._fetch(
            f"SELECT COUNT(*) AS n, MAX(sent_at) AS t FROM {_REPORT}.outbox WHERE sent_at IS NOT NULL"
        ):
            reconciler += int(row["n"] or 0)
            last = max(filter(None, (last, _iso(row["t"]))), default=None)
        return agents, reconciler, last

    async def reconciled(self) -> dict[str, int]:
        rows = await self._fetch(f"SELECT status, COUNT(*) AS n FROM {_REPORT}.cases GROUP BY status")
        return {str(r["status"]): int(r["n"]) for r in rows}

    async def money(self) -> tuple[int, int]:
        balance = paid = 0
        for code in self.codes:
            for row in await self._fetch(
                f"SELECT (SELECT COALESCE(SUM(balance_fen), 0) FROM ledger_{code}.accounts) AS b, "
                f"(SELECT COALESCE(SUM(amount_fen), 0) FROM ledger_{code}.payouts) AS p"
            ):
                balance += int(row["b"])
                paid += int(row["p"])
        return balance, paid
