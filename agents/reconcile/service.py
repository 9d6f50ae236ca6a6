"""The reconciler's service: one unit of work per message, the sweep one case at a time.

`ReconcilerService.handle` is the consumer's handler. In one transaction of the report it checks
and records the message in the inbox, loads the case, asks `agents.reconcile.plan.reconcile_step`
what the message does, and writes the new case record, the statement requests it issued and the
envelopes it queued. It publishes nothing: `agents.service.relay.OutboxRelay`, woken through
``on_commit``, publishes the queued envelopes afterwards (marking a possible re-send with
``x-jiexu-republished``, so an agency acks a copy it has handled instead of dead-lettering it as a
replay). `ReconcilerService.sweep` does the same for each open case whose clock started before
yesterday, one transaction per case.

Crash points (`agents.faults`, armed by ``JIEXU_CRASH_AT``) in the reconciler process:

``after_commit_before_publish``
    Here, right after a unit of work that queued envelopes committed (a handled message or a swept
    case), before the relay is woken. The rows are durable and unpublished; the delivery being
    handled, if any, is unacked.
``after_handle_before_ack``
    Here, at the end of `ReconcilerService.handle` for a message that was not a duplicate: its
    effect is committed, the consumer has not acked it yet (the redelivery is a duplicate).
``before_publish``
    `agents.service.relay.OutboxRelay`, a batch of queued envelopes fetched, nothing published.
``after_publish_before_mark``
    `agents.service.relay.OutboxRelay`, the broker confirmed the batch, the rows not yet marked
    sent: the restarted relay publishes the same messages again, marked as re-sends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

import structlog

from agents.domain.clock import Clock, SystemClock
from agents.faults import crash_point
from agents.reconcile.plan import (
    Event,
    FormCopy,
    LogLine,
    Plan,
    Rules,
    StatementCopy,
    SweepTick,
    TerminalCopy,
    reconcile_step,
)
from agents.reconcile.records import ReconciledCase
from agents.reconcile.report_base import ReportStore, ReportStoreTransaction
from agents.service.admission import Freshness
from agents.service.metrics import ReconcilerMetrics
from broker.consumer import DeliveryInfo
from schemas.information import InformationFormV2
from schemas.notices import RejectionV1, TransferCompletedV1
from schemas.reconciliation import LedgerStatementV1
from schemas.registry import Message

__all__ = ["ReconcilerService", "SweepOutcome"]

log = structlog.get_logger("jiexu.reconcile")


@dataclass
class SweepOutcome:
    overdue: list[UUID] = field(default_factory=list)
    """Cases past their due date with no result (stuck), in case-id order."""
    requested: int = 0
    """Statement requests queued by this sweep."""
    compared: int = 0
    """Results recorded by this sweep (compared without a missing form copy)."""
    published: int = 0
    """Envelopes published after the sweep (set by the process that ran it, with ``--once``)."""


def _emit(lines: tuple[LogLine, ...]) -> None:
    for line in lines:
        if line.level == "warning":
            log.warning(line.event, **line.fields)
        else:
            log.info(line.event, **line.fields)


class ReconcilerService:
    """The reconciler's handler and sweep over a report (`agents.reconcile.report_base.ReportStore`:
    SQLite or PostgreSQL); publishes nothing itself. Several services (processes) may share a
    PostgreSQL report: each unit of work holds its case (`ReportStoreTransaction.load`), the inbox
    admits a message once, and the plan's envelopes have content-derived ids, so two sweeps of one
    overdue case queue its statement requests once."""

    def __init__(
        self,
        report: ReportStore,
        rules: Rules,
        *,
        clock: Clock | None = None,
        on_commit: Callable[[], None] | None = None,
        metrics: ReconcilerMetrics | None = None,
        freshness: Freshness | None = None,
    ) -> None:
        """``metrics``: each new result counted (``jiexu_reconciliation_results_total``,
        ``jiexu_reconciliation_differences_total``) once its unit of work committed.
        ``freshness``: the window on ``sent_at`` (a stale message is dead-lettered ``stale``) and
        with it the inbox's retention, as for an agency (`agents.service.admission`)."""
        self.report = report
        self.rules = rules
        self._clock = clock or SystemClock()
        self._on_commit = on_commit
        self._metrics = metrics
        self.freshness = freshness or Freshness()

    @property
    def code(self) -> str:
        return self.rules.code

    async def seen_from(self, sender: str, message_id: UUID) -> bool:
        """Whether ``sender``'s message was handled (the consumer's replay check): keyed by sender
        and id, so one agency's id never blocks another's message."""
        return await self.report.handled(sender, message_id)

    async def handled_republished(self, sender: str, message_id: UUID) -> bool:
        """The consumer's stale-original check (`broker.consumer.Consumer`'s ``republished_from``)."""
        return await self.report.handled_republished(sender, message_id)

    def _count(self, plan: Plan) -> None:
        result = plan.record.result
        if self._metrics is not None and plan.compared and result is not None:
            self._metrics.reconciled(result.outcome.value, [d.field for d in result.differences])

    def _committed(self, queued: int) -> None:
        if queued:
            crash_point("after_commit_before_publish")
            if self._on_commit is not None:
                self._on_commit()

    async def _event(self, tx: ReportStoreTransaction, message: Message) -> Event | None:
        envelope, document = message.envelope, message.document
        if isinstance(document, InformationFormV2):
            return FormCopy(envelope, document)
        if isinstance(document, TransferCompletedV1):
            return TerminalCopy(envelope, "transfer_completed")
        if isinstance(document, RejectionV1):
            return TerminalCopy(envelope, "rejection", document.reason_code.value)
        if isinstance(document, LedgerStatementV1):
            request = None
            if envelope.causation_id is not None:
                request = await tx.request(envelope.causation_id)
            return StatementCopy(envelope, document, request)
        return None

    @staticmethod
    async def _write(tx: ReportStoreTransaction, plan: Plan, now: datetime) -> tuple[int, int]:
        """The plan into the unit of work: (envelopes newly queued, of which statement requests)."""
        for row in plan.requests:
            await tx.add_request(row)
        queued = requests = 0
        for envelope in plan.envelopes:
            if await tx.enqueue(envelope, now):
                queued += 1
                requests += envelope.type == "statement_request"
        if plan.changed:
            await tx.save(plan.record, now)
        return queued, requests

    # -- handling one message ---------------------------------------------------------------------
    async def handle(self, message: Message, delivery: DeliveryInfo | None = None) -> None:
        """The consumer's handler: record the message, decide, commit in one unit of work."""
        envelope = message.envelope
        now, today = self._clock.now(), self._clock.today()
        self.freshness.check(envelope, now)
        plan: Plan | None = None
        async with self.report.transaction() as tx:
            republished = delivery is not None and delivery.republished
            if not await tx.mark_handled(envelope, now, republished=republished):
                log.info("reconcile.duplicate_message", message_id=str(envelope.message_id))
                return
            event = await self._event(tx, message)
            if event is None:
                log.info("reconcile.ignored_message", message_type=envelope.type, sender=envelope.sender)
            else:
                record = await tx.load(envelope.case_id) or ReconciledCase(
                    case_id=envelope.case_id, first_seen=now
                )
                plan = reconcile_step(record, event, self.rules, now=now, today=today)
                queued, _ = await self._write(tx, plan, now)
        if plan is not None:
            _emit(plan.logs)
            self._count(plan)
            self._committed(queued)
        crash_point("after_handle_before_ack")

    # -- the sweep --------------------------------------------------------------------------------
    async def sweep(self) -> SweepOutcome:
        """Flag and probe the cases gone quiet past their due date; queue what that asks for."""
        outcome = SweepOutcome()
        today = self._clock.today()
        now = self._clock.now()
        # A step is due one working day after it started at the earliest, so a case whose clock
        # started yesterday or today cannot be overdue: those are not even read. The others are
        # read a page at a time, so that a sweep's memory does not grow with the open cases.
        started_before = today - timedelta(days=1)
        after: UUID | None = None
        while page := await self.report.open_cases_started_before(started_before, after=after):
            after = page[-1].case_id
            for candidate in page:
                plan = None
                async with self.report.transaction() as tx:
                    record = await tx.load(candidate.case_id)
                    if record is None or record.result is not None:
                        continue
                    plan = reconcile_step(record, SweepTick(), self.rules, now=now, today=today)
                    if not plan.changed:
                        continue  # not overdue: nothing changed
                    queued, requested = await self._write(tx, plan, now)
                _emit(plan.logs)
                outcome.requested += requested
                outcome.compared += int(plan.compared)
                self._count(plan)
                if plan.record.stuck:
                    outcome.overdue.append(plan.record.case_id)
                self._committed(queued)
        # Inbox retention follows from the freshness window: an older copy is refused anyway.
        pruned = await self.report.prune_inbox(self.freshness.inbox_cutoff(now))
        if pruned:
            log.info("reconcile.inbox_pruned", rows=pruned)
        if outcome.overdue:
            log.warning("reconcile.sweep", overdue=len(outcome.overdue), requested=outcome.requested)
        else:
            log.info("reconcile.sweep", overdue=0, requested=outcome.requested)
        return outcome
