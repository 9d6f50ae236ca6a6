"""Deadlines of each step under the 2016 and 2021 regimes, in China's working days."""

from __future__ import annotations

from datetime import date

import pytest
from structlog.testing import capture_logs

from agents.calendars import SAMPLE_CALENDAR_DIR, open_calendar
from agents.domain.deadlines import (
    LIMITS,
    Regime,
    Step,
    due_date,
    is_overdue,
    limit,
    working_days_remaining,
)
from agents.domain.workdays import WorkingCalendar

R2016, R2021 = Regime.R2016, Regime.R2021


@pytest.fixture
def calendar() -> WorkingCalendar:
    # chinesecalendar as installed (2004-2026), pinned so a newer release with 2027 data does not
    # turn the "no 2027 calendar" tests into something else.
    return open_calendar(package_years=range(2004, 2027))


@pytest.fixture
def calendar_2027() -> WorkingCalendar:
    with capture_logs():  # the sample file is provisional: its warning is not under test here
        return open_calendar(extra_files=[SAMPLE_CALENDAR_DIR / "2027.json"])


@pytest.mark.parametrize("text", ["2016", "R2016", "r2016", 2016, " 2016 "])
def test_regime_parses_the_usual_spellings(text: str | int) -> None:
    assert Regime.parse(text) is R2016


def test_regime_refuses_unknown_rules() -> None:
    with pytest.raises(ValueError, match="2016 or 2021"):
        Regime.parse("2019")
    assert Regime("2021") is R2021


def test_limits_follow_the_two_documents() -> None:
    assert [limit(R2016, step) for step in Step] == [15, 15, 15, 45]
    assert [limit(R2021, step) for step in Step] == [1, 10, 5, 15]
    for regime in Regime:
        steps = LIMITS[regime]
        assert (
            steps[Step.APPLICATION_TO_LETTER]
            + steps[Step.LETTER_TO_FORM_AND_FUNDS]
            + steps[Step.FORM_TO_COMPLETION]
            <= steps[Step.WHOLE_FLOW] + 1
        )


# --- Spring Festival 2026: Feb 15-23 off, Saturdays Feb 14 and Feb 28 worked -------------------


def test_2016_letter_due_across_spring_festival_2026(calendar: WorkingCalendar) -> None:
    # Feb 11-14 (4, with the adjusted Saturday), Feb 24-28 (9), Mar 2-6 (14), Mar 9 (15).
    assert due_date(R2016, Step.APPLICATION_TO_LETTER, date(2026, 2, 10), calendar) == date(
        2026, 3, 9
    )


def test_2021_form_and_funds_due_across_spring_festival_2026(calendar: WorkingCalendar) -> None:
    # Feb 13, 14 (2), Feb 24-28 (7), Mar 2-4 (10).
    assert due_date(R2021, Step.LETTER_TO_FORM_AND_FUNDS, date(2026, 2, 12), calendar) == date(
        2026, 3, 4
    )


def test_2021_letter_is_due_the_next_working_day(calendar: WorkingCalendar) -> None:
    assert due_date(R2021, Step.APPLICATION_TO_LETTER, date(2026, 2, 13), calendar) == date(
        2026, 2, 14
    )
    # Applied on the first day of the holiday: due on the first working day after it.
    assert due_date(R2021, Step.APPLICATION_TO_LETTER, date(2026, 2, 15), calendar) == date(
        2026, 2, 24
    )


# --- Mid-Autumn and National Day 2026: Sep 20 (Sun) worked, Sep 25-27 and Oct 1-7 off,
# --- Oct 10 (Sat) worked -------------------------------------------------------------------------


def test_2021_completion_due_across_national_day_2026(calendar: WorkingCalendar) -> None:
    # Sep 29, 30 (2), Oct 8, 9 (4), Oct 10, the adjusted Saturday (5).
    assert due_date(R2021, Step.FORM_TO_COMPLETION, date(2026, 9, 28), calendar) == date(
        2026, 10, 10
    )


def test_whole_flow_across_the_autumn_holidays_2026(calendar: WorkingCalendar) -> None:
    assert due_date(R2021, Step.WHOLE_FLOW, date(2026, 9, 21), calendar) == date(2026, 10, 19)
    assert due_date(R2016, Step.WHOLE_FLOW, date(2026, 9, 1), calendar) == date(2026, 11, 9)


# --- 2026 -> 2027 ---------------------------------------------------------------------------------


def test_deadline_into_2027_with_the_calendar_file(calendar_2027: WorkingCalendar) -> None:
    with capture_logs() as logs:
        # Dec 29-31 (3); Jan 1-3 off in the file; Jan 4, 5 (5).
        assert due_date(
            R2021, Step.FORM_TO_COMPLETION, date(2026, 12, 28), calendar_2027
        ) == date(2027, 1, 5)
        assert due_date(
            R2016, Step.LETTER_TO_FORM_AND_FUNDS, date(2026, 12, 31), calendar_2027
        ) == date(2027, 1, 22)
        # Spring Festival 2027 in the file: Jan 31 (Sun) worked, Feb 5-13 off.
        assert due_date(
            R2021, Step.LETTER_TO_FORM_AND_FUNDS, date(2027, 1, 29), calendar_2027
        ) == date(2027, 2, 19)
    assert not [entry for entry in logs if entry["event"] == "workdays.calendar_missing"]


def test_deadline_into_2027_without_a_calendar_uses_weekdays_and_warns(
    calendar: WorkingCalendar,
) -> None:
    with capture_logs() as logs:
        # Jan 1, 2027 is a Friday: counted as a working day by the fallback.
        assert due_date(R2021, Step.FORM_TO_COMPLETION, date(2026, 12, 28), calendar) == date(
            2027, 1, 4
        )
        assert due_date(
            R2016, Step.LETTER_TO_FORM_AND_FUNDS, date(2026, 12, 31), calendar
        ) == date(2027, 1, 21)
    missing = [entry for entry in logs if entry["event"] == "workdays.calendar_missing"]
    assert [(entry["year"], entry["log_level"]) for entry in missing] == [(2027, "warning")]


# --- overdue --------------------------------------------------------------------------------------


def test_a_step_is_overdue_only_after_its_due_date() -> None:
    due = date(2026, 3, 4)
    assert not is_overdue(due, date(2026, 3, 3))
    assert not is_overdue(due, due)
    assert is_overdue(due, date(2026, 3, 5))


def test_working_days_remaining_counts_down_through_zero(calendar: WorkingCalendar) -> None:
    due = date(2026, 2, 24)
    assert working_days_remaining(due, date(2026, 2, 13), calendar) == 2
    assert working_days_remaining(due, due, calendar) == 0
    assert working_days_remaining(due, date(2026, 2, 25), calendar) == -1
