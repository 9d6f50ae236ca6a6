"""The reconciliation agent (code ``000000``): asks both ends for their books, compares, reports.

What it is sent
---------------
Agencies send it copies (envelopes from the agency to ``000000``, the case's ``case_id``) of:

* ``information_form`` — from the outgoing agency: what it certified. Its sender is the outgoing
  agency of the case.
* ``transfer_completed`` — from the receiving agency; its sender is the receiving agency.
* ``rejection`` — from either agency, whichever ends the case.

The completion notice or the rejection is the case's *terminal notice*. A copy names only its
sender, so the reconciler learns the other agency from the ``counterpart`` of that agency's
ledger statement, and then asks the other agency too.

What it does
------------
* On a terminal notice: a ``statement_request`` to every agency known in the case (a *final*
  round); agencies answer with a ``ledger_statement`` whose ``causation_id`` is the request's id.
* When both final statements are in (and the form, if the outgoing agency holds the case): it
  compares them (`agents.reconcile.compare.compare`), records the result and publishes
  ``reconciliation_result`` to both agencies. A later final statement that changes the result
  publishes the new result; one that does not changes nothing.
* The *sweep* (`Reconciler.sweep`, every few minutes, clock injected): a case with money in flight
  (a form with ``amount_transferred`` > 0) and no terminal notice past the form-to-completion
  limit of the configured regime, in China's working days, is logged (WARNING
  ``reconcile.money_in_flight_overdue``), listed as stuck, and probed: statement requests to both
  ends, whose answers give a provisional comparison (``probe_result``, not published) so that a
  lost credit shows up. A terminal case still without a result past the same limit is logged,
  re-requested, and — if only the form copy is missing — compared without it (a difference).

Every handled message, the case it changed and the envelopes it queued commit together; queued
envelopes are published afterwards with ids derived from their content, so a repeat after a crash
carries the same id. Duplicate notices and statements change nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Protocol
from uuid import UUID, uuid5

import structlog

from agents.calendars import open_calendar
from agents.domain.clock import CHINA_TZ, Clock, SystemClock
from agents.domain.deadlines import Regime, Step, due_date, is_overdue
from agents.domain.policy import REMINDER_INTERVAL_WORKING_DAYS
from agents.domain.workdays import WorkdayCalendar
from agents.reconcile.compare import compare
from agents.reconcile.report import (
    CaseRecord,
    Purpose,
    ReconciliationReport,
    ReportTransaction,
    RequestRow,
    StoredStatement,
    Terminal,
)
from broker.connection import BrokerConnection, connect
from broker.consumer import Consumer, ConsumerSettings, DeliveryInfo, KeyDirectory, run_until_signal
from broker.names import RECONCILER_CODE, inbox_queue
from broker.publisher import Publisher, PublishRefused, UnroutableError
from broker.signing import Ed25519PrivateKey
from schemas.envelope import Envelope
from schemas.errors import TransientError
from schemas.information import InformationFormV2
from schemas.notices import RejectionV1, TransferCompletedV1
from schemas.reconciliation import (
    LedgerStatementV1,
    ReconciliationOutcome,
    ReconciliationResultV1,
    Role,
    StatementRequestV1,
)
from schemas.registry import Message, envelope_for

__all__ = [
    "ID_NAMESPACE",
    "Reconciler",
    "ReconcilerSettings",
    "SweepOutcome",
    "Sweeper",
    "Transport",
    "run_reconciler",
]

log = structlog.get_logger("jiexu.reconcile")

ID_NAMESPACE = UUID("6f0c2f1e-5a9b-4c7d-8e3f-000000000000")
"""Namespace of the reconciler's content-derived message ids (uuid5)."""


class Transport(Protocol):
    """Publishes one envelope, signed, and waits for the broker's confirm (`broker.Publisher`)."""

    async def publish(self, envelope: Envelope) -> Envelope: ...


@dataclass(frozen=True)
class ReconcilerSettings:
    code: str = RECONCILER_CODE
    regime: Regime = Regime.R2021
    """Whose form-to-completion limit makes a case overdue (5 working days in 2021, 15 in 2016)."""
    repeat_working_days: int = REMINDER_INTERVAL_WORKING_DAYS
    """Working days between two probes (or re-requests) of the same overdue case."""


