"""Documents: every model round-trips through JSON, and every inconsistency is refused."""

from __future__ import annotations

from datetime import date
from typing import Any
from uuid import uuid4

import pytest
from hypothesis import given, settings
from pydantic import ValidationError

from schemas.common import Document
from schemas.examples import EXAMPLES
from schemas.information import (
    ContributionPeriod,
    InformationFormV1,
    InformationFormV2,
    downcast_v2_to_v1,
    upcast_v1_to_v2,
)
from schemas.notices import RejectionV1, ReminderV1
from schemas.reconciliation import LedgerStatementV1, ReconciliationResultV1
from schemas.registry import MODELS
from tests.unit.schema_strategies import documents

FORM_V2 = EXAMPLES[("information_form", 2)]


def test_every_registered_model_has_an_example_and_a_strategy() -> None:
    from tests.unit.schema_strategies import DOCUMENTS

    keys = {(t, v) for t, models in MODELS.items() for v in range(1, len(models) + 1)}
    assert set(EXAMPLES) == keys == set(DOCUMENTS)


@settings(max_examples=300, deadline=None)
@given(documents)
def test_every_document_round_trips_through_json(document: Document) -> None:
    model = type(document)
    assert model.model_validate_json(document.model_dump_json()) == document
    assert model.model_validate(document.model_dump(mode="json")) == document


def test_documents_are_frozen() -> None:
    with pytest.raises(ValidationError):
        FORM_V2.months_paid = 1  # type: ignore[misc]


def form_payload(**changes: Any) -> dict[str, Any]:
    payload = FORM_V2.model_dump(mode="json")
    payload.update(changes)
    return payload


