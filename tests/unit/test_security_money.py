"""Money goes only where the agency directory says (issue 13, finding 1).

A fund transfer pays the receiving agency's account from the directory, never the account a
contact letter names; a payout to a person needs the person's name and ID number, and the payout
account's holder, to match the outgoing books, and waits for an operator above the agency's limit.
"""

from __future__ import annotations

import dataclasses
from uuid import uuid4

from agents.domain.case import State
from schemas.common import BankAccount
from schemas.contact import ContactLetterV2, PayoutReason
from schemas.funds import FundTransferV1
from schemas.notices import RejectionReason, RejectionV1
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
    settle,
)

OUT = "360400"
IN = "110000"
BALANCE = 1_234_567
PERSONAL = bank_account("999999", owner="张伟")
DIVERTED = BankAccount(
    bank_name="某某银行", bank_code="999999999999", account_name="张伟", account_number="6200000000000666"
)


def _world(*, limit: int | None = None, retiree: bool = False) -> tuple[World, Agent, Agent]:
    who = person()
    calendar = WeekdayCalendar()
    receiving = Agent(agency(IN), Books(IN, {who.id_number: receiving_account(who, IN)}), calendar)
    out_agency = dataclasses.replace(agency(OUT), payout_approval_limit_fen=limit)
    out_books = Books(OUT, {who.id_number: outgoing_account(who, OUT, retiree=retiree)})
    outgoing = Agent(out_agency, out_books, calendar)
    return World.of(receiving, outgoing), receiving, outgoing


def _divert(sent: Sent) -> Sent:
    document = sent.message.document
    if not isinstance(document, ContactLetterV2):
        return sent
    details = document.receiving_agency.model_copy(update={"bank_account": DIVERTED})
    letter = document.model_copy(update={"receiving_agency": details})
    # Re-signed as the receiving agency: a compromised key or an insider there.
    return Sent(sent.sender, sent.case_id, dataclasses.replace(sent.message, document=letter))


def test_a_diverted_account_in_the_letter_is_ignored_the_money_goes_to_the_directory_account() -> None:
    world, receiving, outgoing = _world()
    who = person()
    case_id = receiving.apply_for(who, OUT, world.today)

    world.pump(tamper=_divert)

    letter = outgoing.case(case_id).letter
    assert letter is not None and letter.receiving_agency.bank_account == DIVERTED
    documents = [s.message.document for s in _sent(outgoing)]
    (transfer,) = [d for d in documents if isinstance(d, FundTransferV1)]
    directory_account = bank_account(IN)  # what the unit world's directory lists for IN
    assert transfer.payee_account == directory_account
    assert transfer.payee_account != DIVERTED
    assert "case.letter_account_differs" in note_events(outgoing.notes)
    assert receiving.case(case_id).state is State.COMPLETED


def test_a_payout_for_a_name_the_books_do_not_know_is_refused_and_nothing_is_paid() -> None:
    world, receiving, outgoing = _world(retiree=True)
    who = person()
    impostor = who.model_copy(update={"name": "李四"})
    case_id = receiving.apply_for(
        impostor,
        OUT,
        world.today,
        payout_account=bank_account("999999", owner="李四"),
        payout_reason=PayoutReason.RETIREE_RESETTLED,
    )
    world.pump()

    case = outgoing.case(case_id)
    assert case.state is State.REJECTED
    assert case.rejection_reason is RejectionReason.INVALID_DOCUMENT
    assert case_id not in outgoing.books.payouts
    assert outgoing.books.entry(case_id, "terminate_and_debit") is None
    assert receiving.case(case_id).state is State.REJECTED


def test_a_payout_to_an_account_held_in_another_name_is_refused() -> None:
    world, receiving, outgoing = _world(retiree=True)
    who = person()
    case_id = receiving.apply_for(
        who,
        OUT,
        world.today,
        payout_account=bank_account("999999", owner="李四"),
        payout_reason=PayoutReason.RETIREE_RESETTLED,
    )
    world.pump()

    assert outgoing.case(case_id).state is State.REJECTED
    assert case_id not in outgoing.books.payouts


def test_a_payout_above_the_limit_is_held_until_an_operator_approves_it() -> None:
    world, receiving, outgoing = _world(limit=100_000, retiree=True)
    who = person()
    case_id = receiving.apply_for(
        who, OUT, world.today, payout_account=PERSONAL, payout_reason=PayoutReason.RETIREE_RESETTLED
    )
    world.pump()

    held = outgoing.case(case_id)
    assert held.state is State.AWAITING_APPROVAL
    assert held.whose_turn == OUT and held.due_date is not None
    assert [c.operation for c in held.held_commands] == ["terminate_and_debit", "pay_out"]
    assert not held.pending_commands
    assert outgoing.books.entry(case_id, "terminate_and_debit") is None
    assert case_id not in outgoing.books.payouts
    assert settle(outgoing.store.cases_by_state()).get("awaiting_approval") == 1
    assert "case.payout_held" in note_events(outgoing.notes)
    # A deadline round does not run the held commands.
    outgoing.tick(world.today)
    assert case_id not in outgoing.books.payouts

    outgoing._call(case_id, outgoing.service.approve_payout(case_id, "operator"))
    world.pump()

    assert outgoing.books.payouts[case_id] == (BALANCE, PERSONAL)
    assert outgoing.case(case_id).state is State.COMPLETED
    assert receiving.case(case_id).state is State.COMPLETED
    history = settle(outgoing.store.history(case_id))
    assert [t.to_state for t in history][:2] == ["awaiting_approval", "releasing"]
    assert history[1].detail["approved_by"] == "operator"


def test_a_payout_within_the_limit_needs_no_approval() -> None:
    world, receiving, outgoing = _world(limit=BALANCE, retiree=True)
    who = person()
    case_id = receiving.apply_for(
        who, OUT, world.today, payout_account=PERSONAL, payout_reason=PayoutReason.RETIREE_RESETTLED
    )
    world.pump()
    assert outgoing.books.payouts[case_id] == (BALANCE, PERSONAL)
    assert outgoing.case(case_id).state is State.COMPLETED


def test_approving_a_case_with_nothing_held_changes_nothing() -> None:
    world, receiving, outgoing = _world()
    case_id = receiving.apply_for(person(), OUT, world.today)
    world.pump()
    before = outgoing.case(case_id)
    outgoing._call(case_id, outgoing.service.approve_payout(case_id, "operator"))
    assert outgoing.case(case_id) == before
    assert "case.nothing_to_approve" in note_events(outgoing.notes)


def test_a_rejection_while_the_payout_is_held_ends_the_case_without_touching_the_books() -> None:
    world, receiving, outgoing = _world(limit=0, retiree=True)
    who = person()
    case_id = receiving.apply_for(
        who, OUT, world.today, payout_account=PERSONAL, payout_reason=PayoutReason.RETIREE_RESETTLED
    )
    world.pump()
    assert outgoing.case(case_id).state is State.AWAITING_APPROVAL
    rejection = RejectionV1(reason_code=RejectionReason.OTHER, text="申请人撤回 (withdrawn)")
    receiving_sent = Sent(
        IN,
        case_id,
        dataclasses.replace(_sent(receiving)[0].message, document=rejection, message_id=uuid4(), version=1),
    )
    world.deliver(receiving_sent)
    case = outgoing.case(case_id)
    assert case.state is State.REJECTED and not case.held_commands
    assert outgoing.books.entry(case_id, "terminate_and_debit") is None


def _sent(agent: Agent) -> list[Sent]:
    return list(agent.sent_log)
