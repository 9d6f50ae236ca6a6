"""Whole conversations between a receiving and an outgoing agency, in memory, over the real codec.

Every branch of domain.md: what each end's books hold afterwards, which documents crossed, and
that every message delivered twice changes nothing the second time.
"""

from __future__ import annotations

from datetime import date
from uuid import UUID

import pytest

from agents.domain.case import State
from agents.domain.deadlines import Regime
from agents.ledger.base import PersonAccount
from schemas.common import InsuranceType, Person
from schemas.contact import PayoutReason
from schemas.funds import FundTransferV1
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
    note_events,
    outgoing_account,
    person,
    receiving_account,
)

OUT = "360400"  # 九江
IN = "110000"  # 北京
IN2 = "320100"  # 南京
SHENZHEN = "440300"
DONGGUAN = "441900"
BALANCE = 1_234_567
PERSONAL = bank_account("999999", owner="张伟")


def make_world(
    out_account: PersonAccount | None,
    *,
    who: Person,
    in_type: InsuranceType | None = InsuranceType.EMPLOYEE,
    out_code: str = OUT,
    in_code: str = IN,
    regime: Regime = Regime.R2021,
    accepts_funds: bool = True,
) -> tuple[World, Agent, Agent]:
    calendar = WeekdayCalendar()
    out_books = Books(out_code)
    if out_account is not None:
        out_books.put(out_account)
    in_books = Books(in_code)
    if in_type is not None:
        in_books.put(receiving_account(who, in_code, in_type))
    receiving = Agent(agency(in_code, regime, accepts_funds=accepts_funds), in_books, calendar)
    outgoing = Agent(agency(out_code, regime), out_books, calendar)
    return World.of(receiving, outgoing), receiving, outgoing


def assert_conserved(outgoing: Agent, receiving: Agent, case_id: UUID, balance: int, months: int) -> None:
    """Money and months: what left the outgoing books is exactly what arrived or was paid/retained."""
    terminate = outgoing.books.entry(case_id, "terminate_and_debit")
    credit = receiving.books.entry(case_id, "credit")
    payout = outgoing.books.entry(case_id, "pay_out")
    assert terminate is not None and credit is not None
    paid = payout.amount_fen if payout is not None else 0
    assert credit.amount_fen == terminate.amount_fen
    assert terminate.amount_fen + terminate.retained_fen + paid == balance
    assert terminate.months == credit.months == months
    assert terminate.deemed_months == credit.deemed_months
    out_case, in_case = outgoing.case(case_id), receiving.case(case_id)
    assert out_case.booked is not None and in_case.booked is not None
    assert (out_case.booked.months, out_case.booked.amount_fen) == (
        in_case.booked.months,
        in_case.booked.amount_fen,
    )


def delivered_types(world: World) -> list[str]:
    """The documents delivered, in order (receipts left out: see the normal transfer's test)."""
    return [message_type for _, message_type, _ in world.delivered if message_type != "receipt"]


def test_normal_employee_transfer_moves_months_and_balance_and_completes_both_ends() -> None:
    who = person()
    world, receiving, outgoing = make_world(outgoing_account(who, OUT, deemed=24), who=who)

    case_id = receiving.apply_for(who, OUT, world.today)
    assert receiving.case(case_id).state is State.AWAITING_FORM
    world.pump(twice=True)

    assert delivered_types(world) == [
        "contact_letter",
        "information_form",
        "fund_transfer",
        "transfer_completed",
    ]
    assert receiving.case(case_id).state is State.COMPLETED
    assert outgoing.case(case_id).state is State.COMPLETED
    # Every document committed was acknowledged once, by a receipt its sender keeps in the case.
    receipts = [(to, t) for to, t, _ in world.delivered if t == "receipt"]
    assert sorted(receipts) == sorted(
        [(receiving.code, "receipt")] * 2 + [(outgoing.code, "receipt")] * 2
    )
    assert [r.document for r in receiving.case(case_id).receipts] == [
        "contact_letter",
        "transfer_completed",
    ]
    assert [r.document for r in outgoing.case(case_id).receipts] == [
        "information_form",
        "fund_transfer",
    ]
    assert receiving.case(case_id).state is State.COMPLETED  # a receipt changes no state
    form = receiving.case(case_id).form
    assert form is not None and form.balance_disposition is BalanceDisposition.TRANSFERRED
    assert form.contribution_periods is not None and form.deemed_months == 24
    assert_conserved(outgoing, receiving, case_id, BALANCE, 120)
    left = outgoing.books.lookup(who.id_number)
    arrived = receiving.books.lookup(who.id_number)
    assert left is not None and not left.enrolled and left.balance_fen == 0 and left.months_paid == 0
    assert arrived is not None and arrived.balance_fen == BALANCE and arrived.months_paid == 120
    assert arrived.deemed_months == 24
    assert not receiving.case(case_id).is_open and receiving.case(case_id).whose_turn is None


