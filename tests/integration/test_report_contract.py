"""The reconciler's report on SQLite and on PostgreSQL: the same answers from the same history, and
what only a shared PostgreSQL report must do (several reconcilers on one schema, issue 12).

The first tests run on both backends (`tests.integration.report_support.BACKENDS`; the logic
tests in test_reconcile_logic.py do too). The others open two `PostgresReport` on one schema, one
per reconciler process, and race them: units of work on the same case, the same message twice, the
sweep of the same overdue case, the outbox claimed by two relays.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import asyncpg
import pytest

from agents.domain.clock import ManualClock
from agents.reconcile.figures import take_exchange_figures
from agents.reconcile.outbox import ReportOutbox
from agents.reconcile.report_postgres import PostgresReport
from agents.reconcile.stores import open_report, report_exists, report_schema
from agents.service.relay import OutboxRelay
from broker.delivery import HEADER_REPUBLISHED
from broker.signing import generate_private_key
from schemas.notices import TransferCompletedV1
from schemas.reconciliation import Role
from schemas.registry import Message, envelope_for
from tests.integration.postgres_support import PostgresSchema
from tests.integration.report_support import BACKENDS, open_test_report
from tests.integration.test_reconcile_logic import RecordingPublisher
from tests.unit.report_world import (
    MONTHS,
    RECONCILER,
    ReportWorld,
    at,
    form,
    report_world_on,
    statement,
)
from tests.unit.test_reconcile_figures import IN, OTHER, OUT, build

pytestmark = pytest.mark.integration

START = date(2026, 3, 2)


@pytest.fixture(params=BACKENDS)
async def world(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[ReportWorld]:
    clock = ManualClock(at(START))
    async with open_test_report(request.param, tmp_path / "report.db", clock) as report:
        yield report_world_on(report, clock)


async def test_the_queries_give_the_same_answers_on_both_backends(world: ReportWorld) -> None:
    await build(world)
    report = world.report
    figures = await take_exchange_figures(report, world.clock)
    assert figures.outcomes == {"matched": 2, "mismatched": 1, "pending": 1, "stuck": 1}
    assert figures.mismatched_fields == {"amount": 1}
    assert figures.pair_cases == {
        (OUT, IN, "matched"): 1,
        (OUT, IN, "mismatched"): 1,
        (OTHER, IN, "matched"): 1,
        (OUT, OTHER, "in_progress"): 1,
        (OTHER, None, "in_progress"): 1,
    }
    assert figures.pair_overdue == {(OUT, OTHER, OTHER): 1}
    assert figures.pair_money_in_flight_fen == {(OUT, OTHER): 70_000, (OTHER, None): 1_500}

    totals = {(t.day, t.outgoing, t.receiving): t for t in await report.control_totals()}
    assert sorted(totals) == [
        (date(2026, 3, 2), OUT, IN),
        (date(2026, 3, 3), OTHER, IN),
        (date(2026, 3, 3), OUT, IN),
    ]
    unbalanced = totals[(date(2026, 3, 3), OUT, IN)]
    assert (unbalanced.amount_out, unbalanced.amount_in, unbalanced.balanced) == (40_000, 41_000, False)
    assert [t.cases for t in await report.control_totals(date(2026, 3, 3))] == [1, 1]

    summary = await report.summary()
    assert summary["counts"] == {"open": 2, "matched": 2, "mismatched": 1, "stuck": 1}
    assert [m["differences"][0]["field"] for m in summary["mismatches"]] == ["amount"]
    assert [s["amount_in_flight_fen"] for s in summary["stuck"]] == [70_000]
    assert len(await report.pending_cases()) == 1
    assert [c.case_id for c in await report.stuck_cases()] == [
        c.case_id for c in await report.open_cases() if c.stuck
    ]
    assert {c.status for c in await report.cases("matched")} == {"matched"}
    assert len(await report.cases()) == 5


async def test_the_sweep_reads_only_cases_whose_clock_started_before_the_day(
    world: ReportWorld,
) -> None:
    first, second = uuid.UUID(int=1), uuid.UUID(int=2)
    world.clock.set(at(date(2026, 3, 2)))
    await world.deliver(OUT, form(1_000), second)
    world.clock.set(at(date(2026, 3, 4)))
    await world.deliver(OUT, form(2_000), first)
    report = world.report
    assert await report.open_cases_started_before(date(2026, 3, 2)) == []
    assert [c.case_id for c in await report.open_cases_started_before(date(2026, 3, 3))] == [second]
    page = await report.open_cases_started_before(date(2026, 3, 5), limit=1)
    assert [c.case_id for c in page] == [first]
    page = await report.open_cases_started_before(date(2026, 3, 5), after=first)
    assert [c.case_id for c in page] == [second]


async def test_a_relay_takes_back_its_own_rows_and_marks_sent_ones_sent(world: ReportWorld) -> None:
    case_id = uuid.uuid4()
    await world.deliver(IN, TransferCompletedV1(months_credited=MONTHS, deemed_months_credited=0,
                                                amount_credited=1), case_id)
    report = world.report
    claimed = await report.claim_queued("a", limit=10)
    assert [q.envelope.type for q in claimed] == ["statement_request"]
    assert [q.seq for q in await report.claim_queued("a", limit=10)] == [claimed[0].seq]
    await report.mark_sent_seqs([claimed[0].seq], world.clock.now())
    await report.mark_sent_seqs([claimed[0].seq], world.clock.now())  # idempotent
    assert await report.claim_queued("a", limit=10) == []
    assert await report.queued(10) == []
    assert [sent for _, sent in await report.outbox(case_id)] == [True]


async def test_the_store_is_chosen_by_the_database_url(
    tmp_path: Path, postgres_schema: PostgresSchema
) -> None:
    path = tmp_path / "report.db"
    assert not await report_exists(path)
    sqlite = await open_report(path)
    await sqlite.close()
    assert await report_exists(path)
    url, code = postgres_schema.url, f"t{uuid.uuid4().hex[:12]}"
    assert report_schema(code) == f"reconcile_{code}"
    assert not await report_exists(path, database_url=url, code=code)
    report = await open_report(path, database_url=url, code=code, pool_size=1)
    try:
        assert isinstance(report, PostgresReport) and report.schema == f"reconcile_{code}"
        assert await report.schema_version() == 2
        assert await report_exists(path, database_url=url, code=code)
    finally:
        await report.close()
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(f"DROP SCHEMA reconcile_{code} CASCADE")
        finally:
            await conn.close()


# -- several reconcilers on one PostgreSQL report ----------------------------------------------------


@dataclass
class Two:
    a: ReportWorld
    b: ReportWorld


@pytest.fixture
async def two(postgres_schema: PostgresSchema) -> AsyncIterator[Two]:
    """Two reconcilers' reports (pools) on one schema, one clock."""
    clock = ManualClock(at(START))
    a = await PostgresReport.open(postgres_schema.url, schema=postgres_schema.name, clock=clock, max_size=8)
    b = await PostgresReport.open(postgres_schema.url, schema=postgres_schema.name, clock=clock, max_size=8)
    try:
        yield Two(report_world_on(a, clock), report_world_on(b, clock))
    finally:
        await a.close()
        await b.close()


