"""`PostgresLedger`: an agency's books in PostgreSQL, shared by every replica of its agent.

The reference adapter for production (``JIEXU_LEDGER=postgres``). Same guarantees as
`SqliteLedger`: every change is idempotent per ``(case_id, operation)``, and the idempotency row
commits in the same transaction as the balance change, or neither does.

Schema per agency: the tables live in their own PostgreSQL schema (default ``ledger_<code>``,
apart from the store's ``agency_<code>``: the books are the agency's, the store is the
exchange's; both may share one database or not), set as the pool's ``search_path``.

Several replicas (processes, machines) may call at once. One operation is one transaction:

1. **Claim the key.** ``INSERT INTO ledger_ops (case_id, op, ...) ON CONFLICT DO NOTHING``. The
   unique key ``(case_id, op)`` decides who applies: a second replica inserting the same key
   waits on the first one's uncommitted row; when the first commits, the second's insert does
   nothing and it returns the stored result (``replayed=True``); when the first rolls back (a
   refusal, a crash) the second's insert goes through and it applies the operation itself.
2. **Lock the person.** ``SELECT ... FROM accounts WHERE id_number = $1 FOR UPDATE``: different
   cases touching the same person (a credit and a terminate, two terminates) take turns, so no
   update is lost and ``RelationshipEnded`` is seen by the second.
3. Apply the pure bookkeeping rule (`agents.ledger.books`), write the account, fill in the
   claimed row's result (and the payout), commit.

A person not yet in the books (a credit that enrols) has no row to lock; two cases enrolling the
same person at once both insert, the primary key on ``accounts`` refuses the second, which then
runs its transaction again and finds the account. Lost connections, deadlocks and serialization
failures are raised as `TransientError` (the caller retries; the key makes that harmless).

Schema versions (``ledger_schema_version``: a row for each version the schema was opened at; a
new schema starts at the current one): 2 added
``accounts.enrolment_start`` (``YYYY-MM``) and ``accounts.continuity`` (jsonb, the last credit's
continuity decision); opening a version-1 schema adds them (``ADD COLUMN IF NOT EXISTS``, NULL for
the people already there) under the setup lock, and records version 2.
"""

# S608: the only interpolated SQL fragments are this module's column-list constant and the
# schema name, checked against a strict identifier pattern; every value is a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias
from uuid import UUID

import asyncpg
import structlog

from agents.db.codec import dumps, loads
from agents.db.postgres import TRANSIENT, check_schema
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
from schemas.errors import TransientError

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    _Connection: TypeAlias = asyncpg.Connection | PoolConnectionProxy[asyncpg.Record]

__all__ = ["PostgresLedger", "default_ledger_schema"]

log = structlog.get_logger(__name__)

# One lock id for "set up a ledger schema", so replicas starting together do not race on DDL.
_SETUP_LOCK = 0x6A69_6578_756C_6467  # "jiexuldg"
_LEDGER_SCHEMA_VERSION = 2
# A new person enrolled by two cases at once: the loser reruns; more than this is a bug.
_ENROL_RETRIES = 5

