"""The reconciliation agent on a real broker, against agencies answering from real SQLite books.

Two small agency responders (a `Consumer` each) answer the reconciler's statement requests with
`statement_document` built from a real `SqliteLedger`, and record the results they receive. The
reconciler is the real process (`run_reconciler`) or the real `ReconcilerService` behind a real
consumer, its outbox published by the real `OutboxRelay`.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from agents.domain.clock import CHINA_TZ, ManualClock
from agents.domain.workdays import WorkingCalendar
from agents.ledger import PersonAccount
from agents.ledger.sqlite import SqliteLedger
from agents.reconcile import (
    ReconcilerProcess,
    ReconcilerService,
    ReconcilerSettings,
    ReconciliationReport,
    ReportOutbox,
    Rules,
    run_reconciler,
    statement_document,
)
from agents.service.admission import Freshness
from agents.service.relay import OutboxRelay
from broker.consumer import Consumer, DeliveryInfo
from broker.names import RECONCILER_CODE
from broker.publisher import Publisher
from schemas.common import Document, Gender, InsuranceType, Person, make_citizen_id
from schemas.information import BalanceDisposition, InformationFormV2
from schemas.notices import RejectionReason, RejectionV1, TransferCompletedV1
from schemas.reconciliation import (
    ReconciliationOutcome,
    ReconciliationResultV1,
    Role,
    StatementRequestV1,
)
from schemas.registry import Message, envelope_for
from tests.integration.transport_support import (
    A,
    Agencies,
    B,
    directory_entry,
    eventually,
)

OUT, IN = A, B
BALANCE = 1_234_567
MONTHS, DEEMED = 140, 24
ID_NUMBER = make_citizen_id("110105", date(1988, 7, 21), 135)


def information_form() -> InformationFormV2:
    return InformationFormV2(
        person=Person(name="张伟", gender=Gender.MALE, id_number=ID_NUMBER),
        insurance_type=InsuranceType.EMPLOYEE,
        participation_start="2012-07",
        participation_end="2024-12",
        months_paid=MONTHS,
        deemed_months=DEEMED,
        account_balance=BALANCE,
        amount_transferred=BALANCE,
        balance_disposition=BalanceDisposition.TRANSFERRED,
        contribution_periods=None,
        seal_reference=None,
    )


@dataclass
class FakeAgency:
    """Answers statement requests from its books; records the reconciliation results it gets."""

    code: str
    role: Role
    counterpart: str
    ledger: SqliteLedger
    publisher: Publisher
    results: list[tuple[UUID | None, ReconciliationResultV1]] = field(default_factory=list)
    requests: list[UUID] = field(default_factory=list)

    async def __call__(self, message: Message, delivery: DeliveryInfo) -> None:
        envelope, document = message.envelope, message.document
        if isinstance(document, StatementRequestV1):
            self.requests.append(envelope.message_id)
            books = await self.ledger.statement(document.case_id)
            statement = statement_document(document.case_id, books, self.counterpart, role=self.role)
            await self.publisher.publish(
                envelope_for(
                    statement,
                    sender=self.code,
                    recipient=envelope.sender,
                    case_id=envelope.case_id,
                    causation_id=envelope.message_id,
                )
            )
        elif isinstance(document, ReconciliationResultV1):
            self.results.append((envelope.causation_id, document))


@dataclass
class World:
    agencies: Agencies
    outgoing: FakeAgency
    receiving: FakeAgency
    store_path: Path
    consumers: list[Consumer]

    async def copy_to_reconciler(
        self, sender: str, document: Document, case_id: UUID, sent_at: datetime | None = None
    ) -> None:
        publisher = self.outgoing.publisher if sender == OUT else self.receiving.publisher
        await publisher.publish(
            envelope_for(document, sender=sender, recipient=RECONCILER_CODE, case_id=case_id, sent_at=sent_at)
        )


@pytest.fixture
async def world(agencies: Agencies, tmp_path: Path) -> AsyncIterator[World]:
    # The agencies verify the reconciler's signature: the directory lists it like an agency.
    agencies.directory.current = agencies.directory.current.with_agency(
        directory_entry(RECONCILER_CODE, agencies.keys[RECONCILER_CODE])
    )
    out_books = await SqliteLedger.open(tmp_path / "out-ledger.db", OUT)
    in_books = await SqliteLedger.open(tmp_path / "in-ledger.db", IN)
    await out_books.put_account(
        PersonAccount(
            id_number=ID_NUMBER,
            name="张伟",
            gender=Gender.MALE,
            insurance_type=InsuranceType.EMPLOYEE,
            enrolled=True,
            participation="stopped",
            region=OUT,
            months_paid=MONTHS,
            deemed_months=DEEMED,
            balance_fen=BALANCE,
        )
    )
    outgoing = FakeAgency(OUT, Role.OUTGOING, IN, out_books, await agencies.publisher(OUT))
    receiving = FakeAgency(IN, Role.RECEIVING, OUT, in_books, await agencies.publisher(IN))
    consumers = [
        await agencies.consumer(OUT, outgoing, name="fake-outgoing"),
        await agencies.consumer(IN, receiving, name="fake-receiving"),
    ]
    try:
        yield World(agencies, outgoing, receiving, tmp_path / "reconcile" / "reconcile.db", consumers)
    finally:
        for consumer in consumers:
            await consumer.stop()
        await out_books.close()
        await in_books.close()


@contextlib.asynccontextmanager
async def reconciler_process(world: World) -> AsyncIterator[None]:
    """The real composition root, stopped (drained) at the end."""
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_reconciler(
            amqp_url=world.agencies.url(RECONCILER_CODE),
            directory=world.agencies.directory,
            private_key=world.agencies.keys[RECONCILER_CODE],
            store_path=world.store_path,
            consumer_settings=world.agencies.settings(),
            sweep_interval_s=3600,
            stop_event=stop,
            signals=(),
        )
    )
    try:
        yield
    finally:
        stop.set()
        await task


async def transfer(world: World, case_id: UUID, credited: int) -> None:
    """The books of a transfer: the outgoing end debits the balance, the receiving end credits."""
    await world.outgoing.ledger.terminate_and_debit(case_id, ID_NUMBER, BALANCE)
    await world.receiving.ledger.credit(
        case_id, ID_NUMBER, MONTHS, DEEMED, credited, name="张伟", gender=Gender.MALE
    )


async def both_results(world: World) -> bool:
    return bool(world.outgoing.results) and bool(world.receiving.results)


async def test_a_clean_case_matches_and_both_agencies_receive_the_result(world: World) -> None:
    case_id = uuid.uuid4()
    await transfer(world, case_id, credited=BALANCE)
    async with reconciler_process(world):
        await world.copy_to_reconciler(OUT, information_form(), case_id)
        await world.copy_to_reconciler(
            IN,
            TransferCompletedV1(
                months_credited=MONTHS, deemed_months_credited=DEEMED, amount_credited=BALANCE
            ),
            case_id,
        )
        await eventually(lambda: both_results(world), "the result at both agencies")

    for agency in (world.outgoing, world.receiving):
        [(_, result)] = agency.results
        assert (result.case_id, result.outgoing, result.receiving) == (case_id, OUT, IN)
        assert result.outcome is ReconciliationOutcome.MATCHED
        assert result.differences == ()
    report = await ReconciliationReport.open(world.store_path)
    try:
        record = await report.case(case_id)
        assert record is not None and record.status == "matched"
        assert (await report.counts())["matched"] == 1
        [totals] = await report.control_totals()
        assert (totals.outgoing, totals.receiving, totals.amount_out, totals.amount_in) == (
            OUT,
            IN,
            BALANCE,
            BALANCE,
        )
        assert (totals.months_out, totals.months_in, totals.balanced) == (MONTHS, MONTHS, True)
    finally:
        await report.close()


async def test_an_extra_credit_is_reported_mismatched_to_both_agencies_with_both_values(
    world: World,
) -> None:
    case_id = uuid.uuid4()
    await transfer(world, case_id, credited=BALANCE + 1_000)
    async with reconciler_process(world):
        await world.copy_to_reconciler(
            IN,
            TransferCompletedV1(
                months_credited=MONTHS, deemed_months_credited=DEEMED, amount_credited=BALANCE + 1_000
            ),
            case_id,
        )
        await world.copy_to_reconciler(OUT, information_form(), case_id)
        await eventually(lambda: both_results(world), "the result at both agencies")

    for agency in (world.outgoing, world.receiving):
        [(causation_id, result)] = agency.results
        assert result.outcome is ReconciliationOutcome.MISMATCHED
        assert [(d.field, d.outgoing_value, d.receiving_value) for d in result.differences] == [
            ("amount", BALANCE, BALANCE + 1_000)
        ]
        assert causation_id is not None  # the result answers that agency's own statement
    report = await ReconciliationReport.open(world.store_path)
    try:
        [mismatch] = await report.latest_mismatches()
        assert mismatch.case_id == case_id
        [totals] = await report.control_totals()
        assert (totals.amount_out, totals.amount_in, totals.balanced) == (BALANCE, BALANCE + 1_000, False)
    finally:
        await report.close()


@dataclass
class DirectReconciler:
    reconciler: ReconcilerService
    report: ReconciliationReport
    consumer: Consumer
    clock: ManualClock


@pytest.fixture
async def direct(world: World) -> AsyncIterator[DirectReconciler]:
    """The real `ReconcilerService` behind a real consumer, with a clock the test moves; the
    relay publishes what it queues."""
    report = await ReconciliationReport.open(world.store_path)
    publisher = await world.agencies.publisher(RECONCILER_CODE)
    clock = ManualClock(datetime(2026, 3, 2, 10, 0, tzinfo=CHINA_TZ))
    key = world.agencies.keys[RECONCILER_CODE]
    relay = OutboxRelay(ReportOutbox(report, key, clock), publisher, clock=clock).start()
    reconciler = ReconcilerService(
        report,
        Rules(code=RECONCILER_CODE, calendar=WorkingCalendar(package_years=range(2004, 2027))),
        clock=clock,
        on_commit=relay.wake,
        # The clock is set in March 2026 while the agencies stamp sent_at with the real time:
        # a window wide enough that the freshness check (tested elsewhere) lets them through.
        freshness=Freshness(max_age=timedelta(days=36_500), max_ahead=timedelta(days=36_500)),
    )
    connection = await world.agencies.connect(RECONCILER_CODE, name="reconciler")
    consumer = await Consumer(
        connection,
        agency=RECONCILER_CODE,
        handler=reconciler.handle,
        directory=world.agencies.directory,
        settings=world.agencies.settings(),
        seen_from=reconciler.seen_from,
        publisher=publisher,
    ).start()
    try:
        yield DirectReconciler(reconciler, report, consumer, clock)
    finally:
        await consumer.stop()
        await relay.stop()
        await report.close()


async def test_duplicate_notices_and_statements_change_nothing(
    world: World, direct: DirectReconciler
) -> None:
    case_id = uuid.uuid4()
    await transfer(world, case_id, credited=BALANCE)
    completed = TransferCompletedV1(
        months_credited=MONTHS, deemed_months_credited=DEEMED, amount_credited=BALANCE
    )
    await world.copy_to_reconciler(OUT, information_form(), case_id)
    await world.copy_to_reconciler(IN, completed, case_id)
    await eventually(lambda: both_results(world), "the result at both agencies")
    record = await direct.report.case(case_id)
    assert record is not None and record.result is not None
    first_result = record.result

    # The same documents again (new messages, same business content), and a repeated statement.
    await world.copy_to_reconciler(OUT, information_form(), case_id)
    await world.copy_to_reconciler(IN, completed, case_id)
    books = await world.receiving.ledger.statement(case_id)
    await world.receiving.publisher.publish(
        envelope_for(
            statement_document(case_id, books, OUT),
            sender=IN,
            recipient=RECONCILER_CODE,
            case_id=case_id,
            causation_id=world.receiving.requests[0],
        )
    )
    await eventually(lambda: direct.consumer.stats.handled == 7, "seven messages handled")

    record = await direct.report.case(case_id)
    assert record is not None and record.result == first_result

    async def all_sent() -> bool:  # the relay marks a row sent right after its confirm
        return all(sent for _, sent in await direct.report.outbox(case_id))

    await eventually(all_sent, "every queued envelope marked sent")
    outbox = await direct.report.outbox(case_id)
    assert sorted(envelope.type for envelope, _ in outbox) == [
        "reconciliation_result",
        "reconciliation_result",
        "statement_request",
        "statement_request",
    ]
    assert all(sent for _, sent in outbox)
    assert len(world.outgoing.results) == len(world.receiving.results) == 1


async def test_the_sweep_flags_money_in_flight_past_its_due_date_and_finds_the_lost_credit(
    world: World, direct: DirectReconciler
) -> None:
    case_id = uuid.uuid4()
    # The outgoing end debited and sent its form; the credit never happened at the receiving end.
    await world.outgoing.ledger.terminate_and_debit(case_id, ID_NUMBER, BALANCE)
    form_sent = datetime(2026, 3, 2, 9, 0, tzinfo=CHINA_TZ)  # a Monday; due 5 working days later
    await world.copy_to_reconciler(OUT, information_form(), case_id, sent_at=form_sent)
    await eventually(lambda: direct.consumer.stats.handled == 1, "the form copy handled")

    direct.clock.set_date(date(2026, 3, 9))  # the due date itself: still on time
    on_time = await direct.reconciler.sweep()
    assert on_time.overdue == [] and on_time.requested == 0

    direct.clock.set_date(date(2026, 3, 10))
    with capture_logs() as logs:
        late = await direct.reconciler.sweep()
    assert late.overdue == [case_id]
    warnings = [e for e in logs if e["event"] == "reconcile.money_in_flight_overdue"]
    assert warnings and warnings[0]["log_level"] == "warning"
    assert warnings[0]["amount_transferred"] == BALANCE and warnings[0]["due_on"] == "2026-03-09"
    [stuck] = await direct.report.stuck_cases()
    assert stuck.case_id == case_id

    # The outgoing end answers first and names its counterpart, who is then asked too.
    async def probed() -> bool:
        record = await direct.report.case(case_id)
        return record is not None and record.probe_result is not None

    await eventually(probed, "a provisional comparison from both ends")
    record = await direct.report.case(case_id)
    assert record is not None and record.probe_result is not None
    assert record.result is None  # nothing published while the case is open
    found: dict[str, tuple[Any, Any]] = {
        d.field: (d.outgoing_value, d.receiving_value) for d in record.probe_result.differences
    }
    assert found["has_record"] == (True, False)
    assert found["amount"] == (BALANCE, 0)
    assert world.outgoing.results == [] and world.receiving.results == []

    # A second sweep the next day does not ask again (the repeat interval is in working days).
    direct.clock.set_date(date(2026, 3, 11))
    again = await direct.reconciler.sweep()
    assert again.overdue == [case_id] and again.requested == 0


async def test_a_rejection_before_any_form_is_matched_when_nothing_moved(
    world: World, direct: DirectReconciler
) -> None:
    case_id = uuid.uuid4()
    await world.copy_to_reconciler(
        OUT, RejectionV1(reason_code=RejectionReason.ARREARS, text="参保人存在欠费"), case_id
    )
    await eventually(lambda: both_results(world), "the result at both agencies")
    for agency in (world.outgoing, world.receiving):
        [(_, result)] = agency.results
        assert result.outcome is ReconciliationOutcome.MATCHED
        assert (result.outgoing, result.receiving) == (OUT, IN)
    record = await direct.report.case(case_id)
    assert record is not None and record.terminal == "rejection" and record.rejection_reason == "arrears"
    # Only the rejecting agency was known at first; its statement named the other one.
    assert record.parties == [OUT, IN]



async def test_the_reconcilers_metrics_agree_with_its_report_and_it_is_ready(world: World) -> None:
    """A mismatched case and a matched one through the real process serving its endpoints: the
    result counters, the gauges read from the report and the report itself say the same."""
    mismatched, matched = uuid.uuid4(), uuid.uuid4()
    await transfer(world, mismatched, credited=BALANCE + 1_000)
    process = ReconcilerProcess(
        amqp_url=world.agencies.url(RECONCILER_CODE),
        directory=world.agencies.directory,
        private_key=world.agencies.keys[RECONCILER_CODE],
        store_path=world.store_path,
        settings=ReconcilerSettings(
            metrics_port=0, metrics_host="127.0.0.1", figures_interval_s=0.2
        ),
        consumer_settings=world.agencies.settings(),
    )
    await process.start()
    try:
        assert process.health is not None
        async with httpx.AsyncClient(base_url=process.health.url) as client:
            ready = await client.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert set(ready.json()["checks"]) == {"broker", "consumer", "report"}
            await world.copy_to_reconciler(OUT, information_form(), mismatched)
            await world.copy_to_reconciler(
                IN,
                TransferCompletedV1(
                    months_credited=MONTHS, deemed_months_credited=DEEMED,
                    amount_credited=BALANCE + 1_000,
                ),
                mismatched,
            )
            await world.copy_to_reconciler(
                OUT, RejectionV1(reason_code=RejectionReason.ARREARS, text="参保人存在欠费"), matched
            )

            async def both_reconciled() -> bool:
                return len(world.outgoing.results) == len(world.receiving.results) == 2

            await eventually(both_reconciled, "both cases' results at both agencies")
            counts = await process.report.counts()
            assert (counts["matched"], counts["mismatched"]) == (1, 1)

            async def scraped() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
                response = await client.get("/metrics")
                assert response.status_code == 200
                return {
                    (s.name, frozenset(s.labels.items())): s.value
                    for family in text_string_to_metric_families(response.text)
                    for s in family.samples
                }

            def one(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
                    **labels: str) -> float | None:
                return samples.get((name, frozenset({"agency": RECONCILER_CODE, **labels}.items())))

            async def gauges_caught_up() -> bool:
                samples = await scraped()
                return one(samples, "jiexu_reconciliation_cases", outcome="mismatched") == 1

            await eventually(gauges_caught_up, "the report's figures on /metrics")
            samples = await scraped()
            for outcome in ("matched", "mismatched"):
                assert one(samples, "jiexu_reconciliation_results_total", outcome=outcome) == (
                    counts[outcome]
                )
                assert one(samples, "jiexu_reconciliation_cases", outcome=outcome) == counts[outcome]
            assert one(samples, "jiexu_reconciliation_differences_total", field="amount") == 1
            assert one(samples, "jiexu_reconciliation_mismatches", field="amount") == 1
            assert one(
                samples, "jiexu_exchange_cases", outgoing=OUT, receiving=IN, state="mismatched"
            ) == 1
            assert one(
                samples, "jiexu_exchange_cases", outgoing=OUT, receiving=IN, state="matched"
            ) == 1
            handled = sum(
                v for (n, labels), v in samples.items() if n == "jiexu_messages_handled_total"
            )
            with sqlite3.connect(f"file:{world.store_path}?mode=ro", uri=True) as db:
                (inbox_rows,) = db.execute("SELECT COUNT(*) FROM inbox").fetchone()
            assert handled == inbox_rows == 7  # form, completion, rejection, 2 x 2 statements
            assert one(samples, "jiexu_broker_connection_up") == 1
            assert one(
                samples, "jiexu_outbox_published_total", type="reconciliation_result"
            ) == 4
    finally:
        await process.stop()
    assert process.health is None
