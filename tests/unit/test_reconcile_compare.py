"""Reconciliation compares both ends' books with each other and with the form, reporting every
difference with both values, and totals them per pair of agencies per day."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any
from uuid import UUID

import pytest

from agents.ledger import LedgerStatement, PersonAccount
from agents.reconcile.compare import CaseFigures, compare, control_totals, figures_of
from agents.service.statements import statement_document
from agents.testing.fakes import InMemoryLedger
from schemas.common import Gender, InsuranceType, Person, make_citizen_id
from schemas.information import BalanceDisposition, InformationFormV2
from schemas.reconciliation import LedgerStatementV1, ReconciliationOutcome, Role

OUT, IN = "360400", "440300"
BALANCE = 123_456
MONTHS, DEEMED = 140, 24
ID_NUMBER = make_citizen_id("360402", date(1988, 7, 21), 135)


def form(
    disposition: BalanceDisposition = BalanceDisposition.TRANSFERRED, **changes: Any
) -> InformationFormV2:
    balance = 0 if disposition is BalanceDisposition.NO_ACCOUNT else BALANCE
    values: dict[str, Any] = {
        "person": Person(name="张伟", gender=Gender.MALE, id_number=ID_NUMBER),
        "insurance_type": InsuranceType.RESIDENT
        if disposition is BalanceDisposition.NO_ACCOUNT
        else InsuranceType.EMPLOYEE,
        "participation_start": "2012-07",
        "participation_end": "2024-12",
        "months_paid": MONTHS,
        "deemed_months": DEEMED,
        "account_balance": balance,
        "amount_transferred": balance if disposition is BalanceDisposition.TRANSFERRED else 0,
        "balance_disposition": disposition,
        "contribution_periods": None,
        "seal_reference": None,
    }
    values.update(changes)
    return InformationFormV2.model_validate(values)


def outgoing(**changes: Any) -> LedgerStatementV1:
    values: dict[str, Any] = {
        "case_id": CASE,
        "role": Role.OUTGOING,
        "counterpart": IN,
        "has_record": True,
        "months": MONTHS,
        "deemed_months": DEEMED,
        "amount": BALANCE,
        "paid_out": 0,
        "retained": 0,
    }
    values.update(changes)
    return LedgerStatementV1.model_validate(values)


def receiving(**changes: Any) -> LedgerStatementV1:
    values: dict[str, Any] = {
        "case_id": CASE,
        "role": Role.RECEIVING,
        "counterpart": OUT,
        "has_record": True,
        "months": MONTHS,
        "deemed_months": DEEMED,
        "amount": BALANCE,
        "paid_out": 0,
        "retained": 0,
    }
    values.update(changes)
    return LedgerStatementV1.model_validate(values)


def nothing(role: Role, counterpart: str) -> LedgerStatementV1:
    return LedgerStatementV1(
        case_id=CASE,
        role=role,
        counterpart=counterpart,
        has_record=False,
        months=0,
        deemed_months=0,
        amount=0,
        paid_out=0,
        retained=0,
    )


CASE = UUID("0b7e6f0a-3c1d-4e2f-8a9b-112233445566")


def differences(
    f: InformationFormV2 | None, o: LedgerStatementV1 | None, r: LedgerStatementV1 | None
) -> dict[str, tuple[object, object]]:
    result = compare(CASE, OUT, IN, f, o, r)
    assert (result.outcome is ReconciliationOutcome.MATCHED) == (not result.differences)
    assert (result.case_id, result.outgoing, result.receiving) == (CASE, OUT, IN)
    return {d.field: (d.outgoing_value, d.receiving_value) for d in result.differences}


# -- clean cases of each disposition ------------------------------------------------------------


def test_a_transferred_balance_debited_and_credited_in_full_matches() -> None:
    assert differences(form(), outgoing(), receiving()) == {}


def test_a_balance_paid_to_the_person_matches_when_paid_out_once_and_nothing_moved() -> None:
    f = form(BalanceDisposition.PAID_TO_PERSON)
    assert differences(f, outgoing(amount=0, paid_out=BALANCE), receiving(amount=0)) == {}


def test_a_balance_retained_in_province_matches_when_retained_and_nothing_moved() -> None:
    f = form(BalanceDisposition.RETAINED_IN_PROVINCE)
    assert differences(f, outgoing(amount=0, retained=BALANCE), receiving(amount=0)) == {}


def test_resident_insurance_with_no_account_matches_on_months_alone() -> None:
    f = form(BalanceDisposition.NO_ACCOUNT)
    assert differences(f, outgoing(amount=0), receiving(amount=0)) == {}


def test_a_case_rejected_before_any_form_matches_when_nothing_moved_on_either_side() -> None:
    assert differences(None, nothing(Role.OUTGOING, IN), nothing(Role.RECEIVING, OUT)) == {}


# -- injected discrepancies ----------------------------------------------------------------------


def test_an_extra_credit_is_reported_as_amount_with_both_values() -> None:
    assert differences(form(), outgoing(), receiving(amount=BALANCE + 500)) == {
        "amount": (BALANCE, BALANCE + 500)
    }


def test_a_lost_debit_is_reported_against_the_other_book_and_against_the_form() -> None:
    assert differences(form(), outgoing(amount=0), receiving()) == {
        "amount": (0, BALANCE),
        "form_amount_transferred": (0, BALANCE),
    }


def test_a_wrong_month_count_is_reported_with_both_counts() -> None:
    assert differences(form(), outgoing(), receiving(months=MONTHS - 1)) == {
        "months": (MONTHS, MONTHS - 1)
    }


def test_wrong_deemed_months_are_reported() -> None:
    assert differences(form(), outgoing(), receiving(deemed_months=0)) == {"deemed_months": (DEEMED, 0)}


def test_a_payout_recorded_twice_is_reported_against_the_balance_on_the_form() -> None:
    f = form(BalanceDisposition.PAID_TO_PERSON)
    assert differences(f, outgoing(amount=0, paid_out=2 * BALANCE), receiving(amount=0)) == {
        "paid_out": (2 * BALANCE, BALANCE)
    }


def test_a_retained_balance_that_was_also_sent_is_reported_twice_over() -> None:
    f = form(BalanceDisposition.RETAINED_IN_PROVINCE)
    assert differences(f, outgoing(amount=BALANCE, retained=BALANCE), receiving(amount=BALANCE)) == {
        "form_amount_transferred": (BALANCE, 0)
    }


def test_books_that_agree_with_each_other_but_not_with_the_form_are_reported() -> None:
    assert differences(form(), outgoing(months=100), receiving(months=100)) == {
        "form_months_paid": (100, MONTHS)
    }


def test_every_differing_field_is_reported_at_once() -> None:
    found = differences(form(), outgoing(amount=0, deemed_months=20), receiving(months=1))
    assert found == {
        "months": (MONTHS, 1),
        "deemed_months": (20, DEEMED),
        "amount": (0, BALANCE),
        "form_deemed_months": (20, DEEMED),
        "form_amount_transferred": (0, BALANCE),
    }


def test_a_missing_statement_is_a_difference_on_every_field_it_would_give() -> None:
    assert differences(form(), outgoing(), None) == {
        "has_record": (True, None),
        "months": (MONTHS, None),
        "deemed_months": (DEEMED, None),
        "amount": (BALANCE, None),
    }
    assert differences(form(), None, None) == {
        "paid_out": (None, 0),
        "retained": (None, 0),
        "form_has_record": (None, True),
        "form_months_paid": (None, MONTHS),
        "form_deemed_months": (None, DEEMED),
        "form_amount_transferred": (None, BALANCE),
    }


def test_no_record_at_the_receiving_end_where_one_is_expected_is_a_difference() -> None:
    assert differences(form(), outgoing(), nothing(Role.RECEIVING, OUT)) == {
        "has_record": (True, False),
        "months": (MONTHS, 0),
        "deemed_months": (DEEMED, 0),
        "amount": (BALANCE, 0),
    }


def test_no_record_on_either_side_of_an_all_zero_form_is_still_a_difference() -> None:
    f = form(BalanceDisposition.NO_ACCOUNT, months_paid=0, deemed_months=0)
    assert differences(f, nothing(Role.OUTGOING, IN), nothing(Role.RECEIVING, OUT)) == {
        "form_has_record": (False, True)
    }


def test_a_case_rejected_before_any_form_with_money_debited_is_a_difference() -> None:
    assert differences(None, outgoing(), nothing(Role.RECEIVING, OUT)) == {
        "has_record": (True, False),
        "months": (MONTHS, 0),
        "deemed_months": (DEEMED, 0),
        "amount": (BALANCE, 0),
        "form_has_record": (True, False),
        "form_months_paid": (MONTHS, 0),
        "form_deemed_months": (DEEMED, 0),
        "form_amount_transferred": (BALANCE, 0),
    }


def test_a_statement_for_the_wrong_side_counts_as_no_record_on_its_own_side() -> None:
    swapped = outgoing(role=Role.RECEIVING, paid_out=0)
    assert differences(form(), swapped, receiving()) == {
        "has_record": (False, True),
        "form_has_record": (False, True),
    }


def test_the_result_is_deterministic() -> None:
    args = (CASE, OUT, IN, form(), outgoing(amount=1), receiving(months=3))
    assert compare(*args) == compare(*args)
    assert compare(*args).model_dump_json() == compare(*args).model_dump_json()


# -- statements from the books -------------------------------------------------------------------


async def test_statement_documents_from_real_books_of_both_ends_match() -> None:
    case_id = uuid.uuid4()
    person = PersonAccount(
        id_number=ID_NUMBER,
        name="张伟",
        gender=Gender.MALE,
        insurance_type=InsuranceType.EMPLOYEE,
        enrolled=True,
        participation="active",
        region=OUT,
        months_paid=MONTHS,
        deemed_months=DEEMED,
        balance_fen=BALANCE,
    )
    out_books = InMemoryLedger(OUT, [person])
    in_books = InMemoryLedger(IN)
    await out_books.terminate_and_debit(case_id, ID_NUMBER, BALANCE)
    await in_books.credit(case_id, ID_NUMBER, MONTHS, DEEMED, BALANCE, name="张伟", gender=Gender.MALE)
    o = statement_document(case_id, await out_books.statement(case_id), IN)
    r = statement_document(case_id, await in_books.statement(case_id), OUT)
    assert (o.role, o.months, o.deemed_months, o.amount) == (Role.OUTGOING, MONTHS, DEEMED, BALANCE)
    assert (r.role, r.months, r.deemed_months, r.amount) == (Role.RECEIVING, MONTHS, DEEMED, BALANCE)
    result = compare(case_id, OUT, IN, form(), o, r)
    assert result.outcome is ReconciliationOutcome.MATCHED


def test_a_statement_of_books_without_the_case_needs_the_agency_role() -> None:
    empty = LedgerStatement(case_id=CASE, role="none")
    document = statement_document(CASE, empty, IN, role="outgoing")
    assert document == nothing(Role.OUTGOING, IN)
    with pytest.raises(ValueError, match="role"):
        statement_document(CASE, empty, IN)


def test_a_statement_for_another_case_is_refused() -> None:
    with pytest.raises(ValueError, match="not for case"):
        statement_document(uuid.uuid4(), LedgerStatement(case_id=CASE, role="none"), IN, role="outgoing")


def test_books_of_the_receiving_side_never_state_a_payout() -> None:
    books = LedgerStatement(
        case_id=CASE, role="receiving", months_credited=3, deemed_credited=1, amount_credited_fen=9
    )
    document = statement_document(CASE, books, OUT, role="outgoing")
    assert (document.role, document.months, document.amount, document.paid_out) == (Role.RECEIVING, 3, 9, 0)


# -- control totals ------------------------------------------------------------------------------


def figures(
    day: date, out: str, into: str, amount_out: int, amount_in: int, months: tuple[int, int]
) -> CaseFigures:
    return CaseFigures(
        case_id=uuid.uuid4(),
        day=day,
        outgoing=out,
        receiving=into,
        matched=amount_out == amount_in and months[0] == months[1],
        amount_out=amount_out,
        amount_in=amount_in,
        months_out=months[0],
        months_in=months[1],
        deemed_out=0,
        deemed_in=0,
        paid_out=0,
        retained=0,
    )


def test_control_totals_sum_each_pair_each_day_and_flag_the_unbalanced_ones() -> None:
    d1, d2 = date(2026, 3, 2), date(2026, 3, 3)
    totals = control_totals(
        [
            figures(d1, OUT, IN, 100, 100, (12, 12)),
            figures(d1, OUT, IN, 250, 250, (30, 30)),
            figures(d1, IN, OUT, 70, 70, (5, 5)),  # the other direction is another pair
            figures(d2, OUT, IN, 40, 45, (6, 6)),  # an extra credit
            figures(d2, OUT, IN, 10, 10, (2, 1)),  # a month lost
        ]
    )
    keyed = {(t.day, t.outgoing, t.receiving): t for t in totals}
    assert list(keyed) == [(d1, OUT, IN), (d1, IN, OUT), (d2, OUT, IN)]
    day1 = keyed[(d1, OUT, IN)]
    assert (day1.cases, day1.matched, day1.mismatched) == (2, 2, 0)
    assert (day1.amount_out, day1.amount_in, day1.months_out, day1.months_in) == (350, 350, 42, 42)
    assert day1.balanced
    assert keyed[(d1, IN, OUT)].balanced
    day2 = keyed[(d2, OUT, IN)]
    assert (day2.cases, day2.matched, day2.mismatched) == (2, 0, 2)
    assert (day2.amount_out, day2.amount_in, day2.months_out, day2.months_in) == (50, 55, 8, 7)
    assert not day2.balanced


def test_figures_of_a_result_take_each_end_from_its_own_statement() -> None:
    result = compare(CASE, OUT, IN, form(), outgoing(), receiving(amount=BALANCE + 1))
    item = figures_of(CASE, date(2026, 3, 2), result, outgoing(), receiving(amount=BALANCE + 1))
    assert (item.amount_out, item.amount_in, item.matched) == (BALANCE, BALANCE + 1, False)
    lost = compare(CASE, OUT, IN, form(), outgoing(), None)
    missing = figures_of(CASE, date(2026, 3, 2), lost, outgoing(), None)
    assert (missing.amount_in, missing.months_in) == (0, 0)