_TABLES = (
    """CREATE TABLE IF NOT EXISTS ledger_schema_version (
        version integer PRIMARY KEY,
        applied_at timestamptz NOT NULL DEFAULT now()
    )""",
    """CREATE TABLE IF NOT EXISTS accounts (
        id_number text PRIMARY KEY,
        name text NOT NULL,
        gender text NOT NULL CHECK (gender IN ('male', 'female')),
        insurance_type text NOT NULL CHECK (insurance_type IN ('310', '390')),
        enrolled boolean NOT NULL,
        participation text NOT NULL CHECK (participation IN ('active', 'stopped')),
        region text NOT NULL,
        arrears_fen bigint NOT NULL CHECK (arrears_fen >= 0),
        retiree boolean NOT NULL,
        months_paid integer NOT NULL CHECK (months_paid >= 0),
        deemed_months integer NOT NULL CHECK (deemed_months >= 0),
        balance_fen bigint NOT NULL CHECK (balance_fen >= 0),
        periods jsonb NOT NULL
    )""",
    # Version 2: the start of the current participation and the last credit's continuity.
    "ALTER TABLE accounts ADD COLUMN IF NOT EXISTS enrolment_start text",
    "ALTER TABLE accounts ADD COLUMN IF NOT EXISTS continuity jsonb",
    # result is NULL only inside the transaction that claimed the key; it is set before commit.
    """CREATE TABLE IF NOT EXISTS ledger_ops (
        case_id uuid NOT NULL,
        op text NOT NULL
            CHECK (op IN ('terminate_and_debit', 'credit', 'pay_out')),
        id_number text NOT NULL,
        amount_fen bigint NOT NULL DEFAULT 0,
        args jsonb NOT NULL,
        result jsonb,
        at timestamptz NOT NULL,
        PRIMARY KEY (case_id, op)
    )""",
    "CREATE INDEX IF NOT EXISTS ledger_ops_by_op ON ledger_ops (op)",
    """CREATE TABLE IF NOT EXISTS payouts (
        case_id uuid PRIMARY KEY,
        id_number text NOT NULL,
        amount_fen bigint NOT NULL CHECK (amount_fen >= 0),
        bank_account jsonb NOT NULL,
        at timestamptz NOT NULL
    )""",
)

_ACCOUNT_COLUMNS = (
    "id_number, name, gender, insurance_type, enrolled, participation, region, arrears_fen, "
    "retiree, months_paid, deemed_months, balance_fen, periods, enrolment_start, continuity"
)
_VALUES = "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
_UPSERT_ACCOUNT = (
    f"INSERT INTO accounts ({_ACCOUNT_COLUMNS}) {_VALUES} "
    "ON CONFLICT (id_number) DO UPDATE SET name = EXCLUDED.name, gender = EXCLUDED.gender, "
    "insurance_type = EXCLUDED.insurance_type, enrolled = EXCLUDED.enrolled, "
    "participation = EXCLUDED.participation, region = EXCLUDED.region, "
    "arrears_fen = EXCLUDED.arrears_fen, retiree = EXCLUDED.retiree, "
    "months_paid = EXCLUDED.months_paid, deemed_months = EXCLUDED.deemed_months, "
    "balance_fen = EXCLUDED.balance_fen, periods = EXCLUDED.periods, "
    "enrolment_start = EXCLUDED.enrolment_start, continuity = EXCLUDED.continuity"
)
_INSERT_ACCOUNT = f"INSERT INTO accounts ({_ACCOUNT_COLUMNS}) {_VALUES}"
_UPDATE_ACCOUNT = (
    "UPDATE accounts SET name = $2, gender = $3, insurance_type = $4, enrolled = $5, "
    "participation = $6, region = $7, arrears_fen = $8, retiree = $9, months_paid = $10, "
    "deemed_months = $11, balance_fen = $12, periods = $13, enrolment_start = $14, "
    "continuity = $15 WHERE id_number = $1"
)


def default_ledger_schema(agency: str) -> str:
    """The PostgreSQL schema an agency's books live in unless told otherwise."""
    return f"ledger_{agency}"


def _account(row: asyncpg.Record) -> PersonAccount:
    return PersonAccount(
        id_number=row["id_number"],
        name=row["name"],
        gender=row["gender"],
        insurance_type=row["insurance_type"],
        enrolled=row["enrolled"],
        participation=row["participation"],
        region=row["region"],
        arrears_fen=row["arrears_fen"],
        retiree=row["retiree"],
        months_paid=row["months_paid"],
        deemed_months=row["deemed_months"],
        balance_fen=row["balance_fen"],
        periods=tuple(LedgerPeriod.from_json(p) for p in row["periods"]["periods"]),
        enrolment_start=row["enrolment_start"],
        continuity=continuity_from_json(row["continuity"]),
    )


