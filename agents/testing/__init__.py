"""What an agency uses in its own test suite: the store and ledger contract suites and in-memory
fakes that pass them.

    from agents.testing import LedgerContract, StoreContract

    class TestOurLedger(LedgerContract):
        async def create_ledger(self, region: str) -> SeedableLedger: ...

    class TestOurStore(StoreContract):
        async def create_store(self) -> Store: ...

The suites need pytest and pytest-asyncio (the ``test`` extra); the fakes alone
(`agents.testing.fakes`) need neither. For pytest's detailed assertion messages, call
``pytest.register_assert_rewrite("agents.testing")`` in your conftest.py before importing them.
"""

from agents.testing.fakes import InMemoryLedger, InMemoryStore
from agents.testing.ledger_contract import LedgerContract
from agents.testing.store_contract import StoreContract

__all__ = ["InMemoryLedger", "InMemoryStore", "LedgerContract", "StoreContract"]
