"""The fund transfer (个人账户余额划转): the balance moves from the outgoing to the receiving agency."""

from __future__ import annotations

from typing import ClassVar, Self
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from schemas.common import BankAccount, CitizenId, Document, PersonName, PositiveFen

__all__ = ["FundTransferV1", "RemittanceMark"]


class RemittanceMark(BaseModel):
    """What the bank transfer is marked with, so the receiving agency can match the money."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: PersonName
    id_number: CitizenId


class FundTransferV1(Document):
    """Notice of a bank transfer of a personal-account balance, sent outgoing → receiving.

    Sent only for an information form whose disposition is ``transferred``, for exactly its
    ``amount_transferred``; ``information_form_id`` is that form's envelope message_id.
    """

    MESSAGE_TYPE: ClassVar[str] = "fund_transfer"
    VERSION: ClassVar[int] = 1

    amount: PositiveFen = Field(description="Amount transferred, in fen; more than zero.")
    payer_account: BankAccount = Field(description="The outgoing agency's account.")
    payee_account: BankAccount = Field(description="The receiving agency's account.")
    information_form_id: UUID = Field(
        description="message_id of the information form this transfer pays for."
    )
    remittance_mark: RemittanceMark = Field(
        description="The person's name and ID number, as written on the bank transfer."
    )

    @model_validator(mode="after")
    def _accounts_differ(self) -> Self:
        payer, payee = self.payer_account, self.payee_account
        if (payer.bank_code, payer.account_number) == (payee.bank_code, payee.account_number):
            raise PydanticCustomError(
                "same_account", "payer_account and payee_account must be different accounts"
            )
        return self
