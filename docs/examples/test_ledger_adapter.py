"""Proof that the example adapter keeps the ledger contract: subclass the shipped suite and say
how to make a ledger. Do the same for your own adapter before it goes live.

    pytest docs/examples/test_ledger_adapter.py
"""

from __future__ import annotations

from pathlib import Path
from uuid import uuid4

import pytest
from ledger_adapter import JsonFileLedger, open_books

from agents.domain.clock import SystemClock
from agents.ledger import LedgerPort
from agents.ledger.choice import LedgerContext, open_ledger
from agents.testing.ledger_contract import LedgerContract, person


class TestJsonFileLedger(LedgerContract):
    """The whole contract suite, run against the example."""

    @pytest.fixture(autouse=True)
    def _folder(self, tmp_path: Path) -> None:
        self.folder = tmp_path

    async def create_ledger(self, region: str) -> JsonFileLedger:
        context = LedgerContext(agency=region, clock=SystemClock(), path=self.folder / region / "ledger.db")
        return open_books(context)

    async def test_the_books_and_their_idempotency_survive_a_restart(self, tmp_path: Path) -> None:
        ledger = JsonFileLedger(tmp_path / "books.json", "110000")
        await ledger.put_account(person())
        case_id = uuid4()
        first = await ledger.terminate_and_debit(case_id, person().id_number, 1_000)
        reopened = JsonFileLedger(tmp_path / "books.json", "110000")
        again = await reopened.terminate_and_debit(case_id, person().id_number, 1_000)
        assert again == first and again.replayed
        assert await reopened.total_balance_fen() == person().balance_fen - 1_000


async def test_jiexu_ledger_names_it_as_module_and_factory(tmp_path: Path) -> None:
    ledger = await open_ledger(
        "ledger_adapter:open_books", agency="360400", path=tmp_path / "360400" / "ledger.db"
    )
    assert isinstance(ledger, JsonFileLedger) and isinstance(ledger, LedgerPort)
    assert ledger.path == tmp_path / "360400" / "core-books.json"
