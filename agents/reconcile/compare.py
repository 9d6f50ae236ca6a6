"""Comparing the two ends' books of a case, and totalling them per pair of agencies: pure functions.

Three sources describe a case: the outgoing agency's ledger statement (``o``), the receiving
agency's ledger statement (``r``), and the information form the outgoing agency certified (``f``,
the receiving agency's copy of the outgoing agency's word). When they all agree the case is
matched; otherwise every disagreeing field is reported with both values.

What the form implies (``f``)
-----------------------------

==========================  ==========  ===========  ==========  =========  ===============
form                        has_record  months       amount      paid_out   retained
==========================  ==========  ===========  ==========  =========  ===============
``transferred``             true        months_paid  amount_tr.  0          0
``paid_to_person``          true        months_paid  0           balance    0
``retained_in_province``    true        months_paid  0           0          balance
``no_account``              true        months_paid  0           0          0
no form (rejected before)   false       0            0           0          0
==========================  ==========  ===========  ==========  =========  ===============

``deemed_months`` follows ``months`` (the form's ``deemed_months``). A case rejected before any
form must show that nothing moved on either side; a case rejected *after* its form is compared
with the form like any other: the outgoing agency has certified and debited, and a receiving
agency that credited nothing is a difference (money and months in limbo are never matched).

How a difference is expressed
-----------------------------

``outgoing_value`` is always the outgoing agency's books. ``receiving_value`` is what the
receiving end holds:

* ``has_record``, ``months``, ``deemed_months``, ``amount`` — kept by both books: the receiving
  agency's books. Reported when the two ledgers disagree.
* ``paid_out``, ``retained`` — kept only by the outgoing books: the receiving end knows them only
  from the form it received, so ``receiving_value`` is what the form implies (table above).
* ``form_has_record``, ``form_months_paid``, ``form_deemed_months``, ``form_amount_transferred`` —
  the outgoing agency's books against its own form: ``receiving_value`` is the form's value.

Together the two kinds are complete: for each quantity, ``months`` reports ``o != r`` and
``form_months_paid`` reports ``o != f``, so any disagreement among the three values is reported,
and the values given let an operator recover all three.

A statement that was never received has ``null`` for every value (never equal to a number, so
always a difference). ``has_record`` counts only a record for the side the statement is placed
on: a statement whose ``role`` is not its sender's side of the case counts as ``has_record``
false there (its numbers are still compared as they are).

Continuity (the gap, any back-payment and waiting period) is not compared: only the receiving
agency decides it, from its own enrolment date, and the outgoing agency knows it only from the
receiving agency's completion notice. There is no second, independent record of it to disagree
with, and neither ledger statement carries it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from uuid import UUID

from schemas.information import BalanceDisposition, InformationFormV2
from schemas.reconciliation import (
    Difference,
    LedgerStatementV1,
    ReconciliationOutcome,
    ReconciliationResultV1,
    Role,
)

__all__ = [
    "CaseFigures",
    "Expected",
    "PairDayTotals",
    "compare",
    "control_totals",
    "expected_from_form",
    "figures_of",
]

Value = int | bool | None


@dataclass(frozen=True, kw_only=True)
class Expected:
    """What the form (or its absence) says each book must show."""

    has_record: bool
    months: int
    deemed_months: int
    amount: int
    paid_out: int
    retained: int


def expected_from_form(form: InformationFormV2 | None) -> Expected:
    if form is None:
        return Expected(has_record=False, months=0, deemed_months=0, amount=0, paid_out=0, retained=0)
    disposition = form.balance_disposition
    return Expected(
        has_record=True,
        months=form.months_paid,
        deemed_months=form.deemed_months,
        amount=form.amount_transferred if disposition is BalanceDisposition.TRANSFERRED else 0,
        paid_out=form.account_balance if disposition is BalanceDisposition.PAID_TO_PERSON else 0,
        retained=form.account_balance if disposition is BalanceDisposition.RETAINED_IN_PROVINCE else 0,
    )


def _has_record(statement: LedgerStatementV1 | None, side: Role) -> bool | None:
    if statement is None:
        return None
    return statement.has_record and statement.role is side


def _number(statement: LedgerStatementV1 | None, field: str) -> int | None:
    if statement is None:
        return None
    value = getattr(statement, field)
    assert isinstance(value, int)
    return value


def _differs(a: Value, b: Value) -> bool:
    # bool is an int in Python: True == 1. A record flag is never compared with a number here,
    # but the type check keeps None, bools and ints apart exactly as `Difference` does.
    return type(a) is not type(b) or a != b


def compare(
    case_id: UUID,
    outgoing_code: str,
    receiving_code: str,
    form: InformationFormV2 | None,
    outgoing: LedgerStatementV1 | None,
    receiving: LedgerStatementV1 | None,
) -> ReconciliationResultV1:
    """Compare both ends' statements with each other and with the form; see the module doc.

    Deterministic: the same inputs give an equal result, differences in a fixed order.
    """
    expected = expected_from_form(form)
    out_record = _has_record(outgoing, Role.OUTGOING)
    in_record = _has_record(receiving, Role.RECEIVING)

    differences: list[Difference] = []

    def report(field: str, outgoing_value: Value, receiving_value: Value) -> None:
        if _differs(outgoing_value, receiving_value):
            differences.append(
                Difference(field=field, outgoing_value=outgoing_value, receiving_value=receiving_value)
            )

    # Both books against each other.
    report("has_record", out_record, in_record)
    for field in ("months", "deemed_months", "amount"):
        report(field, _number(outgoing, field), _number(receiving, field))
    # What only the outgoing books keep, against what the form says about it.
    report("paid_out", _number(outgoing, "paid_out"), expected.paid_out)
    report("retained", _number(outgoing, "retained"), expected.retained)
    # The outgoing books against the outgoing agency's own form.
    report("form_has_record", out_record, expected.has_record)
    report("form_months_paid", _number(outgoing, "months"), expected.months)
    report("form_deemed_months", _number(outgoing, "deemed_months"), expected.deemed_months)
    report("form_amount_transferred", _number(outgoing, "amount"), expected.amount)

    return ReconciliationResultV1(
        case_id=case_id,
        outgoing=outgoing_code,
        receiving=receiving_code,
        outcome=ReconciliationOutcome.MISMATCHED if differences else ReconciliationOutcome.MATCHED,
        differences=tuple(differences),
    )


# -- control totals ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class CaseFigures:
    """One reconciled case's numbers as each end booked them (0 for a missing statement)."""

    case_id: UUID
    day: date
    outgoing: str
    receiving: str
    matched: bool
    amount_out: int
    amount_in: int
    months_out: int
    months_in: int
    deemed_out: int
    deemed_in: int
    paid_out: int
    retained: int