def _message(sender: str, document: object, case_id: uuid.UUID, world: ReportWorld,
             causation_id: uuid.UUID | None = None) -> Message:
    envelope = envelope_for(
        document,  # type: ignore[arg-type]
        sender=sender,
        recipient=RECONCILER,
        case_id=case_id,
        causation_id=causation_id,
        sent_at=world.clock.now(),
    )
    return Message(envelope, document)  # type: ignore[arg-type]


async def test_two_reconcilers_on_one_case_at_once_lose_no_update(two: Two) -> None:
    # Each case's form copy goes to one reconciler and its completion to the other, at the same
    # moment: without the row lock one of them would overwrite the other's record.
    cases = [uuid.uuid4() for _ in range(20)]
    done = TransferCompletedV1(months_credited=MONTHS, deemed_months_credited=0, amount_credited=5_000)
    await asyncio.gather(
        *(two.a.service.handle(_message(OUT, form(5_000), c, two.a)) for c in cases),
        *(two.b.service.handle(_message(IN, done, c, two.b)) for c in cases),
    )
    for case_id in cases:
        record = await two.a.report.case(case_id)
        assert record is not None
        assert record.form is not None and record.terminal == "transfer_completed", record
        requests = [e.recipient for e, _ in await two.a.report.outbox(case_id)]
        assert sorted(requests) == sorted([IN, OUT])  # the final round asks each party once


