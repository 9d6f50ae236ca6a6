"""The reconciler's service on a real report (SQLite and PostgreSQL, the same tests), its outbox
read back instead of a broker.

The broker path is proven in test_reconcile_agent.py; these cover the orderings and failures that
are awkward to provoke there: documents out of order, a form copy that never comes, a late probe
answer, a publish interrupted before a crash (the same `OutboxRelay` as the agents', with a
recording publisher).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
import pytest

from agents.domain.clock import CHINA_TZ, ManualClock
from agents.domain.workdays import WorkingCalendar
from agents.reconcile import ReconcilerService, ReconciliationReport, ReportOutbox, Rules
from agents.reconcile.report_base import ReportStore
from agents.service.relay import OutboxRelay
from broker.delivery import HEADER_REPUBLISHED, DeliveryInfo
from broker.publisher import BasicProperties, PublishInterrupted
from broker.signing import generate_private_key
from schemas.common import Document, Gender, InsuranceType, Person, make_citizen_id
from schemas.envelope import Envelope
from schemas.information import BalanceDisposition, InformationFormV2
from schemas.notices import TransferCompletedV1
from schemas.reconciliation import LedgerStatementV1, ReconciliationOutcome, Role
from schemas.registry import Message, envelope_for
from tests.integration.report_support import open_test_report

OUT, IN, RECONCILER = "360400", "440300", "000000"
BALANCE, MONTHS = 50_000, 36


@dataclass
class RecordingPublisher:
    """A `BodyPublisher` that records what it is given; ``fail_next`` publishes fail unconfirmed."""

    user_id: str = RECONCILER
    sent: list[tuple[UUID, dict[str, Any]]] = field(default_factory=list)
    fail_next: int = 0

    async def publish_body(
        self, exchange: str, routing_key: str, body: bytes, properties: BasicProperties
    ) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise PublishInterrupted("connection lost before the confirm")
        self.sent.append((UUID(orjson.loads(body)["message_id"]), dict(properties.headers or {})))


FORM = InformationFormV2(
    person=Person(
        name="李娜", gender=Gender.FEMALE, id_number=make_citizen_id("360402", date(1990, 1, 2), 24)
    ),
    insurance_type=InsuranceType.EMPLOYEE,
    participation_start="2020-01",
    participation_end="2022-12",
    months_paid=MONTHS,
    deemed_months=0,
    account_balance=BALANCE,
    amount_transferred=BALANCE,
    balance_disposition=BalanceDisposition.TRANSFERRED,
    contribution_periods=None,
    seal_reference=None,
)
DONE = TransferCompletedV1(months_credited=MONTHS, deemed_months_credited=0, amount_credited=BALANCE)


def statement(role: Role, *, amount: int = BALANCE, has_record: bool = True) -> LedgerStatementV1:
    return LedgerStatementV1(
        case_id=CASE,
        role=role,
        counterpart=IN if role is Role.OUTGOING else OUT,
        has_record=has_record,
        months=MONTHS if has_record else 0,
        deemed_months=0,
        amount=amount if has_record else 0,
        paid_out=0,
        retained=0,
    )


CASE = UUID("3c9a4d2e-1f0b-4a7c-9e8d-554433221100")


def message(sender: str, document: Document, causation_id: UUID | None = None) -> Message:
    envelope = envelope_for(
        document,
        sender=sender,
        recipient=RECONCILER,
        case_id=CASE,
        causation_id=causation_id,
        sent_at=datetime(2026, 3, 2, 9, 0, tzinfo=CHINA_TZ),
    )
    return Message(envelope=envelope, document=document)


@dataclass
class Setup:
    reconciler: ReconcilerService
    report: ReportStore
    clock: ManualClock
    path: Path

    async def of_type(self, message_type: str) -> list[Envelope]:
        """What the reconciler queued to send, oldest first."""
        return [e for e, _ in await self.report.outbox() if e.type == message_type]

    async def request_to(self, code: str) -> UUID:
        return [e for e in await self.of_type("statement_request") if e.recipient == code][-1].message_id


@pytest.fixture(params=["sqlite", "postgres"])
async def setup(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Setup]:
    path = tmp_path / "reconcile.db"
    clock = ManualClock(datetime(2026, 3, 2, 10, 0, tzinfo=CHINA_TZ))
    async with open_test_report(request.param, path, clock) as report:
        calendar = WorkingCalendar(package_years=range(2004, 2027))
        reconciler = ReconcilerService(report, Rules(code=RECONCILER, calendar=calendar), clock=clock)
        yield Setup(reconciler, report, clock, path)


async def test_a_completion_before_the_form_copy_waits_for_the_form_then_matches(setup: Setup) -> None:
    r = setup.reconciler
    await r.handle(message(IN, DONE))
    assert [e.recipient for e in await setup.of_type("statement_request")] == [IN]
    await r.handle(message(IN, statement(Role.RECEIVING), await setup.request_to(IN)))
    # The receiving end named its counterpart, who is asked next.
    await r.handle(message(OUT, statement(Role.OUTGOING), await setup.request_to(OUT)))
    record = await setup.report.case(CASE)
    assert record is not None and record.result is None  # the outgoing books hold a form's worth
    await r.handle(message(OUT, FORM))
    record = await setup.report.case(CASE)
    assert record is not None and record.result is not None
    assert record.result.outcome is ReconciliationOutcome.MATCHED
    assert sorted(e.recipient for e in await setup.of_type("reconciliation_result")) == [OUT, IN]


async def test_a_form_copy_that_never_comes_is_reported_once_the_case_is_overdue(setup: Setup) -> None:
    r = setup.reconciler
    await r.handle(message(IN, DONE))
    await r.handle(message(IN, statement(Role.RECEIVING), await setup.request_to(IN)))
    await r.handle(message(OUT, statement(Role.OUTGOING), await setup.request_to(OUT)))
    setup.clock.set_date(date(2026, 3, 10))
    outcome = await r.sweep()
    assert outcome.compared == 1
    record = await setup.report.case(CASE)
    assert record is not None and record.result is not None
    found = {d.field: (d.outgoing_value, d.receiving_value) for d in record.result.differences}
    assert found["form_has_record"] == (True, False)


async def test_a_late_answer_to_a_probe_never_replaces_the_final_statement(setup: Setup) -> None:
    r = setup.reconciler
    await r.handle(message(OUT, FORM))
    setup.clock.set_date(date(2026, 3, 10))
    await r.sweep()  # overdue: probe round to the outgoing end
    probe_to_out = await setup.request_to(OUT)
    await r.handle(message(IN, DONE))  # the case ends: a final round
    final_to_out = await setup.request_to(OUT)
    assert probe_to_out != final_to_out
    await r.handle(message(OUT, statement(Role.OUTGOING), final_to_out))
    await r.handle(message(IN, statement(Role.RECEIVING), await setup.request_to(IN)))
    record = await setup.report.case(CASE)
    assert record is not None and record.status == "matched"
    await r.handle(message(OUT, statement(Role.OUTGOING, amount=1), probe_to_out))
    record = await setup.report.case(CASE)
    assert record is not None and record.status == "matched"
    assert record.statements[OUT].statement.amount == BALANCE


async def test_a_changed_final_statement_publishes_a_new_result_and_a_repeat_publishes_nothing(
    setup: Setup,
) -> None:
    r = setup.reconciler
    await r.handle(message(OUT, FORM))
    await r.handle(message(IN, DONE))
    await r.handle(message(OUT, statement(Role.OUTGOING), await setup.request_to(OUT)))
    await r.handle(message(IN, statement(Role.RECEIVING), await setup.request_to(IN)))
    assert len(await setup.of_type("reconciliation_result")) == 2
    await r.handle(message(IN, statement(Role.RECEIVING), await setup.request_to(IN)))
    assert len(await setup.of_type("reconciliation_result")) == 2
    await r.handle(message(IN, statement(Role.RECEIVING, amount=BALANCE * 2), await setup.request_to(IN)))
    results = await setup.of_type("reconciliation_result")
    assert len(results) == 4
    assert results[-1].payload["outcome"] == "mismatched"


async def test_envelopes_queued_before_a_crash_are_sent_after_restart_with_the_same_ids(setup: Setup) -> None:
    # The relay publishes its batch concurrently: both requests are in flight when the connection
    # goes, and both fail.
    key = generate_private_key()
    publisher = RecordingPublisher(fail_next=2)
    await setup.reconciler.handle(message(OUT, FORM))
    await setup.reconciler.handle(message(IN, DONE))  # its requests are queued
    relay = OutboxRelay(ReportOutbox(setup.report, key, setup.clock), publisher, clock=setup.clock)
    assert await relay.flush() == 0  # the publishes fail
    assert publisher.sent == []
    queued = [e.message_id for e, sent in await setup.report.outbox(CASE) if not sent]
    assert len(queued) == 2

    setup.clock.advance(seconds=1)
    restarted = OutboxRelay(ReportOutbox(setup.report, key, setup.clock), publisher, clock=setup.clock)
    assert await restarted.flush() == 2
    assert [message_id for message_id, _ in publisher.sent] == queued
    # Queued before this relay started: possibly sent by the last run, so marked as a re-send.
    assert all(headers.get(HEADER_REPUBLISHED) is True for _, headers in publisher.sent)
    assert await restarted.flush() == 0


async def test_a_publish_that_failed_is_marked_as_a_re_send_when_it_is_tried_again(setup: Setup) -> None:
    key = generate_private_key()
    publisher = RecordingPublisher()
    relay = OutboxRelay(ReportOutbox(setup.report, key, setup.clock), publisher, clock=setup.clock)
    setup.clock.advance(seconds=1)
    await setup.reconciler.handle(message(OUT, FORM))
    await setup.reconciler.handle(message(IN, DONE))
    publisher.fail_next = 1
    assert await relay.flush() == 1
    assert await relay.flush() == 1
    first, second = publisher.sent
    assert HEADER_REPUBLISHED not in first[1]  # queued after the relay started, tried once
    assert second[1].get(HEADER_REPUBLISHED) is True  # its confirm was lost: may have arrived


async def test_the_same_message_twice_is_handled_once(setup: Setup) -> None:
    done = message(IN, DONE)
    await setup.reconciler.handle(done)
    await setup.reconciler.handle(done)
    assert len(await setup.of_type("statement_request")) == 1
    assert await setup.report.handled(done.envelope.sender, done.envelope.message_id)



async def test_another_agencys_message_with_the_same_id_does_not_block_the_real_one(
    setup: Setup,
) -> None:
    # Issue 13: the reconciler's inbox was keyed by message id alone, and ids are predictable.
    done = message(IN, DONE)
    squatted = Message(
        envelope=done.envelope.model_copy(update={"sender": "510100"}), document=DONE
    )
    await setup.reconciler.handle(squatted)
    assert await setup.reconciler.seen_from("510100", done.envelope.message_id)
    assert not await setup.reconciler.seen_from(IN, done.envelope.message_id)
    await setup.reconciler.handle(done)
    assert await setup.reconciler.seen_from(IN, done.envelope.message_id)


_OLD_REPORTS = {
    # Schema 1: the inbox keyed by message id alone.
    1: """CREATE TABLE inbox (message_id TEXT PRIMARY KEY, case_id TEXT NOT NULL,
        type TEXT NOT NULL, sender TEXT NOT NULL, handled_at TEXT NOT NULL);
        INSERT INTO inbox VALUES ('00000000-0000-0000-0000-000000000001', 'c', 'receipt', '440300',
        '2026-03-02T10:00:00Z');""",
    # Schema 2: keyed by (sender, message id), without the republished mark.
    2: """CREATE TABLE inbox (sender TEXT NOT NULL, message_id TEXT NOT NULL,
        case_id TEXT NOT NULL, type TEXT NOT NULL, handled_at TEXT NOT NULL,
        PRIMARY KEY (sender, message_id));
        INSERT INTO inbox VALUES ('440300', '00000000-0000-0000-0000-000000000001', 'c', 'receipt',
        '2026-03-02T10:00:00Z');""",
}


@pytest.mark.parametrize("version", sorted(_OLD_REPORTS))
async def test_an_older_report_is_migrated_with_its_handled_messages_kept(
    tmp_path: Path, version: int
) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(f"{_OLD_REPORTS[version]}\nPRAGMA user_version = {version};")
    db.close()
    for _ in range(2):  # reopening applies nothing
        report = await ReconciliationReport.open(path)
        try:
            assert await report.schema_version() == 3
            assert await report.handled(IN, UUID(int=1))
            assert not await report.handled(OUT, UUID(int=1))
            assert not await report.handled_republished(IN, UUID(int=1))
        finally:
            await report.close()


async def test_a_copy_marked_republished_is_remembered_so_its_late_original_is_stale(
    setup: Setup,
) -> None:
    """An agency's relay lost a confirm and republished: the reconciler handles the marked copy
    and records the mark, which any reconciler process later reads (the consumer's
    ``republished_from``) to ack the unmarked original as stale instead of as a replay."""
    form, done = message(OUT, FORM), message(IN, DONE)
    marked = DeliveryInfo(
        agency=RECONCILER,
        routing_key=None,
        redelivered=False,
        attempt=1,
        publisher_user=None,
        republished=True,
    )
    await setup.reconciler.handle(form, marked)
    await setup.reconciler.handle(done)
    assert await setup.reconciler.handled_republished(OUT, form.envelope.message_id)
    assert not await setup.reconciler.handled_republished(IN, done.envelope.message_id)
    assert not await setup.reconciler.handled_republished(IN, form.envelope.message_id)


async def test_a_stale_message_is_refused_and_the_sweep_prunes_the_inbox_past_the_window(
    setup: Setup,
) -> None:
    from datetime import timedelta

    from schemas.errors import ContractError

    done = message(IN, DONE)
    await setup.reconciler.handle(done)
    setup.clock.set(datetime(2026, 4, 10, 10, 0, tzinfo=CHINA_TZ))  # 39 days later
    with pytest.raises(ContractError) as refused:
        await setup.reconciler.handle(message(OUT, FORM))
    assert refused.value.reason == "stale"
    assert setup.reconciler.freshness.max_age == timedelta(days=30)
    await setup.reconciler.sweep()
    assert not await setup.report.handled(IN, done.envelope.message_id)
