"""`decide` one event at a time: serialisation, store columns, odd and stale events, refusals."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from uuid import uuid4

import pytest

from agents.domain.case import (
    TERMINAL_STATES,
    CompletionReceived,
    FormReceived,
    FundsReceived,
    LedgerRefused,
    LetterReceived,
    RejectionReceived,
    State,
    Tick,
    case_columns,
    case_from_data,
    case_to_data,
    decide,
    event_for_message,
    is_terminal,
    person_key,
    whose_turn,
)
from agents.store.base import CaseRecord
from schemas.contact import PayoutReason
from schemas.errors import ContractError
from schemas.examples import EXAMPLES, example_envelope
from schemas.funds import FundTransferV1
from schemas.information import BalanceDisposition, InformationFormV2
from schemas.notices import RejectionReason, RejectionV1, TransferCompletedV1
from schemas.registry import Message, parse, validate_document
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
DAY = date(2025, 3, 3)


def pair(**out_changes: object) -> tuple[World, Agent, Agent]:
    who = person()
    calendar = WeekdayCalendar()
    receiving = Agent(agency(IN), Books(IN, {who.id_number: receiving_account(who, IN)}), calendar)
    account = outgoing_account(who, OUT, **out_changes)  # type: ignore[arg-type]
    outgoing = Agent(agency(OUT, seal="SEAL-360400"), Books(OUT, {who.id_number: account}), calendar)
    return World.of(receiving, outgoing, today=DAY), receiving, outgoing


def step(world: World, sender: Agent) -> list[Sent]:
    """Take the sender's outbox without delivering it."""
    taken = list(sender.outbox)
    sender.outbox.clear()
    return taken


def test_every_case_survives_the_store_json_round_trip() -> None:
    world, receiving, outgoing = pair(deemed=12)
    receiving.run_commands = False
    case_id = receiving.apply_for(person(), OUT, DAY)
    world.pump()
    for case in (receiving.case(case_id), outgoing.case(case_id)):
        data = case_to_data(case)
        assert case_from_data(json.loads(json.dumps(data))) == case
    assert receiving.case(case_id).pending_commands  # a Credit survives too


def test_case_columns_build_a_store_record() -> None:
    _world, receiving, _ = pair()
    case_id = receiving.apply_for(person(), OUT, DAY)
    case = receiving.case(case_id)
    now = datetime(2025, 3, 3, 9, tzinfo=UTC)

    record = CaseRecord(**case_columns(case), created_at=now, updated_at=now)

    assert record.role == "receiving" and record.state == "awaiting_form" and record.open
    assert record.person_key == person_key(case.person) == case.person.id_number
    assert record.counterpart == OUT and record.whose_turn == OUT == whose_turn(case)
    assert record.due_date == case.due_date and record.message_version == 2
    assert case_from_data(record.data) == case


def test_terminal_states() -> None:
    assert {state for state in State if is_terminal(state)} == set(TERMINAL_STATES)
    assert {State.COMPLETED, State.REJECTED, State.DISCREPANCY, State.CANCELLED} == TERMINAL_STATES
    assert is_terminal("completed") and not is_terminal("awaiting_form")


def test_the_same_inputs_give_the_same_decision_and_message_ids() -> None:
    world, receiving, outgoing = pair()
    case_id = receiving.apply_for(person(), OUT, DAY)
    (sent,) = step(world, receiving)
    event = event_for_message(parse(world.wire(sent)))
    assert isinstance(event, LetterReceived) and event.case_id == case_id
    ctx = outgoing._context(None, event, DAY)

    first, second = decide(None, event, ctx), decide(None, event, ctx)

    assert first == second and first.case is not None
    # The letter's id is derived from the case id alone, so a recomputed decision repeats it.
    again = receiving.case(case_id).letter_message_id
    assert again == sent.message.message_id


def test_event_for_message_maps_every_case_document_and_ignores_the_rest() -> None:
    for (message_type, version), document in EXAMPLES.items():
        envelope = example_envelope(document)
        event = event_for_message(Message(envelope=envelope, document=validate_document(envelope)))
        if message_type in {"statement_request", "ledger_statement", "reconciliation_result"}:
            assert event is None
        else:
            assert event is not None and getattr(event, "version", None) == version


def test_a_second_letter_for_an_existing_case_changes_nothing() -> None:
    world, receiving, outgoing = pair()
    case_id = receiving.apply_for(person(), OUT, DAY)
    world.pump()
    letter = receiving.case(case_id).letter
    assert letter is not None

    again = LetterReceived(case_id=case_id, message_id=uuid4(), sender=IN, letter=letter)
    decision = outgoing.handle(again, DAY)

    assert decision.case is None and decision.messages == ()
    assert note_events(decision.notes) == ["case.second_letter"]


