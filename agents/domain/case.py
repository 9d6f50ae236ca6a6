"""The transfer case as one agency sees it: states, events and `decide`, with no I/O at all.

``decide(case, event, ctx) -> Decision``: given the case as stored (or ``None``), one event and
the plain data the service layer fetched beforehand (`Context`), it returns the new case (or
``None``: nothing changes), the messages to send, the ledger commands to run, a transition record
and notes worth logging. It never raises for a bad event: duplicates and stale events change
nothing, events that make no sense are answered with a note, and the rules' refusals become
rejections.

Roles and states
================

Every case has one role. The **receiving** agency (the new place) opens it on an application;
the **outgoing** agency (the old place) opens it on the contact letter. Both ends use the same
case id (the envelope's ``case_id``). Due dates use the `agents.domain.deadlines` step named, counted in
the agency's working days under its `Regime` (kept by the case), from the day given.

| role | state               | meaning                                  | turn | due: step, from    |
|------|---------------------|------------------------------------------|------|--------------------|
| recv | awaiting_form       | letter sent; form (+ balance) owed to us | them | L2F from opened_on |
| recv | awaiting_funds      | form says transferred; the money is owed | them | as awaiting_form   |
| recv | crediting           | form and money agree; Credit pending     | ours | F2C from form day  |
| out  | releasing           | letter accepted; ledger commands pending | ours | L2F from opened_on |
| out  | awaiting_completion | form (+ funds) sent; completion owed     | them | F2C from day sent  |
| both | completed           | done                                     |      |                    |
| both | rejected            | refused before any books changed         |      |                    |
| both | discrepancy         | stopped after books changed: operator    |      |                    |

L2F is ``Step.LETTER_TO_FORM_AND_FUNDS``, F2C ``Step.FORM_TO_COMPLETION``. The receiving agency
opens the case on the day it accepts the application and sends the letter at once, so "from
acceptance" (2021) and "from receiving the letter" (2016) fall on the same day; the outgoing
agency counts from the letter's arrival, the one date it knows. Every open case also shows
``flow_due_date`` (WHOLE_FLOW from opened_on) for status output; it is never reminded.

Transitions
===========

Receiving:

| from                     | event                           | to             | sends / commands           |
|--------------------------|---------------------------------|----------------|----------------------------|
| (none)                   | Application, checks pass        | awaiting_form  | contact letter             |
| (none)                   | Application, refused            | rejected       | nothing (local refusal)    |
| awaiting_form            | Funds                           | awaiting_form  | nothing: funds held        |
| awaiting_form            | Form, refused                   | discrepancy    | rejection invalid_document |
| awaiting_form            | Form: transferred, no funds yet | awaiting_funds |                            |
| awaiting_form/funds      | form, funds agree (or none due) | crediting      | Credit                     |
| awaiting_form/funds      | funds != the form's amount      | discrepancy    | rejection amount_mismatch  |
| awaiting_form            | Rejection                       | rejected       |                            |
| awaiting_funds/crediting | Rejection                       | discrepancy    |                            |
| crediting                | LedgerApplied                   | completed      | transfer completed         |
| crediting                | LedgerRefused                   | discrepancy    | rejection other            |
| any open state           | Tick after due date             | (same)         | reminder                   |
| crediting                | Tick                            | (same)         | Credit again               |

Outgoing:

| from                | event                           | to                  | sends / commands            |
|---------------------|---------------------------------|---------------------|-----------------------------|
| (none)              | Letter, checks pass             | releasing           | TerminateAndDebit [+PayOut] |
| (none)              | Letter, refused                 | rejected            | rejection (the reason)      |
| releasing           | LedgerApplied                   | awaiting_completion | form [+ fund transfer]      |
| releasing           | LedgerRefused, none applied     | rejected            | rejection                   |
| releasing           | LedgerRefused, some applied,    | discrepancy         | rejection other             |
|                     | or no valid form can be written |                     |                             |
| awaiting_completion | Completion equal to the form    | completed           |                             |
| awaiting_completion | Completion differing            | discrepancy         |                             |
| releasing           | Rejection                       | discrepancy         |                             |
| awaiting_completion | Rejection                       | discrepancy         |                             |
| awaiting_completion | Tick after due date             | (same)              | reminder                    |
| releasing           | Tick                            | (same)              | ledger commands again       |

Anything else (a message seen before, a second letter or form for the case, an event for a
terminal case, an event for the other role) changes nothing and yields a note. Money that arrives
for a case that no longer expects it is recorded in the case (``funds``) with a note
``case.unexpected_funds`` for the operator, and nothing else happens.

Contract with the service layer
===============================

* Messages: `OutboundMessage` carries the recipient, the newest-version document, the version
  to send it as (chosen when the case was opened and kept: ``Case.versions``), a deterministic
  ``message_id`` (the same decision always yields the same ids, so a recomputed decision is
  deduplicated downstream) and the ``causation_id``. Wrap it with
  ``schemas.envelope_for(document, sender=own, recipient=..., case_id=case.case_id,
  causation_id=..., message_id=..., version=...)``.
* Ledger commands: a decision with commands never carries messages. Commit the case (state
  ``releasing``/``crediting``, commands kept in ``Case.pending_commands``); then run each command
  in order against the ledger, which is idempotent per ``(case_id, command.operation)``; feed the
  results back as `LedgerApplied` (or, on a `DomainRuleViolation`, `LedgerRefused` with what was
  already applied) and commit that decision. After a crash, a `Tick` re-issues the pending
  commands; replaying them is harmless.
* Version choice: `Context.counterpart_versions` is the directory's ``supported_versions`` for the
  counterpart (a type missing from it means version 1 only; ``None`` means every version we know).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Annotated, Any, Literal, TypedDict

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agents.domain import policy
from agents.domain.books import LedgerEntry, PersonAccount
from agents.domain.deadlines import Regime, Step, due_date
from agents.domain.workdays import WorkdayCalendar
from schemas.common import AgencyDetails, BankAccount, Document, Gender, InsuranceType, Person
from schemas.contact import ContactLetterV2, PayoutReason
from schemas.errors import ContractError
from schemas.funds import FundTransferV1, RemittanceMark
from schemas.information import BalanceDisposition, ContributionPeriod, InformationFormV2
from schemas.notices import (
    OverdueStep,
    RejectionReason,
    RejectionV1,
    ReminderV1,
    TransferCompletedV1,
)
from schemas.registry import Message, known_versions, negotiate_version

__all__ = [
    "TERMINAL_STATES",
    "Agency",
    "ApplicationSubmitted",
    "Booked",
    "Case",
    "CaseColumns",
    "CompletionReceived",
    "Context",
    "Credit",
    "Decision",
    "Discrepancy",
    "Event",
    "FormReceived",
    "FundsReceived",
    "LedgerApplied",
    "LedgerCommand",
    "LedgerRefused",
    "LetterReceived",
    "Note",
    "OutboundMessage",
    "PayOut",
    "ReceivedFunds",
    "RejectionReceived",
    "ReminderReceived",
    "Role",
    "State",
    "TerminateAndDebit",
    "Tick",
    "TransitionRecord",
    "case_columns",
    "case_from_data",
    "case_to_data",
    "decide",
    "event_for_message",
    "is_terminal",
    "person_key",
    "whose_turn",
]


class Role(StrEnum):
    """The same strings as the store's ``CaseRole``."""

    RECEIVING = "receiving"
    OUTGOING = "outgoing"


