"""The store contract (`agents.testing.StoreContract`) on SQLite files and PostgreSQL, and what only
one adapter must do: SQLite's WAL file and shared writer, PostgreSQL's schemas."""

from __future__ import annotations

import asyncio
from pathlib import Path
from uuid import uuid4

import asyncpg
import pytest

from agents.store import Store
from agents.store.postgres import PostgresStore
from agents.store.sqlite import SqliteStore
from agents.testing import StoreContract
from agents.testing.store_contract import make_case
from tests.integration.postgres_support import PostgresSchema


class TestSqliteStore(StoreContract):
    @pytest.fixture(autouse=True)
    def _database(self, tmp_path: Path) -> None:
        self.path = tmp_path / "agencies" / "440300.sqlite3"

    async def create_store(self) -> Store:
        return await SqliteStore.open(self.path, clock=self.clock)

    async def test_the_file_is_in_wal_mode(self, store: Store) -> None:
        assert isinstance(store, SqliteStore)
        async with store.transaction():
            pass
        assert store.path.with_name(store.path.name + "-wal").exists()

    async def test_two_stores_on_one_file_share_one_writer(self) -> None:
        a, b = await self.create_store(), await self.create_store()
        try:
            message_id = uuid4()

            async def deliver(store: Store) -> bool:
                async with store.transaction() as tx:
                    return await tx.record_inbox("agent", message_id, sender="441900")

            assert sorted(await asyncio.gather(deliver(a), deliver(b))) == [False, True]
        finally:
            await a.close()
            await b.close()


class TestPostgresStore(StoreContract):
    @pytest.fixture(autouse=True)
    def _database(self, postgres_schema: PostgresSchema) -> None:
        self.schema = postgres_schema

    async def create_store(self) -> Store:
        return await PostgresStore.open(
            self.schema.url, schema=self.schema.name, clock=self.clock, max_size=5
        )

    async def test_two_schemas_do_not_see_each_other(self, store: Store) -> None:
        other = await PostgresStore.open(self.schema.url, schema=self.schema.name + "_b")
        try:
            async with other.transaction() as tx:
                await tx.save_case(make_case())
            assert await store.list_cases() == []
        finally:
            await other.close()
            conn = await asyncpg.connect(self.schema.url)
            await conn.execute(f"DROP SCHEMA IF EXISTS {self.schema.name}_b CASCADE")
            await conn.close()
