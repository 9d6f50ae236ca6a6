"""The participation certificate's model: its derived fields, its checks, its masking, its check code."""

from __future__ import annotations

import base64
import calendar
from datetime import date
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from agents.domain.certificate import (
    Holder,
    ParticipationCertificate,
    add_calendar_months,
    check_code_of,
    normalise_check_code,
)
from schemas.common import Gender, InsuranceType
from tests.unit.certificate_samples import HOLDER, ID_NUMBER, sample_certificate

SIGNATURE = base64.b64encode(bytes(range(64))).decode("ascii")


@pytest.mark.parametrize(
    ("issued", "last_day"),
    [
        (date(2026, 1, 15), date(2026, 4, 15)),  # the same day number three months on
        (date(2026, 11, 15), date(2027, 2, 15)),  # across the year
        (date(2025, 11, 30), date(2026, 2, 28)),  # no 30 February: the month's last day
        (date(2023, 11, 30), date(2024, 2, 29)),  # a leap year's last day of February
        (date(2026, 12, 31), date(2027, 3, 31)),
        (date(2026, 5, 31), date(2026, 8, 31)),
        (date(2026, 3, 31), date(2026, 6, 30)),
    ],
)
def test_the_last_day_to_register_is_three_months_on_or_the_month_end(issued: date, last_day: date) -> None:
    assert add_calendar_months(issued, 3) == last_day
    certificate = sample_certificate(issued_on=issued, participation_end="2015-07", periods=(), months_paid=1)
    assert certificate.register_by == last_day
    assert certificate.is_valid_on(issued) and certificate.is_valid_on(last_day)
    assert not certificate.is_valid_on(date.fromordinal(last_day.toordinal() + 1))


@given(st.dates(min_value=date(1950, 1, 1), max_value=date(2090, 12, 31)), st.integers(0, 24))
def test_adding_months_never_overshoots_the_target_month(day: date, months: int) -> None:
    later = add_calendar_months(day, months)
    assert later.year * 12 + later.month == day.year * 12 + day.month + months
    month_end = calendar.monthrange(later.year, later.month)[1]
    assert later.day == min(day.day, month_end)


def test_issue_writes_the_balance_in_words_and_the_last_day() -> None:
    certificate = sample_certificate(balance_fen=100_450)
    assert certificate.balance_in_words == "壹仟零肆元伍角整"
    assert certificate.register_by == date(2027, 2, 28)
    assert (certificate.signature, certificate.check_code) == (None, None)


def test_the_holders_name_and_id_number_do_not_show_in_repr_or_str() -> None:
    certificate = sample_certificate().with_signature(SIGNATURE)
    for text in (repr(certificate), str(certificate), repr(certificate.holder), str(certificate.holder)):
        assert ID_NUMBER not in text
        assert ID_NUMBER[6:14] not in text  # the birth date
        assert "买买提·艾力" not in text
        assert "艾力" not in text
    assert certificate.holder.id_number == ID_NUMBER  # the document itself keeps them in full
    assert certificate.model_dump()["holder"]["name"] == "买买提·艾力"


def _invalid(**changes: Any) -> str:
    data = sample_certificate().model_dump(mode="json")
    data.update(changes)
    with pytest.raises(ValidationError) as caught:
        ParticipationCertificate.model_validate(data)
    return str(caught.value)


def test_a_balance_whose_words_do_not_agree_is_refused() -> None:
    assert "balance_in_words does not read as balance_fen" in _invalid(balance_fen=9_234_567)


def test_a_last_day_to_register_other_than_three_months_on_is_refused() -> None:
    assert "register_by must be 3 months after issued_on" in _invalid(register_by="2027-05-31")


def test_periods_that_do_not_add_up_to_the_months_paid_are_refused() -> None:
    assert "periods must add up to months_paid" in _invalid(months_paid=131)


def test_a_participation_ending_after_the_month_of_issue_is_refused() -> None:
    assert "participation_end must not be after the month of issue" in _invalid(
        participation_end="2026-12", issued_on="2026-11-30", register_by="2027-02-28"
    )


def test_resident_insurance_has_no_balance() -> None:
    with pytest.raises(ValidationError, match="resident insurance"):
        sample_certificate(insurance_type=InsuranceType.RESIDENT, periods=())
    resident = sample_certificate(insurance_type=InsuranceType.RESIDENT, periods=(), balance_fen=0)
    assert resident.balance_in_words == "零元整"


def test_a_check_code_without_its_signature_or_not_derived_from_it_is_refused() -> None:
    assert "check_code and signature come together" in _invalid(check_code="ABCD-EFGH-JKMN")
    wrong = _invalid(signature=SIGNATURE, check_code="ABCD-EFGH-JKMN")
    assert "not the one derived from the signature" in wrong


def test_validation_errors_never_echo_the_id_number() -> None:
    assert ID_NUMBER not in _invalid(balance_fen=1)
    holder = HOLDER.model_dump()
    with pytest.raises(ValidationError) as caught:
        Holder.model_validate({**holder, "gender": Gender.FEMALE})
    assert "gender does not agree" in str(caught.value)


def test_the_check_code_is_twelve_crockford_characters_from_the_signature() -> None:
    code = check_code_of(SIGNATURE)
    assert len(code) == 14 and code[4] == code[9] == "-"
    assert set(code.replace("-", "")) <= set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")
    other = base64.b64encode(bytes(range(1, 65))).decode("ascii")
    assert check_code_of(other) != code
    assert sample_certificate().with_signature(SIGNATURE).check_code == code


@pytest.mark.parametrize("bad", ["", "not base64!", base64.b64encode(b"short").decode("ascii")])
def test_a_malformed_signature_has_no_check_code(bad: str) -> None:
    with pytest.raises(ValueError):
        check_code_of(bad)


def test_a_typed_check_code_is_read_as_printed() -> None:
    assert normalise_check_code("abcd efgh jkmn") == "ABCD-EFGH-JKMN"
    assert normalise_check_code("0ILO-1234-5678") == "0110-1234-5678"
    assert normalise_check_code("oil0 1234 5678") == "0110-1234-5678"
    assert normalise_check_code("ABCD-EFGH-JKM") == ""
    assert normalise_check_code("ABCD-EFGH-JKMU") == ""  # U is not in the alphabet
