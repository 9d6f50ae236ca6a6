"""Continuity of participation across a transfer, decided by the receiving agency.

domain.md: "A gap of at most 3 months keeps continuity; a longer gap may bring a waiting period of
up to 6 months at the new place." The seeds (001) add: "断缴3个月内:多数地区允许补缴" (a break of up
to 3 months may be paid back, 补缴); "断缴超3个月再续保,连续参保年限重新计算" (beyond 3 months the
continuous years start again); "重新参保后将面临医疗待遇等待期,通常为六个月" (benefits wait, usually
6 months; issue 17: some provinces 3).

Month arithmetic (months are ``YYYY-MM``; both ends are whole calendar months):

- the **gap** is the calendar months strictly between the last month of participation at the old
  place (the information form's ``participation_end``) and the first month at the new place
  (the receiving agency's enrolment start), less the months a deemed period covers:
  ``gap = index(start) - index(end) - 1 - deemed months inside it``. End 2024-03, start 2024-04:
  gap 0 (nothing missing). Start 2024-07: gap 3 (April, May, June). End 2023-11, start 2024-03:
  gap 3 across the year (December, January, February);
- a start in or before the end month is no gap either; the months both places count are reported
  as ``overlap_months`` (duplicate enrolment, 重复参保, is refused by the rules elsewhere, not here);
- a **deemed period** (视同缴费, e.g. military service) counts as contribution time (Social Insurance
  Law art. 32; the form certifies deemed months), so the months it covers are neither a gap nor
  owed: only the months no period covers are back-paid, and they decide continuity together (a gap
  split in two by a deemed period adds up). A bare count of deemed months cannot be placed in time
  and so cannot fill a gap: only periods with months given do.

| uncovered gap | outcome                    | back-payment  | benefits from                      |
|---------------|----------------------------|---------------|------------------------------------|
| 0             | ``kept``                   | none          | the enrolment month                |
| 1 to 3        | ``kept_with_back_payment`` | the gap months| the enrolment month (no waiting)   |
| 4 or more     | ``broken``                 | none owed     | enrolment month + waiting months   |

With back-payment, ``benefits_from`` is the enrolment month on the condition that the months are
paid back: when they are paid is not known here, and where local rules restore benefits only from
the month after the payment ("补缴成功后次月恢复", seeds 001) that is the agency's business then.

The waiting period is the agency's setting (`DEFAULT_WAITING_MONTHS` 6, `SHORT_WAITING_MONTHS` 3
where the local rules say so; 0 to 6 allowed). It runs from the enrolment month, that month included:
enrolled 2024-08 with 6 months waiting, it covers 2024-08 to 2025-01 and benefits start 2025-02.

Pure: the standard library and pydantic only; no logging, no I/O.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "BACK_PAYMENT_LIMIT_MONTHS",
    "DEFAULT_WAITING_MONTHS",
    "MAX_WAITING_MONTHS",
    "SHORT_WAITING_MONTHS",
    "Continuity",
    "ContinuityOutcome",
    "DeemedPeriod",
    "WaitingMonths",
    "add_months",
    "assess_continuity",
]

BACK_PAYMENT_LIMIT_MONTHS = 3
"""The longest gap that keeps continuity, with back-payment (domain.md)."""

DEFAULT_WAITING_MONTHS = 6
"""Waiting period after a broken continuity unless the agency is configured otherwise."""

SHORT_WAITING_MONTHS = 3
"""The waiting period where the local rules set the short one."""

MAX_WAITING_MONTHS = 6
"""domain.md: "a waiting period of up to 6 months"."""

WaitingMonths = Annotated[int, Field(ge=0, le=MAX_WAITING_MONTHS)]

_MonthText = Annotated[str, Field(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$")]


def _month_index(month: str) -> int:
    """Months since year 0 for ``YYYY-MM``, so that month arithmetic is integer arithmetic.

    (`schemas.common.month_index` does the same for checked months; this module stays free of
    `schemas`, which imports the wire codecs, so that it needs only the standard library and pydantic.)
    """
    if len(month) != 7 or month[4] != "-" or not (month[:4] + month[5:]).isdigit():
        raise ValueError("a month is written YYYY-MM")
    number = int(month[5:])
    if not 1 <= number <= 12:
        raise ValueError("a month is 01 to 12")
    return int(month[:4]) * 12 + number - 1


def _month_of_index(index: int) -> str:
    """The ``YYYY-MM`` of a `_month_index`."""
    year, month = divmod(index, 12)
    return f"{year:04d}-{month + 1:02d}"


def add_months(month: str, count: int) -> str:
    """``month`` moved by ``count`` months (negative goes back): add_months("2024-11", 3) is 2025-02."""
    return _month_of_index(_month_index(month) + count)


class ContinuityOutcome(StrEnum):
    KEPT = "kept"
    """No gap: participation goes on."""
    KEPT_WITH_BACK_PAYMENT = "kept_with_back_payment"
    """A gap of 1 to 3 months: continuity holds once those months are paid back."""
    BROKEN = "broken"
    """A gap of more than 3 months: continuous years start again, benefits wait."""


class DeemedPeriod(BaseModel):
    """Months deemed paid (视同缴费), e.g. military service, from and to (both included)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    from_month: _MonthText
    to_month: _MonthText

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.from_month > self.to_month:
            raise ValueError("a deemed period's from_month must not be after its to_month")
        return self