def figures_of(
    case_id: UUID,
    day: date,
    result: ReconciliationResultV1,
    outgoing: LedgerStatementV1 | None,
    receiving: LedgerStatementV1 | None,
) -> CaseFigures:
    def number(statement: LedgerStatementV1 | None, field: str) -> int:
        value = _number(statement, field)
        return value if value is not None else 0

    return CaseFigures(
        case_id=case_id,
        day=day,
        outgoing=result.outgoing,
        receiving=result.receiving,
        matched=result.outcome is ReconciliationOutcome.MATCHED,
        amount_out=number(outgoing, "amount"),
        amount_in=number(receiving, "amount"),
        months_out=number(outgoing, "months"),
        months_in=number(receiving, "months"),
        deemed_out=number(outgoing, "deemed_months"),
        deemed_in=number(receiving, "deemed_months"),
        paid_out=number(outgoing, "paid_out"),
        retained=number(outgoing, "retained"),
    )


@dataclass(frozen=True, kw_only=True)
class PairDayTotals:
    """Everything agency ``outgoing`` sent toward ``receiving`` on ``day``, and what arrived.

    ``balanced`` is the control check: fen debited out of ``outgoing`` toward ``receiving`` equal
    fen credited into ``receiving`` from ``outgoing``, and the same for months and deemed months.
    """

    day: date
    outgoing: str
    receiving: str
    cases: int
    matched: int
    mismatched: int
    amount_out: int
    amount_in: int
    months_out: int
    months_in: int
    deemed_out: int
    deemed_in: int
    paid_out: int
    retained: int

    @property
    def balanced(self) -> bool:
        return (
            self.amount_out == self.amount_in
            and self.months_out == self.months_in
            and self.deemed_out == self.deemed_in
        )


def control_totals(figures: Iterable[CaseFigures]) -> list[PairDayTotals]:
    """Totals per (day, outgoing, receiving), sorted by those keys."""
    groups: dict[tuple[date, str, str], list[CaseFigures]] = {}
    for item in figures:
        groups.setdefault((item.day, item.outgoing, item.receiving), []).append(item)
    totals: list[PairDayTotals] = []
    for (day, outgoing, receiving), items in sorted(groups.items()):
        matched = sum(1 for item in items if item.matched)
        totals.append(
            PairDayTotals(
                day=day,
                outgoing=outgoing,
                receiving=receiving,
                cases=len(items),
                matched=matched,
                mismatched=len(items) - matched,
                amount_out=sum(item.amount_out for item in items),
                amount_in=sum(item.amount_in for item in items),
                months_out=sum(item.months_out for item in items),
                months_in=sum(item.months_in for item in items),
                deemed_out=sum(item.deemed_out for item in items),
                deemed_in=sum(item.deemed_in for item in items),
                paid_out=sum(item.paid_out for item in items),
                retained=sum(item.retained for item in items),
            )
        )
    return totals