def test_a_message_from_another_agency_than_the_counterpart_is_dead_lettered() -> None:
    world, receiving, outgoing = pair()
    outgoing.run_commands = False
    case_id = receiving.apply_for(person(), OUT, DAY)
    world.pump()

    forged = RejectionReceived(
        case_id=case_id,
        message_id=uuid4(),
        sender="320100",
        rejection=RejectionV1(reason_code=RejectionReason.OTHER, text="伪造"),
    )
    with pytest.raises(ContractError) as refused:
        receiving.handle(forged, DAY)

    assert refused.value.reason == "wrong_sender"
    assert receiving.case(case_id).state is State.AWAITING_FORM
    assert not settle(receiving.store.has_handled("agent", forged.message_id, sender="320100"))


def test_an_event_for_the_other_role_is_an_unexpected_note() -> None:
    _world, receiving, _ = pair()
    case_id = receiving.apply_for(person(), OUT, DAY)
    completion = CompletionReceived(
        case_id=case_id,
        message_id=uuid4(),
        sender=OUT,
        completion=TransferCompletedV1(months_credited=1, deemed_months_credited=0, amount_credited=0),
    )
    decision = receiving.handle(completion, DAY)
    assert decision.case is None and note_events(decision.notes) == ["case.unexpected_event"]


def test_a_duplicate_application_for_the_same_case_changes_nothing() -> None:
    _world, receiving, _ = pair()
    case_id = receiving.apply_for(person(), OUT, DAY)
    before = receiving.case(case_id)
    receiving.outbox.clear()
    receiving.apply_for(person(), OUT, DAY, case_id=case_id)
    assert receiving.case(case_id) == before and receiving.outbox == []
    assert note_events(receiving.notes)[-1] == "case.duplicate_application"


def test_a_completion_that_differs_from_the_form_stops_the_outgoing_case() -> None:
    world, receiving, outgoing = pair()
    case_id = receiving.apply_for(person(), OUT, DAY)

    def fewer_months(sent: Sent) -> Sent:
        document = sent.message.document
        if isinstance(document, TransferCompletedV1):
            changed = document.model_copy(update={"months_credited": document.months_credited - 1})
            return Sent(
                sent.sender, sent.case_id, type(sent.message)(**{**vars(sent.message), "document": changed})
            )
        return sent

    world.pump(tamper=fewer_months)

    case = outgoing.case(case_id)
    assert case.state is State.DISCREPANCY
    assert case.discrepancy is not None and case.discrepancy.kind == "completion_mismatch"
    assert "case.completion_mismatch" in note_events(outgoing.notes)


def tampered_form(change: dict[str, object]) -> object:
    def tamper(sent: Sent) -> Sent:
        document = sent.message.document
        if isinstance(document, InformationFormV2):
            data = {**document.model_dump(), **change}
            changed = InformationFormV2.model_validate(data)
            return Sent(
                sent.sender, sent.case_id, type(sent.message)(**{**vars(sent.message), "document": changed})
            )
        return sent

    return tamper


@pytest.mark.parametrize(
    "change",
    [
        {"person": person(sequence=246).model_dump()},
        {
            "balance_disposition": BalanceDisposition.RETAINED_IN_PROVINCE,
            "amount_transferred": 0,
        },
    ],
    ids=["another_person", "retained_outside_guangdong"],
)
def test_a_form_the_receiving_agency_cannot_accept_stops_both_ends(change: dict[str, object]) -> None:
    world, receiving, outgoing = pair()
    case_id = receiving.apply_for(person(), OUT, DAY)

    world.pump(tamper=tampered_form(change))  # type: ignore[arg-type]

    assert receiving.case(case_id).state is State.DISCREPANCY
    assert outgoing.case(case_id).state is State.DISCREPANCY
    assert outgoing.case(case_id).rejection_reason is RejectionReason.INVALID_DOCUMENT
    assert receiving.books.ops == {}
    # The fund transfer that followed the form is recorded for the operator, and not credited.
    assert "case.unexpected_funds" in note_events(receiving.notes)


def test_funds_after_the_case_closed_are_recorded_for_the_operator() -> None:
    world, receiving, _outgoing = pair()
    case_id = receiving.apply_for(person(), OUT, DAY)
    world.pump()
    case = receiving.case(case_id)
    transfer = EXAMPLES[("fund_transfer", 1)]
    assert isinstance(transfer, FundTransferV1)

    decision = receiving.handle(
        FundsReceived(case_id=case_id, message_id=uuid4(), sender=OUT, transfer=transfer), DAY
    )

    assert decision.messages == () and decision.commands == ()
    assert decision.case is not None and decision.case.state is State.COMPLETED
    assert len(decision.case.funds) == len(case.funds) + 1
    assert note_events(decision.notes) == ["case.unexpected_funds"]


def test_a_rejection_after_the_form_is_a_discrepancy_at_the_receiving_end() -> None:
    world, receiving, outgoing = pair()
    case_id = receiving.apply_for(person(), OUT, DAY)
    (letter,) = step(world, receiving)
    world.deliver(letter)
    form, _funds = step(world, outgoing)
    world.deliver(form)
    assert receiving.case(case_id).state is State.AWAITING_FUNDS

    receiving.handle(
        RejectionReceived(
            case_id=case_id,
            message_id=uuid4(),
            sender=OUT,
            rejection=RejectionV1(reason_code=RejectionReason.OTHER, text="撤回"),
        ),
        DAY,
    )
    assert receiving.case(case_id).state is State.DISCREPANCY


