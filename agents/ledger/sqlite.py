"""`SqliteLedger`: an agency's books in their own SQLite file (separate from the store).

Idempotency: ``ledger_ops`` has one row per ``(case_id, op)`` (UNIQUE), holding the first result.
Each operation runs in one unit of work (`agents.db.sqlite.SqliteDb`: ``BEGIN IMMEDIATE``,
group commit, a savepoint per unit) that reads that row, and if absent changes the account and
inserts the row, so the balance change and its idempotency key commit or vanish together. An
operation returns only after its commit (WAL, ``synchronous=FULL``).

Schema version (``PRAGMA user_version``) 2 added ``accounts.enrolment_start`` (``YYYY-MM``) and
``accounts.continuity`` (the last credit's continuity decision, JSON); opening a version-1 file adds
them (``ALTER TABLE ... ADD COLUMN`` for each column not there yet, NULL for existing people).
"""

# S608: the only interpolated SQL fragment is this module's column-list constant.
# ruff: noqa: S608

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

from agents.db.codec import ts
from agents.db.sqlite import SqliteDb
from agents.domain.books import continuity_from_json, continuity_to_json
from agents.domain.clock import Clock, SystemClock
from agents.faults import crash_point
from agents.ledger.base import (
    LedgerEntry,
    LedgerOperation,
    LedgerPeriod,
    LedgerStatement,
    PersonAccount,
    statement_from_entries,
)
from agents.ledger.books import (
    BookkeepingCommands,
    apply_pay_out,
    warn_if_args_differ,
)

