"""The information form (信息表): the outgoing agency certifies the person's months and balance.

Versions
--------
v1  person, insurance type, participation start/end, months paid, deemed months, balance,
    amount transferred, balance disposition.
v2  adds ``contribution_periods`` (the itemised months) and ``seal_reference`` (the agency's
    electronic seal, 电子签章).

Upcast v1 → v2 sets both new fields to ``null``: "not stated, the form was written by a v1
system". We do not invent a single period from the envelope's sender: the form is the legal
record of the years, and a fabricated period would certify dates the sender never stated. A v2
sender that knows its periods must send them; ``null`` is legal on the wire for v2 too, with the
same meaning. Downcast v2 → v1 drops both fields; a sender uses it for a recipient that only
declares v1.

Balance disposition (what happened to the personal-account balance) must agree with the amounts:

==========================  =================  =========================
disposition                 account_balance    amount_transferred
==========================  =================  =========================
``transferred``             > 0                == account_balance
``retained_in_province``    > 0                0  (e.g. Guangdong, usable across cities)
``paid_to_person``          > 0                0  (paid to the person's own bank account)
``no_account``              0                  0  (resident insurance, or a zero balance)
==========================  =================  =========================

Resident insurance (390) has no personal account, so its balance is 0 and its disposition
``no_account``. Only ``transferred`` is followed by a fund transfer, for exactly the amount.

Months: ``months_paid`` is 实际缴费月数, everything this form certifies as paid (it may include
periods transferred in earlier from other regions); ``deemed_months`` (视同缴费) is counted apart.
In v2 the periods add up to ``months_paid``, run in order without overlapping, each holds no more
months than it spans, and none ends after ``participation_end``.
"""

from __future__ import annotations

from enum import StrEnum
from itertools import pairwise
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator
from pydantic_core import PydanticCustomError

from schemas.common import (
    MAX_MONTHS,
    AgencyCode,
    Document,
    Fen,
    InsuranceType,
    Month,
    Months,
    Person,
    PositiveMonths,
    Reference,
    month_span,
)

__all__ = [
    "BalanceDisposition",
    "ContributionPeriod",
    "InformationFormV1",
    "InformationFormV2",
    "downcast_v2_to_v1",
    "upcast_v1_to_v2",
]


class BalanceDisposition(StrEnum):
    TRANSFERRED = "transferred"
    RETAINED_IN_PROVINCE = "retained_in_province"
    PAID_TO_PERSON = "paid_to_person"
    NO_ACCOUNT = "no_account"


def _fail(kind: str, message: str, **context: Any) -> PydanticCustomError:
    return PydanticCustomError(kind, message, context or None)


# The disposition table as JSON Schema, so that clients in other languages get it from the schema.
_DISPOSITION_RULES: list[JsonValue] = [
    {
        "if": {"properties": {"balance_disposition": {"const": "transferred"}}},
        "then": {
            "properties": {
                "account_balance": {"minimum": 1},
                "amount_transferred": {"minimum": 1},
            }
        },
    },
    {
        "if": {"properties": {"balance_disposition": {"enum": ["retained_in_province", "paid_to_person"]}}},
        "then": {"properties": {"account_balance": {"minimum": 1}, "amount_transferred": {"const": 0}}},
    },
    {
        "if": {"properties": {"balance_disposition": {"const": "no_account"}}},
        "then": {"properties": {"account_balance": {"const": 0}, "amount_transferred": {"const": 0}}},
    },
    {
        "if": {"properties": {"insurance_type": {"const": "390"}}},
        "then": {"properties": {"balance_disposition": {"const": "no_account"}}},
    },
]

_CODE_ONLY = (
    "Checked in code only: participation_start <= participation_end; amount_transferred == "
    "account_balance when transferred"
)


