"""Conservation, whatever the person, the regions, the versions and the delivery order.

Whatever the case's path, both ends finish in a terminal state and agree on it, and money and
months are conserved: what left the outgoing books is what the receiving books credited, plus what
was paid to the person or retained in the province; a rejected transfer changes no books at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from hypothesis import event, given, settings
from hypothesis import strategies as st

from agents.domain.case import State
from agents.domain.deadlines import Regime
from schemas.common import InsuranceType
from schemas.contact import PayoutReason
from tests.unit.case_world import (
    Agent,
    Books,
    Sent,
    WeekdayCalendar,
    World,
    agency,
    bank_account,
    outgoing_account,
    person,
    receiving_account,
)

T = TypeVar("T")

CODES = ["360400", "110000", "320100", "440300", "441900", "540100", "410100"]


@dataclass(frozen=True)
class Scenario:
    out_code: str
    in_code: str
    out_type: InsuranceType
    in_type: InsuranceType | None
    balance: int
    months: int
    deemed: int
    retiree: bool
    arrears: int
    payout: PayoutReason | None
    give_account: bool
    accepts_funds: bool
    regime: Regime
    v1_only: bool
    funds_first: bool
    twice: bool


def mostly(common: T, rare: Sequence[T], weight: int = 4) -> st.SearchStrategy[T]:
    """``common`` about ``weight`` times as often as each rare value: most paths should go through."""
    return st.sampled_from([common] * weight + list(rare))


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    out_code = draw(st.sampled_from(CODES))
    others = [code for code in CODES if code != out_code]
    if out_code.startswith("44"):
        others += [code for code in others if code.startswith("44")] * 4  # Guangdong pairs often
    return Scenario(
        out_code=out_code,
        in_code=draw(st.sampled_from(others)),
        out_type=draw(mostly(InsuranceType.EMPLOYEE, [InsuranceType.RESIDENT], 3)),
        in_type=draw(st.sampled_from([*[InsuranceType.EMPLOYEE] * 3, InsuranceType.RESIDENT, None])),
        balance=draw(st.one_of(st.just(0), st.integers(1, 10**10), st.integers(1, 10**10))),
        months=draw(st.integers(0, 600)),
        deemed=draw(st.integers(0, 120)),
        retiree=draw(mostly(False, [True])),
        arrears=draw(mostly(0, [1, 99_999], 8)),
        payout=draw(st.sampled_from([*[None] * 8, *PayoutReason])),
        give_account=draw(st.booleans()),
        accepts_funds=draw(mostly(True, [False])),
        regime=draw(st.sampled_from(Regime)),
        v1_only=draw(st.booleans()),
        funds_first=draw(st.booleans()),
        twice=draw(st.booleans()),
    )


def funds_first(pending: list[Sent]) -> list[Sent]:
    return sorted(pending, key=lambda sent: sent.message.document.MESSAGE_TYPE != "fund_transfer")


@settings(max_examples=250, deadline=None)
@given(scenarios())
def test_money_and_months_are_conserved_on_every_path(s: Scenario) -> None:
    who = person()
    calendar = WeekdayCalendar()
    account = outgoing_account(
        who,
        s.out_code,
        months=s.months,
        deemed=s.deemed,
        balance=s.balance,
        insurance_type=s.out_type,
        retiree=s.retiree,
        arrears=s.arrears,
    )
    original = account.balance_fen
    out_books = Books(s.out_code, {who.id_number: account})
    in_books = Books(s.in_code)
    if s.in_type is not None:
        in_books.put(receiving_account(who, s.in_code, s.in_type))
    in_before = dict(in_books.accounts)
    receiving = Agent(agency(s.in_code, s.regime, accepts_funds=s.accepts_funds), in_books, calendar)
    outgoing = Agent(agency(s.out_code, s.regime), out_books, calendar)
    if s.v1_only:
        receiving.versions = {s.out_code: {"contact_letter": [1], "rejection": [1], "reminder": [1]}}
        outgoing.versions = {s.in_code: {"information_form": [1], "fund_transfer": [1], "rejection": [1]}}
    world = World.of(receiving, outgoing)

    case_id = receiving.apply_for(
        who,
        s.out_code,
        world.today,
        insurance_type=s.out_type,
        payout_account=bank_account("777777", "张伟") if s.give_account or s.payout else None,
        payout_reason=s.payout,
    )
    world.pump(twice=s.twice, order=funds_first if s.funds_first else None)

    at_receiving = receiving.case(case_id)
    at_outgoing = outgoing.cases.get(case_id)
    assert not at_receiving.is_open
    form = at_receiving.form
    event(f"{at_receiving.state.value} {form.balance_disposition.value if form else ''}")
    assert at_outgoing is None or not at_outgoing.is_open

    if at_receiving.state is State.COMPLETED:
        assert at_outgoing is not None and at_outgoing.state is State.COMPLETED
        terminate = out_books.entry(case_id, "terminate_and_debit")
        credit = in_books.entry(case_id, "credit")
        payout = out_books.entry(case_id, "pay_out")
        assert terminate is not None and credit is not None
        paid = payout.amount_fen if payout is not None else 0
        assert credit.amount_fen == terminate.amount_fen
        assert terminate.amount_fen + terminate.retained_fen + paid == original
        assert (
            (credit.months, credit.deemed_months)
            == (s.months, s.deemed)
            == (
                terminate.months,
                terminate.deemed_months,
            )
        )
        if payout is not None:
            assert at_outgoing.letter is not None and at_outgoing.letter.payout_requested
        if terminate.retained_fen:
            assert s.out_code[:2] == s.in_code[:2] == "44"
        arrived = in_books.lookup(who.id_number)
        assert arrived is not None and arrived.balance_fen == credit.amount_fen
        assert arrived.months_paid == s.months
    else:
        assert at_receiving.state is State.REJECTED
        assert at_outgoing is None or at_outgoing.state is State.REJECTED
        assert out_books.ops == {} and in_books.ops == {}
        assert out_books.lookup(who.id_number) == account
        assert in_books.accounts == in_before
