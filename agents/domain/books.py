"""The books' value types the domain reads: an insured person's account and a ledger operation's result.

They belong to the ledger port (`agents.ledger.base` re-exports them) but are plain frozen data:
the pure domain takes a `PersonAccount` in its context and reads `LedgerEntry` results, so they live
here, where importing them loads no ledger adapter. `LedgerPeriod` is the books' own record of a run
of contributions; the information form's `schemas.information.ContributionPeriod` is the contract's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from uuid import UUID

from agents.domain.continuity import Continuity
from schemas.common import Gender, InsuranceType

__all__ = [
    "LedgerEntry",
    "LedgerOperation",
    "LedgerPeriod",
    "Participation",
    "PersonAccount",
    "continuity_from_json",
    "continuity_to_json",
    "period_months",
]

Participation = Literal["active", "stopped"]
_MONTH = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")
LedgerOperation = Literal["terminate_and_debit", "credit", "pay_out"]


def continuity_to_json(continuity: Continuity | None) -> dict[str, Any] | None:
    """A continuity decision as the books store it (JSON), or None."""
    return None if continuity is None else continuity.model_dump(mode="json")


def continuity_from_json(value: Mapping[str, Any] | str | None) -> Continuity | None:
    """The stored form back (a JSON object, or its text as a TEXT column holds it), or None."""
    if value is None:
        return None
    if isinstance(value, str):
        return Continuity.model_validate_json(value)
    return Continuity.model_validate(value)


def period_months(from_month: str, to_month: str) -> int:
    """Months in an inclusive ``YYYY-MM`` range: 2020-01..2020-12 is 12."""
    fy, fm = (int(part) for part in from_month.split("-"))
    ty, tm = (int(part) for part in to_month.split("-"))
    months = (ty - fy) * 12 + (tm - fm) + 1
    if months < 1:
        raise ValueError(f"period {from_month}..{to_month} ends before it starts")
    return months


@dataclass(frozen=True, kw_only=True)
class LedgerPeriod:
    """A stretch of contributions in one region: ``from_month``..``to_month`` inclusive."""

    from_month: str
    to_month: str
    region: str
    insurance_type: InsuranceType
    months: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "insurance_type", InsuranceType(self.insurance_type))
        span = period_months(self.from_month, self.to_month)
        # Months paid within a period may be fewer than its span (a gap in contributions).
        if not 1 <= self.months <= span:
            raise ValueError(
                f"period {self.from_month}..{self.to_month} spans {span} months; "
                f"{self.months} months paid is not within 1..{span}"
            )

    def to_json(self) -> dict[str, Any]:
        return {
            "from_month": self.from_month,
            "to_month": self.to_month,
            "region": self.region,
            "insurance_type": self.insurance_type.value,
            "months": self.months,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> LedgerPeriod:
        return cls(
            from_month=str(value["from_month"]),
            to_month=str(value["to_month"]),
            region=str(value["region"]),
            insurance_type=InsuranceType(value["insurance_type"]),
            months=int(value["months"]),
        )


@dataclass(frozen=True, kw_only=True)
class PersonAccount:
    """One insured person in one agency's books.

    ``periods`` add up to ``months_paid`` when the books are consistent (seeded people always
    are); ``region`` is the pooling region code of the agency keeping the account.

    ``enrolment_start`` (``YYYY-MM``, optional): the first month of the person's current
    participation here, as the books know it. The receiving agency decides continuity from it
    (`agents.domain.continuity`); where the books do not say (``None``), the case takes the month
    of the application instead. Every shipped ledger stores it (``jiexu ledger import`` takes it as
    an optional column); an adapter over a core system that knows the enrolment date fills it. A
    credit that carries a continuity decision fills it when the books had none (with the month that
    decision used), and ``terminate_and_debit`` clears it: the participation it started has ended.

    ``continuity`` (optional): what the receiving agency decided at the person's last transfer in
    (`agents.domain.continuity.Continuity`): whether continuity held, the months to pay back, the
    waiting period and ``benefits_from``, the first month benefits are paid. Written by a credit
    that carries it, cleared by ``terminate_and_debit``; ``None`` for a person never transferred in
    (or credited by an agent that did not decide it).
    """

    id_number: str
    name: str
    gender: Gender
    insurance_type: InsuranceType
    enrolled: bool
    participation: Participation
    region: str
    arrears_fen: int = 0
    retiree: bool = False
    months_paid: int = 0
    deemed_months: int = 0
    balance_fen: int = 0
    periods: tuple[LedgerPeriod, ...] = ()
    enrolment_start: str | None = None
    continuity: Continuity | None = None

    def __post_init__(self) -> None:
        # Accept the plain codes ("310", "male") too; store the enums.
        object.__setattr__(self, "insurance_type", InsuranceType(self.insurance_type))
        object.__setattr__(self, "gender", Gender(self.gender))
        if self.enrolment_start is not None and not _MONTH.fullmatch(self.enrolment_start):
            raise ValueError(f"enrolment_start must be YYYY-MM, not {self.enrolment_start!r}")
        for name in ("arrears_fen", "months_paid", "deemed_months", "balance_fen"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, not {value!r}")


@dataclass(frozen=True, kw_only=True)
class LedgerEntry:
    """What one ledger operation did, as first applied. `replayed` is True on repeat calls.

    For ``terminate_and_debit`` `months`, `deemed_months` and `periods` are what was certified
    (build the information form from them: they survive a crash and a replay, whereas the
    account itself no longer holds them); for ``credit`` what was credited, and `continuity` the
    continuity decision the credit recorded (``None`` when the credit carried none; the JSON form
    then has no ``continuity`` key, as entries stored before it existed).
    """

    case_id: UUID
    operation: LedgerOperation
    id_number: str
    months: int = 0
    deemed_months: int = 0
    amount_fen: int = 0
    retained_fen: int = 0
    balance_after_fen: int = 0
    periods: tuple[LedgerPeriod, ...] = ()
    continuity: Continuity | None = None
    replayed: bool = field(default=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {
            "case_id": str(self.case_id),
            "operation": self.operation,
            "id_number": self.id_number,
            "months": self.months,
            "deemed_months": self.deemed_months,
            "amount_fen": self.amount_fen,
            "retained_fen": self.retained_fen,
            "balance_after_fen": self.balance_after_fen,
            "periods": [period.to_json() for period in self.periods],
        }
        if self.continuity is not None:
            value["continuity"] = self.continuity.model_dump(mode="json")
        return value

    @classmethod
    def from_json(cls, value: Mapping[str, Any], *, replayed: bool = False) -> LedgerEntry:
        return cls(
            case_id=UUID(str(value["case_id"])),
            operation=value["operation"],
            id_number=str(value["id_number"]),
            months=int(value["months"]),
            deemed_months=int(value["deemed_months"]),
            amount_fen=int(value["amount_fen"]),
            retained_fen=int(value["retained_fen"]),
            balance_after_fen=int(value["balance_after_fen"]),
            periods=tuple(LedgerPeriod.from_json(p) for p in value.get("periods", ())),
            continuity=continuity_from_json(value.get("continuity")),
            replayed=replayed,
        )
