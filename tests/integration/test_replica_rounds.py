"""Every replica of an agency runs the deadline round (`tick`, then `recover`): on one PostgreSQL
store and ledger, two services doing it at the same moment send one reminder per due step and
apply one ledger change per pending command.

The cases are made by the unit tier's world (`tests.unit.case_world`), copied into the PostgreSQL
store, and the two services share that store's schema and the PostgreSQL ledger, as two
``jiexu agent`` processes would.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from uuid import UUID

import asyncpg

from agents.domain.case import State, case_from_data
from agents.domain.clock import ManualClock
from agents.ledger.postgres import PostgresLedger
from agents.service.agency import AgencyService
from agents.store.postgres import PostgresStore
from tests.integration.test_agent_postgres import database_url  # noqa: F401 - the fixture
from tests.unit.case_world import (
    Agent,
    Books,
    WeekdayCalendar,
    World,
    agency,
    outgoing_account,
    person,
    receiving_account,
)

OUT, IN = "360400", "110000"
SCHEMA = f"agency_{IN}"


def _world() -> tuple[World, Agent, Agent]:
    who = person()
    calendar = WeekdayCalendar()
    receiving = Agent(agency(IN), Books(IN, {who.id_number: receiving_account(who, IN)}), calendar)
    outgoing = Agent(agency(OUT), Books(OUT, {who.id_number: outgoing_account(who, OUT)}), calendar)
    return World.of(receiving, outgoing), receiving, outgoing


async def _replicas(
    url: str, agent: Agent, clock: ManualClock, ledger: PostgresLedger | None = None
) -> tuple[list[AgencyService], list[PostgresStore]]:
    stores = [await PostgresStore.open(url, schema=SCHEMA, clock=clock) for _ in range(2)]
    services = [
        AgencyService(
            agency=agent.agency,
            store=store,
            ledger=ledger or agent.books.ledger,
            directory=agent.service.directory,
            calendar=agent.service.calendar,
            clock=clock,
            private_key=agent.service.private_key,
        )
        for store in stores
    ]
    return services, stores


async def _copy_case(agent: Agent, case_id: UUID, store: PostgresStore) -> None:
    record = await agent.store.get_case(case_id)
    assert record is not None
    async with store.transaction() as tx:
        await tx.save_case(dataclasses.replace(record, version=0))


async def _outbox_types(url: str) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(f"SELECT message_type FROM {SCHEMA}.outbox ORDER BY id")
    finally:
        await conn.close()
    return [row["message_type"] for row in rows]


async def test_two_replicas_ticking_at_once_send_one_reminder_per_due_step(
    database_url: str,  # noqa: F811
) -> None:
    _, receiving, _outgoing = _world()
    case_id = receiving.apply_for(person(), OUT, receiving.clock.today())
    receiving.outbox.clear()  # the letter is lost: the form never comes
    due = receiving.case(case_id).due_date
    assert due is not None
    overdue = due + timedelta(days=1)
    while overdue.weekday() >= 5:
        overdue += timedelta(days=1)
    clock = ManualClock(receiving.clock.now())
    clock.set_date(overdue)
    services, stores = await _replicas(database_url, receiving, clock)
    try:
        await _copy_case(receiving, case_id, stores[0])
        for _ in range(5):  # rounds of both replicas at the same moment, all on the same day
            ticked = await asyncio.gather(*(s.tick() for s in services))
            assert ticked == [1, 1]
        assert await _outbox_types(database_url) == ["reminder"]
        record = await stores[0].get_case(case_id)
        assert record is not None and case_from_data(record.data).reminders_sent == 1
    finally:
        for store in stores:
            await store.close()


async def test_two_replicas_recovering_at_once_apply_each_pending_command_once(
    database_url: str,  # noqa: F811
) -> None:
    world, receiving, _outgoing = _world()
    receiving.run_commands = False  # a crash after the decision, before its credit ran
    who = person()
    case_id = receiving.apply_for(who, OUT, world.today)
    world.pump()
    assert receiving.case(case_id).state is State.CREDITING
    clock = ManualClock(receiving.clock.now())
    ledger = await PostgresLedger.open(database_url, IN, clock=clock)
    try:
        await ledger.put_account(receiving_account(who, IN))
        services, stores = await _replicas(database_url, receiving, clock, ledger)
        try:
            await _copy_case(receiving, case_id, stores[0])
            recovered = await asyncio.gather(*(s.recover() for s in services))
            assert recovered == [1, 1]  # both saw it pending: the race this test is about
            record = await stores[1].get_case(case_id)
            assert record is not None and record.state == State.COMPLETED.value
            assert record.version == 2  # one result committed, the other replica saw it done
            assert await _outbox_types(database_url) == ["transfer_completed"]
            conn = await asyncpg.connect(database_url)
            try:
                ops = await conn.fetch(
                    "SELECT op, count(*) AS n FROM ledger_110000.ledger_ops WHERE case_id = $1 "
                    "GROUP BY op",
                    case_id,
                )
            finally:
                await conn.close()
            assert {row["op"]: row["n"] for row in ops} == {"credit": 1}
            statement = await ledger.statement(case_id)
            assert statement.months_credited > 0
            assert await asyncio.gather(*(s.recover() for s in services)) == [0, 0]
        finally:
            for store in stores:
                await store.close()
    finally:
        await ledger.close()
