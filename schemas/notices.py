"""Short notices: receipt, rejection, transfer completed, reminder."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, ClassVar, Self
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema, model_validator
from pydantic_core import PydanticCustomError

from schemas.common import Document, Fen, LongText, Month, Months

__all__ = [
    "MAX_WAITING_MONTHS",
    "ContinuityNotice",
    "ContinuityOutcome",
    "OverdueStep",
    "ReceiptV1",
    "RejectionReason",
    "RejectionV1",
    "RejectionV2",
    "ReminderV1",
    "TransferCompletedV1",
    "TransferCompletedV2",
    "downcast_completed_v2_to_v1",
    "downcast_rejection_v2_to_v1",
    "upcast_completed_v1_to_v2",
    "upcast_rejection_v1_to_v2",
]


class ReceiptV1(Document):
    """Technical acknowledgement: the recipient has durably accepted a message.

    It says nothing about the business outcome; a rejection or a completion notice does that.
    """

    MESSAGE_TYPE: ClassVar[str] = "receipt"
    VERSION: ClassVar[int] = 1

    acknowledged_message_id: UUID = Field(description="message_id of the message received.")


class RejectionReason(StrEnum):
    """Why a case cannot proceed (不予受理). A closed list: a new reason is a new version."""

    NOT_ENROLLED_AT_RECEIVING_PLACE = "not_enrolled_at_receiving_place"
    PARTICIPATION_NOT_STOPPED = "participation_not_stopped"
    ARREARS = "arrears"
    RETIREE = "retiree"
    DUPLICATE_CASE = "duplicate_case"
    UNKNOWN_PERSON = "unknown_person"
    INVALID_DOCUMENT = "invalid_document"
    AMOUNT_MISMATCH = "amount_mismatch"
    OTHER = "other"
    WITHDRAWN = "withdrawn"
    """The receiving agency withdrew the application (rejection v2 only; v1 says ``other``)."""


_V2_ONLY_REASONS = frozenset({RejectionReason.WITHDRAWN})


def _v1_reason(value: RejectionReason) -> RejectionReason:
    if value in _V2_ONLY_REASONS:
        raise PydanticCustomError(
            "rejection_reason_v2", "reason {reason} needs rejection v2", {"reason": value.value}
        )
    return value


RejectionReasonV1 = Annotated[
    RejectionReason,
    AfterValidator(_v1_reason),
    WithJsonSchema(
        {
            "type": "string",
            "enum": [r.value for r in RejectionReason if r not in _V2_ONLY_REASONS],
            "title": "RejectionReason",
            "description": "Why a case cannot proceed (不予受理), as version 1 knows it.",
        }
    ),
]


class RejectionV1(Document):
    """The case cannot proceed, and why (不予受理并告知原因). Either agency may send it.

    The envelope's causation_id names the message rejected.
    """

    MESSAGE_TYPE: ClassVar[str] = "rejection"
    VERSION: ClassVar[int] = 1

    reason_code: RejectionReasonV1
    text: LongText = Field(description="The reason in words, for the person and the operator.")


class RejectionV2(RejectionV1):
    """As v1, with the reason ``withdrawn``: the receiving agency withdrew the application before
    the outgoing agency released anything (撤回申请). Either agency may send it.

    A subclass of v1, so code that handles a v1 rejection handles this one. For an agency that
    declares only v1, ``withdrawn`` is sent as ``other`` with the same text (which says so).
    """

    VERSION: ClassVar[int] = 2

    reason_code: RejectionReason


def upcast_rejection_v1_to_v2(rejection: RejectionV1) -> RejectionV2:
    return RejectionV2(reason_code=rejection.reason_code, text=rejection.text)


def downcast_rejection_v2_to_v1(rejection: RejectionV2) -> RejectionV1:
    """v2 → v1: a reason v1 does not know becomes ``other``; the text keeps the words."""
    reason = rejection.reason_code
    if reason in _V2_ONLY_REASONS:
        return RejectionV1(reason_code=RejectionReason.OTHER, text=rejection.text)
    return RejectionV1(reason_code=reason, text=rejection.text)


class TransferCompletedV1(Document):
    """办结通知: the receiving agency has continued the relationship and credited the case."""

    MESSAGE_TYPE: ClassVar[str] = "transfer_completed"
    VERSION: ClassVar[int] = 1

    months_credited: Months = Field(description="Months paid credited (实际缴费月数).")
    deemed_months_credited: Months = Field(description="Deemed months credited (视同缴费).")
    amount_credited: Fen = Field(description="Amount credited to the personal account, in fen.")


MAX_WAITING_MONTHS = 6
"""domain.md: a longer gap "may bring a waiting period of up to 6 months at the new place"."""


class ContinuityOutcome(StrEnum):
    """The receiving agency's decision on continuity (the values of
    `agents.domain.continuity.ContinuityOutcome`)."""

    KEPT = "kept"
    KEPT_WITH_BACK_PAYMENT = "kept_with_back_payment"
    BROKEN = "broken"


class ContinuityNotice(BaseModel):
    """Continuity of participation as the receiving agency decided it (domain.md: a gap of at most
    3 months keeps continuity, with back-payment; a longer one may bring a waiting period)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    participation_end: Month = Field(description="Last month at the old place (the form's).")
    enrolment_start: Month = Field(description="First month at the receiving agency.")
    gap_months: Months = Field(description="Months between the two not covered by deemed periods.")
    outcome: ContinuityOutcome
    back_payment_months: tuple[Month, ...] = Field(
        max_length=3,
        description="Months to pay back (补缴) to keep continuity, oldest first; empty unless "
        "kept_with_back_payment.",
    )
    waiting_months: Annotated[int, Field(ge=0, le=MAX_WAITING_MONTHS, strict=True)] = Field(
        description="Length of the waiting period (等待期) in months; 0 unless broken."
    )
    benefits_from: Month = Field(description="First month in which benefits are paid here.")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.outcome is ContinuityOutcome.KEPT and self.gap_months != 0:
            raise PydanticCustomError("continuity_outcome", "outcome kept requires gap_months 0")
        if self.outcome is ContinuityOutcome.KEPT_WITH_BACK_PAYMENT and not 1 <= self.gap_months <= 3:
            raise PydanticCustomError(
                "continuity_outcome", "outcome kept_with_back_payment requires gap_months 1 to 3"
            )
        if self.outcome is ContinuityOutcome.BROKEN and self.gap_months <= 3:
            raise PydanticCustomError("continuity_outcome", "outcome broken requires gap_months above 3")
        if len(self.back_payment_months) != (
            self.gap_months if self.outcome is ContinuityOutcome.KEPT_WITH_BACK_PAYMENT else 0
        ):
            raise PydanticCustomError(
                "continuity_back_payment",
                "back_payment_months lists the gap's months with back-payment, none otherwise",
            )
        if self.outcome is not ContinuityOutcome.BROKEN and self.waiting_months != 0:
            raise PydanticCustomError("continuity_waiting", "waiting_months is 0 unless broken")
        if self.benefits_from < self.enrolment_start:
            raise PydanticCustomError(
                "continuity_benefits", "benefits_from must not be before enrolment_start"
            )
        return self