__all__ = ["SqliteLedger"]

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS accounts (
        id_number TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        gender TEXT NOT NULL,
        insurance_type TEXT NOT NULL CHECK (insurance_type IN ('310', '390')),
        -- gender: 'male' | 'female' (schemas.common.Gender)
        enrolled INTEGER NOT NULL,
        participation TEXT NOT NULL CHECK (participation IN ('active', 'stopped')),
        region TEXT NOT NULL,
        arrears_fen INTEGER NOT NULL CHECK (arrears_fen >= 0),
        retiree INTEGER NOT NULL,
        months_paid INTEGER NOT NULL CHECK (months_paid >= 0),
        deemed_months INTEGER NOT NULL CHECK (deemed_months >= 0),
        balance_fen INTEGER NOT NULL CHECK (balance_fen >= 0),
        periods TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS ledger_ops (
        case_id TEXT NOT NULL,
        op TEXT NOT NULL,
        id_number TEXT NOT NULL,
        amount_fen INTEGER NOT NULL,
        args TEXT NOT NULL,
        result TEXT NOT NULL,
        at TEXT NOT NULL,
        UNIQUE (case_id, op)
    )""",
    """CREATE TABLE IF NOT EXISTS payouts (
        case_id TEXT PRIMARY KEY,
        id_number TEXT NOT NULL,
        amount_fen INTEGER NOT NULL CHECK (amount_fen >= 0),
        bank_account TEXT NOT NULL,
        at TEXT NOT NULL
    )""",
)
# Columns added after version 1, in order: added to an older file when it is opened.
_ADDED_COLUMNS = (
    ("enrolment_start", "TEXT"),  # version 2: YYYY-MM or NULL
    ("continuity", "TEXT"),  # version 2: agents.domain.continuity.Continuity as JSON, or NULL
)
_LEDGER_SCHEMA_VERSION = 2

_ACCOUNT_COLUMNS = (
    "id_number, name, gender, insurance_type, enrolled, participation, region, arrears_fen, "
    "retiree, months_paid, deemed_months, balance_fen, periods, enrolment_start, continuity"
)
_ACCOUNT_VALUES = "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _account(row: Sequence[Any]) -> PersonAccount:
    return PersonAccount(
        id_number=row[0],
        name=row[1],
        gender=row[2],
        insurance_type=row[3],
        enrolled=bool(row[4]),
        participation=row[5],
        region=row[6],
        arrears_fen=row[7],
        retiree=bool(row[8]),
        months_paid=row[9],
        deemed_months=row[10],
        balance_fen=row[11],
        periods=tuple(LedgerPeriod.from_json(p) for p in json.loads(row[12])),
        enrolment_start=row[13],
        continuity=continuity_from_json(row[14]),
    )


def _account_values(account: PersonAccount) -> tuple[Any, ...]:
    return (
        account.id_number,
        account.name,
        account.gender.value,
        account.insurance_type.value,
        int(account.enrolled),
        account.participation,
        account.region,
        account.arrears_fen,
        int(account.retiree),
        account.months_paid,
        account.deemed_months,
        account.balance_fen,
        _dumps([p.to_json() for p in account.periods]),
        account.enrolment_start,
        None if account.continuity is None else _dumps(continuity_to_json(account.continuity)),
    )


def _setup(db: sqlite3.Connection) -> None:
    db.execute("BEGIN IMMEDIATE")
    try:
        for statement in _SCHEMA:
            db.execute(statement)
        present = {row[1] for row in db.execute("PRAGMA table_info(accounts)").fetchall()}
        for column, kind in _ADDED_COLUMNS:
            if column not in present:
                db.execute(f"ALTER TABLE accounts ADD COLUMN {column} {kind}")
        db.execute(f"PRAGMA user_version = {_LEDGER_SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _load(db: sqlite3.Connection, id_number: str) -> PersonAccount | None:
    rows = db.execute(
        f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE id_number = ?", (id_number,)
    ).fetchall()
    return _account(rows[0]) if rows else None


class SqliteLedger(BookkeepingCommands):
    """A `SeedableLedger` on one SQLite file. Open with `await SqliteLedger.open(path, region)`."""

    def __init__(self, db: SqliteDb, region: str, clock: Clock) -> None:
        self._db = db
        self.path = db.path
        self.region = region
        self._clock = clock

    @classmethod
    async def open(
        cls, path: str | Path, region: str, *, clock: Clock | None = None
    ) -> SqliteLedger:
        db = await SqliteDb.open(path, setup=_setup, name="ledger")
        return cls(db, region, clock if clock is not None else SystemClock())

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = self._db.read(sql, params)
        return rows[0] if rows else None

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return self._db.read(sql, params)

    async def _run(
        self,
        case_id: UUID,
        op: LedgerOperation,
        id_number: str,
        args: dict[str, Any],
        apply: Callable[[PersonAccount | None], tuple[PersonAccount, LedgerEntry]],
        after: Callable[[sqlite3.Connection, LedgerEntry], Any] | None = None,
    ) -> LedgerEntry:
        async with self._db.transaction() as db:
            rows = db.execute(
                "SELECT args, result FROM ledger_ops WHERE case_id = ? AND op = ?",
                (str(case_id), op),
            ).fetchall()
            if rows:
                entry = LedgerEntry.from_json(json.loads(rows[0][1]), replayed=True)
                warn_if_args_differ(entry, json.loads(rows[0][0]), args)
                return entry
            account, entry = apply(_load(db, id_number))
            db.execute(
                f"INSERT OR REPLACE INTO accounts ({_ACCOUNT_COLUMNS}) {_ACCOUNT_VALUES}",
                _account_values(account),
            )
            db.execute(
                "INSERT INTO ledger_ops (case_id, op, id_number, amount_fen, args, result, at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    str(case_id),
                    op,
                    id_number,
                    entry.amount_fen,
                    _dumps(args),
                    _dumps(entry.to_json()),
                    ts(self._clock.now()),
                ),
            )
            if after is not None:
                after(db, entry)
            crash_point("mid_ledger_transaction")
            return entry

    async def put_account(self, account: PersonAccount) -> None:
        async with self._db.transaction() as db:
            db.execute(
                f"INSERT OR REPLACE INTO accounts ({_ACCOUNT_COLUMNS}) {_ACCOUNT_VALUES}",
                _account_values(account),
            )

    async def put_accounts(self, accounts: Sequence[PersonAccount]) -> None:
        """Seed many accounts in one transaction."""
        async with self._db.transaction() as db:
            db.executemany(
                f"INSERT OR REPLACE INTO accounts ({_ACCOUNT_COLUMNS}) {_ACCOUNT_VALUES}",
                [_account_values(account) for account in accounts],
            )

    async def lookup(self, id_number: str) -> PersonAccount | None:
        row = self._one(
            f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE id_number = ?", (id_number,)
        )
        return _account(row) if row is not None else None

    async def pay_out(
        self, case_id: UUID, id_number: str, amount_fen: int, bank_account: Mapping[str, Any]
    ) -> LedgerEntry:
        def record_payout(db: sqlite3.Connection, entry: LedgerEntry) -> None:
            db.execute(
                "INSERT INTO payouts (case_id, id_number, amount_fen, bank_account, at) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    str(case_id),
                    id_number,
                    entry.amount_fen,
                    _dumps(dict(bank_account)),
                    ts(self._clock.now()),
                ),
            )

        return await self._run(
            case_id,
            "pay_out",
            id_number,
            {"id_number": id_number, "amount_fen": amount_fen, "bank_account": dict(bank_account)},
            lambda account: apply_pay_out(account, case_id, amount_fen),
            record_payout,
        )

    async def statement(self, case_id: UUID) -> LedgerStatement:
        rows = self._all("SELECT result FROM ledger_ops WHERE case_id = ?", (str(case_id),))
        return statement_from_entries(
            case_id, [LedgerEntry.from_json(json.loads(row[0])) for row in rows]
        )

    async def statements(self) -> list[LedgerStatement]:
        rows = self._all("SELECT case_id, result FROM ledger_ops ORDER BY case_id")
        by_case: dict[UUID, list[LedgerEntry]] = {}
        for row in rows:
            by_case.setdefault(UUID(row[0]), []).append(LedgerEntry.from_json(json.loads(row[1])))
        return [
            statement_from_entries(cid, entries)
            for cid, entries in sorted(by_case.items(), key=lambda item: str(item[0]))
        ]

    async def _sum(self, sql: str) -> int:
        row = self._one(sql)
        return int(row[0]) if row is not None and row[0] is not None else 0

    async def total_balance_fen(self) -> int:
        return await self._sum("SELECT SUM(balance_fen) FROM accounts")

    async def total_paid_out_fen(self) -> int:
        return await self._sum("SELECT SUM(amount_fen) FROM payouts")

    async def total_debited_fen(self) -> int:
        return await self._sum(
            "SELECT SUM(amount_fen) FROM ledger_ops WHERE op = 'terminate_and_debit'"
        )

    async def total_credited_fen(self) -> int:
        return await self._sum("SELECT SUM(amount_fen) FROM ledger_ops WHERE op = 'credit'")

    async def close(self) -> None:
        await self._db.close()
