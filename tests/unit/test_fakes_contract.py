"""The in-memory fakes pass the contract suites the real adapters pass."""

from __future__ import annotations

from agents.ledger import SeedableLedger
from agents.store import Store
from agents.testing import InMemoryLedger, InMemoryStore, LedgerContract, StoreContract


class TestInMemoryLedger(LedgerContract):
    async def create_ledger(self, region: str) -> SeedableLedger:
        return InMemoryLedger(region)


class TestInMemoryStore(StoreContract):
    _store: InMemoryStore | None = None

    async def create_store(self) -> Store:
        # The store is its own database: opening it again within a test is the same object.
        if self._store is None:
            self._store = InMemoryStore(clock=self.clock)
        return self._store