def test_zero_balance_sends_the_form_without_a_fund_transfer() -> None:
    who = person()
    world, receiving, outgoing = make_world(outgoing_account(who, OUT, balance=0), who=who)

    case_id = receiving.apply_for(who, OUT, world.today)
    world.pump(twice=True)

    assert "fund_transfer" not in delivered_types(world)
    form = receiving.case(case_id).form
    assert form is not None and form.balance_disposition is BalanceDisposition.NO_ACCOUNT
    assert receiving.case(case_id).state is State.COMPLETED
    assert outgoing.case(case_id).state is State.COMPLETED
    assert_conserved(outgoing, receiving, case_id, 0, 120)


def test_within_guangdong_the_months_move_and_the_balance_stays() -> None:
    who = person()
    world, receiving, outgoing = make_world(
        outgoing_account(who, SHENZHEN), who=who, out_code=SHENZHEN, in_code=DONGGUAN
    )

    case_id = receiving.apply_for(who, SHENZHEN, world.today)
    world.pump(twice=True)

    assert delivered_types(world) == ["contact_letter", "information_form", "transfer_completed"]
    form = receiving.case(case_id).form
    assert form is not None and form.balance_disposition is BalanceDisposition.RETAINED_IN_PROVINCE
    assert form.account_balance == BALANCE and form.amount_transferred == 0
    assert outgoing.books.payouts == {}
    kept = outgoing.books.lookup(who.id_number)
    assert kept is not None and kept.balance_fen == BALANCE
    assert_conserved(outgoing, receiving, case_id, BALANCE, 120)
    assert receiving.case(case_id).state is outgoing.case(case_id).state is State.COMPLETED


def test_resettled_retiree_has_the_balance_paid_to_their_own_account() -> None:
    who = person()
    world, receiving, outgoing = make_world(outgoing_account(who, OUT, retiree=True), who=who)

    case_id = receiving.apply_for(
        who, OUT, world.today, payout_account=PERSONAL, payout_reason=PayoutReason.RETIREE_RESETTLED
    )
    world.pump(twice=True)

    assert delivered_types(world) == ["contact_letter", "information_form", "transfer_completed"]
    assert world.delivered[0][2] == 2  # the payout request needs contact_letter v2
    assert outgoing.books.payouts[case_id] == (BALANCE, PERSONAL)
    form = receiving.case(case_id).form
    assert form is not None and form.balance_disposition is BalanceDisposition.PAID_TO_PERSON
    arrived = receiving.books.lookup(who.id_number)
    assert arrived is not None and arrived.balance_fen == 0 and arrived.months_paid == 120
    assert_conserved(outgoing, receiving, case_id, BALANCE, 120)
    assert outgoing.case(case_id).state is State.COMPLETED


@pytest.mark.parametrize("reason", [PayoutReason.ENLISTMENT, PayoutReason.DEATH, PayoutReason.EMIGRATION])
def test_a_requested_payout_is_honoured_for_every_reason(reason: PayoutReason) -> None:
    who = person()
    world, receiving, outgoing = make_world(outgoing_account(who, OUT), who=who)

    case_id = receiving.apply_for(who, OUT, world.today, payout_account=PERSONAL, payout_reason=reason)
    world.pump(twice=True)

    letter = outgoing.case(case_id).letter
    assert letter is not None and letter.payout_reason is reason
    assert outgoing.books.payouts[case_id] == (BALANCE, PERSONAL)
    assert_conserved(outgoing, receiving, case_id, BALANCE, 120)


def test_a_receiving_place_that_cannot_take_funds_asks_for_a_payout() -> None:
    who = person()
    world, receiving, outgoing = make_world(outgoing_account(who, OUT), who=who, accepts_funds=False)

    case_id = receiving.apply_for(who, OUT, world.today, payout_account=PERSONAL)
    world.pump(twice=True)

    letter = receiving.case(case_id).letter
    assert letter is not None and letter.payout_reason is PayoutReason.CANNOT_RECEIVE_FUNDS
    assert outgoing.books.payouts[case_id] == (BALANCE, PERSONAL)
    assert_conserved(outgoing, receiving, case_id, BALANCE, 120)