@dataclass
class SweepOutcome:
    overdue: list[UUID] = field(default_factory=list)
    """Cases past their due date with no result (stuck), in case-id order."""
    requested: int = 0
    """Statement requests queued by this sweep."""
    compared: int = 0
    """Results recorded by this sweep (compared without a missing form copy)."""
    published: int = 0
    """Envelopes published by the flush at the end of the sweep."""


def _china_day(moment: datetime) -> date:
    return moment.astimezone(CHINA_TZ).date()


class Reconciler:
    """The reconciler's handler and sweep; I/O through a `ReconciliationReport` and a `Transport`."""

    def __init__(
        self,
        report: ReconciliationReport,
        transport: Transport,
        *,
        clock: Clock | None = None,
        calendar: WorkdayCalendar | None = None,
        settings: ReconcilerSettings | None = None,
    ) -> None:
        self.report = report
        self.settings = settings or ReconcilerSettings()
        self._transport = transport
        self._clock = clock or SystemClock()
        self._calendar = calendar or open_calendar()
        self._flush_lock = asyncio.Lock()
        self._failed: set[UUID] = set()

    @property
    def code(self) -> str:
        return self.settings.code

    # -- handling one message ---------------------------------------------------------------------
    async def handle(self, message: Message, delivery: DeliveryInfo | None = None) -> None:
        """The consumer's handler: record the document, decide, commit; then publish what it queued."""
        envelope, document = message.envelope, message.document
        now = self._clock.now()
        async with self.report.transaction() as tx:
            if await tx.handled(envelope.message_id):
                log.info("reconcile.duplicate_message", message_id=str(envelope.message_id))
                return
            await tx.mark_handled(envelope, now)
            record = await tx.load(envelope.case_id) or CaseRecord(case_id=envelope.case_id, first_seen=now)
            if isinstance(document, InformationFormV2):
                self._on_form(record, envelope, document)
            elif isinstance(document, TransferCompletedV1):
                self._on_terminal(record, envelope, "transfer_completed", None)
            elif isinstance(document, RejectionV1):
                self._on_terminal(record, envelope, "rejection", document.reason_code.value)
            elif isinstance(document, LedgerStatementV1):
                await self._on_statement(tx, record, envelope, document, now)
            else:
                log.info("reconcile.ignored_message", message_type=envelope.type, sender=envelope.sender)
                return
            await self._advance(tx, record, now)
            await tx.save(record, now)
        await self.flush()

    def _on_form(self, record: CaseRecord, envelope: Envelope, form: InformationFormV2) -> None:
        if record.form is not None:
            if record.form != form:
                log.warning("reconcile.second_form_differs", sender=envelope.sender, kept="first")
            return
        record.form = form
        record.form_sent_on = _china_day(envelope.sent_at)
        self._assign(record, envelope.sender, Role.OUTGOING, source="information_form")

    def _on_terminal(
        self, record: CaseRecord, envelope: Envelope, kind: Terminal, reason: str | None
    ) -> None:
        if kind == "transfer_completed":
            self._assign(record, envelope.sender, Role.RECEIVING, source="transfer_completed")
        else:
            self._learn(record, envelope.sender)
        if record.terminal is not None:
            if record.terminal != kind or record.terminal_by != envelope.sender:
                log.warning(
                    "reconcile.second_terminal_notice",
                    first=record.terminal,
                    first_by=record.terminal_by,
                    now=kind,
                    now_by=envelope.sender,
                    kept="first",
                )
            return
        record.terminal = kind
        record.terminal_by = envelope.sender
        record.terminal_on = _china_day(envelope.sent_at)
        record.rejection_reason = reason
        self._new_round(record, "final")
        log.info("reconcile.case_ended", terminal=kind, by=envelope.sender, reason=reason)

    async def _on_statement(
        self,
        tx: ReportTransaction,
        record: CaseRecord,
        envelope: Envelope,
        statement: LedgerStatementV1,
        now: datetime,
    ) -> None:
        sender = envelope.sender
        if statement.case_id != envelope.case_id:
            log.warning("reconcile.statement_for_other_case", statement_case=str(statement.case_id))
            return
        if record.outgoing and record.receiving and sender not in (record.outgoing, record.receiving):
            log.warning("reconcile.statement_from_stranger", sender=sender)
            return
        request: RequestRow | None = None
        if envelope.causation_id is not None:
            request = await tx.request(envelope.causation_id)
            if request is not None and (request.case_id != record.case_id or request.recipient != sender):
                request = None
        final = request.purpose == "final" if request is not None else record.terminal is not None
        existing = record.statements.get(sender)
        if existing is not None and existing.final and not final:
            return  # a late answer to a probe never replaces an answer given after the case ended
        record.statements[sender] = StoredStatement(
            statement=statement, final=final, message_id=envelope.message_id, received_at=now
        )
        self._assign(record, sender, statement.role, source="ledger_statement")
        other = Role.RECEIVING if statement.role is Role.OUTGOING else Role.OUTGOING
        if statement.counterpart != sender:
            self._assign(record, statement.counterpart, other, source="ledger_statement.counterpart")

    # -- parties and roles ------------------------------------------------------------------------
    def _learn(self, record: CaseRecord, code: str) -> None:
        if code == self.code or code in record.parties:
            return
        if record.outgoing and record.receiving and code not in (record.outgoing, record.receiving):
            log.warning("reconcile.third_agency", agency=code)
            return
        record.parties.append(code)

    def _assign(self, record: CaseRecord, code: str, role: Role, *, source: str) -> None:
        """First claim wins: the form names the outgoing agency, the completion the receiving one,
        a statement its sender's claimed side and its counterpart's."""
        if code == self.code:
            log.warning("reconcile.reconciler_named_as_party", role=role.value, source=source)
            return
        current = record.outgoing if role is Role.OUTGOING else record.receiving
        other = record.receiving if role is Role.OUTGOING else record.outgoing
        if current is None and other != code:
            if role is Role.OUTGOING:
                record.outgoing = code
            else:
                record.receiving = code
        elif current != code:
            log.warning(
                "reconcile.role_conflict", agency=code, role=role.value, known=current, source=source
            )
        self._learn(record, code)

    # -- requests, comparison, results ------------------------------------------------------------
    def _new_round(self, record: CaseRecord, purpose: Purpose) -> None:
        if purpose == "final":
            record.final_round += 1
            record.final_asked = []
        else:
            record.probe_round += 1
            record.probe_asked = []
        record.last_request_on = self._clock.today()

    async def _advance(self, tx: ReportTransaction, record: CaseRecord, now: datetime) -> int:
        """Ask every known agency not yet asked in the current round; compare if everything is in.
        Returns the number of requests queued."""
        queued = 0
        rounds: list[tuple[Purpose, int, list[str]]] = []
        if record.terminal is not None and record.final_round:
            rounds.append(("final", record.final_round, record.final_asked))
        elif record.terminal is None and record.probe_round:
            rounds.append(("probe", record.probe_round, record.probe_asked))
        for purpose, number, asked in rounds:
            for party in list(record.parties):
                if party in asked:
                    continue
                envelope = self._request_envelope(record.case_id, party, purpose, number, now)
                await tx.add_request(
                    RequestRow(envelope.message_id, record.case_id, party, purpose, number)
                )
                if await tx.enqueue(envelope, now):
                    queued += 1
                asked.append(party)
        await self._try_compare(tx, record, now)
        return queued

    def _request_envelope(
        self, case_id: UUID, recipient: str, purpose: Purpose, number: int, now: datetime
    ) -> Envelope:
        return envelope_for(
            StatementRequestV1(case_id=case_id),
            sender=self.code,
            recipient=recipient,
            case_id=case_id,
            message_id=uuid5(ID_NAMESPACE, f"{case_id}/statement_request/{purpose}/{number}/{recipient}"),
            sent_at=now,
        )

    async def _try_compare(self, tx: ReportTransaction, record: CaseRecord, now: datetime) -> bool:
        outgoing, receiving = record.outgoing, record.receiving
        if outgoing is None or receiving is None:
            return False
        if record.terminal is None:
            if record.probe_round:
                out_probe = record.statement_of(outgoing, final=False)
                in_probe = record.statement_of(receiving, final=False)
                if out_probe is not None and in_probe is not None:
                    record.probe_result = compare(
                        record.case_id, outgoing, receiving, record.form, out_probe, in_probe
                    )
            return False
        out_statement = record.statement_of(outgoing)
        in_statement = record.statement_of(receiving)
        if out_statement is None or in_statement is None:
            return False
        if record.form is None and out_statement.has_record and not record.form_wait_over:
            # The outgoing books hold the case, so a form was certified: its copy may be on the way.
            return False
        result = compare(record.case_id, outgoing, receiving, record.form, out_statement, in_statement)
        if record.result == result:
            return False
        record.result = result
        record.checked_at = now
        record.day = record.terminal_on
        for recipient in (outgoing, receiving):
            stored = record.statements.get(recipient)
            await tx.enqueue(
                self._result_envelope(result, recipient, stored.message_id if stored else None, now), now
            )
        if result.outcome is ReconciliationOutcome.MATCHED:
            log.info("reconcile.matched", outgoing=outgoing, receiving=receiving)
        else:
            log.warning(
                "reconcile.mismatched",
                outgoing=outgoing,
                receiving=receiving,
                differences=[d.model_dump() for d in result.differences],
                terminal=record.terminal,
                rejection_reason=record.rejection_reason,
            )
        return True

    def _result_envelope(
        self, result: ReconciliationResultV1, recipient: str, causation_id: UUID | None, now: datetime
    ) -> Envelope:
        digest = hashlib.sha256(result.model_dump_json().encode("utf-8")).hexdigest()
        return envelope_for(
            result,
            sender=self.code,
            recipient=recipient,
            case_id=result.case_id,
            causation_id=causation_id,
            message_id=uuid5(ID_NAMESPACE, f"{result.case_id}/reconciliation_result/{recipient}/{digest}"),
            sent_at=now,
        )

    # -- the sweep --------------------------------------------------------------------------------
    async def sweep(self) -> SweepOutcome:
        """Flag and probe the cases gone quiet past their due date; publish anything queued."""
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
                async with self.report.transaction() as tx:
                    record = await tx.load(candidate.case_id)
                    if record is None or record.result is not None:
                        continue
                    swept = await self._sweep_case(tx, record, today, now)
                    if swept is None:
                        continue  # not overdue: nothing changed
                    requested, compared = swept
                    outcome.requested += requested
                    outcome.compared += int(compared)
                    if record.stuck:
                        outcome.overdue.append(record.case_id)
                    await tx.save(record, now)
        outcome.published = await self.flush(retry_failed=True)
        if outcome.overdue:
            log.warning("reconcile.sweep", overdue=len(outcome.overdue), requested=outcome.requested)
        else:
            log.info("reconcile.sweep", overdue=0, requested=outcome.requested)
        return outcome

    async def _sweep_case(
        self, tx: ReportTransaction, record: CaseRecord, today: date, now: datetime
    ) -> tuple[int, bool] | None:
        """Flag, probe or re-request one case; None when it is not overdue (nothing changed)."""
        if record.terminal is None:
            form = record.form
            if form is None or form.amount_transferred <= 0 or record.form_sent_on is None:
                return None
            started = record.form_sent_on
        else:
            if record.terminal_on is None:
                return None
            started = record.terminal_on
        due = due_date(self.settings.regime, Step.FORM_TO_COMPLETION, started, self._calendar)
        if not is_overdue(due, today):
            return None
        context = {
            "case_id": str(record.case_id),
            "outgoing": record.outgoing,
            "receiving": record.receiving,
            "due_on": due.isoformat(),
            "overdue_since": (record.overdue_since or today).isoformat(),
        }
        if record.overdue_since is None:
            record.overdue_since = today
        repeat = record.last_request_on is None or (
            self._calendar.working_days_between(record.last_request_on, today)
            >= self.settings.repeat_working_days
        )
        compared = False
        if record.terminal is None:
            assert record.form is not None
            log.warning(
                "reconcile.money_in_flight_overdue",
                amount_transferred=record.form.amount_transferred,
                **context,
            )
            if record.probe_round == 0 or repeat:
                self._new_round(record, "probe")
        else:
            missing = [
                code
                for code in (record.outgoing, record.receiving)
                if code is None or record.statement_of(code) is None
            ]
            log.warning(
                "reconcile.result_overdue",
                terminal=record.terminal,
                waiting_for_statements=missing,
                waiting_for_form=record.form is None,
                **context,
            )
            if not missing and record.form is None:
                record.form_wait_over = True
                compared = await self._try_compare(tx, record, now)
            elif repeat:
                self._new_round(record, "final")
        requested = await self._advance(tx, record, now)
        return requested, compared

    # -- publishing -------------------------------------------------------------------------------
    async def flush(self, *, retry_failed: bool = False) -> int:
        """Publish queued envelopes, oldest first, many in flight, then mark the confirmed ones sent
        in one unit of work; never raises (the sweep tries again)."""
        async with self._flush_lock:
            if retry_failed:
                self._failed.clear()
            batch = [e for e in await self.report.unsent() if e.message_id not in self._failed]
            if not batch:
                return 0
            results = await asyncio.gather(
                *(self._transport.publish(envelope) for envelope in batch), return_exceptions=True
            )
            sent: list[UUID] = []
            for envelope, result in zip(batch, results, strict=True):
                if isinstance(result, UnroutableError | PublishRefused):
                    self._failed.add(envelope.message_id)
                    log.error(
                        "reconcile.publish_refused",
                        message_id=str(envelope.message_id),
                        case_id=str(envelope.case_id),
                        recipient=envelope.recipient,
                        error=str(result),
                    )
                elif isinstance(result, TransientError | ConnectionError):
                    log.warning("reconcile.publish_interrupted", error=repr(result))
                elif isinstance(result, BaseException):
                    if not isinstance(result, Exception):
                        raise result
                    log.warning("reconcile.publish_failed", error=repr(result))
                else:
                    sent.append(envelope.message_id)
            await self.report.mark_sent_many(sent, self._clock.now())
            return len(sent)