class TransferCompletedV2(TransferCompletedV1):
    """办结通知 v2: v1 plus the continuity of participation the receiving agency decided.

    Upcast v1 → v2 sets ``continuity`` to ``null``: "not stated, the notice was written by a v1
    system" (never invented). Downcast v2 → v1 drops it, for a recipient that declares only v1.
    (A subclass of v1, so that code reading the credited figures reads either version alike.)
    """

    MESSAGE_TYPE: ClassVar[str] = "transfer_completed"
    VERSION: ClassVar[int] = 2

    continuity: ContinuityNotice | None = Field(
        description="Continuity, the gap and any waiting period; null when the notice was written "
        "by a v1 system."
    )


def upcast_completed_v1_to_v2(notice: TransferCompletedV1) -> TransferCompletedV2:
    """v1 → v2: continuity not stated (``None``)."""
    return TransferCompletedV2(**notice.model_dump(), continuity=None)


def downcast_completed_v2_to_v1(notice: TransferCompletedV2) -> TransferCompletedV1:
    """v2 → v1 for a recipient that only declares v1: drops the continuity."""
    return TransferCompletedV1(**notice.model_dump(exclude={"continuity"}))


class OverdueStep(StrEnum):
    """The document the recipient of a reminder owes: the step that is overdue."""

    CONTACT_LETTER = "contact_letter"
    INFORMATION_FORM = "information_form"
    FUND_TRANSFER = "fund_transfer"
    TRANSFER_COMPLETED = "transfer_completed"


class ReminderV1(Document):
    """催办: a step the recipient owes is overdue. Due dates count China's working days."""

    MESSAGE_TYPE: ClassVar[str] = "reminder"
    VERSION: ClassVar[int] = 1

    overdue_step: OverdueStep
    waiting_since: date = Field(description="When the step became the recipient's turn.")
    due_on: date = Field(description="The last working day the step was due on.")

    @model_validator(mode="after")
    def _due_after_start(self) -> Self:
        if self.due_on < self.waiting_since:
            raise PydanticCustomError("due_before_start", "due_on must not be before waiting_since")
        return self
