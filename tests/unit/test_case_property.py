"""Every generated path ends in the outcome its facts call for, and conserves money and months.

Each scenario is generated from the outcome it must reach: first the outcome (a balance
transferred, retained in Guangdong, paid to the person, no account to move, or a rejection with
its reason and the end that rejects), then the person, regions, insurance types, versions and
delivery order that lead there under domain.md's rules. The test runs once per outcome (and per
reason to refuse), so every run reaches each of them.

Whatever the path, both ends finish in the same terminal state; what left the outgoing books is
what the receiving books credited, plus what was paid to the person or retained in the province;
a rejected transfer changes no books at all. The Guangdong rule is checked both ways: within
Guangdong the balance stays, and between Guangdong and another province it moves.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from agents.domain.case import State
from agents.domain.deadlines import Regime
from schemas.common import InsuranceType
from schemas.contact import PayoutReason
from schemas.information import BalanceDisposition
from schemas.notices import RejectionReason
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

CODES = ["360400", "110000", "320100", "440300", "441900", "540100", "410100"]
GUANGDONG = [code for code in CODES if code.startswith("44")]


class Expected(enum.Enum):
    TRANSFERRED = "transferred"
    RETAINED_IN_PROVINCE = "retained_in_province"
    PAID_TO_PERSON = "paid_to_person"
    NO_ACCOUNT = "no_account"
    REJECTED = "rejected"


DISPOSITION = {
    Expected.TRANSFERRED: BalanceDisposition.TRANSFERRED,
    Expected.RETAINED_IN_PROVINCE: BalanceDisposition.RETAINED_IN_PROVINCE,
    Expected.PAID_TO_PERSON: BalanceDisposition.PAID_TO_PERSON,
    Expected.NO_ACCOUNT: BalanceDisposition.NO_ACCOUNT,
}

# Why a transfer is refused: (the reason given, whether the receiving agency refuses it before any
# letter leaves).
REFUSALS: dict[str, tuple[RejectionReason, bool]] = {
    "arrears": (RejectionReason.ARREARS, False),
    "participation_not_stopped": (RejectionReason.PARTICIPATION_NOT_STOPPED, False),
    "retiree_without_payout": (RejectionReason.RETIREE, False),
    "already_transferred_out": (RejectionReason.DUPLICATE_CASE, False),
    "unknown_at_outgoing": (RejectionReason.UNKNOWN_PERSON, False),
    "not_enrolled_at_receiving": (RejectionReason.NOT_ENROLLED_AT_RECEIVING_PLACE, True),
    "payout_without_bank_account": (RejectionReason.OTHER, True),
    "payout_to_a_v1_agency": (RejectionReason.OTHER, True),
}


@dataclass(frozen=True)
class Scenario:
    expected: Expected
    refusal: str | None
    out_code: str
    in_code: str
    out_type: InsuranceType
    in_type: InsuranceType | None
    known_at_outgoing: bool
    enrolled_at_outgoing: bool
    participation: str
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

    @property
    def within_guangdong(self) -> bool:
        return self.out_code in GUANGDONG and self.in_code in GUANGDONG

    @property
    def payout_wanted(self) -> bool:
        """The receiving agency asks for the balance to be paid to the person (domain.md)."""
        return (
            not self.within_guangdong
            and self.out_type is InsuranceType.EMPLOYEE
            and (
                self.payout is not None
                or self.in_type is InsuranceType.RESIDENT
                or not self.accepts_funds
            )
        )


def within_guangdong_pair() -> st.SearchStrategy[tuple[str, str]]:
    return st.permutations(GUANGDONG).map(lambda pair: (pair[0], pair[1]))


@st.composite
def across_provinces_pair(draw: st.DrawFn) -> tuple[str, str]:
    """Two regions not both in Guangdong; one of them is in Guangdong half the time."""
    if draw(st.booleans()):
        pair = [draw(st.sampled_from(GUANGDONG)), draw(st.sampled_from(CODES[:3] + CODES[5:]))]
        return (pair[0], pair[1]) if draw(st.booleans()) else (pair[1], pair[0])
    outside = [code for code in CODES if code not in GUANGDONG]
    a, b = draw(st.permutations(outside))[:2]
    return a, b


@st.composite
def scenarios(draw: st.DrawFn, expected: Expected, refusal: str | None = None) -> Scenario:
    """Facts that must end in `expected`: a completion of that disposition, or the `refusal`."""
    assert (refusal is None) == (expected is not Expected.REJECTED)
    if expected is Expected.RETAINED_IN_PROVINCE:
        out_code, in_code = draw(within_guangdong_pair())
    elif expected in (Expected.TRANSFERRED, Expected.PAID_TO_PERSON) or refusal in (
        "payout_without_bank_account",
        "payout_to_a_v1_agency",
    ):
        out_code, in_code = draw(across_provinces_pair())
    else:
        out_code, in_code = draw(st.one_of(within_guangdong_pair(), across_provinces_pair()))

    facts = {
        "expected": expected,
        "refusal": refusal,
        "out_code": out_code,
        "in_code": in_code,
        "out_type": InsuranceType.EMPLOYEE,
        "in_type": InsuranceType.EMPLOYEE,
        "known_at_outgoing": True,
        "enrolled_at_outgoing": True,
        "participation": "stopped",
        "balance": draw(st.integers(1, 10**10)),
        "months": draw(st.integers(0, 600)),
        "deemed": draw(st.integers(0, 120)),
        "retiree": False,
        "arrears": 0,
        "payout": None,
        "give_account": draw(st.booleans()),
        "accepts_funds": True,
        "regime": draw(st.sampled_from(Regime)),
        "v1_only": draw(st.booleans()),
        "funds_first": draw(st.booleans()),
        "twice": draw(st.booleans()),
    }
    if expected is Expected.RETAINED_IN_PROVINCE:
        # Within Guangdong nothing is paid out or transferred, whatever the application asks.
        facts["in_type"] = draw(st.sampled_from(list(InsuranceType)))
        facts["payout"] = draw(st.sampled_from([None, *PayoutReason]))
        facts["give_account"] = facts["give_account"] or facts["payout"] is not None
        facts["accepts_funds"] = draw(st.booleans())
    elif expected is Expected.PAID_TO_PERSON:
        why = draw(st.sampled_from(["reason", "scheme_switch", "cannot_receive_funds"]))
        if why == "reason":
            facts["payout"] = draw(st.sampled_from(list(PayoutReason)))
        facts["in_type"] = InsuranceType.RESIDENT if why == "scheme_switch" else InsuranceType.EMPLOYEE
        facts["accepts_funds"] = why != "cannot_receive_funds"
        facts["give_account"], facts["v1_only"] = True, False
        facts["retiree"] = draw(st.booleans())  # a resettled retiree is paid out
    elif expected is Expected.NO_ACCOUNT:
        if draw(st.booleans()):
            facts["out_type"] = InsuranceType.RESIDENT  # resident insurance has no personal account
        else:
            facts["balance"] = 0
        facts["in_type"] = draw(st.sampled_from(list(InsuranceType)))
        facts["accepts_funds"] = draw(st.booleans())
        facts["payout"] = draw(st.sampled_from([None, None, *PayoutReason]))
    elif refusal is not None:
        facts["balance"] = draw(st.sampled_from([0, facts["balance"]]))
        if refusal == "arrears":
            facts["arrears"] = draw(st.integers(1, 99_999))
        elif refusal == "participation_not_stopped":
            facts["participation"] = "active"
        elif refusal == "retiree_without_payout":
            facts["retiree"] = True
        elif refusal == "already_transferred_out":
            facts["enrolled_at_outgoing"] = False
        elif refusal == "unknown_at_outgoing":
            facts["known_at_outgoing"] = False
        elif refusal == "not_enrolled_at_receiving":
            facts["in_type"] = None
        else:
            facts["balance"] = draw(st.integers(1, 10**10))
            why = draw(st.sampled_from(["reason", "scheme_switch", "cannot_receive_funds"]))
            if why == "reason":
                facts["payout"] = draw(st.sampled_from(list(PayoutReason)))
            facts["in_type"] = InsuranceType.RESIDENT if why == "scheme_switch" else InsuranceType.EMPLOYEE
            facts["accepts_funds"] = why != "cannot_receive_funds"
            with_account = refusal == "payout_to_a_v1_agency"
            facts["give_account"], facts["v1_only"] = with_account, with_account
    scenario = Scenario(**facts)  # type: ignore[arg-type]
    if expected is not Expected.REJECTED and scenario.payout_wanted:
        # The payout needs the person's account and a contact letter v2.
        scenario = Scenario(**{**facts, "give_account": True, "v1_only": False})  # type: ignore[arg-type]
    return scenario


def funds_first(pending: list[Sent]) -> list[Sent]:
    return sorted(pending, key=lambda sent: sent.message.document.MESSAGE_TYPE != "fund_transfer")


# Every outcome, and every reason to refuse, in every run.
PATHS = [(e, None) for e in Expected if e is not Expected.REJECTED] + [
    (Expected.REJECTED, refusal) for refusal in sorted(REFUSALS)
]


def regions(s: Scenario) -> str:
    if s.within_guangdong:
        return "within Guangdong"
    if GUANGDONG.count(s.out_code) + GUANGDONG.count(s.in_code):
        return "between Guangdong and another province"
    return "between two other provinces"


@pytest.mark.parametrize(
    ("expected", "refusal"), PATHS, ids=[refusal or e.value for e, refusal in PATHS]
)
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_every_path_ends_in_its_outcome_and_conserves_money_and_months(
    expected: Expected, refusal: str | None, data: st.DataObject
) -> None:
    s = data.draw(scenarios(expected, refusal), label="scenario")
    event(regions(s))
    who = person()
    calendar = WeekdayCalendar()
    account = outgoing_account(
        who,
        s.out_code,
        months=s.months,
        deemed=s.deemed,
        balance=s.balance,
        insurance_type=s.out_type,
        participation=s.participation,
        retiree=s.retiree,
        arrears=s.arrears,
        enrolled=s.enrolled_at_outgoing,
    )
    original = account.balance_fen
    out_books = Books(s.out_code, {who.id_number: account} if s.known_at_outgoing else {})
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
        payout_account=bank_account("777777", "张伟") if s.give_account else None,
        payout_reason=s.payout,
    )
    world.pump(twice=s.twice, order=funds_first if s.funds_first else None)

    at_receiving = receiving.case(case_id)
    at_outgoing = outgoing.cases.get(case_id)
    assert not at_receiving.is_open
    assert at_outgoing is None or not at_outgoing.is_open

    if expected is Expected.REJECTED:
        assert s.refusal is not None
        reason, refused_locally = REFUSALS[s.refusal]
        assert at_receiving.state is State.REJECTED
        assert at_receiving.rejection_reason is reason
        if refused_locally:
            assert at_outgoing is None and world.delivered == []
        else:
            assert at_outgoing is not None and at_outgoing.state is State.REJECTED
        assert out_books.ops == {} and in_books.ops == {}
        assert out_books.lookup(who.id_number) == (account if s.known_at_outgoing else None)
        assert in_books.accounts == in_before
        return

    assert at_receiving.state is State.COMPLETED
    assert at_outgoing is not None and at_outgoing.state is State.COMPLETED
    form = at_receiving.form
    assert form is not None and form.balance_disposition is DISPOSITION[expected]
    terminate = out_books.entry(case_id, "terminate_and_debit")
    credit = in_books.entry(case_id, "credit")
    payout = out_books.entry(case_id, "pay_out")
    assert terminate is not None and credit is not None
    paid = payout.amount_fen if payout is not None else 0
    assert credit.amount_fen == terminate.amount_fen
    assert terminate.amount_fen + terminate.retained_fen + paid == original
    assert (credit.months, credit.deemed_months) == (s.months, s.deemed)
    assert (terminate.months, terminate.deemed_months) == (s.months, s.deemed)
    arrived = in_books.lookup(who.id_number)
    assert arrived is not None and arrived.balance_fen == credit.amount_fen
    assert arrived.months_paid == s.months
    moved = {message_type for _, message_type, _ in world.delivered}

    # Where the balance goes: the outcome the scenario was generated for.
    if expected is Expected.RETAINED_IN_PROVINCE:
        assert s.within_guangdong and original > 0
        assert (terminate.retained_fen, terminate.amount_fen, payout) == (original, 0, None)
        assert out_books.payouts == {} and "fund_transfer" not in moved
        kept = out_books.lookup(who.id_number)
        assert kept is not None and kept.balance_fen == original
    else:
        assert terminate.retained_fen == 0  # only within Guangdong does the balance stay
    if expected is Expected.TRANSFERRED:
        assert not s.within_guangdong and original > 0
        assert credit.amount_fen == original and payout is None and "fund_transfer" in moved
    if expected is Expected.PAID_TO_PERSON:
        assert not s.within_guangdong and original > 0
        assert payout is not None and payout.amount_fen == original and credit.amount_fen == 0
        assert at_outgoing.letter is not None and at_outgoing.letter.payout_requested
        assert out_books.payouts[case_id] == (original, bank_account("777777", "张伟"))
    if expected is Expected.NO_ACCOUNT:
        assert original == 0 and credit.amount_fen == 0 and paid == 0
        assert "fund_transfer" not in moved