class Sweeper:
    """Runs `Reconciler.sweep` every ``interval_s`` seconds until stopped."""

    def __init__(self, reconciler: Reconciler, interval_s: float) -> None:
        self._reconciler = reconciler
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    def start(self) -> Sweeper:
        self._task = asyncio.create_task(self._loop(), name="reconcile-sweeper")
        return self

    async def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                await self._reconciler.sweep()
            except Exception as exc:  # a failed sweep is retried at the next interval, visibly
                log.error("reconcile.sweep_failed", error=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self._interval_s)

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task


async def _wait_until_idle(
    connection: BrokerConnection, queue_name: str, consumer: Consumer, poll_s: float = 0.2
) -> None:
    """Until the inbox has no ready message and the consumer handled nothing new twice running."""
    channel = await connection.channel(confirms=False)
    try:
        quiet = 0
        last = -1
        while quiet < 2:
            queue = await channel.declare_queue(queue_name, passive=True, robust=False)
            ready = queue.declaration_result.message_count or 0
            stats = consumer.stats
            seen = stats.handled + stats.duplicates + stats.dead_lettered + stats.retried
            quiet = quiet + 1 if ready == 0 and seen == last else 0
            last = seen
            await asyncio.sleep(poll_s)
    finally:
        connection.forget(channel)
        await channel.close()


