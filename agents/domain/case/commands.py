"""The ledger commands a decision asks the service layer to run, in order, after its commit.

Each is idempotent in the ledger per ``(case_id, operation)``; see `agents.ledger.base.LedgerPort`.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from agents.domain.continuity import Continuity
from schemas.common import BankAccount, Gender, InsuranceType
from schemas.information import ContributionPeriod

__all__ = ["Credit", "LedgerCommand", "PayOut", "TerminateAndDebit"]


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
    insurance_type, name=name, gender=gender, continuity=continuity)`` (``periods`` converted to
    the ledger's type; ``continuity``, the case's decision, only when set and the ledger takes it;
    a command stored before it existed has none)."""

    operation: Literal["credit"] = "credit"
    months: int = Field(ge=0)
    deemed_months: int = Field(ge=0)
    amount_fen: int = Field(ge=0)
    periods: tuple[ContributionPeriod, ...] = ()
    insurance_type: InsuranceType
    name: str
    gender: Gender
    continuity: Continuity | None = None


LedgerCommand = Annotated[TerminateAndDebit | PayOut | Credit, Field(discriminator="operation")]