def test_an_outgoing_ledger_refusal_before_anything_applied_rejects_the_case() -> None:
    world, receiving, outgoing = pair()
    outgoing.run_commands = False
    case_id = receiving.apply_for(person(), OUT, DAY)
    world.pump()

    outgoing.handle(
        LedgerRefused(operation="terminate_and_debit", reason_code="person_not_found", text="no"),
        DAY,
        outgoing.case(case_id),
    )
    world.pump()

    assert outgoing.case(case_id).state is State.REJECTED
    assert outgoing.case(case_id).pending_commands == ()
    assert receiving.case(case_id).rejection_reason is RejectionReason.UNKNOWN_PERSON


def test_an_outgoing_ledger_refusal_after_a_partial_apply_is_a_discrepancy() -> None:
    world, receiving, outgoing = pair(retiree=True)
    outgoing.run_commands = False
    case_id = receiving.apply_for(
        person(), OUT, DAY, payout_account=bank_account("888888", "张伟"), payout_reason=PayoutReason.DEATH
    )
    world.pump()
    (terminate, payout) = outgoing.case(case_id).pending_commands
    entry = outgoing.books.run(terminate)

    outgoing.handle(
        LedgerRefused(operation="pay_out", reason_code="insufficient_balance", text="no", applied=(entry,)),
        DAY,
        outgoing.case(case_id),
    )
    world.pump()

    assert outgoing.case(case_id).state is State.DISCREPANCY
    assert receiving.case(case_id).state is State.REJECTED
    assert payout.operation == "pay_out"


def test_a_receiving_ledger_refusal_stops_both_ends() -> None:
    world, receiving, outgoing = pair()
    receiving.run_commands = False
    case_id = receiving.apply_for(person(), OUT, DAY)
    world.pump()
    assert receiving.case(case_id).state is State.CREDITING

    receiving.handle(
        LedgerRefused(operation="credit", reason_code="person_not_found", text="no"),
        DAY,
        receiving.case(case_id),
    )
    world.pump()

    assert receiving.case(case_id).state is State.DISCREPANCY
    assert outgoing.case(case_id).state is State.DISCREPANCY


def test_notes_and_rejection_texts_carry_no_personal_data() -> None:
    world, receiving, outgoing = pair(arrears=500)
    who = person()
    case_id = receiving.apply_for(who, OUT, DAY)
    world.pump()
    world.tick(date(2025, 6, 2))
    texts = [
        json.dumps(dict(note.detail), ensure_ascii=False) for a in (receiving, outgoing) for note in a.notes
    ]
    texts.append(receiving.case(case_id).rejection_text or "")
    for text in texts:
        assert who.id_number not in text and who.name not in text


def test_decide_on_an_unknown_case_is_a_note() -> None:
    _world, receiving, _ = pair()
    form = EXAMPLES[("information_form", 2)]
    event = FormReceived(case_id=uuid4(), message_id=uuid4(), sender=OUT, form=form)  # type: ignore[arg-type]
    decision = decide(None, event, receiving._context(None, event, DAY))
    assert decision.case is None and decision.messages == () and decision.commands == ()
    assert note_events(decision.notes) == ["case.unknown_case"]
    assert note_events(decide(None, Tick(today=DAY), receiving._context(None, event, DAY)).notes) == [
        "case.unknown_case"
    ]


def test_the_form_names_the_seal_and_the_certified_periods() -> None:
    world, receiving, _outgoing = pair(months=30, deemed=6)
    case_id = receiving.apply_for(person(), OUT, DAY)
    world.pump()
    form = receiving.case(case_id).form
    assert form is not None and form.seal_reference == "SEAL-360400"
    assert form.participation_start == "2023-07" and form.participation_end == "2025-12"
    assert form.contribution_periods is not None and sum(p.months for p in form.contribution_periods) == 30


def test_a_form_without_itemised_periods_is_still_written() -> None:
    world, receiving, _outgoing = pair(months=30, itemised=False)
    case_id = receiving.apply_for(person(), OUT, DAY)
    world.pump()
    form = receiving.case(case_id).form
    assert form is not None and form.contribution_periods is None and form.months_paid == 30
    assert receiving.case(case_id).state is State.COMPLETED


def test_books_that_say_another_case_took_the_relationship_reject_as_duplicate_case() -> None:
    """Two letters for one person raced past the check; the books refuse the second's
    termination (``relationship_ended``): that case is a duplicate, and says so."""
    world, receiving, outgoing = pair()
    outgoing.run_commands = False
    case_id = receiving.apply_for(person(), OUT, DAY)
    world.pump()

    outgoing.handle(
        LedgerRefused(operation="terminate_and_debit", reason_code="relationship_ended", text="no"),
        DAY,
        outgoing.case(case_id),
    )
    world.pump()

    assert outgoing.case(case_id).rejection_reason is RejectionReason.DUPLICATE_CASE
    assert receiving.case(case_id).rejection_reason is RejectionReason.DUPLICATE_CASE