async def run_reconciler(
    *,
    amqp_url: str,
    directory: KeyDirectory,
    private_key: Ed25519PrivateKey,
    store_path: Path,
    settings: ReconcilerSettings | None = None,
    consumer_settings: ConsumerSettings | None = None,
    clock: Clock | None = None,
    calendar: WorkdayCalendar | None = None,
    once: bool = False,
    sweep_interval_s: float = 300.0,
    stop_event: asyncio.Event | None = None,
    signals: Sequence[signal.Signals] = (signal.SIGTERM, signal.SIGINT),
) -> SweepOutcome | None:
    """The reconciler's composition root: store, connection, publisher, consumer, sweeper.

    ``once``: handle what is in the inbox now, sweep once, publish, and return the sweep's outcome.
    Otherwise run until SIGTERM/SIGINT (or ``stop_event``), then drain and return None.
    """
    settings = settings or ReconcilerSettings()
    report = await ReconciliationReport.open(store_path)
    try:
        connection = await connect(amqp_url, name=f"jiexu-reconciler-{settings.code}")
        async with connection:
            publisher = await Publisher(connection, agency=settings.code, private_key=private_key).start()
            reconciler = Reconciler(report, publisher, clock=clock, calendar=calendar, settings=settings)
            await reconciler.flush(retry_failed=True)  # what an earlier run queued and did not send
            consumer = Consumer(
                connection,
                agency=settings.code,
                handler=reconciler.handle,
                directory=directory,
                settings=consumer_settings,
                seen=report.handled,
                publisher=publisher,
            )
            await consumer.start()
            if once:
                try:
                    await _wait_until_idle(connection, inbox_queue(settings.code), consumer)
                finally:
                    await consumer.stop()
                outcome = await reconciler.sweep()
                await publisher.close()
                return outcome
            sweeper = Sweeper(reconciler, sweep_interval_s).start()
            await run_until_signal(consumer, sweeper, signals=signals, stop_event=stop_event)
            await publisher.close()
            return None
    finally:
        await report.close()
