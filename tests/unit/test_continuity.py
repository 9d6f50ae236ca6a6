"""Continuity across a transfer: the gap in months, back-payment, the waiting period."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from agents.domain.continuity import (
    DEFAULT_WAITING_MONTHS,
    SHORT_WAITING_MONTHS,
    ContinuityOutcome,
    DeemedPeriod,
    add_months,
    assess_continuity,
)

KEPT = ContinuityOutcome.KEPT
BACK_PAY = ContinuityOutcome.KEPT_WITH_BACK_PAYMENT
BROKEN = ContinuityOutcome.BROKEN
BOTH_WAITING_RULES = [DEFAULT_WAITING_MONTHS, SHORT_WAITING_MONTHS]


@pytest.mark.parametrize("waiting", BOTH_WAITING_RULES)
def test_a_start_in_the_month_after_the_end_is_no_gap(waiting: int) -> None:
    result = assess_continuity("2024-03", "2024-04", waiting_months=waiting)
    assert (result.gap_months, result.outcome) == (0, KEPT)
    assert result.back_payment_months == ()
    assert (result.waiting_months, result.benefits_from, result.waiting_period) == (0, "2024-04", None)


@pytest.mark.parametrize("waiting", BOTH_WAITING_RULES)
def test_a_gap_of_three_months_keeps_continuity_with_those_months_to_pay_back(waiting: int) -> None:
    result = assess_continuity("2024-03", "2024-07", waiting_months=waiting)
    assert (result.gap_months, result.outcome) == (3, BACK_PAY)
    assert result.back_payment_months == ("2024-04", "2024-05", "2024-06")
    assert (result.waiting_months, result.benefits_from) == (0, "2024-07")


def test_a_gap_of_one_month_is_paid_back() -> None:
    result = assess_continuity("2024-03", "2024-05")
    assert (result.gap_months, result.outcome, result.back_payment_months) == (1, BACK_PAY, ("2024-04",))


def test_a_gap_of_four_months_breaks_continuity_and_the_default_wait_is_six_months() -> None:
    result = assess_continuity("2024-03", "2024-08")
    assert (result.gap_months, result.outcome) == (4, BROKEN)
    assert result.back_payment_months == ()
    assert result.waiting_months == 6
    assert result.waiting_period == ("2024-08", "2025-01")
    assert result.benefits_from == "2025-02"


def test_where_the_rules_say_three_months_the_wait_is_three() -> None:
    result = assess_continuity("2024-03", "2024-08", waiting_months=SHORT_WAITING_MONTHS)
    assert (result.outcome, result.waiting_period, result.benefits_from) == (
        BROKEN,
        ("2024-08", "2024-10"),
        "2024-11",
    )


def test_an_agency_without_a_waiting_period_still_reports_the_break() -> None:
    result = assess_continuity("2024-03", "2024-08", waiting_months=0)
    assert (result.outcome, result.waiting_period, result.benefits_from) == (BROKEN, None, "2024-08")


@pytest.mark.parametrize(
    ("end", "start", "gap", "outcome"),
    [
        ("2023-11", "2023-12", 0, KEPT),
        ("2023-12", "2024-01", 0, KEPT),
        ("2023-11", "2024-03", 3, BACK_PAY),  # December, January, February
        ("2023-11", "2024-04", 4, BROKEN),
        ("2022-06", "2024-06", 23, BROKEN),
    ],
)
def test_gaps_across_the_new_year_count_calendar_months(
    end: str, start: str, gap: int, outcome: ContinuityOutcome
) -> None:
    result = assess_continuity(end, start)
    assert (result.gap_months, result.outcome) == (gap, outcome)


def test_back_payment_across_the_new_year_lists_the_months_of_both_years() -> None:
    result = assess_continuity("2023-11", "2024-03")
    assert result.back_payment_months == ("2023-12", "2024-01", "2024-02")


def test_a_waiting_period_runs_into_the_next_year() -> None:
    result = assess_continuity("2023-01", "2024-11", waiting_months=6)
    assert (result.waiting_period, result.benefits_from) == (("2024-11", "2025-04"), "2025-05")


def test_a_start_before_the_end_is_no_gap_and_the_overlap_is_reported() -> None:
    same = assess_continuity("2024-03", "2024-03")
    assert (same.gap_months, same.overlap_months, same.outcome) == (0, 1, KEPT)
    earlier = assess_continuity("2024-03", "2024-01")
    assert (earlier.gap_months, earlier.overlap_months, earlier.benefits_from) == (0, 3, "2024-01")


def test_a_deemed_period_filling_the_gap_keeps_continuity_without_back_payment() -> None:
    # Left work in June 2019, served July 2019 to June 2021 (视同缴费), enrolled July 2021.
    service = DeemedPeriod(from_month="2019-07", to_month="2021-06")
    result = assess_continuity("2019-06", "2021-07", deemed=(service,))
    assert (result.gap_months, result.deemed_months_in_gap, result.outcome) == (0, 24, KEPT)
    assert result.benefits_from == "2021-07"


def test_the_months_after_a_deemed_period_are_still_a_gap() -> None:
    service = DeemedPeriod(from_month="2019-07", to_month="2021-06")
    kept = assess_continuity("2019-06", "2021-10", deemed=(service,))
    assert (kept.gap_months, kept.outcome) == (3, BACK_PAY)
    assert kept.back_payment_months == ("2021-07", "2021-08", "2021-09")
    broken = assess_continuity("2019-06", "2021-11", deemed=(service,))
    assert (broken.gap_months, broken.deemed_months_in_gap, broken.outcome) == (4, 24, BROKEN)


def test_uncovered_months_on_both_sides_of_a_deemed_period_add_up() -> None:
    service = DeemedPeriod(from_month="2019-09", to_month="2021-06")
    result = assess_continuity("2019-06", "2021-09", deemed=(service,))  # Jul-Aug 2019, Jul-Aug 2021
    assert (result.gap_months, result.outcome) == (4, BROKEN)


def test_a_deemed_period_outside_the_gap_changes_nothing() -> None:
    earlier = DeemedPeriod(from_month="2010-01", to_month="2012-12")
    assert assess_continuity("2024-03", "2024-08", deemed=(earlier,)).gap_months == 4


@pytest.mark.parametrize("waiting", [-1, 7, True])
def test_a_waiting_period_beyond_six_months_is_refused(waiting: int) -> None:
    with pytest.raises(ValueError, match="0 to 6"):
        assess_continuity("2024-03", "2024-08", waiting_months=waiting)


@pytest.mark.parametrize("month", ["2024-3", "2024-13", "202403", "2024/03"])
def test_malformed_months_are_refused(month: str) -> None:
    with pytest.raises(ValueError):
        assess_continuity(month, "2024-08")


def test_a_deemed_period_must_run_forwards() -> None:
    with pytest.raises(ValidationError):
        DeemedPeriod(from_month="2021-06", to_month="2019-07")


def test_add_months_crosses_years_both_ways() -> None:
    assert add_months("2024-11", 3) == "2025-02"
    assert add_months("2024-01", -1) == "2023-12"
    assert add_months("2024-12", 0) == "2024-12"


_months = st.integers(min_value=1990 * 12, max_value=2090 * 12).map(
    lambda i: f"{i // 12:04d}-{i % 12 + 1:02d}"
)


@given(_months, _months, st.sampled_from(BOTH_WAITING_RULES))
def test_the_outcome_follows_the_gap_alone(end: str, start: str, waiting: int) -> None:
    result = assess_continuity(end, start, waiting_months=waiting)
    gap = result.gap_months
    assert result.outcome is (KEPT if gap == 0 else BACK_PAY if gap <= 3 else BROKEN)
    assert len(result.back_payment_months) == (result.gap_months if result.outcome is BACK_PAY else 0)
    assert add_months(result.enrolment_start, result.waiting_months) == result.benefits_from
    assert result.waiting_months == (waiting if result.outcome is BROKEN else 0)
