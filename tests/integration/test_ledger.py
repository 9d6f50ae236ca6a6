"""The ledger contract (`agents.testing.LedgerContract`) on `SqliteLedger` (a real file), and
what only SQLite must do: survive a restart, seed in bulk."""

from __future__ import annotations

import random
from pathlib import Path
from uuid import uuid4

import pytest

from agents.ledger import SeedableLedger
from agents.ledger.sqlite import SqliteLedger
from agents.testing import LedgerContract
from agents.testing.ledger_contract import person
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
