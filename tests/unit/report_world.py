"""A reconciler's report with something in it, built through the real `ReconcilerService` (no broker).

Each helper hands the service the copies and statements a real exchange would deliver, at dates a
`ManualClock` sets: a matched case, a mismatched one (its field and both values), a case with money
in flight that the sweep flags past its due date. Used by the unit tests of the national view and
by the command-line tests of ``jiexu reconcile --report`` and ``jiexu status``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from uuid import UUID

from agents.domain.clock import CHINA_TZ, ManualClock
from agents.domain.workdays import WorkingCalendar
from agents.reconcile.plan import Rules
from agents.reconcile.report import ReconciliationReport
from agents.reconcile.report_base import ReportStore
from agents.reconcile.service import ReconcilerService
from agents.service.metrics import ReconcilerMetrics
from broker.delivery import DeliveryInfo
from schemas.common import Document, Gender, InsuranceType, Person, make_citizen_id
from schemas.information import BalanceDisposition, InformationFormV2
from schemas.notices import TransferCompletedV1
from schemas.reconciliation import LedgerStatementV1, Role
from schemas.registry import Message, envelope_for

RECONCILER = "000000"
MONTHS = 36


def at(day: date, hour: int = 10) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=CHINA_TZ)


def form(amount: int) -> InformationFormV2:
    return InformationFormV2(
        person=Person(
            name="李娜", gender=Gender.FEMALE, id_number=make_citizen_id("360402", date(1990, 1, 2), 24)
        ),
        insurance_type=InsuranceType.EMPLOYEE,
        participation_start="2020-01",
        participation_end="2022-12",
        months_paid=MONTHS,
        deemed_months=0,
        account_balance=amount,
        amount_transferred=amount,
        balance_disposition=BalanceDisposition.TRANSFERRED,
        contribution_periods=None,
        seal_reference=None,
    )


def statement(
    case_id: UUID, role: Role, counterpart: str, amount: int, months: int = MONTHS
) -> LedgerStatementV1:
    return LedgerStatementV1(
        case_id=case_id,
        role=role,
        counterpart=counterpart,
        has_record=True,
        months=months,
        deemed_months=0,
        amount=amount,
        paid_out=0,
        retained=0,
    )


@dataclass
class ReportWorld:
    report: ReportStore
    service: ReconcilerService
    clock: ManualClock
    metrics: ReconcilerMetrics

    async def deliver(
        self,
        sender: str,
        document: Document,
        case_id: UUID,
        causation_id: UUID | None = None,
        delivery: DeliveryInfo | None = None,
    ) -> None:
        """One copy or statement, sent and handled now (the clock's time); ``delivery``: what the
        consumer would say of it (a copy marked republished, say)."""
        envelope = envelope_for(
            document,
            sender=sender,
            recipient=RECONCILER,
            case_id=case_id,
            causation_id=causation_id,
            sent_at=self.clock.now(),
        )
        await self.service.handle(Message(envelope, document), delivery)

    async def answer_requests(
        self, case_id: UUID, answers: dict[str, LedgerStatementV1]
    ) -> None:
        """Each agency in ``answers`` answers the statement request queued for it (the latest)."""
        requests = {
            envelope.recipient: envelope.message_id
            for envelope, _ in await self.report.outbox(case_id)
            if envelope.type == "statement_request"
        }
        for code, document in answers.items():
            await self.deliver(code, document, case_id, causation_id=requests[code])

    async def ended_case(
        self, out: str, into: str, day: date, amount: int, credited: int, months_in: int = MONTHS
    ) -> UUID:
        """A transfer that ended on ``day`` and both ends' statements: matched when ``credited``
        and ``months_in`` are what left the outgoing end, else mismatched."""
        case_id = uuid.uuid4()
        self.clock.set(at(day, 9))
        await self.deliver(out, form(amount), case_id)
        self.clock.set(at(day, 11))
        await self.deliver(
            into,
            TransferCompletedV1(
                months_credited=months_in, deemed_months_credited=0, amount_credited=credited
            ),
            case_id,
        )
        await self.answer_requests(
            case_id,
            {
                out: statement(case_id, Role.OUTGOING, into, amount),
                into: statement(case_id, Role.RECEIVING, out, credited, months_in),
            },
        )
        return case_id

    async def money_in_flight(self, out: str, into: str, sent: date, swept: date, amount: int) -> UUID:
        """A form (and its money) sent on ``sent`` with no completion since; the sweep on
        ``swept`` flags it, and the outgoing end answers the probe, naming ``into``."""
        case_id = uuid.uuid4()
        self.clock.set(at(sent, 9))
        await self.deliver(out, form(amount), case_id)
        self.clock.set(at(swept, 9))
        await self.service.sweep()
        await self.answer_requests(
            case_id, {out: statement(case_id, Role.OUTGOING, into, amount)}
        )
        return case_id


async def open_report_world(path: Path, start: date = date(2026, 3, 2)) -> ReportWorld:
    return report_world_on(await ReconciliationReport.open(path), ManualClock(at(start)))


def report_world_on(report: ReportStore, clock: ManualClock) -> ReportWorld:
    """A world over ``report`` (any backend), its service on ``clock``."""
    metrics = ReconcilerMetrics()
    service = ReconcilerService(
        report,
        Rules(code=RECONCILER, calendar=WorkingCalendar(package_years=range(2004, 2027))),
        clock=clock,
        metrics=metrics,
    )
    return ReportWorld(report, service, clock, metrics)