def refusal(model: type[Document], payload: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(payload)
    return [e["type"] for e in caught.value.errors()]


def period(first: str, last: str, months: int) -> dict[str, Any]:
    return {
        "from_month": first,
        "to_month": last,
        "region": "360400",
        "insurance_type": "310",
        "months": months,
    }


def test_periods_that_do_not_add_up_to_months_paid_are_refused() -> None:
    with pytest.raises(ValidationError, match="add up to 140 months but months_paid is 141"):
        InformationFormV2.model_validate(form_payload(months_paid=141))


@pytest.mark.parametrize(
    ("periods", "kind"),
    [
        ([period("2012-07", "2018-06", 72), period("2018-06", "2024-12", 68)], "periods_order"),
        ([period("2019-01", "2024-12", 68), period("2012-07", "2018-06", 72)], "periods_order"),
        ([period("2012-07", "2018-06", 72), period("2019-01", "2025-01", 68)], "periods_after_end"),
        ([period("2012-07", "2012-12", 7), period("2019-01", "2024-12", 133)], "period_months"),
        ([period("2012-07", "2012-06", 1), period("2019-01", "2024-12", 139)], "period_order"),
        ([period("2012-07", "2018-06", 0), period("2019-01", "2024-12", 140)], "greater_than_equal"),
    ],
)
def test_inconsistent_periods_are_refused(periods: list[dict[str, Any]], kind: str) -> None:
    assert kind in refusal(InformationFormV2, form_payload(contribution_periods=periods))


@pytest.mark.parametrize(
    ("changes", "kind"),
    [
        ({"amount_transferred": 1_234_568}, "amount_exceeds_balance"),
        ({"amount_transferred": 1_000_000}, "disposition_mismatch"),
        ({"balance_disposition": "retained_in_province"}, "disposition_mismatch"),
        ({"balance_disposition": "paid_to_person"}, "disposition_mismatch"),
        ({"balance_disposition": "no_account"}, "disposition_mismatch"),
        (
            {"account_balance": 0, "amount_transferred": 0, "balance_disposition": "transferred"},
            "disposition_mismatch",
        ),
        ({"insurance_type": "390"}, "resident_has_no_account"),
        ({"participation_start": "2025-01"}, "participation_order"),
        ({"account_balance": -1}, "greater_than_equal"),
        ({"deemed_months": 1100}, "months_total"),
    ],
)
def test_balance_disposition_and_amounts_must_agree(changes: dict[str, Any], kind: str) -> None:
    assert kind in refusal(InformationFormV2, form_payload(**changes))


@pytest.mark.parametrize(
    ("disposition", "balance", "amount"),
    [
        ("transferred", 100, 100),
        ("retained_in_province", 100, 0),
        ("paid_to_person", 100, 0),
        ("no_account", 0, 0),
    ],
)
def test_each_disposition_accepts_its_amounts(disposition: str, balance: int, amount: int) -> None:
    form = InformationFormV2.model_validate(
        form_payload(balance_disposition=disposition, account_balance=balance, amount_transferred=amount)
    )
    assert form.balance_disposition == disposition


def test_a_resident_form_has_no_account() -> None:
    form = InformationFormV2.model_validate(
        form_payload(
            insurance_type="390",
            account_balance=0,
            amount_transferred=0,
            balance_disposition="no_account",
        )
    )
    assert form.account_balance == 0


def test_v1_upcasts_to_v2_with_periods_and_seal_not_stated() -> None:
    v1 = downcast_v2_to_v1(FORM_V2)
    v2 = upcast_v1_to_v2(v1)
    assert v2.contribution_periods is None
    assert v2.seal_reference is None
    assert v2.months_paid == FORM_V2.months_paid
    assert downcast_v2_to_v1(v2) == v1


def test_a_v2_form_may_say_its_periods_are_not_itemised() -> None:
    form = InformationFormV2.model_validate(
        form_payload(contribution_periods=None, seal_reference=None, months_paid=7)
    )
    assert form.contribution_periods is None


def test_v2_must_state_periods_and_seal_even_if_null() -> None:
    payload = form_payload()
    del payload["contribution_periods"]
    assert refusal(InformationFormV2, payload) == ["missing"]


def test_a_v1_form_refuses_v2_fields() -> None:
    assert "extra_forbidden" in refusal(InformationFormV1, form_payload())


def test_a_contribution_period_is_its_own_strict_object() -> None:
    with pytest.raises(ValidationError):
        ContributionPeriod.model_validate({**period("2012-07", "2018-06", 72), "note": "x"})


def test_an_unknown_rejection_reason_is_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        RejectionV1.model_validate({"reason_code": "too_busy", "text": "人手不足"})
    assert caught.value.errors()[0]["type"] == "enum"
    assert caught.value.errors()[0]["loc"] == ("reason_code",)


def test_a_rejection_needs_text() -> None:
    with pytest.raises(ValidationError):
        RejectionV1.model_validate({"reason_code": "other", "text": " "})


def test_a_reminder_is_not_due_before_it_started() -> None:
    with pytest.raises(ValidationError, match="due_on must not be before waiting_since"):
        ReminderV1(
            overdue_step="information_form",
            waiting_since=date(2025, 3, 10),
            due_on=date(2025, 3, 9),
        )


def test_a_fund_transfer_between_one_account_is_refused() -> None:
    transfer = EXAMPLES[("fund_transfer", 1)].model_dump(mode="json")
    transfer["payee_account"] = transfer["payer_account"]
    assert "same_account" in refusal(type(EXAMPLES[("fund_transfer", 1)]), transfer)


def test_a_fund_transfer_of_nothing_is_refused() -> None:
    transfer = EXAMPLES[("fund_transfer", 1)].model_dump(mode="json")
    transfer["amount"] = 0
    assert "greater_than_equal" in refusal(type(EXAMPLES[("fund_transfer", 1)]), transfer)


def test_a_contact_letter_between_one_region_is_refused() -> None:
    letter = EXAMPLES[("contact_letter", 1)].model_dump(mode="json")
    letter["to_region"] = letter["from_region"]
    assert "same_region" in refusal(type(EXAMPLES[("contact_letter", 1)]), letter)


def statement(**changes: Any) -> dict[str, Any]:
    return {
        "case_id": str(uuid4()),
        "role": "receiving",
        "counterpart": "360400",
        "has_record": True,
        "months": 140,
        "deemed_months": 24,
        "amount": 100,
        "paid_out": 0,
        "retained": 0,
        **changes,
    }


@pytest.mark.parametrize(
    ("changes", "kind"),
    [
        ({"has_record": False}, "no_record_nonzero"),
        ({"paid_out": 5}, "receiving_pays_out"),
        ({"has_record": "yes"}, "bool_type"),
    ],
)
def test_a_ledger_statement_is_internally_consistent(changes: dict[str, Any], kind: str) -> None:
    assert kind in refusal(LedgerStatementV1, statement(**changes))


def result(**changes: Any) -> dict[str, Any]:
    return {
        "case_id": str(uuid4()),
        "outgoing": "360400",
        "receiving": "440300",
        "outcome": "mismatched",
        "differences": [{"field": "amount", "outgoing_value": 100, "receiving_value": 90}],
        **changes,
    }


@pytest.mark.parametrize(
    ("changes", "kind"),
    [
        ({"outcome": "matched"}, "outcome_mismatch"),
        ({"differences": []}, "outcome_mismatch"),
        ({"receiving": "360400"}, "same_agency"),
        (
            {"differences": [{"field": "amount", "outgoing_value": 1, "receiving_value": 1}]},
            "not_a_difference",
        ),
        (
            {
                "differences": [
                    {"field": "amount", "outgoing_value": 1, "receiving_value": 2},
                    {"field": "amount", "outgoing_value": 3, "receiving_value": 4},
                ]
            },
            "duplicate_difference",
        ),
    ],
)
def test_a_reconciliation_result_lists_exactly_the_differences(changes: dict[str, Any], kind: str) -> None:
    assert kind in refusal(ReconciliationResultV1, result(**changes))


def test_a_difference_keeps_both_values() -> None:
    parsed = ReconciliationResultV1.model_validate(
        result(differences=[{"field": "has_record", "outgoing_value": True, "receiving_value": 1}])
    )
    [difference] = parsed.differences
    assert difference.outgoing_value is True
    assert difference.receiving_value == 1
    assert difference.receiving_value is not True
