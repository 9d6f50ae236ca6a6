"""Seeded people are realistic and valid: ID numbers, names, periods, balances."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime

import pytest
from pydantic import TypeAdapter

from agents.domain.clock import CHINA_TZ, ManualClock, SystemClock
from agents.ledger import LedgerPeriod, PersonAccount, period_months
from agents.tools.seed import (
    generate_people,
    is_guangdong_internal,
    make_id_number,
    make_mover,
)
from schemas.common import CitizenId, Gender, InsuranceType, PersonName, gender_of_citizen_id

_ID = TypeAdapter(CitizenId)
_NAME = TypeAdapter(PersonName)


def test_make_id_number_builds_the_gb11643_check_character() -> None:
    # The standard's own example: 11010519491231002X.
    assert make_id_number("110105", date(1949, 12, 31), 2) == "11010519491231002X"


def test_generated_people_are_valid_distinct_and_reproducible() -> None:
    people = generate_people("440300", 500, random.Random(42))
    assert people == generate_people("440300", 500, random.Random(42))
    assert len({p.id_number for p in people}) == 500
    for p in people:
        assert _ID.validate_python(p.id_number) == p.id_number
        assert _NAME.validate_python(p.name) == p.name
        assert gender_of_citizen_id(p.id_number) is p.gender
        assert sum(period.months for period in p.periods) == p.months_paid > 0
        assert p.periods[-1].region == "440300"
        months = [(period.from_month, period.to_month) for period in p.periods]
        assert months == sorted(months)
        if p.insurance_type is InsuranceType.RESIDENT:
            assert p.balance_fen == 0  # resident insurance has no personal account
        assert isinstance(p.balance_fen, int)
    assert any("\u00b7" in p.name for p in people)
    assert any(p.retiree for p in people) and any(p.arrears_fen for p in people)
    assert {p.gender for p in people} == {Gender.MALE, Gender.FEMALE}


def test_a_mover_is_stopped_at_home_and_enrolled_empty_at_the_new_place() -> None:
    out, new = make_mover(random.Random(1), "441900", "440300", 7, retiree=False, arrears=False)
    assert (out.participation, out.enrolled, out.region) == ("stopped", True, "441900")
    assert (new.participation, new.enrolled, new.region) == ("active", True, "440300")
    assert (new.months_paid, new.balance_fen, new.periods) == (0, 0, ())
    assert new.id_number == out.id_number and new.name == out.name
    assert is_guangdong_internal("441900", "440300")
    assert not is_guangdong_internal("360400", "440300")


def test_periods_hold_at_most_the_months_they_span() -> None:
    assert period_months("2020-01", "2020-12") == 12
    assert period_months("2019-11", "2020-02") == 4
    # A gap in contributions: fewer months paid than the period spans is allowed (as on the form).
    gap = LedgerPeriod(
        from_month="2020-01", to_month="2020-12", region="110000",
        insurance_type=InsuranceType.EMPLOYEE, months=11,
    )
    assert gap.months == 11
    for months in (0, 13):
        with pytest.raises(ValueError, match="months"):
            LedgerPeriod(
                from_month="2020-01", to_month="2020-12", region="110000",
                insurance_type=InsuranceType.EMPLOYEE, months=months,
            )


def test_accounts_refuse_negative_or_fractional_money() -> None:
    base = generate_people("110000", 1, random.Random(3))[0]
    with pytest.raises(ValueError, match="balance_fen"):
        PersonAccount(**{**base.__dict__, "balance_fen": -1})
    with pytest.raises(ValueError, match="balance_fen"):
        PersonAccount(**{**base.__dict__, "balance_fen": 12.5})
    assert PersonAccount(**{**base.__dict__, "insurance_type": "390"}).insurance_type is (
        InsuranceType.RESIDENT
    )


def test_manual_clock_moves_only_when_told_and_dates_are_shanghai_dates() -> None:
    clock = ManualClock(datetime(2026, 2, 13, 23, 30, tzinfo=UTC))
    assert clock.today() == date(2026, 2, 14)  # 07:30 in Shanghai
    assert clock.now() == datetime(2026, 2, 13, 23, 30, tzinfo=UTC)
    clock.advance(days=1, hours=1)
    assert clock.today() == date(2026, 2, 15)
    clock.set_date(date(2026, 10, 1))
    assert clock.now() == datetime(2026, 10, 1, 9, tzinfo=CHINA_TZ)
    with pytest.raises(ValueError):
        clock.set(datetime(2026, 1, 1))
    assert SystemClock().now().tzinfo is not None