class Continuity(BaseModel):
    """What the receiving agency decided about continuity for one transfer."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    participation_end: _MonthText = Field(description="Last month at the old place (the form's).")
    enrolment_start: _MonthText = Field(description="First month at the receiving agency.")
    gap_months: int = Field(ge=0, description="Months between, not covered by a deemed period.")
    deemed_months_in_gap: int = Field(ge=0, description="Months between covered by deemed periods.")
    overlap_months: int = Field(ge=0, description="Months counted at both places (start <= end).")
    outcome: ContinuityOutcome
    back_payment_months: tuple[_MonthText, ...] = Field(
        description="The months to pay back to keep continuity, oldest first; empty unless "
        "kept_with_back_payment."
    )
    waiting_months: WaitingMonths = Field(description="Length of the waiting period; 0 unless broken.")
    benefits_from: _MonthText = Field(description="First month in which benefits are paid.")

    @property
    def waiting_period(self) -> tuple[str, str] | None:
        """First and last month of the waiting period, or None when there is none."""
        if not self.waiting_months:
            return None
        return self.enrolment_start, add_months(self.benefits_from, -1)


def assess_continuity(
    participation_end: str,
    enrolment_start: str,
    *,
    waiting_months: int = DEFAULT_WAITING_MONTHS,
    deemed: tuple[DeemedPeriod, ...] = (),
) -> Continuity:
    """Decide continuity from the old place's last month and the new place's first (module rules).

    ``waiting_months`` is the agency's configured waiting period (0 to 6); ``deemed`` are deemed
    periods, placed in time, that may cover months of the gap. Raises ``ValueError`` for a
    malformed month or a waiting period out of range; otherwise always answers.
    """
    if isinstance(waiting_months, bool) or not 0 <= waiting_months <= MAX_WAITING_MONTHS:
        raise ValueError(f"waiting period must be 0 to {MAX_WAITING_MONTHS} months")
    end, start = _month_index(participation_end), _month_index(enrolment_start)
    between = range(end + 1, start)
    covered = {
        index
        for period in deemed
        for index in range(_month_index(period.from_month), _month_index(period.to_month) + 1)
    }
    uncovered = [index for index in between if index not in covered]
    gap = len(uncovered)
    owed: tuple[str, ...] = ()
    if gap == 0:
        outcome, waiting = ContinuityOutcome.KEPT, 0
    elif gap <= BACK_PAYMENT_LIMIT_MONTHS:
        owed = tuple(_month_of_index(index) for index in uncovered)
        outcome, waiting = ContinuityOutcome.KEPT_WITH_BACK_PAYMENT, 0
    else:
        outcome, waiting = ContinuityOutcome.BROKEN, waiting_months
    return Continuity(
        participation_end=participation_end,
        enrolment_start=enrolment_start,
        gap_months=gap,
        deemed_months_in_gap=len(between) - gap,
        overlap_months=max(0, end - start + 1),
        outcome=outcome,
        back_payment_months=owed,
        waiting_months=waiting,
        benefits_from=add_months(enrolment_start, waiting),
    )