def test_resident_insurance_moves_months_only() -> None:
    who = person()
    account = outgoing_account(who, OUT, insurance_type=InsuranceType.RESIDENT, months=36)
    world, receiving, outgoing = make_world(account, who=who, in_type=InsuranceType.RESIDENT)

    case_id = receiving.apply_for(who, OUT, world.today, insurance_type=InsuranceType.RESIDENT)
    world.pump(twice=True)

    form = receiving.case(case_id).form
    assert form is not None and form.balance_disposition is BalanceDisposition.NO_ACCOUNT
    assert form.insurance_type is InsuranceType.RESIDENT
    assert_conserved(outgoing, receiving, case_id, 0, 36)
    assert receiving.case(case_id).state is State.COMPLETED


def test_resident_to_employee_moves_the_months_into_employee_insurance() -> None:
    who = person()
    account = outgoing_account(who, OUT, insurance_type=InsuranceType.RESIDENT, months=48)
    world, receiving, outgoing = make_world(account, who=who, in_type=InsuranceType.EMPLOYEE)

    case_id = receiving.apply_for(who, OUT, world.today, insurance_type=InsuranceType.RESIDENT)
    world.pump(twice=True)

    letter = receiving.case(case_id).letter
    assert letter is not None and not letter.payout_requested
    credit = receiving.books.entry(case_id, "credit")
    assert credit is not None and credit.months == 48 and credit.amount_fen == 0
    arrived = receiving.books.lookup(who.id_number)
    assert arrived is not None and arrived.insurance_type is InsuranceType.EMPLOYEE
    assert_conserved(outgoing, receiving, case_id, 0, 48)


def test_employee_to_resident_pays_the_balance_out_as_a_scheme_switch() -> None:
    who = person()
    world, receiving, outgoing = make_world(
        outgoing_account(who, OUT), who=who, in_type=InsuranceType.RESIDENT
    )

    case_id = receiving.apply_for(who, OUT, world.today, payout_account=PERSONAL)
    world.pump(twice=True)

    letter = receiving.case(case_id).letter
    assert letter is not None and letter.payout_reason is PayoutReason.SCHEME_SWITCH
    assert outgoing.books.payouts[case_id] == (BALANCE, PERSONAL)
    arrived = receiving.books.lookup(who.id_number)
    assert arrived is not None and arrived.balance_fen == 0 and arrived.months_paid == 120
    assert_conserved(outgoing, receiving, case_id, BALANCE, 120)
    assert receiving.case(case_id).state is outgoing.case(case_id).state is State.COMPLETED


def test_employee_to_resident_with_a_zero_balance_pays_nothing_out() -> None:
    who = person()
    world, receiving, outgoing = make_world(
        outgoing_account(who, OUT, balance=0), who=who, in_type=InsuranceType.RESIDENT
    )

    case_id = receiving.apply_for(who, OUT, world.today, payout_account=PERSONAL)
    world.pump(twice=True)

    assert outgoing.books.payouts == {}
    form = receiving.case(case_id).form
    assert form is not None and form.balance_disposition is BalanceDisposition.NO_ACCOUNT
    assert_conserved(outgoing, receiving, case_id, 0, 120)
    assert outgoing.case(case_id).state is State.COMPLETED
    assert "case.payout_not_needed" in note_events(outgoing.notes)


def test_employee_to_resident_without_a_bank_account_is_refused_before_any_letter() -> None:
    who = person()
    world, receiving, _ = make_world(outgoing_account(who, OUT), who=who, in_type=InsuranceType.RESIDENT)

    case_id = receiving.apply_for(who, OUT, world.today)

    case = receiving.case(case_id)
    assert case.state is State.REJECTED and case.rejection_reason is RejectionReason.OTHER
    assert receiving.outbox == []


def test_a_second_application_for_an_open_case_is_rejected_locally_as_duplicate() -> None:
    who = person()
    world, receiving, _ = make_world(outgoing_account(who, OUT), who=who)
    first = receiving.apply_for(who, OUT, world.today)
    receiving.outbox.clear()

    second = receiving.apply_for(who, OUT, world.today)

    assert receiving.case(second).state is State.REJECTED
    assert receiving.case(second).rejection_reason is RejectionReason.DUPLICATE_CASE
    assert receiving.outbox == []
    assert receiving.case(first).state is State.AWAITING_FORM


