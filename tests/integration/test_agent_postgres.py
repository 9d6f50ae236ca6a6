"""The normal transfer with both agencies' stores on PostgreSQL (the production store).

Each run gets a database of its own: an agent keeps its cases in the schema ``agency_<code>``,
a fixed name, so a fresh database is what keeps runs (and other tests) apart. It is dropped,
schemas and all, afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from yarl import URL

from agents.domain.case import State
from agents.tools.provision import AgencyProfile
from broker.pytest_plugin import TestVhost
from tests.integration.agent_world import agent_world
from tests.integration.postgres_support import postgres_url

DONGGUAN, JIUJIANG = "441900", "360400"
EMPLOYEE: dict[str, Any] = {
    "insurance_type": "310",
    "arrears": False,
    "retiree": False,
    "zero_balance": False,
}


@pytest.fixture
async def database_url() -> AsyncIterator[str]:
    """A fresh database on the test server, dropped afterwards (skipped if unreachable, not in CI)."""
    server = postgres_url()
    try:
        admin = await asyncpg.connect(server, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        message = f"PostgreSQL at {server} is unreachable ({exc!r}); set JIEXU_TEST_POSTGRES_URL"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    name = f"jiexu_agents_{uuid.uuid4().hex[:12]}"
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        yield str(URL(server).with_path(f"/{name}"))
    finally:
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name)
        await admin.execute(f"DROP DATABASE IF EXISTS {name}")
        await admin.close()


async def test_a_normal_transfer_completes_with_both_stores_on_postgresql(
    rabbitmq_vhost: TestVhost, tmp_path: Path, database_url: str
) -> None:
    async with agent_world(
        rabbitmq_vhost, tmp_path, [AgencyProfile(DONGGUAN), AgencyProfile(JIUJIANG)]
    ) as world:
        await world.start(DONGGUAN, database_url=database_url)
        await world.start(JIUJIANG, database_url=database_url)
        out, _ = await world.mover(DONGGUAN, JIUJIANG, **EMPLOYEE)
        case_id = await world.apply(JIUJIANG, DONGGUAN, out)
        assert await world.wait_terminal(JIUJIANG, case_id) == State.COMPLETED
        assert await world.wait_terminal(DONGGUAN, case_id) == State.COMPLETED

        out_books = await world.ledger(DONGGUAN).statement(case_id)
        in_books = await world.ledger(JIUJIANG).statement(case_id)
        assert out_books.amount_debited_fen == in_books.amount_credited_fen == out.balance_fen > 0
        assert out_books.months_certified == in_books.months_credited == out.months_paid
        for code in (DONGGUAN, JIUJIANG):
            assert not world.provisioned.settings(code).store_path.exists()  # no SQLite store

        conn = await asyncpg.connect(database_url)
        try:
            for code, role in ((DONGGUAN, "outgoing"), (JIUJIANG, "receiving")):
                schema = f"agency_{code}"
                row = await conn.fetchrow(
                    f"SELECT role, state, open, whose_turn FROM {schema}.cases WHERE case_id = $1",
                    case_id,
                )
                assert row is not None, code
                assert dict(row) == {"role": role, "state": "completed", "open": False, "whose_turn": None}
                steps = await conn.fetch(
                    f"SELECT to_state FROM {schema}.transitions WHERE case_id = $1 ORDER BY seq", case_id
                )
                assert steps[-1]["to_state"] == "completed"
                assert ("crediting" if role == "receiving" else "releasing") in [s["to_state"] for s in steps]
                unpublished = await conn.fetchval(
                    f"SELECT count(*) FROM {schema}.outbox WHERE published_at IS NULL"
                )
                assert unpublished == 0, code
        finally:
            await conn.close()