class State(StrEnum):
    AWAITING_FORM = "awaiting_form"
    AWAITING_FUNDS = "awaiting_funds"
    CREDITING = "crediting"
    RELEASING = "releasing"
    AWAITING_COMPLETION = "awaiting_completion"
    COMPLETED = "completed"
    REJECTED = "rejected"
    DISCREPANCY = "discrepancy"


TERMINAL_STATES = frozenset({State.COMPLETED, State.REJECTED, State.DISCREPANCY})

# What each role sends, so that the versions are chosen once, when the case opens.
_SENDS: Mapping[Role, tuple[str, ...]] = {
    Role.RECEIVING: ("contact_letter", "rejection", "transfer_completed", "reminder"),
    Role.OUTGOING: ("information_form", "fund_transfer", "rejection", "reminder"),
}


# --- ledger commands ---------------------------------------------------------------------------


class _Command(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    case_id: uuid.UUID
    id_number: str


class TerminateAndDebit(_Command):
    """Outgoing: end the relationship here, certify the months, debit ``amount_fen`` (the fund
    transfer; 0 when nothing is transferred). ``retain``: the balance stays (Guangdong).

    ``ledger.terminate_and_debit(case_id, id_number, amount_fen, retain)``."""

    operation: Literal["terminate_and_debit"] = "terminate_and_debit"
    amount_fen: int = Field(ge=0)
    retain: bool = False


class PayOut(_Command):
    """Outgoing: pay ``amount_fen`` of the balance to the person's own ``bank_account``.

    ``ledger.pay_out(case_id, id_number, amount_fen, bank_account.model_dump())``."""

    operation: Literal["pay_out"] = "pay_out"
    amount_fen: int = Field(ge=1)
    bank_account: BankAccount


class Credit(_Command):
    """Receiving: add the certified months and the balance received; the person is active here.

    ``ledger.credit(case_id, id_number, months, deemed_months, amount_fen, periods,
    insurance_type, name=name, gender=gender)`` (``periods`` converted to the ledger's type)."""

    operation: Literal["credit"] = "credit"
    months: int = Field(ge=0)
    deemed_months: int = Field(ge=0)
    amount_fen: int = Field(ge=0)
    periods: tuple[ContributionPeriod, ...] = ()
    insurance_type: InsuranceType
    name: str
    gender: Gender


LedgerCommand = Annotated[TerminateAndDebit | PayOut | Credit, Field(discriminator="operation")]


# --- the case ----------------------------------------------------------------------------------


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ReceivedFunds(_Frozen):
    message_id: uuid.UUID
    received_on: date
    transfer: FundTransferV1


class Booked(_Frozen):
    """What this agency's ledger did for the case, as the ledger reported it.

    Outgoing: months/deemed certified, ``amount_fen`` debited (fund transfer), ``retained_fen``
    and ``paid_out_fen``. Receiving: months/deemed and ``amount_fen`` credited."""

    months: int
    deemed_months: int
    amount_fen: int
    retained_fen: int = 0
    paid_out_fen: int = 0


class Discrepancy(_Frozen):
    kind: str
    """``amount_mismatch``, ``completion_mismatch``, ``rejected_after_form``, ``invalid_form``,
    ``ledger_refused``, ``form_not_writable``."""
    text: str
    expected_fen: int | None = None
    received_fen: int | None = None


class Case(_Frozen):
    """One transfer as one agency sees it. JSON round trip: `case_to_data` / `case_from_data`."""

    data_format: Literal[1] = 1
    case_id: uuid.UUID
    role: Role
    state: State
    person: Person
    own_code: str
    counterpart_code: str
    insurance_type_from: InsuranceType
    """Insurance type at the outgoing place (the outgoing books' type once it has looked)."""
    insurance_type_to: InsuranceType | None = None
    """Insurance type at the receiving place (unknown to the outgoing agency)."""
    regime: Regime
    versions: dict[str, int]
    """Version to send each type as, chosen when the case opened and kept."""
    received_versions: dict[str, int] = Field(default_factory=dict)
    """Wire version of each document type as first received."""
    opened_on: date
    letter: ContactLetterV2 | None = None
    letter_message_id: uuid.UUID | None = None
    form: InformationFormV2 | None = None
    form_message_id: uuid.UUID | None = None
    form_received_on: date | None = None
    funds: tuple[ReceivedFunds, ...] = ()
    """Fund transfers received (receiving); before the form arrives these are held."""
    booked: Booked | None = None
    pending_commands: tuple[LedgerCommand, ...] = ()
    rejection_reason: RejectionReason | None = None
    rejection_text: str | None = None
    discrepancy: Discrepancy | None = None
    waiting_since: date | None = None
    due_date: date | None = None
    whose_turn: str | None = None
    overdue_step: OverdueStep | None = None
    """The document owed in the current state (what a reminder names)."""
    flow_due_date: date | None = None
    """WHOLE_FLOW limit from the day the case opened (shown in status, never reminded)."""
    reminders_sent: int = 0
    last_reminder_on: date | None = None
    seen: tuple[uuid.UUID, ...] = ()
    """Message ids already handled (idempotency independent of the transport's inbox)."""
    note: str | None = None
    """The latest human-readable explanation (no PII)."""

    @property
    def is_open(self) -> bool:
        return self.state not in TERMINAL_STATES

    @property
    def held_funds(self) -> tuple[ReceivedFunds, ...]:
        """Funds that arrived before the form."""
        return self.funds if self.form is None else ()

    @property
    def payout_requested(self) -> bool:
        return self.letter is not None and self.letter.payout_requested


# --- events ------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ApplicationSubmitted:
    """At the receiving agency: a person applies. ``insurance_type`` is the type at the outgoing
    place; ``case_id`` is new (the service layer makes it, e.g. uuid4)."""

    case_id: uuid.UUID
    person: Person
    insurance_type: InsuranceType
    from_region: str
    letter_number: str
    payout_account: BankAccount | None = None
    payout_reason: PayoutReason | None = None


@dataclass(frozen=True, kw_only=True)
class LetterReceived:
    case_id: uuid.UUID
    message_id: uuid.UUID
    sender: str
    letter: ContactLetterV2
    version: int = 2
    """The wire version, before upcasting."""


@dataclass(frozen=True, kw_only=True)
class FormReceived:
    case_id: uuid.UUID
    message_id: uuid.UUID
    sender: str
    form: InformationFormV2
    version: int = 2


@dataclass(frozen=True, kw_only=True)
class FundsReceived:
    case_id: uuid.UUID
    message_id: uuid.UUID
    sender: str
    transfer: FundTransferV1
    version: int = 1


@dataclass(frozen=True, kw_only=True)
class CompletionReceived:
    case_id: uuid.UUID
    message_id: uuid.UUID
    sender: str
    completion: TransferCompletedV1
    version: int = 1


@dataclass(frozen=True, kw_only=True)
class RejectionReceived:
    case_id: uuid.UUID
    message_id: uuid.UUID
    sender: str
    rejection: RejectionV1
    version: int = 1


@dataclass(frozen=True, kw_only=True)
class ReminderReceived:
    case_id: uuid.UUID
    message_id: uuid.UUID
    sender: str
    reminder: ReminderV1
    version: int = 1


@dataclass(frozen=True, kw_only=True)
class Tick:
    """Time passes: check deadlines, re-issue pending ledger commands."""

    today: date


@dataclass(frozen=True, kw_only=True)
class LedgerApplied:
    """The results of the case's pending ledger commands, in order (replayed results included)."""

    entries: tuple[LedgerEntry, ...]


@dataclass(frozen=True, kw_only=True)
class LedgerRefused:
    """A pending ledger command raised a `DomainRuleViolation`."""

    operation: str
    reason_code: str
    text: str
    applied: tuple[LedgerEntry, ...] = ()
    """The entries of the commands before it that did apply."""


MessageEvent = (
    LetterReceived | FormReceived | FundsReceived | CompletionReceived | RejectionReceived | ReminderReceived
)
Event = ApplicationSubmitted | MessageEvent | Tick | LedgerApplied | LedgerRefused


def event_for_message(message: Message) -> MessageEvent | None:
    """The event for a parsed message (document upcast to the newest version); ``None`` for types
    the case does not handle (receipts, reconciliation traffic)."""
    envelope, document = message.envelope, message.document
    common: dict[str, Any] = {
        "case_id": envelope.case_id,
        "message_id": envelope.message_id,
        "sender": envelope.sender,
        "version": envelope.version,
    }
    if isinstance(document, ContactLetterV2):
        return LetterReceived(letter=document, **common)
    if isinstance(document, InformationFormV2):
        return FormReceived(form=document, **common)
    if isinstance(document, FundTransferV1):
        return FundsReceived(transfer=document, **common)
    if isinstance(document, TransferCompletedV1):
        return CompletionReceived(completion=document, **common)
    if isinstance(document, RejectionV1):
        return RejectionReceived(rejection=document, **common)
    if isinstance(document, ReminderV1):
        return ReminderReceived(reminder=document, **common)
    return None


# --- context and decision ----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Agency:
    """This agency, as configured."""

    code: str
    details: AgencyDetails
    regime: Regime
    accepts_funds: bool = True
    """False: this agency cannot take personal-account balances; it asks for payouts instead."""
    seal_reference: str | None = None
    """Reference of the electronic seal put on information forms (``None``: not stated)."""


@dataclass(frozen=True, kw_only=True)
class Context:
    """Everything `decide` may know besides the case and the event, fetched beforehand.

    ``account``: the ledger's `lookup` of the event's person (application or letter only).
    ``other_open_case``: another open case for this person exists in this agency's store.
    """

    agency: Agency
    today: date
    calendar: WorkdayCalendar
    account: PersonAccount | None = None
    other_open_case: bool = False
    counterpart_versions: Mapping[str, Sequence[int]] | None = None


@dataclass(frozen=True)
class OutboundMessage:
    recipient: str
    document: Document
    message_id: uuid.UUID
    causation_id: uuid.UUID | None
    version: int


@dataclass(frozen=True)
class TransitionRecord:
    """For the store's history (``Transition``); ``from_state`` is ``None`` when the case opens."""

    from_state: State | None
    to_state: State
    event: str
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Note:
    """Something to log: ``event`` is a structlog event name, ``detail`` its fields (no PII)."""

    event: str
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    case: Case | None = None
    """The new case; ``None``: nothing to save."""
    messages: tuple[OutboundMessage, ...] = ()
    commands: tuple[TerminateAndDebit | PayOut | Credit, ...] = ()
    transition: TransitionRecord | None = None
    notes: tuple[Note, ...] = ()

    @property
    def changed(self) -> bool:
        return self.case is not None


# --- helpers for the service layer ---------------------------------------------------------------


def is_terminal(state: State | str) -> bool:
    return State(state) in TERMINAL_STATES


def whose_turn(case: Case) -> str | None:
    """The agency code whose move it is, ``None`` once the case is closed."""
    return case.whose_turn


def person_key(person: Person) -> str:
    """The store's ``person_key``: the 公民身份号码, the key that identifies a person everywhere."""
    return person.id_number


def case_to_data(case: Case) -> dict[str, Any]:
    """JSON-safe snapshot for ``CaseRecord.data``."""
    return case.model_dump(mode="json")


def case_from_data(data: Mapping[str, Any]) -> Case:
    return Case.model_validate(dict(data))


class CaseColumns(TypedDict):
    case_id: uuid.UUID
    role: Literal["outgoing", "receiving"]
    state: str
    person_key: str
    counterpart: str
    message_version: int
    open: bool
    due_date: date | None
    whose_turn: str | None
    data: dict[str, Any]


def case_columns(case: Case) -> CaseColumns:
    """The store's ``CaseRecord`` fields (all but timestamps and ``version``):
    ``CaseRecord(**case_columns(case), created_at=..., updated_at=..., version=stored.version)``.

    ``message_version`` is the version of the case's main document: the contact letter it sent
    (receiving) or the information form it sends (outgoing)."""
    main = "contact_letter" if case.role is Role.RECEIVING else "information_form"
    return CaseColumns(
        case_id=case.case_id,
        role="receiving" if case.role is Role.RECEIVING else "outgoing",
        state=case.state.value,
        person_key=person_key(case.person),
        counterpart=case.counterpart_code,
        message_version=case.versions.get(main, 1),
        open=case.is_open,
        due_date=case.due_date,
        whose_turn=case.whose_turn,
        data=case_to_data(case),
    )


# --- decide ------------------------------------------------------------------------------------


def decide(case: Case | None, event: Event, ctx: Context) -> Decision:
    """The new case, messages, ledger commands, transition and notes for one event."""
    if isinstance(event, ApplicationSubmitted):
        if case is not None:
            return _ignore("case.duplicate_application", case)
        return _on_application(event, ctx)
    if isinstance(event, LetterReceived):
        if case is not None:
            same = event.message_id in case.seen
            return _ignore("case.duplicate_message" if same else "case.second_letter", case, event)
        return _on_letter(event, ctx)
    if case is None:
        return Decision(notes=(Note("case.unknown_case", {"event": type(event).__name__}),))
    if isinstance(event, Tick):
        return _on_tick(case, event.today, ctx)
    if isinstance(event, LedgerApplied | LedgerRefused):
        if case.state not in (State.RELEASING, State.CREDITING):
            return _ignore("case.stale_ledger_result", case, event)
        if isinstance(event, LedgerRefused):
            return _on_ledger_refused(case, event, ctx)
        if case.role is Role.OUTGOING:
            return _on_released(case, event, ctx)
        return _on_credited(case, event, ctx)
    if event.message_id in case.seen:
        return _ignore("case.duplicate_message", case, event)
    if event.case_id != case.case_id:
        return _ignore("case.wrong_case", case, event)
    if event.sender != case.counterpart_code:
        return _ignore("case.wrong_sender", case, event)
    if isinstance(event, ReminderReceived):
        return Decision(
            notes=(
                Note(
                    "case.reminder_received",
                    {**_ids(case, event), "overdue_step": event.reminder.overdue_step.value},
                ),
            )
        )
    if case.role is Role.RECEIVING:
        if isinstance(event, FormReceived):
            return _on_form(case, event, ctx)
        if isinstance(event, FundsReceived):
            return _on_funds(case, event, ctx)
        if isinstance(event, RejectionReceived):
            return _on_rejection_at_receiving(case, event, ctx)
    else:
        if isinstance(event, CompletionReceived):
            return _on_completion(case, event, ctx)
        if isinstance(event, RejectionReceived):
            return _on_rejection_at_outgoing(case, event, ctx)
    return _ignore("case.unexpected_event", case, event)


# --- small pieces ------------------------------------------------------------------------------


def _ids(case: Case, event: object = None) -> dict[str, Any]:
    detail: dict[str, Any] = {
        "case_id": str(case.case_id),
        "role": case.role.value,
        "state": case.state.value,
    }
    if event is not None:
        detail["event"] = type(event).__name__
        message_id = getattr(event, "message_id", None)
        if message_id is not None:
            detail["message_id"] = str(message_id)
    return detail


def _ignore(name: str, case: Case, event: object = None) -> Decision:
    return Decision(notes=(Note(name, _ids(case, event)),))


def _message_id(case_id: uuid.UUID, role: Role, purpose: str) -> uuid.UUID:
    return uuid.uuid5(case_id, f"{role.value}/{purpose}")


def _send(case: Case, document: Document, purpose: str, causation_id: uuid.UUID | None) -> OutboundMessage:
    return OutboundMessage(
        recipient=case.counterpart_code,
        document=document,
        message_id=_message_id(case.case_id, case.role, purpose),
        causation_id=causation_id,
        version=case.versions.get(document.MESSAGE_TYPE, document.VERSION),
    )


def _negotiate(
    role: Role, supported: Mapping[str, Sequence[int]] | None
) -> tuple[dict[str, int], tuple[str, ...]]:
    versions: dict[str, int] = {}
    missing: list[str] = []
    for message_type in _SENDS[role]:
        if supported is None:
            theirs: Sequence[int] = known_versions(message_type)
        else:
            theirs = supported.get(message_type, (1,))
        try:
            versions[message_type] = negotiate_version(message_type, theirs)
        except ContractError:
            missing.append(message_type)
    return versions, tuple(missing)


_DEADLINES: Mapping[State, tuple[Step, OverdueStep, bool]] = {
    # state: (step, document owed, counterpart's turn?)
    State.AWAITING_FORM: (Step.LETTER_TO_FORM_AND_FUNDS, OverdueStep.INFORMATION_FORM, True),
    State.AWAITING_FUNDS: (Step.LETTER_TO_FORM_AND_FUNDS, OverdueStep.FUND_TRANSFER, True),
    State.CREDITING: (Step.FORM_TO_COMPLETION, OverdueStep.TRANSFER_COMPLETED, False),
    State.RELEASING: (Step.LETTER_TO_FORM_AND_FUNDS, OverdueStep.INFORMATION_FORM, False),
    State.AWAITING_COMPLETION: (Step.FORM_TO_COMPLETION, OverdueStep.TRANSFER_COMPLETED, True),
}


def _enter(case: Case, state: State, today: date, calendar: WorkdayCalendar, **updates: Any) -> Case:
    """``case`` moved to ``state``, with the deadline fields of that state."""
    case = case.model_copy(update={**updates, "state": state, "reminders_sent": 0, "last_reminder_on": None})
    timing = _DEADLINES.get(state)
    if timing is None:
        return case.model_copy(
            update={
                "waiting_since": None,
                "due_date": None,
                "whose_turn": None,
                "overdue_step": None,
                "pending_commands": (),
            }
        )
    step, owed, theirs = timing
    if step is Step.LETTER_TO_FORM_AND_FUNDS:
        since = case.opened_on
    elif state is State.CREDITING and case.form_received_on is not None:
        since = case.form_received_on
    else:
        since = today
    return case.model_copy(
        update={
            "waiting_since": since,
            "due_date": due_date(case.regime, step, since, calendar),
            "whose_turn": case.counterpart_code if theirs else case.own_code,
            "overdue_step": owed,
        }
    )


def _decision(
    old: Case | None,
    new: Case,
    event: str,
    *,
    messages: Sequence[OutboundMessage] = (),
    commands: Sequence[TerminateAndDebit | PayOut | Credit] = (),
    notes: Sequence[Note] = (),
    **detail: Any,
) -> Decision:
    transition = TransitionRecord(
        from_state=None if old is None else old.state, to_state=new.state, event=event, detail=detail
    )
    return Decision(
        case=new,
        messages=tuple(messages),
        commands=tuple(commands),
        transition=transition,
        notes=tuple(notes),
    )


def _rejection(reason: RejectionReason, text: str) -> RejectionV1:
    return RejectionV1(reason_code=reason, text=text)


def _seen(case: Case, message_id: uuid.UUID) -> tuple[uuid.UUID, ...]:
    return (*case.seen, message_id)


def _received(case: Case, message_type: str, version: int) -> dict[str, int]:
    return {**case.received_versions, message_type: case.received_versions.get(message_type, version)}


# --- receiving: the application ------------------------------------------------------------------


def _on_application(event: ApplicationSubmitted, ctx: Context) -> Decision:
    agency, today = ctx.agency, ctx.today
    versions, missing = _negotiate(Role.RECEIVING, ctx.counterpart_versions)
    account = ctx.account
    case = Case(
        case_id=event.case_id,
        role=Role.RECEIVING,
        state=State.REJECTED,
        person=event.person,
        own_code=agency.code,
        counterpart_code=event.from_region,
        insurance_type_from=event.insurance_type,
        insurance_type_to=account.insurance_type if account is not None else None,
        regime=agency.regime,
        versions=versions,
        opened_on=today,
        flow_due_date=due_date(agency.regime, Step.WHOLE_FLOW, today, ctx.calendar),
    )
    refusal = policy.check_application(
        own_code=agency.code,
        from_region=event.from_region,
        account=account,
        other_open_case=ctx.other_open_case,
    )
    plan: policy.PayoutPlan | policy.Refusal | None = None
    if refusal is None and account is not None:
        plan = policy.payout_for_application(
            own_code=agency.code,
            from_region=event.from_region,
            insurance_type_from=event.insurance_type,
            insurance_type_to=account.insurance_type,
            accepts_funds=agency.accepts_funds,
            payout_account=event.payout_account,
            payout_reason=event.payout_reason,
        )
        if isinstance(plan, policy.Refusal):
            refusal = plan
    if refusal is None and missing:
        refusal = policy.Refusal(
            RejectionReason.OTHER,
            f"转出地不支持本机构使用的报文版本 (the outgoing agency supports no common version of "
            f"{', '.join(missing)}).",
        )
    payout = plan if isinstance(plan, policy.PayoutPlan) else None
    if refusal is None and payout is not None and versions.get("contact_letter", 1) < 2:
        refusal = policy.Refusal(
            RejectionReason.OTHER,
            "转出地尚不支持余额支付给本人的申请 (the outgoing agency does not support contact_letter "
            "v2, which carries the payout request).",
        )
    letter: ContactLetterV2 | None = None
    if refusal is None:
        try:
            letter = ContactLetterV2(
                letter_number=event.letter_number,
                person=event.person,
                insurance_type=event.insurance_type,
                from_region=event.from_region,
                to_region=agency.code,
                receiving_agency=agency.details,
                payout_account=payout.account if payout else None,
                payout_reason=payout.reason if payout else None,
            )
        except ValidationError as error:
            refusal = policy.Refusal(
                RejectionReason.INVALID_DOCUMENT,
                f"申请信息不完整 (the application does not make a valid contact letter: "
                f"{error.error_count()} problem(s)).",
            )
    if refusal is not None or letter is None:
        assert refusal is not None
        rejected = _enter(
            case,
            State.REJECTED,
            today,
            ctx.calendar,
            rejection_reason=refusal.reason,
            rejection_text=refusal.text,
            note=refusal.text,
        )
        return _decision(
            None,
            rejected,
            "ApplicationSubmitted",
            notes=(Note("case.rejected_locally", {**_ids(rejected), "reason": refusal.reason.value}),),
            reason=refusal.reason.value,
        )
    opened = _enter(
        case,
        State.AWAITING_FORM,
        today,
        ctx.calendar,
        letter=letter,
        letter_message_id=_message_id(case.case_id, Role.RECEIVING, "contact_letter"),
        note="联系函已发出 (contact letter sent)",
    )
    notes: list[Note] = []
    if event.payout_account is not None and payout is None:
        notes.append(Note("case.payout_request_dropped", {**_ids(opened), "reason": "no balance moves"}))
    return _decision(
        None,
        opened,
        "ApplicationSubmitted",
        messages=(_send(opened, letter, "contact_letter", None),),
        notes=notes,
        payout_reason=payout.reason.value if payout else None,
    )


# --- outgoing: the letter ----------------------------------------------------------------------


def _on_letter(event: LetterReceived, ctx: Context) -> Decision:
    agency, today, account, letter = ctx.agency, ctx.today, ctx.account, event.letter
    versions, missing = _negotiate(Role.OUTGOING, ctx.counterpart_versions)
    case = Case(
        case_id=event.case_id,
        role=Role.OUTGOING,
        state=State.REJECTED,
        person=letter.person,
        own_code=agency.code,
        counterpart_code=event.sender,
        insurance_type_from=account.insurance_type if account is not None else letter.insurance_type,
        regime=agency.regime,
        versions=versions,
        received_versions={"contact_letter": event.version},
        opened_on=today,
        letter=letter,
        letter_message_id=event.message_id,
        seen=(event.message_id,),
        flow_due_date=due_date(agency.regime, Step.WHOLE_FLOW, today, ctx.calendar),
    )
    refusal = policy.check_letter(
        own_code=agency.code,
        sender=event.sender,
        letter=letter,
        account=account,
        other_open_case=ctx.other_open_case,
    )
    if refusal is None and "information_form" in missing:
        refusal = policy.Refusal(
            RejectionReason.OTHER,
            "转入地不支持本机构的信息表版本 (the receiving agency supports no common version of "
            "information_form).",
        )
    if refusal is not None or account is None:
        assert refusal is not None
        rejected = _enter(
            case,
            State.REJECTED,
            today,
            ctx.calendar,
            rejection_reason=refusal.reason,
            rejection_text=refusal.text,
            note=refusal.text,
        )
        return _decision(
            None,
            rejected,
            "LetterReceived",
            messages=(
                _send(rejected, _rejection(refusal.reason, refusal.text), "rejection", event.message_id),
            ),
            reason=refusal.reason.value,
        )
    plan = policy.release_plan(own_code=agency.code, letter=letter, account=account)
    commands: list[TerminateAndDebit | PayOut | Credit] = [
        TerminateAndDebit(
            case_id=case.case_id,
            id_number=account.id_number,
            amount_fen=plan.debit_fen,
            retain=plan.retain,
        )
    ]
    if plan.payout_fen > 0 and plan.payout_account is not None:
        commands.append(
            PayOut(
                case_id=case.case_id,
                id_number=account.id_number,
                amount_fen=plan.payout_fen,
                bank_account=plan.payout_account,
            )
        )
    notes: list[Note] = []
    if account.insurance_type is not letter.insurance_type:
        notes.append(
            Note(
                "case.insurance_type_differs",
                {**_ids(case), "letter": letter.insurance_type.value, "books": account.insurance_type.value},
            )
        )
    if letter.payout_requested and plan.disposition is not BalanceDisposition.PAID_TO_PERSON:
        notes.append(Note("case.payout_not_needed", {**_ids(case), "disposition": plan.disposition.value}))
    releasing = _enter(
        case,
        State.RELEASING,
        today,
        ctx.calendar,
        pending_commands=tuple(commands),
        note=f"余额处理 {plan.disposition.value}",
    )
    return _decision(
        None,
        releasing,
        "LetterReceived",
        commands=commands,
        notes=notes,
        disposition=plan.disposition.value,
    )


def _on_released(case: Case, event: LedgerApplied, ctx: Context) -> Decision:
    terminate = next((e for e in event.entries if e.operation == "terminate_and_debit"), None)
    payout = next((e for e in event.entries if e.operation == "pay_out"), None)
    wants_payout = any(isinstance(c, PayOut) for c in case.pending_commands)
    if terminate is None or (wants_payout and payout is None) or case.letter is None:
        return _ignore("case.ledger_result_incomplete", case, event)
    paid = payout.amount_fen if payout is not None else 0
    booked = Booked(
        months=terminate.months,
        deemed_months=terminate.deemed_months,
        amount_fen=terminate.amount_fen,
        retained_fen=terminate.retained_fen,
        paid_out_fen=paid,
    )
    form_id = _message_id(case.case_id, case.role, "information_form")
    form = _write_form(case, terminate, paid, ctx)
    messages: list[OutboundMessage] = []
    if form is not None and booked.amount_fen > 0:
        try:
            transfer = FundTransferV1(
                amount=booked.amount_fen,
                payer_account=ctx.agency.details.bank_account,
                payee_account=case.letter.receiving_agency.bank_account,
                information_form_id=form_id,
                remittance_mark=RemittanceMark(name=case.person.name, id_number=case.person.id_number),
            )
        except ValidationError:
            form = None
        else:
            messages.append(_send(case, transfer, "fund_transfer", case.letter_message_id))
    if form is None:
        text = (
            "转出地已办理关系终止，但无法生成信息表，需人工处理 (the outgoing books were changed but "
            "the form or fund transfer could not be written; an operator must resolve it)."
        )
        stopped = _enter(
            case,
            State.DISCREPANCY,
            ctx.today,
            ctx.calendar,
            booked=booked,
            pending_commands=(),
            discrepancy=Discrepancy(kind="form_not_writable", text=text),
            note=text,
        )
        return _decision(
            case,
            stopped,
            "LedgerApplied",
            messages=(
                _send(stopped, _rejection(RejectionReason.OTHER, text), "rejection", case.letter_message_id),
            ),
            notes=(Note("case.form_not_writable", _ids(stopped)),),
        )
    messages.insert(0, _send(case, form, "information_form", case.letter_message_id))
    sent = _enter(
        case,
        State.AWAITING_COMPLETION,
        ctx.today,
        ctx.calendar,
        booked=booked,
        pending_commands=(),
        form=form,
        form_message_id=form_id,
        note=f"信息表已发出 ({form.balance_disposition.value})",
    )
    return _decision(
        case,
        sent,
        "LedgerApplied",
        messages=messages,
        disposition=form.balance_disposition.value,
        months=booked.months,
        amount_fen=booked.amount_fen,
        paid_out_fen=booked.paid_out_fen,
        retained_fen=booked.retained_fen,
    )


def _shift_month(month: str, delta: int) -> str:
    index = int(month[:4]) * 12 + int(month[5:7]) - 1 + delta
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def _write_form(case: Case, terminate: LedgerEntry, paid_fen: int, ctx: Context) -> InformationFormV2 | None:
    """The information form from what the ledger certified; ``None`` if no valid form results."""
    balance = terminate.amount_fen + terminate.retained_fen + paid_fen
    if terminate.amount_fen > 0:
        disposition = BalanceDisposition.TRANSFERRED
    elif terminate.retained_fen > 0:
        disposition = BalanceDisposition.RETAINED_IN_PROVINCE
    elif paid_fen > 0:
        disposition = BalanceDisposition.PAID_TO_PERSON
    else:
        disposition = BalanceDisposition.NO_ACCOUNT
    try:
        periods: tuple[ContributionPeriod, ...] | None = tuple(
            ContributionPeriod(
                from_month=p.from_month,
                to_month=p.to_month,
                region=p.region,
                insurance_type=p.insurance_type,
                months=p.months,
            )
            for p in terminate.periods
        )
    except ValidationError:
        periods = None
    if periods:
        start, end = periods[0].from_month, max(p.to_month for p in periods)
    else:
        end = f"{ctx.today.year:04d}-{ctx.today.month:02d}"
        start = _shift_month(end, -max(terminate.months - 1, 0))
    common: dict[str, Any] = {
        "person": case.person,
        "insurance_type": case.insurance_type_from,
        "participation_start": start,
        "participation_end": end,
        "months_paid": terminate.months,
        "deemed_months": terminate.deemed_months,
        "account_balance": balance,
        "amount_transferred": terminate.amount_fen,
        "balance_disposition": disposition,
        "seal_reference": ctx.agency.seal_reference,
    }
    for itemised in (periods or None, None):
        try:
            return InformationFormV2(**common, contribution_periods=itemised)
        except ValidationError:
            if itemised is None:
                return None
    return None


# --- receiving: form, funds, credit ------------------------------------------------------------


def _on_form(case: Case, event: FormReceived, ctx: Context) -> Decision:
    if case.state is not State.AWAITING_FORM:
        name = "case.second_form" if case.form is not None else "case.stale_form"
        return _ignore(name, case, event)
    form = event.form
    updated = case.model_copy(
        update={
            "form": form,
            "form_message_id": event.message_id,
            "form_received_on": ctx.today,
            "seen": _seen(case, event.message_id),
            "received_versions": _received(case, "information_form", event.version),
        }
    )
    refusal = policy.check_form(
        own_code=case.own_code,
        from_region=case.counterpart_code,
        id_number=case.person.id_number,
        payout_requested=case.payout_requested,
        form=form,
    )
    if refusal is not None:
        stopped = _enter(
            updated,
            State.DISCREPANCY,
            ctx.today,
            ctx.calendar,
            discrepancy=Discrepancy(kind="invalid_form", text=refusal.text),
            note=refusal.text,
        )
        return _decision(
            case,
            stopped,
            "FormReceived",
            messages=(
                _send(stopped, _rejection(refusal.reason, refusal.text), "rejection", event.message_id),
            ),
            notes=(Note("case.form_refused", {**_ids(stopped), "reason": refusal.reason.value}),),
            reason=refusal.reason.value,
        )
    return _settle(case, updated, "FormReceived", event.message_id, ctx)


def _on_funds(case: Case, event: FundsReceived, ctx: Context) -> Decision:
    received = ReceivedFunds(message_id=event.message_id, received_on=ctx.today, transfer=event.transfer)
    updated = case.model_copy(
        update={
            "funds": (*case.funds, received),
            "seen": _seen(case, event.message_id),
            "received_versions": _received(case, "fund_transfer", event.version),
        }
    )
    if case.state is State.AWAITING_FORM:
        held = updated.model_copy(
            update={"note": "余额已到账，等待信息表 (funds held until the form arrives)"}
        )
        return _decision(
            case,
            held,
            "FundsReceived",
            notes=(Note("case.funds_held", {**_ids(held), "amount_fen": event.transfer.amount}),),
            held=True,
            amount_fen=event.transfer.amount,
        )
    if case.state is State.AWAITING_FUNDS:
        return _settle(case, updated, "FundsReceived", event.message_id, ctx)
    return _decision(
        case,
        updated,
        "FundsReceived",
        notes=(Note("case.unexpected_funds", {**_ids(case, event), "amount_fen": event.transfer.amount}),),
        unexpected=True,
        amount_fen=event.transfer.amount,
    )


def _settle(old: Case, case: Case, event_name: str, causation: uuid.UUID, ctx: Context) -> Decision:
    """The form is here: wait for the money, stop on a mismatch, or credit."""
    form = case.form
    assert form is not None
    expected = form.amount_transferred
    received = sum(funds.transfer.amount for funds in case.funds)
    if form.balance_disposition is BalanceDisposition.TRANSFERRED and not case.funds:
        waiting = _enter(
            case, State.AWAITING_FUNDS, ctx.today, ctx.calendar, note="等待余额划转 (awaiting the funds)"
        )
        return _decision(old, waiting, event_name, expected_fen=expected)
    if received != expected:
        text = (
            f"信息表划转金额 {policy.yuan(expected)} 元与实际到账 {policy.yuan(received)} 元不符 "
            f"(the form states {expected} fen transferred; {received} fen received)."
        )
        stopped = _enter(
            case,
            State.DISCREPANCY,
            ctx.today,
            ctx.calendar,
            discrepancy=Discrepancy(
                kind="amount_mismatch", text=text, expected_fen=expected, received_fen=received
            ),
            note=text,
        )
        return _decision(
            old,
            stopped,
            event_name,
            messages=(
                _send(stopped, _rejection(RejectionReason.AMOUNT_MISMATCH, text), "rejection", causation),
            ),
            notes=(
                Note(
                    "case.amount_mismatch",
                    {**_ids(stopped), "expected_fen": expected, "received_fen": received},
                ),
            ),
            expected_fen=expected,
            received_fen=received,
        )
    notes: list[Note] = []
    mismatched_ids = [f for f in case.funds if f.transfer.information_form_id != case.form_message_id]
    if mismatched_ids:
        notes.append(Note("case.funds_name_another_form", {**_ids(case), "count": len(mismatched_ids)}))
    insurance_type = case.insurance_type_to or form.insurance_type
    credit = Credit(
        case_id=case.case_id,
        id_number=case.person.id_number,
        months=form.months_paid,
        deemed_months=form.deemed_months,
        amount_fen=expected,
        periods=form.contribution_periods or (),
        insurance_type=insurance_type,
        name=case.person.name,
        gender=case.person.gender,
    )
    crediting = _enter(
        case,
        State.CREDITING,
        ctx.today,
        ctx.calendar,
        pending_commands=(credit,),
        note="记账中 (crediting)",
    )
    return _decision(
        old,
        crediting,
        event_name,
        commands=(credit,),
        notes=notes,
        months=credit.months,
        amount_fen=credit.amount_fen,
    )


def _on_credited(case: Case, event: LedgerApplied, ctx: Context) -> Decision:
    entry = next((e for e in event.entries if e.operation == "credit"), None)
    if entry is None:
        return _ignore("case.ledger_result_incomplete", case, event)
    booked = Booked(months=entry.months, deemed_months=entry.deemed_months, amount_fen=entry.amount_fen)
    done = _enter(
        case,
        State.COMPLETED,
        ctx.today,
        ctx.calendar,
        booked=booked,
        pending_commands=(),
        note="已办结 (completed)",
    )
    completion = TransferCompletedV1(
        months_credited=entry.months,
        deemed_months_credited=entry.deemed_months,
        amount_credited=entry.amount_fen,
    )
    return _decision(
        case,
        done,
        "LedgerApplied",
        messages=(_send(done, completion, "transfer_completed", case.form_message_id),),
        months=entry.months,
        amount_fen=entry.amount_fen,
    )


def _on_ledger_refused(case: Case, event: LedgerRefused, ctx: Context) -> Decision:
    detail = {**_ids(case, event), "operation": event.operation, "reason_code": event.reason_code}
    if case.role is Role.OUTGOING and not event.applied:
        reason = {
            "person_not_found": RejectionReason.UNKNOWN_PERSON,
        }.get(event.reason_code, RejectionReason.OTHER)
        text = f"转出地无法办理 (the outgoing books refused: {event.reason_code})."
        rejected = _enter(
            case,
            State.REJECTED,
            ctx.today,
            ctx.calendar,
            pending_commands=(),
            rejection_reason=reason,
            rejection_text=text,
            note=text,
        )
        return _decision(
            case,
            rejected,
            "LedgerRefused",
            messages=(_send(rejected, _rejection(reason, text), "rejection", case.letter_message_id),),
            notes=(Note("case.ledger_refused", detail),),
            reason_code=event.reason_code,
        )
    text = (
        f"账务处理失败，需人工处理 (the {case.role.value} agency's books refused "
        f"{event.operation}: {event.reason_code}; an operator must resolve it)."
    )
    causation = case.letter_message_id if case.role is Role.OUTGOING else case.form_message_id
    stopped = _enter(
        case,
        State.DISCREPANCY,
        ctx.today,
        ctx.calendar,
        pending_commands=(),
        discrepancy=Discrepancy(kind="ledger_refused", text=text),
        note=text,
    )
    return _decision(
        case,
        stopped,
        "LedgerRefused",
        messages=(_send(stopped, _rejection(RejectionReason.OTHER, text), "rejection", causation),),
        notes=(Note("case.ledger_refused", detail),),
        reason_code=event.reason_code,
    )


def _on_rejection_at_receiving(case: Case, event: RejectionReceived, ctx: Context) -> Decision:
    if not case.is_open:
        return _ignore("case.stale_rejection", case, event)
    rejection = event.rejection
    seen = {"seen": _seen(case, event.message_id)}
    if case.state is State.AWAITING_FORM:
        new = _enter(
            case,
            State.REJECTED,
            ctx.today,
            ctx.calendar,
            rejection_reason=rejection.reason_code,
            rejection_text=rejection.text,
            note=rejection.text,
            **seen,
        )
    else:
        new = _enter(
            case,
            State.DISCREPANCY,
            ctx.today,
            ctx.calendar,
            rejection_reason=rejection.reason_code,
            rejection_text=rejection.text,
            discrepancy=Discrepancy(kind="rejected_after_form", text=rejection.text),
            note=rejection.text,
            **seen,
        )
    return _decision(case, new, "RejectionReceived", reason=rejection.reason_code.value)


# --- outgoing: the answer ----------------------------------------------------------------------


def _on_completion(case: Case, event: CompletionReceived, ctx: Context) -> Decision:
    if case.state is not State.AWAITING_COMPLETION or case.booked is None:
        return _ignore("case.stale_completion", case, event)
    done, booked = event.completion, case.booked
    seen = {"seen": _seen(case, event.message_id)}
    certified = (booked.months, booked.deemed_months, booked.amount_fen)
    credited = (done.months_credited, done.deemed_months_credited, done.amount_credited)
    if certified == credited:
        completed = _enter(case, State.COMPLETED, ctx.today, ctx.calendar, note="已办结 (completed)", **seen)
        return _decision(case, completed, "CompletionReceived")
    text = (
        f"转入地记账与信息表不符: 月数 {booked.months}/{done.months_credited}, 视同 "
        f"{booked.deemed_months}/{done.deemed_months_credited}, 金额 {booked.amount_fen}/"
        f"{done.amount_credited} 分 (certified/credited)."
    )
    stopped = _enter(
        case,
        State.DISCREPANCY,
        ctx.today,
        ctx.calendar,
        discrepancy=Discrepancy(
            kind="completion_mismatch",
            text=text,
            expected_fen=booked.amount_fen,
            received_fen=done.amount_credited,
        ),
        note=text,
        **seen,
    )
    return _decision(
        case,
        stopped,
        "CompletionReceived",
        notes=(Note("case.completion_mismatch", _ids(stopped)),),
    )


def _on_rejection_at_outgoing(case: Case, event: RejectionReceived, ctx: Context) -> Decision:
    if not case.is_open:
        return _ignore("case.stale_rejection", case, event)
    rejection = event.rejection
    expected = received = None
    if rejection.reason_code is RejectionReason.AMOUNT_MISMATCH and case.booked is not None:
        expected = case.booked.amount_fen
    stopped = _enter(
        case,
        State.DISCREPANCY,
        ctx.today,
        ctx.calendar,
        rejection_reason=rejection.reason_code,
        rejection_text=rejection.text,
        discrepancy=Discrepancy(
            kind=rejection.reason_code.value,
            text=rejection.text,
            expected_fen=expected,
            received_fen=received,
        ),
        note=rejection.text,
        seen=_seen(case, event.message_id),
    )
    return _decision(
        case,
        stopped,
        "RejectionReceived",
        notes=(
            Note("case.rejected_by_counterpart", {**_ids(stopped), "reason": rejection.reason_code.value}),
        ),
        reason=rejection.reason_code.value,
    )


# --- time --------------------------------------------------------------------------------------


def _on_tick(case: Case, today: date, ctx: Context) -> Decision:
    if not case.is_open:
        return Decision()
    commands = tuple(case.pending_commands)
    notes: list[Note] = []
    if commands:
        notes.append(Note("case.ledger_commands_reissued", {**_ids(case), "count": len(commands)}))
    if not policy.reminder_due(
        today=today,
        due_date=case.due_date,
        reminders_sent=case.reminders_sent,
        last_reminder_on=case.last_reminder_on,
        calendar=ctx.calendar,
    ):
        return Decision(commands=commands, notes=tuple(notes))
    assert case.due_date is not None and case.waiting_since is not None and case.overdue_step is not None
    number = case.reminders_sent + 1
    updated = case.model_copy(update={"reminders_sent": number, "last_reminder_on": today})
    detail = {
        **_ids(case),
        "overdue_step": case.overdue_step.value,
        "due_date": case.due_date.isoformat(),
        "whose_turn": case.whose_turn,
        "reminder": number,
    }
    messages: list[OutboundMessage] = []
    if case.whose_turn == case.counterpart_code:
        reminder = ReminderV1(
            overdue_step=case.overdue_step, waiting_since=case.waiting_since, due_on=case.due_date
        )
        causation = case.letter_message_id if case.role is Role.RECEIVING else case.form_message_id
        messages.append(_send(case, reminder, f"reminder/{case.state.value}/{number}", causation))
        notes.append(Note("case.reminder_sent", detail))
    else:
        notes.append(Note("case.own_step_overdue", detail))
    return Decision(
        case=updated,
        messages=tuple(messages),
        commands=commands,
        transition=TransitionRecord(case.state, case.state, "Tick", {"reminder": number}),
        notes=tuple(notes),
    )