def test_a_letter_for_a_person_with_another_open_outgoing_case_is_rejected_as_duplicate() -> None:
    who = person()
    calendar = WeekdayCalendar()
    out_books = Books(OUT)
    out_books.put(outgoing_account(who, OUT))
    outgoing = Agent(agency(OUT), out_books, calendar, run_commands=False)
    first_receiver = Agent(agency(IN), Books(IN, {who.id_number: receiving_account(who, IN)}), calendar)
    second_receiver = Agent(agency(IN2), Books(IN2, {who.id_number: receiving_account(who, IN2)}), calendar)
    world = World.of(outgoing, first_receiver, second_receiver)

    first = first_receiver.apply_for(who, OUT, world.today)
    world.pump(twice=True)  # the first case stays open at the outgoing end (releasing)
    second = second_receiver.apply_for(who, OUT, world.today)
    world.pump(twice=True)

    assert outgoing.case(first).state is State.RELEASING
    assert outgoing.case(second).state is State.REJECTED
    assert second_receiver.case(second).state is State.REJECTED
    assert second_receiver.case(second).rejection_reason is RejectionReason.DUPLICATE_CASE
    assert out_books.entry(second, "terminate_and_debit") is None


@pytest.mark.parametrize(
    ("account_changes", "reason"),
    [
        ({"arrears": 12_000}, RejectionReason.ARREARS),
        ({"participation": "active"}, RejectionReason.PARTICIPATION_NOT_STOPPED),
        ({"retiree": True}, RejectionReason.RETIREE),
        ({"enrolled": False}, RejectionReason.DUPLICATE_CASE),
    ],
)
def test_the_outgoing_checks_reject_with_their_reason_and_change_no_books(
    account_changes: dict[str, object], reason: RejectionReason
) -> None:
    who = person()
    account = outgoing_account(who, OUT, **account_changes)  # type: ignore[arg-type]
    world, receiving, outgoing = make_world(account, who=who)

    case_id = receiving.apply_for(who, OUT, world.today)
    world.pump(twice=True)

    assert delivered_types(world) == ["contact_letter", "rejection"]
    assert outgoing.case(case_id).state is State.REJECTED
    assert receiving.case(case_id).state is State.REJECTED
    assert receiving.case(case_id).rejection_reason is reason
    assert outgoing.books.ops == {} and receiving.books.ops == {}
    assert outgoing.books.lookup(who.id_number) == account


def test_an_unknown_person_at_the_outgoing_place_is_rejected() -> None:
    who = person()
    world, receiving, outgoing = make_world(None, who=who)

    case_id = receiving.apply_for(who, OUT, world.today)
    world.pump(twice=True)

    assert receiving.case(case_id).rejection_reason is RejectionReason.UNKNOWN_PERSON
    assert outgoing.case(case_id).state is State.REJECTED


def test_arrears_rejection_text_states_the_amount_in_yuan() -> None:
    who = person()
    world, receiving, _ = make_world(outgoing_account(who, OUT, arrears=12_345), who=who)

    case_id = receiving.apply_for(who, OUT, world.today)
    world.pump()

    text = receiving.case(case_id).rejection_text
    assert text is not None and "123.45" in text and who.id_number not in text


def test_a_person_not_enrolled_at_the_receiving_place_is_rejected_locally() -> None:
    who = person()
    world, receiving, _ = make_world(outgoing_account(who, OUT), who=who, in_type=None)

    case_id = receiving.apply_for(who, OUT, world.today)

    case = receiving.case(case_id)
    assert case.state is State.REJECTED
    assert case.rejection_reason is RejectionReason.NOT_ENROLLED_AT_RECEIVING_PLACE
    assert receiving.outbox == [] and case.due_date is None


def funds_first(pending: list[Sent]) -> list[Sent]:
    return sorted(pending, key=lambda sent: sent.message.document.MESSAGE_TYPE != "fund_transfer")