def _account_values(account: PersonAccount) -> tuple[Any, ...]:
    return (
        account.id_number,
        account.name,
        account.gender.value,
        account.insurance_type.value,
        account.enrolled,
        account.participation,
        account.region,
        account.arrears_fen,
        account.retiree,
        account.months_paid,
        account.deemed_months,
        account.balance_fen,
        # jsonb goes through the pool's object codec; wrap the list so it is one.
        {"periods": [p.to_json() for p in account.periods]},
        account.enrolment_start,
        continuity_to_json(account.continuity),
    )


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "jsonb", schema="pg_catalog", encoder=dumps, decoder=loads, format="text"
    )
    await conn.set_type_codec(
        "json", schema="pg_catalog", encoder=json.dumps, decoder=json.loads, format="text"
    )


async def _at_version(admin: asyncpg.Connection, schema: str) -> bool:
    """Has `schema` recorded this build's ledger schema version?"""
    exists = await admin.fetchval("SELECT to_regclass($1)", f"{schema}.ledger_schema_version")
    if exists is None:
        return False
    found = await admin.fetchval(
        f"SELECT 1 FROM {schema}.ledger_schema_version WHERE version = $1", _LEDGER_SCHEMA_VERSION
    )
    return found is not None


class PostgresLedger(BookkeepingCommands):
    """A `SeedableLedger` in one PostgreSQL schema. Open with
    ``await PostgresLedger.open(dsn, region)``; any number of processes may open the same one."""

    def __init__(self, pool: asyncpg.Pool, schema: str, region: str, clock: Clock) -> None:
        self._pool = pool
        self.schema = schema
        self.region = region
        self._clock = clock

    @classmethod
    async def open(
        cls,
        dsn: str,
        region: str,
        *,
        schema: str | None = None,
        clock: Clock | None = None,
        min_size: int = 1,
        max_size: int = 10,
    ) -> PostgresLedger:
        """Connect, create the schema (default ``ledger_<region>``) and its tables if needed."""
        schema = schema if schema is not None else default_ledger_schema(region)
        check_schema(schema)
        try:
            admin = await asyncpg.connect(dsn)
            try:
                async with admin.transaction():
                    await admin.execute("SELECT pg_advisory_xact_lock($1)", _SETUP_LOCK)
                    await admin.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
                    await admin.execute(f"SET LOCAL search_path = {schema}")
                    # A ledger already at this version is left alone: its DDL, even "IF NOT
                    # EXISTS", would lock tables that running replicas use (ALTER TABLE takes an
                    # ACCESS EXCLUSIVE lock), and deadlock with them.
                    if not await _at_version(admin, schema):
                        for statement in _TABLES:
                            await admin.execute(statement)
                    await admin.execute(
                        "INSERT INTO ledger_schema_version (version) VALUES ($1) "
                        "ON CONFLICT DO NOTHING",
                        _LEDGER_SCHEMA_VERSION,
                    )
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
            raise TransientError(f"cannot reach the ledger's PostgreSQL: {exc}") from exc
        return cls(pool, schema, region, clock if clock is not None else SystemClock())

    # -- the idempotent changes ------------------------------------------------------------------

    async def _run(
        self,
        case_id: UUID,
        op: LedgerOperation,
        id_number: str,
        args: dict[str, Any],
        apply: Callable[[PersonAccount | None], tuple[PersonAccount, LedgerEntry]],
        after: Callable[[_Connection, LedgerEntry], Awaitable[None]] | None = None,
    ) -> LedgerEntry:
        for attempt in range(1, _ENROL_RETRIES + 1):
            try:
                return await self._run_once(case_id, op, id_number, args, apply, after)
            except asyncpg.UniqueViolationError as exc:
                # Only "accounts_pkey" can fire here (the key claim never conflicts): another
                # case enrolled this person meanwhile. Run again; the account is there now.
                if exc.constraint_name != "accounts_pkey" or attempt == _ENROL_RETRIES:
                    raise
                log.info("ledger.enrol_race", case_id=str(case_id), operation=op, attempt=attempt)
            except TRANSIENT as exc:
                raise TransientError(f"ledger unavailable: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _run_once(
        self,
        case_id: UUID,
        op: LedgerOperation,
        id_number: str,
        args: dict[str, Any],
        apply: Callable[[PersonAccount | None], tuple[PersonAccount, LedgerEntry]],
        after: Callable[[_Connection, LedgerEntry], Awaitable[None]] | None,
    ) -> LedgerEntry:
        async with self._pool.acquire() as conn, conn.transaction():
            claimed = await conn.execute(
                "INSERT INTO ledger_ops (case_id, op, id_number, args, at) "
                "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (case_id, op) DO NOTHING",
                case_id,
                op,
                id_number,
                args,
                self._clock.now(),
            )
            if claimed != "INSERT 0 1":
                row = await conn.fetchrow(
                    "SELECT args, result FROM ledger_ops WHERE case_id = $1 AND op = $2",
                    case_id,
                    op,
                )
                assert row is not None and row["result"] is not None
                entry = LedgerEntry.from_json(row["result"], replayed=True)
                warn_if_args_differ(entry, row["args"], args)
                return entry
            row = await conn.fetchrow(
                f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE id_number = $1 FOR UPDATE",
                id_number,
            )
            before = _account(row) if row is not None else None
            account, entry = apply(before)
            await conn.execute(
                _INSERT_ACCOUNT if before is None else _UPDATE_ACCOUNT,
                *_account_values(account),
            )
            await conn.execute(
                "UPDATE ledger_ops SET amount_fen = $3, result = $4 WHERE case_id = $1 AND op = $2",
                case_id,
                op,
                entry.amount_fen,
                entry.to_json(),
            )
            if after is not None:
                await after(conn, entry)
            crash_point("mid_ledger_transaction")
            return entry

    async def pay_out(
        self, case_id: UUID, id_number: str, amount_fen: int, bank_account: Mapping[str, Any]
    ) -> LedgerEntry:
        async def record_payout(conn: _Connection, entry: LedgerEntry) -> None:
            await conn.execute(
                "INSERT INTO payouts (case_id, id_number, amount_fen, bank_account, at) "
                "VALUES ($1, $2, $3, $4, $5)",
                case_id,
                id_number,
                entry.amount_fen,
                dict(bank_account),
                self._clock.now(),
            )

        return await self._run(
            case_id,
            "pay_out",
            id_number,
            {"id_number": id_number, "amount_fen": amount_fen, "bank_account": dict(bank_account)},
            lambda account: apply_pay_out(account, case_id, amount_fen),
            record_payout,
        )

    # -- reads -----------------------------------------------------------------------------------

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        try:
            return list(await self._pool.fetch(sql, *args))
        except TRANSIENT as exc:
            raise TransientError(f"ledger unavailable: {exc}") from exc

    async def lookup(self, id_number: str) -> PersonAccount | None:
        rows = await self._fetch(
            f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE id_number = $1", id_number
        )
        return _account(rows[0]) if rows else None

    async def statement(self, case_id: UUID) -> LedgerStatement:
        rows = await self._fetch(
            "SELECT result FROM ledger_ops WHERE case_id = $1 AND result IS NOT NULL", case_id
        )
        return statement_from_entries(case_id, [LedgerEntry.from_json(r["result"]) for r in rows])

    async def close(self) -> None:
        await self._pool.close()

    # -- SeedableLedger: seeding, listing, totals ------------------------------------------------

    async def put_account(self, account: PersonAccount) -> None:
        await self.put_accounts([account])

    async def put_accounts(self, accounts: Sequence[PersonAccount]) -> None:
        """Insert or replace many accounts in one transaction (seeding and import only)."""
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.executemany(_UPSERT_ACCOUNT, [_account_values(a) for a in accounts])
        except TRANSIENT as exc:
            raise TransientError(f"ledger unavailable: {exc}") from exc

    async def statements(self) -> list[LedgerStatement]:
        rows = await self._fetch(
            "SELECT case_id, result FROM ledger_ops WHERE result IS NOT NULL ORDER BY case_id"
        )
        by_case: dict[UUID, list[LedgerEntry]] = {}
        for row in rows:
            by_case.setdefault(row["case_id"], []).append(LedgerEntry.from_json(row["result"]))
        return [
            statement_from_entries(cid, entries)
            for cid, entries in sorted(by_case.items(), key=lambda item: str(item[0]))
        ]

    async def _sum(self, sql: str) -> int:
        rows = await self._fetch(sql)
        value = rows[0][0] if rows else None
        return int(value) if value is not None else 0

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
