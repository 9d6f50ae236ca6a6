"""What `decide` is given besides the case and the event (`Context`), what it returns (`Decision`),
and the small pieces every handler shares to build one.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from agents.domain.books import PersonAccount
from agents.domain.case.commands import Credit, PayOut, TerminateAndDebit
from agents.domain.case.model import Case, Role, State
from agents.domain.continuity import DEFAULT_WAITING_MONTHS
from agents.domain.deadlines import Regime
from agents.domain.workdays import WorkdayCalendar
from schemas.common import AgencyDetails, BankAccount, Document
from schemas.errors import ContractError
from schemas.notices import RejectionReason, RejectionV1
from schemas.registry import known_versions, negotiate_version

__all__ = ["Agency", "Context", "Decision", "Note", "OutboundMessage", "TransitionRecord"]


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
    waiting_months: int = DEFAULT_WAITING_MONTHS
    """Waiting period (等待期) this agency sets after a broken continuity: 0 to 6 months
    (`agents.domain.continuity`; 6 by default, 3 where the local rules say so)."""
    payout_approval_limit_fen: int | None = None
    """A payout to a person of more than this many fen waits for an operator's approval (state
    ``awaiting_approval``, `PayoutApproved`); ``None``: no approval step. The agent's setting
    ``JIEXU_PAYOUT_APPROVAL_LIMIT_FEN`` defaults to 0, which holds every payout."""


@dataclass(frozen=True, kw_only=True)
class Context:
    """Everything `decide` may know besides the case and the event, fetched beforehand.

    ``account``: the ledger's `lookup` of the event's person (application or letter only).
    ``other_open_case``: another open case for this person exists in this agency's store.
    ``counterpart_account``: the counterpart's bank account as the agency directory lists it
    (``None``: the directory lists none that is valid). A fund transfer pays this account and no
    other: never an account a message names.
    """

    agency: Agency
    today: date
    calendar: WorkdayCalendar
    account: PersonAccount | None = None
    other_open_case: bool = False
    counterpart_versions: Mapping[str, Sequence[int]] | None = None
    counterpart_account: BankAccount | None = None


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


# --- small pieces shared by the handlers -------------------------------------------------------

# What each role sends, so that the versions are chosen once, when the case opens.
_SENDS: Mapping[Role, tuple[str, ...]] = {
    Role.RECEIVING: ("contact_letter", "rejection", "transfer_completed", "reminder"),
    Role.OUTGOING: ("information_form", "fund_transfer", "rejection", "reminder"),
}


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