def test_funds_arriving_before_the_form_are_held_then_credited_with_it() -> None:
    who = person()
    world, receiving, outgoing = make_world(outgoing_account(who, OUT), who=who)
    case_id = receiving.apply_for(who, OUT, world.today)
    (letter,) = receiving.outbox
    receiving.outbox.clear()
    world.deliver(letter)  # form and funds now wait in the outgoing outbox
    assert [s.message.document.MESSAGE_TYPE for s in outgoing.outbox] == [
        "information_form",
        "fund_transfer",
    ]
    form, funds = outgoing.outbox
    outgoing.outbox.clear()

    world.deliver(funds, twice=True)
    held = receiving.case(case_id)
    assert held.state is State.AWAITING_FORM and held.held_funds[0].transfer.amount == BALANCE
    assert receiving.books.ops == {}
    assert "case.funds_held" in note_events(receiving.notes)

    world.deliver(form, twice=True)
    world.pump(twice=True)
    assert receiving.case(case_id).state is outgoing.case(case_id).state is State.COMPLETED
    assert_conserved(outgoing, receiving, case_id, BALANCE, 120)


def test_funds_first_ordering_everywhere_still_completes() -> None:
    who = person()
    world, receiving, outgoing = make_world(outgoing_account(who, OUT), who=who)
    case_id = receiving.apply_for(who, OUT, world.today)
    world.pump(twice=True, order=funds_first)
    assert_conserved(outgoing, receiving, case_id, BALANCE, 120)


def short_pay(sent: Sent) -> Sent:
    document = sent.message.document
    if isinstance(document, FundTransferV1):
        cheaper = document.model_copy(update={"amount": document.amount - 1})
        sent = Sent(
            sent.sender, sent.case_id, type(sent.message)(**{**vars(sent.message), "document": cheaper})
        )
    return sent


@pytest.mark.parametrize("order", [None, funds_first], ids=["form_first", "funds_first"])
def test_funds_differing_from_the_form_stop_both_ends_in_discrepancy_and_credit_nothing(
    order: object,
) -> None:
    who = person()
    world, receiving, outgoing = make_world(outgoing_account(who, OUT), who=who)
    case_id = receiving.apply_for(who, OUT, world.today)

    world.pump(twice=True, tamper=short_pay, order=order)  # type: ignore[arg-type]

    at_receiving, at_outgoing = receiving.case(case_id), outgoing.case(case_id)
    assert at_receiving.state is State.DISCREPANCY and at_outgoing.state is State.DISCREPANCY
    assert at_receiving.discrepancy is not None
    assert (at_receiving.discrepancy.expected_fen, at_receiving.discrepancy.received_fen) == (
        BALANCE,
        BALANCE - 1,
    )
    assert at_outgoing.rejection_reason is RejectionReason.AMOUNT_MISMATCH
    assert at_outgoing.rejection_text is not None and "12345.67" in at_outgoing.rejection_text
    assert receiving.books.entry(case_id, "credit") is None
    arrived = receiving.books.lookup(who.id_number)
    assert arrived is not None and arrived.balance_fen == 0 and arrived.months_paid == 0
    assert delivered_types(world)[-1] == "rejection"


def test_a_recipient_on_contact_letter_v1_gets_v1_and_the_case_keeps_its_versions() -> None:
    who = person()
    world, receiving, outgoing = make_world(outgoing_account(who, OUT), who=who)
    receiving.versions = {OUT: {"contact_letter": [1], "rejection": [1], "reminder": [1]}}
    outgoing.versions = {IN: {"information_form": [1], "fund_transfer": [1], "rejection": [1]}}

    case_id = receiving.apply_for(who, OUT, world.today)
    world.pump(twice=True)

    assert [(t, v) for _, t, v in world.delivered if t != "receipt"] == [
        ("contact_letter", 1),
        ("information_form", 1),
        ("fund_transfer", 1),
        ("transfer_completed", 1),
    ]
    assert receiving.case(case_id).versions["contact_letter"] == 1
    assert outgoing.case(case_id).versions["information_form"] == 1
    assert outgoing.case(case_id).received_versions == {"contact_letter": 1}
    form = receiving.case(case_id).form
    assert form is not None and form.contribution_periods is None  # upcast from v1
    assert_conserved(outgoing, receiving, case_id, BALANCE, 120)


def test_a_payout_request_to_a_v1_only_agency_is_refused_locally() -> None:
    who = person()
    world, receiving, _ = make_world(outgoing_account(who, OUT, retiree=True), who=who)
    receiving.versions = {OUT: {"contact_letter": [1], "rejection": [1]}}

    case_id = receiving.apply_for(
        who, OUT, world.today, payout_account=PERSONAL, payout_reason=PayoutReason.RETIREE_RESETTLED
    )

    assert receiving.case(case_id).state is State.REJECTED
    assert receiving.outbox == []


