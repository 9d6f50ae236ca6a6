"""What `decide` is told: an application, a counterpart's message, time passing, the ledger's results."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

from agents.domain.books import LedgerEntry
from schemas.common import BankAccount, InsuranceType, Person
from schemas.contact import ContactLetterV2, PayoutReason
from schemas.funds import FundTransferV1
from schemas.information import InformationFormV2
from schemas.notices import ReceiptV1, RejectionV1, ReminderV1, TransferCompletedV1
from schemas.registry import Message

__all__ = [
    "ApplicationSubmitted",
    "CancelRequested",
    "CompletionReceived",
    "DeliveryHeld",
    "Event",
    "FormReceived",
    "FundsReceived",
    "LedgerApplied",
    "LedgerRefused",
    "LetterReceived",
    "MessageEvent",
    "PayoutApproved",
    "ReceiptReceived",
    "RejectionReceived",
    "ReminderReceived",
    "ResolveRequested",
    "Tick",
    "event_for_message",
]


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
class CancelRequested:
    """At the receiving agency: an operator withdraws the application (``jiexu case cancel``).
    ``reason``: the operator's words, kept in the case and sent to the outgoing agency."""

    reason: str


@dataclass(frozen=True, kw_only=True)
class ResolveRequested:
    """An operator moves a case out of ``discrepancy`` (``jiexu case resolve``): ``decision``
    ``credit_as_received`` (book what actually arrived) or ``return_funds`` (what arrived goes
    back; nothing is booked). ``reason``: the operator's words, kept in the case."""

    decision: str
    reason: str


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
class PayoutApproved:
    """An operator of this (outgoing) agency approves a payout held in ``awaiting_approval``.

    ``approved_by``: who approved it, as the operator's command records it (kept in the history).
    """

    case_id: uuid.UUID
    approved_by: str


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


@dataclass(frozen=True, kw_only=True)
class ReceiptReceived:
    """The counterpart's receipt: it has durably accepted ``acknowledged_message_id``, a document
    this agency sent for the case (evidence of delivery, kept in the case; no state changes)."""

    case_id: uuid.UUID
    message_id: uuid.UUID
    sender: str
    acknowledged_message_id: uuid.UUID
    version: int = 1


@dataclass(frozen=True, kw_only=True)
class DeliveryHeld:
    """This agency's relay holds ``message_id`` (a document of the case): the broker has no inbox
    for its recipient. It goes out, unchanged, once the inbox exists."""

    case_id: uuid.UUID
    message_id: uuid.UUID
    recipient: str


MessageEvent = (
    LetterReceived
    | FormReceived
    | FundsReceived
    | CompletionReceived
    | RejectionReceived
    | ReminderReceived
    | ReceiptReceived
)
Event = (
    ApplicationSubmitted
    | MessageEvent
    | Tick
    | LedgerApplied
    | LedgerRefused
    | PayoutApproved
    | CancelRequested
    | ResolveRequested
    | DeliveryHeld
)


def event_for_message(message: Message) -> MessageEvent | None:
    """The event for a parsed message (document upcast to the newest version); ``None`` for types
    the case does not handle (reconciliation traffic)."""
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
    if isinstance(document, ReceiptV1):
        return ReceiptReceived(acknowledged_message_id=document.acknowledged_message_id, **common)
    return None
