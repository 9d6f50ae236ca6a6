"""The contact letter (联系函): the receiving agency asks the outgoing agency for a transfer."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar, Self

from pydantic import ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from schemas.common import (
    AgencyCode,
    AgencyDetails,
    BankAccount,
    Document,
    InsuranceType,
    Person,
    ShortText,
)
from schemas.errors import ContractError

__all__ = [
    "ContactLetterV1",
    "ContactLetterV2",
    "PayoutReason",
    "downcast_contact_v2_to_v1",
    "upcast_contact_v1_to_v2",
]


class ContactLetterV1(Document):
    """《基本医疗保险关系转移接续联系函》, sent receiving → outgoing.

    ``from_region`` is where the person was insured (the outgoing agency), ``to_region`` where they
    are insured now (the receiving agency, whose details and bank account the letter carries so
    the balance can be paid to it).
    """

    MESSAGE_TYPE: ClassVar[str] = "contact_letter"
    VERSION: ClassVar[int] = 1

    letter_number: ShortText = Field(description="The receiving agency's number for this letter.")
    person: Person
    insurance_type: InsuranceType = Field(description="Insurance type at the outgoing place.")
    from_region: AgencyCode = Field(description="Region the person transfers out of.")
    to_region: AgencyCode = Field(description="Region the person transfers into.")
    receiving_agency: AgencyDetails = Field(
        description="Name, address, phone and bank account of the receiving agency."
    )

    @model_validator(mode="after")
    def _regions_differ(self) -> Self:
        if self.from_region == self.to_region:
            raise PydanticCustomError("same_region", "from_region and to_region must differ")
        return self


# --- v2: the payout request -----------------------------------------------------------------


class PayoutReason(StrEnum):
    """Why the balance is to be paid to the person's own bank account instead of transferred."""

    RETIREE_RESETTLED = "retiree_resettled"
    """A retiree resettled in another province (异地安置)."""
    CANNOT_RECEIVE_FUNDS = "cannot_receive_funds"
    """The receiving place cannot receive a personal-account balance."""
    SCHEME_SWITCH = "scheme_switch"
    """Employee (310) to resident (390) insurance: the new scheme has no personal account."""
    ENLISTMENT = "enlistment"
    """Army enlistment (参军)."""
    DEATH = "death"
    EMIGRATION = "emigration"
    """出国（境）定居."""


class ContactLetterV2(Document):
    """《基本医疗保险关系转移接续联系函》 v2: v1 plus an optional payout request.

    ``payout_account`` and ``payout_reason`` are both set (pay the balance to the person's own
    account, for that reason, instead of transferring it to the receiving agency) or both
    ``null`` (an ordinary transfer, exactly what a v1 letter means).

    Upcast v1 → v2 sets both to ``null``. Downcast v2 → v1 is possible only when no payout is
    requested: a v1 recipient cannot honour one, so the sender is told (``ContractError``) rather
    than the request being dropped silently.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "$comment": "Checked in code only: from_region differs from to_region.",
            "oneOf": [
                {
                    "properties": {
                        "payout_account": {"type": "null"},
                        "payout_reason": {"type": "null"},
                    }
                },
                {
                    "properties": {
                        "payout_account": {"type": "object"},
                        "payout_reason": {"type": "string"},
                    }
                },
            ],
        }
    )

    MESSAGE_TYPE: ClassVar[str] = "contact_letter"
    VERSION: ClassVar[int] = 2

    letter_number: ShortText = Field(description="The receiving agency's number for this letter.")
    person: Person
    insurance_type: InsuranceType = Field(description="Insurance type at the outgoing place.")
    from_region: AgencyCode = Field(description="Region the person transfers out of.")
    to_region: AgencyCode = Field(description="Region the person transfers into.")
    receiving_agency: AgencyDetails = Field(
        description="Name, address, phone and bank account of the receiving agency."
    )
    payout_account: BankAccount | None = Field(
        description="The person's own bank account, when the balance is to be paid out to them; "
        "null for an ordinary transfer."
    )
    payout_reason: PayoutReason | None = Field(
        description="Why the balance is paid out; set exactly when payout_account is set."
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.from_region == self.to_region:
            raise PydanticCustomError("same_region", "from_region and to_region must differ")
        if (self.payout_account is None) != (self.payout_reason is None):
            raise PydanticCustomError(
                "payout_incomplete",
                "payout_account and payout_reason must both be set or both be null",
            )
        return self

    @property
    def payout_requested(self) -> bool:
        return self.payout_account is not None


def upcast_contact_v1_to_v2(letter: ContactLetterV1) -> ContactLetterV2:
    """v1 → v2: no payout requested."""
    return ContactLetterV2(**letter.model_dump(), payout_account=None, payout_reason=None)


def downcast_contact_v2_to_v1(letter: ContactLetterV2) -> ContactLetterV1:
    """v2 → v1 for a recipient that only declares v1; refused when a payout is requested."""
    if letter.payout_requested:
        raise ContractError(
            "no_common_version",
            "contact_letter v2 requests a payout (payout_account, payout_reason), which a v1 "
            "recipient cannot honour; it cannot be sent as v1",
        )
    return ContactLetterV1(**letter.model_dump(exclude={"payout_account", "payout_reason"}))
