"""Time limits of the transfer process, in China's working days, under either regime.

| step                       | 2016 (人社厅发〔2016〕94号) | 2021 (医保办发〔2021〕43号)      |
|----------------------------|-----------------------------|----------------------------------|
| application → letter       | 15 wd                       | 1 wd (see below)                 |
| letter → form and funds    | 15 wd from receiving letter | 10 wd from acceptance            |
| form → transfer-in done    | 15 wd                       | 5 wd from receiving the form     |
| whole flow                 | 45 wd                       | 15 wd                            |

Under 2021 the national platform relays the application at once and sets no separate limit for
the contact letter. We give the receiving agency **1 working day**: a same-day limit would make
every application submitted in the evening, on a weekend or on a holiday overdue before anyone
could look at it, and one day still leaves the 10 + 5 days of the later steps inside the whole
flow's 15. A deadline is "the n-th working day after the day the step started"; the step is
overdue from the day after its due date.

Pure functions: the calendar is passed in.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from agents.domain.workdays import WorkdayCalendar

__all__ = [
    "LIMITS",
    "Regime",
    "Step",
    "due_date",
    "is_overdue",
    "limit",
    "working_days_remaining",
]


class Regime(StrEnum):
    """The handling rules an agency follows (configured per agency)."""

    R2016 = "2016"
    R2021 = "2021"

    @classmethod
    def parse(cls, value: str | int) -> Regime:
        """Accept ``"2016"``, ``2016``, ``"R2016"`` (and the same for 2021)."""
        text = str(value).strip().upper().removeprefix("R")
        try:
            return cls(text)
        except ValueError:
            raise ValueError(f"unknown regime {value!r}: expected 2016 or 2021") from None


class Step(StrEnum):
    """A timed step of a case."""

    APPLICATION_TO_LETTER = "application_to_letter"
    LETTER_TO_FORM_AND_FUNDS = "letter_to_form_and_funds"
    FORM_TO_COMPLETION = "form_to_completion"
    WHOLE_FLOW = "whole_flow"


LIMITS: dict[Regime, dict[Step, int]] = {
    Regime.R2016: {
        Step.APPLICATION_TO_LETTER: 15,
        Step.LETTER_TO_FORM_AND_FUNDS: 15,
        Step.FORM_TO_COMPLETION: 15,
        Step.WHOLE_FLOW: 45,
    },
    Regime.R2021: {
        Step.APPLICATION_TO_LETTER: 1,
        Step.LETTER_TO_FORM_AND_FUNDS: 10,
        Step.FORM_TO_COMPLETION: 5,
        Step.WHOLE_FLOW: 15,
    },
}
"""Working days allowed per step and regime."""


def limit(regime: Regime, step: Step) -> int:
    """Working days allowed for `step` under `regime`."""
    return LIMITS[regime][step]


def due_date(regime: Regime, step: Step, started: date, calendar: WorkdayCalendar) -> date:
    """The last day on which `step`, started on `started`, is still on time."""
    return calendar.add_working_days(started, limit(regime, step))


def is_overdue(due: date, today: date) -> bool:
    """Overdue from the day after the due date (the due date itself is still on time)."""
    return today > due


def working_days_remaining(due: date, today: date, calendar: WorkdayCalendar) -> int:
    """Working days left until `due` (0 on the due date; negative once overdue)."""
    return calendar.working_days_between(today, due)
