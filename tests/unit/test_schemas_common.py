"""Common types: every invalid input is refused with an error that names the rule broken."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from schemas.common import (
    AgencyCode,
    BankAccount,
    CitizenId,
    Fen,
    Gender,
    Month,
    Months,
    Person,
    PersonName,
    citizen_id_check_char,
    gender_of_citizen_id,
    make_citizen_id,
    month_span,
)
from tests.unit.schema_strategies import citizen_ids, person_names, persons


def errors_of(adapter_type: Any, value: Any) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as caught:
        TypeAdapter(adapter_type).validate_python(value)
    return [(e["type"], e["msg"]) for e in caught.value.errors()]


def test_a_published_sample_id_number_passes_its_check_digit() -> None:
    # The GB 11643-1999 worked example, with its X check character.
    assert TypeAdapter(CitizenId).validate_python("11010519491231002X") == "11010519491231002X"
    assert citizen_id_check_char("11010519491231002") == "X"


@settings(deadline=None)
@given(citizen_ids())
def test_every_generated_id_number_validates_and_lowercase_x_is_normalised(number: str) -> None:
    adapter = TypeAdapter(CitizenId)
    assert adapter.validate_python(number) == number
    assert adapter.validate_python(number.lower()) == number


@settings(deadline=None)
@given(citizen_ids(), st.sampled_from("0123456789X"))
def test_any_other_check_character_is_refused(number: str, wrong: str) -> None:
    if wrong == number[-1]:
        return
    [(kind, message)] = errors_of(CitizenId, number[:17] + wrong)
    assert kind == "citizen_id_check_digit"
    assert f"require {number[-1]}" in message


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("11010519491231002", "citizen_id_length"),
        ("11010519491231002X1", "citizen_id_length"),
        ("", "citizen_id_length"),
        ("1101051949123100X2", "citizen_id_characters"),
        ("11010519491231 02X", "citizen_id_characters"),
        ("110105194902300025", "citizen_id_birth_date"),  # 30 February
        ("110105194913310027", "citizen_id_birth_date"),  # month 13
    ],
)
def test_malformed_id_numbers_are_refused_with_the_rule_broken(value: str, kind: str) -> None:
    assert [k for k, _ in errors_of(CitizenId, value)] == [kind]


def test_an_id_number_error_never_echoes_the_number() -> None:
    number = make_citizen_id("440300", date(1990, 5, 17), 123)
    bad = number[:17] + ("0" if number[-1] != "0" else "1")
    for _, message in errors_of(CitizenId, bad):
        assert number[:17] not in message


def test_an_id_number_must_be_a_string() -> None:
    assert errors_of(CitizenId, 110105194912310020)[0][0] == "string_type"


@settings(deadline=None)
@given(persons())
def test_gender_follows_the_seventeenth_digit(person: Person) -> None:
    assert person.gender is gender_of_citizen_id(person.id_number)
    assert (int(person.id_number[16]) % 2 == 1) == (person.gender is Gender.MALE)


def test_a_gender_that_contradicts_the_id_number_is_refused() -> None:
    female_id = make_citizen_id("110105", date(1980, 1, 1), 2)
    with pytest.raises(ValidationError, match="gender does not agree with id_number"):
        Person(name="王芳", gender=Gender.MALE, id_number=female_id)


@settings(deadline=None)
@given(person_names)
def test_chinese_names_of_any_length_with_middle_dots_validate(name: str) -> None:
    assert TypeAdapter(PersonName).validate_python(name) == name


@pytest.mark.parametrize("name", ["买买提·艾力", "阿卜杜热西提·阿卜杜热合曼", "张", "欧阳娜娜", "𠈌䶮"])
def test_real_name_shapes_validate(name: str) -> None:
    assert TypeAdapter(PersonName).validate_python(name) == name


@pytest.mark.parametrize("dot", ["\u2022", "\u30fb", "\u2027", "\uff65"])
def test_look_alike_dots_are_normalised_to_the_middle_dot(dot: str) -> None:
    assert TypeAdapter(PersonName).validate_python(f"买买提{dot}艾力") == "买买提·艾力"


@pytest.mark.parametrize(
    "name", ["", "·艾力", "买买提·", "买买提··艾力", "张 伟", "Zhang Wei", "张3", " 张伟", "张" * 101]
)
def test_names_that_are_not_chinese_characters_and_dots_are_refused(name: str) -> None:
    assert [k for k, _ in errors_of(PersonName, name)] == ["person_name"]


@pytest.mark.parametrize("code", ["440300", "000000"])
def test_six_digit_agency_codes_validate(code: str) -> None:
    assert TypeAdapter(AgencyCode).validate_python(code) == code


@pytest.mark.parametrize("code", ["44030", "4403000", "44030a", "", " 440300"])
def test_agency_codes_other_than_six_digits_are_refused(code: str) -> None:
    [(kind, message)] = errors_of(AgencyCode, code)
    assert kind == "agency_code"
    assert "6 digits" in message


def test_an_agency_code_given_as_a_number_is_refused() -> None:
    assert errors_of(AgencyCode, 440300)[0][0] == "string_type"


@pytest.mark.parametrize(
    ("month", "message"),
    [
        ("2024-13", "month must be 01 to 12, got 13"),
        ("2024-00", "month must be 01 to 12, got 0"),
        ("2024-1", "YYYY-MM"),
        ("202401", "YYYY-MM"),
        ("2024-01-01", "YYYY-MM"),
        ("1899-12", "year must be 1900 to 2099"),
    ],
)
def test_months_out_of_range_or_malformed_are_refused(month: str, message: str) -> None:
    [(kind, text)] = errors_of(Month, month)
    assert kind == "month"
    assert message in text


def test_month_span_counts_both_ends() -> None:
    assert month_span("2024-01", "2024-01") == 1
    assert month_span("2023-11", "2024-02") == 4
    assert month_span("2024-02", "2024-01") == 0


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (-1, "greater_than_equal"),
        (1.0, "int_type"),
        ("100", "int_type"),
        (True, "int_type"),
        (10**15 + 1, "less_than_equal"),
    ],
)
def test_amounts_are_non_negative_integer_fen_only(value: object, kind: str) -> None:
    assert errors_of(Fen, value)[0][0] == kind


def test_months_are_never_negative() -> None:
    assert errors_of(Months, -1)[0][0] == "greater_than_equal"


def test_a_bank_account_needs_a_twelve_digit_bank_code_and_a_numeric_account() -> None:
    with pytest.raises(ValidationError) as caught:
        BankAccount(bank_name="中国银行", bank_code="1234", account_name="某中心", account_number="62-22")
    assert {e["loc"][0]: e["type"] for e in caught.value.errors()} == {
        "bank_code": "bank_code",
        "account_number": "account_number",
    }


def test_blank_text_is_refused() -> None:
    with pytest.raises(ValidationError, match="bank name must not be blank"):
        BankAccount(
            bank_name="  ",
            bank_code="102584000123",
            account_name="某中心",
            account_number="622200001",
        )


def test_unknown_fields_are_refused_in_a_person() -> None:
    number = make_citizen_id("440300", date(1990, 5, 17), 123)
    with pytest.raises(ValidationError) as caught:
        Person.model_validate({"name": "张伟", "gender": "male", "id_number": number, "nickname": "伟"})
    assert caught.value.errors()[0]["type"] == "extra_forbidden"
