"""Reading people from CSV and JSON lines: every row checked with the contract's rules, every
problem named by line and field, no ID number in any message."""

from __future__ import annotations

import json
import random

import pytest

from agents.ledger.base import LedgerPeriod
from agents.ledger.importer import (
    LedgerImportRejected,
    RowProblem,
    format_people,
    parse_people,
)
from agents.tools.seed import generate_people
from schemas.common import InsuranceType

REGION = "360400"
HEADER = (
    "id_number,name,gender,insurance_type,participation,months_paid,deemed_months,periods,"
    "balance_fen,arrears_fen,retiree,enrolled"
)
GOOD = (
    "11010519491231002X,张伟,female,310,stopped,29,36,"
    "2019-01..2020-12:110000:310:24;2021-01..2021-06:360400:310:5,1234567,0,false,true"
)
ID = "11010519491231002X"


def rejected(text: str, file_format: str = "csv") -> list[RowProblem]:
    with pytest.raises(LedgerImportRejected) as raised:
        parse_people(text, REGION, file_format)  # type: ignore[arg-type]
    for problem in raised.value.problems:
        assert ID not in str(problem) and ID[:17] not in str(problem)
    assert ID not in str(raised.value)
    return list(raised.value.problems)


def test_a_good_csv_row_becomes_an_account_of_this_agency() -> None:
    [(line, account)] = parse_people(f"{HEADER}\n{GOOD}\n", REGION, "csv")
    assert line == 2
    assert (account.id_number, account.name, account.region) == (ID, "张伟", REGION)
    assert (account.months_paid, account.deemed_months, account.balance_fen) == (29, 36, 1_234_567)
    assert account.periods == (
        LedgerPeriod(
            from_month="2019-01",
            to_month="2020-12",
            region="110000",
            insurance_type=InsuranceType.EMPLOYEE,
            months=24,
        ),
        LedgerPeriod(
            from_month="2021-01",
            to_month="2021-06",
            region="360400",
            insurance_type=InsuranceType.EMPLOYEE,
            months=5,
        ),
    )


def test_optional_columns_default_and_months_of_a_full_period_may_be_left_off() -> None:
    header = (
        "name,id_number,gender,insurance_type,participation,months_paid,deemed_months,periods,"
        "balance_fen"
    )
    row = "张伟,11010519491231002x,female,310,active,24,0,2019-01..2020-12:110000:310,100"
    [(_, account)] = parse_people(f"\ufeff{header}\n{row}\n\n", REGION, "csv")
    assert account.id_number == ID  # lowercase x read as X
    assert (account.arrears_fen, account.retiree, account.enrolled) == (0, False, True)
    assert account.periods[0].months == 24


def test_json_lines_and_csv_written_by_format_people_read_back_the_same() -> None:
    people = generate_people(REGION, 40, random.Random(12))
    for file_format in ("csv", "jsonl"):
        text = format_people(people, file_format)  # type: ignore[arg-type]
        read = parse_people(text, REGION, file_format)  # type: ignore[arg-type]
        assert [account for _, account in read] == people


@pytest.mark.parametrize(
    ("row", "field", "message"),
    [
        (GOOD.replace("002X", "0021", 1), "id_number", "check character is wrong"),
        (GOOD.replace("张伟", "Zhang Wei"), "name", "Chinese characters"),
        (GOOD.replace("female", "male"), "gender", "does not agree with the ID number"),
        (GOOD.replace(",310,stopped", ",320,stopped"), "insurance_type", "'310' or '390'"),
        (GOOD.replace("stopped", "paused"), "participation", "'active' or 'stopped'"),
        (GOOD.replace(",1234567,", ",12345.67,"), "balance_fen", "whole number of fen"),
        (GOOD.replace(",29,36,", ",30,36,"), "periods", "add up to 29 months but months_paid is 30"),
        (GOOD.replace(":360400:310:5", ":360400:310:7"), "periods[2]", "exceed the 6"),
        (GOOD.replace("2021-01..", "2020-12.."), "periods[2]", "starts before period 1 ends"),
        (GOOD.replace("2021-06:", "2021-13:"), "periods[2].to_month", "01 to 12"),
        (GOOD.replace(":360400:", ":3604:"), "periods[2].region", "6 digits"),
        (GOOD.replace(":360400:310:5", "@360400"), "periods[2]", "FROM..TO:REGION:TYPE:MONTHS"),
        (GOOD.replace(",0,false,", ",-5,false,"), "arrears_fen", "greater than or equal to 0"),
        (GOOD.replace(",false,true", ",no,true"), "retiree", "true or false"),
        (GOOD.replace(",310,stopped", ",390,stopped"), "balance_fen", "resident insurance"),
        (GOOD.replace(",29,36,", ",29,1190,"), "deemed_months", "exceed 1200"),
    ],
)
def test_a_bad_field_is_named_with_its_line(row: str, field: str, message: str) -> None:
    other = GOOD.replace(ID, "110105194912310046")  # a good row before the bad one
    problems = rejected(f"{HEADER}\n{other}\n{row}\n")
    assert [(p.line, p.field) for p in problems] == [(3, field)]
    assert message in problems[0].message


