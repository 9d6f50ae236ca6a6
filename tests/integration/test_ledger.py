"""The ledger contract (`agents.testing.LedgerContract`) on `SqliteLedger` (a real file), and
what only SQLite must do: survive a restart, seed in bulk, open a version-1 file."""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path
from uuid import uuid4

import pytest

from agents.ledger import SeedableLedger
from agents.ledger.sqlite import SqliteLedger
from agents.testing import LedgerContract
from agents.testing.ledger_contract import BROKEN, person
from agents.tools.seed import generate_people


class TestSqliteLedger(LedgerContract):
    @pytest.fixture(autouse=True)
    def _directory(self, tmp_path: Path) -> None:
        self.directory = tmp_path

    async def create_ledger(self, region: str) -> SeedableLedger:
        return await SqliteLedger.open(self.directory / f"ledger-{region}.sqlite3", region)

    async def test_idempotency_survives_a_restart(self, tmp_path: Path) -> None:
        path = tmp_path / "restart.sqlite3"
        ledger = await SqliteLedger.open(path, "110000")
        await ledger.put_account(person())
        case_id = uuid4()
        first = await ledger.terminate_and_debit(case_id, "11010519491231002X", 1_000)
        await ledger.close()
        reopened = await SqliteLedger.open(path, "110000")
        try:
            again = await reopened.terminate_and_debit(case_id, "11010519491231002X", 1_000)
            assert again == first and again.replayed
            assert await reopened.total_balance_fen() == 1_233_567
        finally:
            await reopened.close()

    async def test_bulk_seeding(self, tmp_path: Path) -> None:
        ledger = await SqliteLedger.open(tmp_path / "bulk.sqlite3", "320100")
        try:
            people = generate_people("320100", 300, random.Random(7))
            await ledger.put_accounts(people)
            assert await ledger.total_balance_fen() == sum(p.balance_fen for p in people)
            assert await ledger.lookup(people[123].id_number) == people[123]
        finally:
            await ledger.close()


# The ledger file as schema version 1 wrote it (before enrolment_start and continuity).
_V1_ACCOUNTS = """CREATE TABLE accounts (
    id_number TEXT PRIMARY KEY, name TEXT NOT NULL, gender TEXT NOT NULL,
    insurance_type TEXT NOT NULL CHECK (insurance_type IN ('310', '390')),
    enrolled INTEGER NOT NULL,
    participation TEXT NOT NULL CHECK (participation IN ('active', 'stopped')),
    region TEXT NOT NULL, arrears_fen INTEGER NOT NULL CHECK (arrears_fen >= 0),
    retiree INTEGER NOT NULL, months_paid INTEGER NOT NULL CHECK (months_paid >= 0),
    deemed_months INTEGER NOT NULL CHECK (deemed_months >= 0),
    balance_fen INTEGER NOT NULL CHECK (balance_fen >= 0), periods TEXT NOT NULL
)"""
_V1_OPS = """CREATE TABLE ledger_ops (
    case_id TEXT NOT NULL, op TEXT NOT NULL, id_number TEXT NOT NULL,
    amount_fen INTEGER NOT NULL, args TEXT NOT NULL, result TEXT NOT NULL, at TEXT NOT NULL,
    UNIQUE (case_id, op)
)"""


async def test_a_version_1_file_gains_the_new_columns_and_keeps_its_books(tmp_path: Path) -> None:
    path = tmp_path / "v1.sqlite3"
    old = person(region="440300", participation="active")
    credited = uuid4()
    old_result = {  # a credit's result as version 1 stored it: no continuity key
        "case_id": str(credited), "operation": "credit", "id_number": old.id_number,
        "months": 24, "deemed_months": 36, "amount_fen": 1_234_567, "retained_fen": 0,
        "balance_after_fen": 1_234_567, "periods": [p.to_json() for p in old.periods],
    }
    with sqlite3.connect(path) as db:
        db.execute(_V1_ACCOUNTS)
        db.execute(_V1_OPS)
        db.execute(
            "INSERT INTO accounts VALUES (?, ?, ?, ?, 1, ?, ?, 0, 0, ?, ?, ?, ?)",
            (
                old.id_number, old.name, old.gender.value, old.insurance_type.value,
                old.participation, old.region, old.months_paid, old.deemed_months,
                old.balance_fen, json.dumps([p.to_json() for p in old.periods]),
            ),
        )
        db.execute(
            "INSERT INTO ledger_ops VALUES (?, 'credit', ?, 1234567, '{}', ?, '2026-01-01')",
            (str(credited), old.id_number, json.dumps(old_result)),
        )
        db.execute("PRAGMA user_version = 1")
    db.close()

    for _ in range(2):  # opening again finds the columns there and changes nothing
        ledger = await SqliteLedger.open(path, "440300")
        try:
            assert await ledger.lookup(old.id_number) == old
            statement = await ledger.statement(credited)
            assert (statement.role, statement.amount_credited_fen) == ("receiving", 1_234_567)
        finally:
            await ledger.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (2,)
        columns = [row[1] for row in db.execute("PRAGMA table_info(accounts)")]
    db.close()
    assert columns[-2:] == ["enrolment_start", "continuity"]

    ledger = await SqliteLedger.open(path, "440300")
    try:
        entry = await ledger.credit(uuid4(), old.id_number, 1, 0, 100, continuity=BROKEN)
        assert entry.continuity == BROKEN
        account = await ledger.lookup(old.id_number)
        assert account is not None
        assert (account.enrolment_start, account.continuity) == ("2026-05", BROKEN)
    finally:
        await ledger.close()