class _InformationFormBase(Document):
    person: Person
    insurance_type: InsuranceType = Field(description="Insurance type at the outgoing place.")
    participation_start: Month = Field(description="First month of participation (参保起始).")
    participation_end: Month = Field(description="Last month of participation (参保终止).")
    months_paid: Months = Field(description="实际缴费月数: months actually paid.")
    deemed_months: Months = Field(description="视同缴费月数: months deemed paid, e.g. military.")
    account_balance: Fen = Field(description="Personal-account balance (个人账户余额) in fen.")
    amount_transferred: Fen = Field(description="Amount sent by fund transfer, in fen.")
    balance_disposition: BalanceDisposition = Field(
        description="What happened to the balance; must agree with the amounts."
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.participation_start > self.participation_end:
            raise _fail("participation_order", "participation_start must not be after participation_end")
        if self.months_paid + self.deemed_months > MAX_MONTHS:
            raise _fail(
                "months_total",
                "months_paid plus deemed_months must be at most {max}",
                max=MAX_MONTHS,
            )
        if self.amount_transferred > self.account_balance:
            raise _fail("amount_exceeds_balance", "amount_transferred must not exceed account_balance")
        if self.insurance_type is InsuranceType.RESIDENT and self.account_balance != 0:
            raise _fail(
                "resident_has_no_account",
                "resident insurance (390) has no personal account: account_balance must be 0",
            )
        disposition = self.balance_disposition
        if self.account_balance == 0:
            if disposition is not BalanceDisposition.NO_ACCOUNT:
                raise _fail(
                    "disposition_mismatch",
                    "balance_disposition must be no_account when account_balance is 0",
                )
        elif disposition is BalanceDisposition.NO_ACCOUNT:
            raise _fail(
                "disposition_mismatch",
                "balance_disposition no_account requires account_balance 0",
            )
        elif disposition is BalanceDisposition.TRANSFERRED:
            if self.amount_transferred != self.account_balance:
                raise _fail(
                    "disposition_mismatch",
                    "balance_disposition transferred requires amount_transferred == "
                    "account_balance (the whole balance moves)",
                )
        elif self.amount_transferred != 0:
            raise _fail(
                "disposition_mismatch",
                "balance_disposition {disposition} requires amount_transferred 0",
                disposition=disposition.value,
            )
        return self


class InformationFormV1(_InformationFormBase):
    """《参保人员基本医疗保险信息表》 v1, sent outgoing → receiving."""

    model_config = ConfigDict(json_schema_extra={"allOf": _DISPOSITION_RULES, "$comment": _CODE_ONLY + "."})

    MESSAGE_TYPE: ClassVar[str] = "information_form"
    VERSION: ClassVar[int] = 1


class ContributionPeriod(BaseModel):
    """A run of months paid in one region under one insurance type."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    from_month: Month
    to_month: Month
    region: AgencyCode = Field(description="Region where the months were paid.")
    insurance_type: InsuranceType
    months: PositiveMonths = Field(description="Months paid in this period, at most its span.")

    @model_validator(mode="after")
    def _fits_its_span(self) -> Self:
        if self.from_month > self.to_month:
            raise _fail("period_order", "from_month must not be after to_month")
        span = month_span(self.from_month, self.to_month)
        if self.months > span:
            raise _fail(
                "period_months",
                "months ({months}) exceed the {span} calendar months from from_month to to_month",
                months=self.months,
                span=span,
            )
        return self


class InformationFormV2(_InformationFormBase):
    """《参保人员基本医疗保险信息表》 v2: v1 plus the itemised periods and the seal reference."""

    model_config = ConfigDict(
        json_schema_extra={
            "allOf": _DISPOSITION_RULES,
            "$comment": _CODE_ONLY + "; contribution_periods in order, not overlapping, each "
            "within its span, none after participation_end, months adding up to months_paid.",
        }
    )

    MESSAGE_TYPE: ClassVar[str] = "information_form"
    VERSION: ClassVar[int] = 2

    contribution_periods: tuple[ContributionPeriod, ...] | None = Field(
        description="The months paid, period by period, oldest first; they add up to "
        "months_paid. null: not itemised (the form was written by a v1 system)."
    )
    seal_reference: Reference | None = Field(
        description="Reference of the agency's electronic seal (电子签章) on this form; null "
        "when the form was written by a v1 system."
    )

    @model_validator(mode="after")
    def _periods_consistent(self) -> Self:
        periods = self.contribution_periods
        if periods is None:
            return self
        for number, (earlier, later) in enumerate(pairwise(periods), 2):
            if later.from_month <= earlier.to_month:
                raise _fail(
                    "periods_order",
                    "contribution_periods must be oldest first and must not overlap: "
                    "period {number} starts before period {previous} ends",
                    number=number,
                    previous=number - 1,
                )
        for number, period in enumerate(periods, 1):
            if period.to_month > self.participation_end:
                raise _fail(
                    "periods_after_end",
                    "contribution_periods: period {number} ends after participation_end",
                    number=number,
                )
        total = sum(period.months for period in periods)
        if total != self.months_paid:
            raise _fail(
                "periods_sum",
                "contribution_periods add up to {total} months but months_paid is {months_paid}",
                total=total,
                months_paid=self.months_paid,
            )
        return self


def upcast_v1_to_v2(form: InformationFormV1) -> InformationFormV2:
    """v1 → v2: periods and seal are not stated (``None``), never invented."""
    return InformationFormV2(**form.model_dump(), contribution_periods=None, seal_reference=None)


def downcast_v2_to_v1(form: InformationFormV2) -> InformationFormV1:
    """v2 → v1 for a recipient that only declares v1: drops the periods and the seal."""
    return InformationFormV1(**form.model_dump(exclude={"contribution_periods", "seal_reference"}))
