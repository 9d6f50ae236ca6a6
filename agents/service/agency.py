"""The agency's service layer: every event becomes one unit of work around the pure `decide`.

For each event (an application, a message from another agency, a deadline tick, the result of a
ledger command) the service fetches what `decide` needs (the case, the ledger's view of the
person, whether another case is open), calls `decide`, and commits in ONE store transaction the new
case, its history, the outgoing messages (signed, in the outbox) and the inbox row of the message
handled. Nothing is published here: the relay publishes committed outbox rows afterwards.

Ledger commands run *after* the commit that recorded them as pending (the ledger is a separate
system, the agency's own books); every command is idempotent per ``(case_id, operation)``, so a
crash between the ledger change and the next commit is harmless: on restart `recover` runs the
pending commands again, the ledger returns the first result, and the case moves on.

The reconciliation agent is copied (a separate, signed envelope addressed to it) on every
information form, completion notice and rejection sent to another agency: that is how it learns of
each case and of what the outgoing agency certified.

`AgencyService` delegates part of its work to functions of it in sibling modules: running a case's
pending ledger commands and committing their result (`agents.service.ledger_commands`), the
deadline and recovery rounds (`agents.service.rounds`), an operator's actions
(`agents.service.operator`); the checks on who may send what are `agents.service.admission`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import structlog

from agents.domain.case import Agency as AgencyConfig
from agents.domain.case import (
    ApplicationSubmitted,
    Case,
    Context,
    Decision,
    DeliveryHeld,
    LetterReceived,
    OutboundMessage,
    PayoutApproved,
    case_columns,
    case_from_data,
    decide,
    event_for_message,
    person_key,
)
from agents.domain.clock import Clock
from agents.domain.workdays import WorkdayCalendar
from agents.faults import crash_point
from agents.ledger.base import LedgerPort, PersonAccount
from agents.service import ledger_commands, operator, rounds
from agents.service.admission import (
    RECONCILER_TYPES,
    Freshness,
    check_counterpart,
    check_reconciler,
    directory_account,
)
from agents.service.certificates import sign_certificate
from agents.service.metrics import AgentMetrics
from agents.service.statements import statement_document
from agents.store.base import (
    CaseRecord,
    DuplicateOpenCase,
    OutboxMessage,
    Store,
    StoreTransaction,
    Transition,
)
from broker.delivery import DeliveryInfo
from broker.directory import AgencyDirectory
from broker.names import routing_key
from broker.signing import Ed25519PrivateKey, sign_envelope
from schemas.errors import TransientError
from schemas.notices import ReceiptV1
from schemas.protocol import RECEIPTED
from schemas.reconciliation import StatementRequestV1
from schemas.registry import Message, encode_envelope, envelope_for, newest_version

__all__ = ["CONSUMER", "RECONCILER_COPIES", "AgencyService", "ServiceStats"]

log = structlog.get_logger("jiexu.agents.service.agency")

CONSUMER = "agent"
"""The inbox consumer name of the agency agent."""

RECONCILER_COPIES = frozenset({"information_form", "transfer_completed", "rejection"})
"""Documents copied to the reconciliation agent when sent to another agency."""


@dataclass
class ServiceStats:
    handled: int = 0
    duplicates: int = 0
    statements: int = 0
    commands_run: int = 0
    reminders: int = 0
    by_type: dict[str, int] = field(default_factory=dict)


WARNING_NOTES = frozenset({"case.wrong_sender", "case.unknown_case", "case.letter_account_differs"})
"""Notes that are security events: logged at WARNING, the others at INFO."""


def _log_notes(decision: Decision) -> None:
    for note in decision.notes:
        emit = log.warning if note.event in WARNING_NOTES else log.info
        emit(note.event, **{k: v for k, v in note.detail.items() if k != "event"})


class AgencyService:
    """One agency's use cases: apply, handle a message, tick the deadlines, recover."""

    def __init__(
        self,
        *,
        agency: AgencyConfig,
        store: Store,
        ledger: LedgerPort,
        directory: AgencyDirectory,
        calendar: WorkdayCalendar,
        clock: Clock,
        private_key: Ed25519PrivateKey,
        reconciler: str | None = None,
        on_commit: Callable[[], None] | None = None,
        metrics: AgentMetrics | None = None,
        freshness: Freshness | None = None,
        check_counterparts: bool = True,
        recover_grace_s: float = 0.0,
    ) -> None:
        """``metrics``: ledger command latency, months certified and credited, reminders."""
        self.agency = agency
        self.check_counterparts = check_counterparts
        self.code = agency.code
        self.store = store
        self.ledger = ledger
        self.directory = directory
        self.calendar = calendar
        self.clock = clock
        self.private_key = private_key
        self.reconciler = reconciler
        self.freshness = freshness or Freshness()
        self._on_commit = on_commit or (lambda: None)
        self.metrics = metrics
        # Replicas: a case changed this recently is likely being driven by the replica that
        # changed it; `recover` leaves it for a later round (0: this process is the only one).
        self.recover_grace_s = recover_grace_s
        self.stats = ServiceStats()

    # -- inputs ---------------------------------------------------------------------------------
    async def seen(self, sender: str, message_id: uuid.UUID) -> bool:
        """The consumer's replay check: has this sender's message been handled (committed)?"""
        return await self.store.has_handled(CONSUMER, message_id, sender=sender)

    async def handled_republished(self, sender: str, message_id: uuid.UUID) -> bool:
        """The consumer's stale-original check: was the copy handled marked republished?"""
        return await self.store.handled_republished(CONSUMER, message_id, sender=sender)

    async def apply(self, application: ApplicationSubmitted) -> Case:
        """An application at this (receiving) agency: open the case and send the contact letter.

        Submitting the same application (same case id) twice changes nothing the second time.
        Returns the case as committed. Raises `ApplicationRefused`, committing nothing, when the
        outgoing agency named cannot take it (`agents.service.operator.check_counterpart`).
        """
        operator.check_counterpart(self, application.from_region)
        account = await self.ledger.lookup(application.person.id_number)
        async with self.store.transaction() as tx:
            record = await tx.get_case(application.case_id)
            case = case_from_data(record.data) if record else None
            other = await tx.find_open_case(person_key(application.person))
            other_open = other is not None and other.case_id != application.case_id
            decision = decide(
                case, application, self._context(account, other_open, application.from_region)
            )
            saved = await self._commit(tx, record, decision)
        self._committed(decision)
        if saved is not None:
            return saved
        if case is None:  # pragma: no cover - decide always opens a case on an application
            raise RuntimeError("the application opened no case")
        return case

    async def handle(self, message: Message, delivery: DeliveryInfo) -> None:
        """The consumer's handler: returns only after this message's effect is committed."""
        envelope = message.envelope
        self.stats.by_type[envelope.type] = self.stats.by_type.get(envelope.type, 0) + 1
        self.freshness.check(envelope, self.clock.now())
        if envelope.type in RECONCILER_TYPES:
            check_reconciler(envelope, self.reconciler)
        republished = delivery.republished
        if isinstance(message.document, StatementRequestV1):
            await self._answer_statement(message, republished)
            return
        event = event_for_message(message)
        if event is None:
            # Reconciliation results: recorded and logged, nothing to decide.
            async with self.store.transaction() as tx:
                record = await tx.get_case(envelope.case_id)
                if record is not None and envelope.type not in RECONCILER_TYPES:
                    check_counterpart(envelope, record.counterpart)
                await tx.record_inbox(
                    CONSUMER, envelope.message_id, sender=envelope.sender, republished=republished
                )
            log.info(
                "notice_received",
                message_type=envelope.type,
                sender=envelope.sender,
                document=message.document.model_dump(mode="json"),  # masked by the log processor
            )
            return
        account: PersonAccount | None = None
        if isinstance(event, LetterReceived):
            account = await self.ledger.lookup(event.letter.person.id_number)
        try:
            async with self.store.transaction() as tx:
                record = await tx.get_case(envelope.case_id)
                if record is not None:
                    # Before the inbox row: a refused message records nothing (no squatted id).
                    check_counterpart(envelope, record.counterpart)
                if not await tx.record_inbox(
                    CONSUMER, envelope.message_id, sender=envelope.sender, republished=republished
                ):
                    self.stats.duplicates += 1
                    log.info("duplicate_message_ignored", message_type=envelope.type)
                    return
                case = case_from_data(record.data) if record else None
                other_open = False
                if isinstance(event, LetterReceived):
                    other = await tx.find_open_case(person_key(event.letter.person))
                    other_open = other is not None and other.case_id != envelope.case_id
                decision = decide(case, event, self._context(account, other_open, envelope.sender))
                saved = await self._save(tx, record, decision)
                receipted = envelope.type in RECEIPTED
                if receipted:
                    await tx.add_outbox([self._receipt_row(message)])
        except DuplicateOpenCase as exc:
            # Two letters for one person raced; the retry sees the other case and rejects.
            raise TransientError(str(exc)) from exc
        self.stats.handled += 1
        self._committed(decision)
        if receipted and not decision.messages:
            self._on_commit()
        if saved is not None and saved[0].pending_commands:
            await self._drive_commands_safely(saved[0].case_id, saved)
        crash_point("after_handle_before_ack")

    async def approve_payout(self, case_id: uuid.UUID, approved_by: str) -> Case | None:
        """An operator approves a payout held in ``awaiting_approval``: the held ledger commands
        (terminate, pay out) run now. Returns the case as it stands afterwards (``None``: no such
        case); a case with nothing to approve is returned unchanged."""
        async with self.store.transaction() as tx:
            record = await tx.get_case(case_id)
            if record is None:
                return None
            case = case_from_data(record.data)
            decision = decide(
                case,
                PayoutApproved(case_id=case_id, approved_by=approved_by),
                self._context(counterpart=case.counterpart_code),
            )
            saved = await self._save(tx, record, decision)
        self._committed(decision)
        if saved is not None and saved[0].pending_commands:
            await self._drive_commands_safely(case_id, saved)
        current = await self.store.get_case(case_id)
        return case_from_data(current.data) if current is not None else case

    async def record_undeliverable(self, row: OutboxMessage) -> None:
        """The relay holds `row` (no inbox for its recipient): the case shows it
        (``Case.undeliverable``, a ``DeliveryHeld`` history entry) until the counterpart answers."""
        case_id = uuid.UUID(json.loads(row.body)["case_id"])
        async with self.store.transaction() as tx:
            record = await tx.get_case(case_id)
            if record is None:
                return
            event = DeliveryHeld(case_id=case_id, message_id=row.message_id, recipient=row.recipient)
            decision = decide(case_from_data(record.data), event, self._context())
            await self._save(tx, record, decision)

    async def tick(self) -> int:
        """Deadlines: every open case past its due date gets a `Tick` (reminders, notes).

        Returns the number of cases ticked.
        """
        return await rounds.tick(self)

    async def recover(self) -> int:
        """Run the ledger commands of every case left with pending ones (after a crash), but
        those changed within `recover_grace_s` (another replica's in flight). Replicas that
        still race apply each change once: the ledger is idempotent per (case, operation), and
        the case's version lets one of them commit the result."""
        return await rounds.recover(self)

    # -- ledger commands (`agents.service.ledger_commands`) -------------------------------------
    async def _drive_commands_safely(
        self, case_id: uuid.UUID, known: tuple[Case, CaseRecord] | None = None
    ) -> None:
        await ledger_commands.drive_commands_safely(self, case_id, known)

    async def _drive_commands(
        self, case_id: uuid.UUID, known: tuple[Case, CaseRecord] | None = None
    ) -> None:
        """Run the case's pending ledger commands, then commit their result."""
        await ledger_commands.drive_commands(self, case_id, known)

    # -- statements for the reconciliation agent ------------------------------------------------
    async def _answer_statement(self, message: Message, republished: bool) -> None:
        request = message.document
        assert isinstance(request, StatementRequestV1)
        statement = await self.ledger.statement(request.case_id)
        record = await self.store.get_case(request.case_id)
        counterpart = record.counterpart if record is not None else message.envelope.sender
        role = record.role if record is not None else "receiving"
        document = statement_document(request.case_id, statement, counterpart, role=role)
        async with self.store.transaction() as tx:
            if not await tx.record_inbox(
                CONSUMER,
                message.envelope.message_id,
                sender=message.envelope.sender,
                republished=republished,
            ):
                self.stats.duplicates += 1
                return
            await tx.add_outbox(
                [
                    self._outbox_row(
                        OutboundMessage(
                            recipient=message.envelope.sender,
                            document=document,
                            message_id=uuid.uuid5(message.envelope.message_id, "ledger_statement"),
                            causation_id=message.envelope.message_id,
                            version=document.VERSION,
                        ),
                        request.case_id,
                    )
                ]
            )
        self.stats.statements += 1
        crash_point("after_commit_before_publish")
        self._on_commit()

    # -- the unit of work -----------------------------------------------------------------------
    def _context(
        self,
        account: PersonAccount | None = None,
        other_open_case: bool = False,
        counterpart: str | None = None,
    ) -> Context:
        versions: dict[str, Sequence[int]] | None = None
        if counterpart is not None and counterpart in self.directory:
            versions = dict(self.directory.get(counterpart).supported_versions)
            if self.code in self.directory:
                # Send only what both ends declare: an agency that has not upgraded speaks v1.
                own = self.directory.get(self.code).supported_versions
                versions = {
                    t: [v for v in theirs if v in own.get(t, (1,))] or [1]
                    for t, theirs in versions.items()
                }
        return Context(
            agency=self.agency,
            today=self.clock.today(),
            calendar=self.calendar,
            account=account,
            other_open_case=other_open_case,
            counterpart_versions=versions,
            counterpart_account=directory_account(self.directory, counterpart),
        )

    def _version_for(self, recipient: str, message_type: str) -> int:
        """The newest version of `message_type` both this agency and `recipient` declare."""
        newest = newest_version(message_type)
        if recipient not in self.directory or self.code not in self.directory:
            return newest
        theirs = self.directory.get(recipient).supported_versions.get(message_type, (1,))
        own = self.directory.get(self.code).supported_versions.get(message_type, (1,))
        common = [v for v in theirs if v in own and v <= newest]
        return max(common) if common else 1

    async def _commit(
        self, tx: StoreTransaction, record: CaseRecord | None, decision: Decision
    ) -> Case | None:
        saved = await self._save(tx, record, decision)
        return saved[0] if saved is not None else None

    async def _save(
        self, tx: StoreTransaction, record: CaseRecord | None, decision: Decision
    ) -> tuple[Case, CaseRecord] | None:
        """Write the decision in the unit of work: the case, its history, its outgoing messages.
        Returns the case and its record as stored (None when the decision keeps no case)."""
        case = decision.case
        if case is None:
            _log_notes(decision)
            return None
        case = self._sign_certificate(case)
        now = self.clock.now()
        new_record = CaseRecord(
            **case_columns(case),
            created_at=record.created_at if record is not None else now,
            updated_at=now,
            version=record.version if record is not None else 0,
        )
        transition = None
        if decision.transition is not None:
            t = decision.transition
            transition = Transition(
                case_id=case.case_id,
                at=now,
                from_state=t.from_state.value if t.from_state is not None else None,
                to_state=t.to_state.value,
                event=t.event,
                detail=dict(t.detail),
            )
        # Saved first: a save refused (a concurrent update) logs nothing of this decision.
        stored = await tx.save_case(new_record, transition)
        _log_notes(decision)
        if transition is not None:
            log.info(
                "case_transition",
                case_id=str(case.case_id),
                role=case.role.value,
                from_state=transition.from_state,
                to_state=transition.to_state,
                cause=transition.event,
            )
        rows: list[OutboxMessage] = []
        for message in decision.messages:
            rows.append(self._outbox_row(message, case.case_id))
            if (
                self.reconciler is not None
                and message.recipient != self.reconciler
                and message.document.MESSAGE_TYPE in RECONCILER_COPIES
            ):
                rows.append(
                    self._outbox_row(
                        OutboundMessage(
                            recipient=self.reconciler,
                            document=message.document,
                            message_id=uuid.uuid5(message.message_id, "reconciler-copy"),
                            causation_id=message.causation_id,
                            version=self._version_for(
                                self.reconciler, message.document.MESSAGE_TYPE
                            ),
                        ),
                        case.case_id,
                    )
                )
        if rows:
            await tx.add_outbox(rows)
        return case, stored

    def _sign_certificate(self, case: Case) -> Case:
        """The case with the certificate the domain just issued signed by this agency's key
        (Ed25519 is deterministic: a decision made again signs to the same bytes)."""
        if case.certificate is None or case.certificate.signature is not None:
            return case
        signed = sign_certificate(case.certificate, self.private_key)
        log.info("certificate_issued", case_id=str(case.case_id), number=signed.certificate_number)
        return case.model_copy(update={"certificate": signed})

    def _committed(self, decision: Decision) -> None:
        if decision.messages:
            crash_point("after_commit_before_publish")
            self._on_commit()

    def _receipt_row(self, message: Message) -> OutboxMessage:
        """The receipt for a committed document of a case (docs/protocol.md section 9): to its
        sender, causation and acknowledged id its message id, the same id if made again."""
        envelope = message.envelope
        return self._outbox_row(
            OutboundMessage(
                recipient=envelope.sender,
                document=ReceiptV1(acknowledged_message_id=envelope.message_id),
                message_id=uuid.uuid5(envelope.message_id, "receipt"),
                causation_id=envelope.message_id,
                version=self._version_for(envelope.sender, "receipt"),
            ),
            envelope.case_id,
        )

    def _outbox_row(self, message: OutboundMessage, case_id: uuid.UUID) -> OutboxMessage:
        now = self.clock.now()
        envelope = envelope_for(
            message.document,
            sender=self.code,
            recipient=message.recipient,
            case_id=case_id,
            causation_id=message.causation_id,
            message_id=message.message_id,
            version=message.version,
            sent_at=now,
        )
        envelope = sign_envelope(envelope, self.private_key)
        return OutboxMessage(
            message_id=envelope.message_id,
            recipient=message.recipient,
            message_type=envelope.type,
            routing_key=routing_key(message.recipient, envelope.type),
            body=encode_envelope(envelope),
            created_at=now,
        )
