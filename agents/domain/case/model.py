"""The case as stored: its role, its state and the frozen parts it keeps, and the store's view of it.

`Role` is `schemas.reconciliation.Role`: one enum for which end of a transfer an agency is, the
same strings as the store's ``CaseRole``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import date
from enum import StrEnum
from typing import Any, Literal, TypedDict

from pydantic import BaseModel, ConfigDict, Field

from agents.domain.case.commands import LedgerCommand
from agents.domain.certificate import ParticipationCertificate
from agents.domain.continuity import Continuity
from agents.domain.deadlines import Regime
from schemas.common import InsuranceType, Person
from schemas.contact import ContactLetterV2
from schemas.funds import FundTransferV1
from schemas.information import InformationFormV2
from schemas.notices import OverdueStep, RejectionReason
from schemas.reconciliation import Role

__all__ = [
    "TERMINAL_STATES",
    "Booked",
    "Case",
    "CaseColumns",
    "Discrepancy",
    "Receipt",
    "ReceivedFunds",
    "Resolution",
    "Role",
    "State",
    "case_columns",
    "case_from_data",
    "case_to_data",
    "is_terminal",
    "person_key",
    "whose_turn",
]


class State(StrEnum):
    AWAITING_FORM = "awaiting_form"
    AWAITING_FUNDS = "awaiting_funds"
    CREDITING = "crediting"
    AWAITING_APPROVAL = "awaiting_approval"
    RELEASING = "releasing"
    AWAITING_COMPLETION = "awaiting_completion"
    COMPLETED = "completed"
    REJECTED = "rejected"
    DISCREPANCY = "discrepancy"
    CANCELLED = "cancelled"
    """The receiving agency withdrew the application before the outgoing agency released."""


TERMINAL_STATES = frozenset({State.COMPLETED, State.REJECTED, State.DISCREPANCY, State.CANCELLED})


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


class Receipt(_Frozen):
    """The counterpart's receipt for a document this agency sent: evidence of delivery."""

    acknowledged_message_id: uuid.UUID
    document: str
    """What was acknowledged: the purpose the message id was made for (``contact_letter``,
    ``information_form``, ``fund_transfer``, ``rejection``, ``transfer_completed``,
    ``withdrawal``, ``reminder/<state>/<n>``)."""
    receipt_message_id: uuid.UUID
    received_on: date


class Resolution(_Frozen):
    """How an operator moved the case out of ``discrepancy`` (``jiexu case resolve``)."""

    decision: Literal["credit_as_received", "return_funds"]
    reason: str
    on: date
    from_kind: str | None = None
    """The discrepancy's kind when it was resolved."""


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
    held_commands: tuple[LedgerCommand, ...] = ()
    """Outgoing, ``awaiting_approval``: the ledger commands (with the payout) that run once an
    operator approves the payout; nothing has changed in the books before that."""
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
    enrolment_start: str | None = None
    """Receiving: the person's first month here, from the books at the application, else the
    application's month (see `receiving`); ``None`` in cases opened before it was recorded."""
    continuity: Continuity | None = None
    """Receiving: decided when the case credits. Outgoing: as the completion notice (v2) told."""
    certificate: ParticipationCertificate | None = None
    """Outgoing: the participation certificate (参保凭证) issued when the relationship ended; the
    domain writes it unsigned, the service signs it before the case is stored."""
    resolution: Resolution | None = None
    """Set when an operator resolved a discrepancy."""
    receipts: tuple[Receipt, ...] = ()
    """The counterpart's receipts for the documents this agency sent, in arrival order."""
    undeliverable: str | None = None
    """The document this agency's relay holds because the broker has no inbox for the
    counterpart (``DeliveryHeld``); cleared by the next message from the counterpart."""

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


# --- the store's view ---------------------------------------------------------------------------


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