def test_a_crash_before_the_ledger_ran_is_healed_by_the_next_tick() -> None:
    who = person()
    world, receiving, outgoing = make_world(outgoing_account(who, OUT), who=who)
    outgoing.run_commands = False
    case_id = receiving.apply_for(who, OUT, world.today)
    world.pump()
    assert outgoing.case(case_id).state is State.RELEASING and outgoing.outbox == []
    assert outgoing.case(case_id).whose_turn == OUT

    outgoing.run_commands = True
    outgoing.tick(world.today)
    world.pump(twice=True)

    # The deadline round's `recover` runs the pending commands again (the step is not overdue).
    assert "pending_commands_recovered" in [entry["event"] for entry in outgoing.logs]
    assert_conserved(outgoing, receiving, case_id, BALANCE, 120)
    assert outgoing.case(case_id).state is State.COMPLETED


def test_ledger_commands_replayed_after_completion_change_nothing() -> None:
    who = person()
    world, receiving, outgoing = make_world(outgoing_account(who, OUT), who=who)
    case_id = receiving.apply_for(who, OUT, world.today)
    world.pump()
    before_out, before_in = dict(outgoing.cases), dict(receiving.cases)

    for agent in (outgoing, receiving):
        for operation in ("terminate_and_debit", "credit", "pay_out"):
            entry = agent.books.entry(case_id, operation)
            if entry is not None:
                from agents.domain.case import LedgerApplied, decide

                ctx = agent._context(agent.case(case_id), LedgerApplied(entries=(entry,)), world.today)
                again = decide(agent.case(case_id), LedgerApplied(entries=(entry,)), ctx)
                assert again.case is None and not again.messages and not again.commands

    assert outgoing.cases == before_out and receiving.cases == before_in


def test_completed_cases_ignore_late_messages_and_ticks() -> None:
    who = person()
    world, receiving, outgoing = make_world(outgoing_account(who, OUT), who=who)
    case_id = receiving.apply_for(who, OUT, world.today)
    world.pump()
    before = dict(receiving.cases), dict(outgoing.cases)

    world.tick(date(2026, 1, 5))
    assert (dict(receiving.cases), dict(outgoing.cases)) == before
    assert receiving.outbox == [] and outgoing.outbox == []
    assert receiving.case(case_id).state is State.COMPLETED


def test_a_payout_reason_without_a_bank_account_is_refused_before_any_letter() -> None:
    who = person()
    world, receiving, _ = make_world(outgoing_account(who, OUT, retiree=True), who=who)

    case_id = receiving.apply_for(who, OUT, world.today, payout_reason=PayoutReason.RETIREE_RESETTLED)

    assert receiving.case(case_id).state is State.REJECTED
    assert receiving.case(case_id).rejection_reason is RejectionReason.OTHER
    assert receiving.outbox == []


def test_within_guangdong_a_payout_request_is_dropped_and_the_balance_stays() -> None:
    who = person()
    world, receiving, outgoing = make_world(
        outgoing_account(who, SHENZHEN), who=who, out_code=SHENZHEN, in_code=DONGGUAN
    )

    case_id = receiving.apply_for(
        who, SHENZHEN, world.today, payout_account=PERSONAL, payout_reason=PayoutReason.EMIGRATION
    )
    world.pump(twice=True)

    letter = receiving.case(case_id).letter
    assert letter is not None and not letter.payout_requested
    assert "case.payout_request_dropped" in note_events(receiving.notes)
    assert outgoing.books.payouts == {}
    assert_conserved(outgoing, receiving, case_id, BALANCE, 120)


def test_a_second_case_after_the_first_completed_is_rejected_as_duplicate_case() -> None:
    """The relationship already moved (the first case completed): a second letter for the same
    person is a second case for it, refused as ``duplicate_case``, with no change to any books."""
    who = person()
    world, receiving, outgoing = make_world(outgoing_account(who, OUT), who=who)
    first = receiving.apply_for(who, OUT, world.today)
    world.pump(twice=True)
    assert outgoing.case(first).state is State.COMPLETED
    ops_before = dict(outgoing.books.ops)

    second = receiving.apply_for(who, OUT, world.today)
    world.pump(twice=True)

    assert outgoing.case(second).rejection_reason is RejectionReason.DUPLICATE_CASE
    assert receiving.case(second).rejection_reason is RejectionReason.DUPLICATE_CASE
    assert outgoing.books.ops == ops_before