async def test_the_same_message_at_two_reconcilers_at_once_is_handled_once(two: Two) -> None:
    case_id = uuid.uuid4()
    done = TransferCompletedV1(months_credited=MONTHS, deemed_months_credited=0, amount_credited=5_000)
    message = _message(IN, done, case_id, two.a)
    await asyncio.gather(two.a.service.handle(message), two.b.service.handle(message))
    assert len(await two.a.report.outbox(case_id)) == 1
    assert await two.b.report.handled(IN, message.envelope.message_id)


async def test_two_sweeps_of_one_overdue_case_ask_for_its_statements_once(two: Two) -> None:
    case_id = uuid.uuid4()
    await two.a.service.handle(_message(OUT, form(70_000), case_id, two.a))
    two.a.clock.set(at(date(2026, 3, 10)))  # past the five working days
    outcomes = await asyncio.gather(two.a.service.sweep(), two.b.service.sweep())
    assert sum(o.requested for o in outcomes) == 1
    assert [e.recipient for e, _ in await two.a.report.outbox(case_id)] == [OUT]
    # The answer arrives twice (two messages), one at each reconciler: the counterpart it names
    # is asked once, and the duplicate changes nothing else.
    request = (await two.a.report.outbox(case_id))[0][0].message_id
    answer = statement(case_id, Role.OUTGOING, IN, 70_000)
    await asyncio.gather(
        two.a.service.handle(_message(OUT, answer, case_id, two.a, request)),
        two.b.service.handle(_message(OUT, answer, case_id, two.b, request)),
    )
    assert [e.recipient for e, _ in await two.a.report.outbox(case_id)] == [OUT, IN]
    record = await two.b.report.case(case_id)
    assert record is not None and record.stuck and OUT in record.statements


async def test_two_relays_publish_each_row_once_and_a_dead_ones_rows_after_its_lease(two: Two) -> None:
    key = generate_private_key()
    clock = two.a.clock
    for _ in range(5):
        done = TransferCompletedV1(months_credited=MONTHS, deemed_months_credited=0, amount_credited=1)
        await two.a.service.handle(_message(IN, done, uuid.uuid4(), two.a))
    dead = ReportOutbox(two.a.report, key, clock)
    held = await dead.claim_unpublished("dead", limit=2, lease_s=30.0)  # then it dies
    assert len(held) == 2
    publisher = RecordingPublisher()
    relays = [
        OutboxRelay(ReportOutbox(w.report, key, clock), publisher, clock=clock, claimant=name, lease_s=30)
        for name, w in (("a", two.a), ("b", two.b))
    ]
    sent = await asyncio.gather(*(relay.flush() for relay in relays))
    assert sum(sent) == 3  # the dead relay's two rows are held until its lease ends
    assert len({message_id for message_id, _ in publisher.sent}) == 3
    clock.advance(seconds=31)
    assert sum(await asyncio.gather(*(relay.flush() for relay in relays))) == 2
    ids = [message_id for message_id, _ in publisher.sent]
    assert len(ids) == len(set(ids)) == 5
    # Claimed before by the dead relay: they may have gone out, so they are marked re-sends.
    retaken = {message_id for message_id, headers in publisher.sent if headers.get(HEADER_REPUBLISHED)}
    assert {m.message_id for m in held} <= retaken
    assert await two.b.report.queued(10) == []