def test_every_problem_of_every_row_is_listed() -> None:
    bad = GOOD.replace("张伟", "").replace(",1234567,", ",abc,")
    problems = rejected(f"{HEADER}\n{bad}\n{GOOD}\n{GOOD}\n")
    assert [(p.line, p.field) for p in problems] == [
        (2, "balance_fen"),
        (2, "name"),
        (4, "id_number"),
    ]
    assert problems[0].message == "must be a whole number of fen (digits only)"
    assert problems[2].message == "the same person as line 3"


def test_the_header_must_name_the_required_columns_and_no_others() -> None:
    header = HEADER.replace("deemed_months", "deemed").replace(",enrolled", ",email")
    problems = rejected(f"{header}\n{GOOD}\n")
    assert {(p.line, p.field) for p in problems} == {
        (1, "deemed"),
        (1, "email"),
        (1, "deemed_months"),
    }
    assert [p.field for p in rejected("")] == ["header"]
    assert [p.field for p in rejected(f"{HEADER}\n{GOOD},extra\n")] == ["row"]


def good_json(**changes: object) -> str:
    [(_, account)] = parse_people(f"{HEADER}\n{GOOD}\n", REGION, "csv")
    value = json.loads(format_people([account], "jsonl"))
    value.update(changes)
    return json.dumps(value, ensure_ascii=False)


@pytest.mark.parametrize(
    ("line", "field", "message"),
    [
        (good_json(balance_fen="1234567"), "balance_fen", "whole number of fen"),
        (good_json(months_paid=29.0), "months_paid", "whole number of months"),
        (good_json(retiree="false"), "retiree", "valid boolean"),
        (good_json(phone="123"), "phone", "unknown column"),
        (good_json(periods=[{"from_month": "2019-01"}]), "periods[1].to_month", "missing"),
        ('{"id_number": ', "json", "not JSON"),
        ("[1, 2]", "json", "one JSON object"),
    ],
)
def test_json_lines_are_checked_as_strictly(line: str, field: str, message: str) -> None:
    problems = rejected(f"\n{line}\n", "jsonl")
    named = {p.field: p for p in problems}
    assert {p.line for p in problems} == {2}
    assert message in named[field].message


def test_the_optional_enrolment_start_column_in_csv_and_json_lines() -> None:
    header = f"{HEADER},enrolment_start"
    other = GOOD.replace(ID, "110105194912310046")
    [(_, known), (_, unknown)] = parse_people(
        f"{header}\n{GOOD},2026-03\n{other},\n", REGION, "csv"
    )
    assert (known.enrolment_start, unknown.enrolment_start) == ("2026-03", None)
    for value, expected in (("2026-03", "2026-03"), (None, None)):
        [(_, account)] = parse_people(good_json(enrolment_start=value), REGION, "jsonl")
        assert account.enrolment_start == expected
    [(_, absent)] = parse_people(
        json.dumps({k: v for k, v in json.loads(good_json()).items() if k != "enrolment_start"}),
        REGION,
        "jsonl",
    )
    assert absent.enrolment_start is None
    # Written back by format_people, both formats read the same.
    for file_format in ("csv", "jsonl"):
        text = format_people([known, unknown], file_format)  # type: ignore[arg-type]
        assert [a for _, a in parse_people(text, REGION, file_format)] == [known, unknown]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("cells", "message"),
    [
        ("true,2026-13", "01 to 12"),
        ("true,2026-3", "YYYY-MM"),
        ("false,2026-03", "must be empty when enrolled is false"),
    ],
)
def test_a_bad_enrolment_start_is_named(cells: str, message: str) -> None:
    row = GOOD.removesuffix(",true") + f",{cells}"
    problems = rejected(f"{HEADER},enrolment_start\n{row}\n")
    assert [(p.line, p.field) for p in problems] == [(2, "enrolment_start")]
    assert message in problems[0].message


def test_a_json_enrolment_start_must_be_a_month_text() -> None:
    problems = rejected(f"{good_json(enrolment_start=202603)}\n", "jsonl")
    assert [(p.line, p.field) for p in problems] == [(1, "enrolment_start")]
