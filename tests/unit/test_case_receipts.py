"""Receipts (docs/protocol.md section 9) in the service's unit tier: each document committed is
acknowledged once, the sender keeps the receipt in the case whatever its state, and a receipt
for something the case never sent, or a second one, changes nothing."""

from __future__ import annotations

import uuid
from dataclasses import replace

from agents.domain.case import State
from agents.domain.case.decision import OutboundMessage
from schemas.notices import ReceiptV1
from tests.unit.case_world import Sent, note_events, person
from tests.unit.test_case_decide import DAY, OUT, pair


def _receipt_for(sent: Sent, acknowledged: uuid.UUID | None = None) -> Sent:
    """A receipt from `sent`'s recipient, as a counterpart would send it."""
    target = acknowledged or sent.message.message_id
    return Sent(
        sent.message.recipient,
        sent.case_id,
        OutboundMessage(
            recipient=sent.sender,
            document=ReceiptV1(acknowledged_message_id=target),
            message_id=uuid.uuid4(),
            causation_id=target,
            version=1,
        ),
    )


def test_a_document_is_acknowledged_once_even_when_delivered_twice() -> None:
    world, receiving, outgoing = pair()
    world.receipts = False
    case_id = receiving.apply_for(person(), OUT, DAY)
    (letter,) = receiving.outbox
    receiving.outbox.clear()
    world.deliver(letter, twice=True)
    (receipt,) = outgoing.receipts
    assert receipt.message.recipient == receiving.code
    assert receipt.message.causation_id == letter.message.message_id
    document = receipt.message.document
    assert isinstance(document, ReceiptV1)
    assert document.acknowledged_message_id == letter.message.message_id
    assert receipt.message.message_id == uuid.uuid5(letter.message.message_id, "receipt")

    outcome = world.deliver(receipt)
    kept = receiving.case(case_id)
    assert [(r.document, r.acknowledged_message_id) for r in kept.receipts] == [
        ("contact_letter", letter.message.message_id)
    ]
    assert kept.state is State.AWAITING_FORM
    assert "case.receipt_received" in note_events(outcome.notes)


def test_a_receipt_for_a_message_the_case_never_sent_or_a_second_one_changes_nothing() -> None:
    world, receiving, outgoing = pair()
    world.receipts = False
    case_id = receiving.apply_for(person(), OUT, DAY)
    (letter,) = receiving.outbox
    receiving.outbox.clear()
    world.deliver(letter)
    (receipt,) = outgoing.receipts
    outgoing.receipts.clear()

    stranger = world.deliver(_receipt_for(letter, acknowledged=uuid.uuid4()))
    assert stranger.case is None
    assert "case.receipt_for_unknown_message" in note_events(stranger.notes)
    assert receiving.case(case_id).receipts == ()

    world.deliver(receipt)
    second = world.deliver(replace(_receipt_for(letter), sender=outgoing.code))
    assert second.case is None
    assert "case.duplicate_receipt" in note_events(second.notes)
    assert len(receiving.case(case_id).receipts) == 1


def test_receipts_are_kept_in_terminal_cases_and_never_acknowledged() -> None:
    world, receiving, outgoing = pair()
    case_id = receiving.apply_for(person(), OUT, DAY)
    world.pump(twice=True)
    done = receiving.case(case_id)
    assert done.state is State.COMPLETED
    # The completion's receipt arrived after the case ended, and is kept.
    assert [r.document for r in done.receipts] == ["contact_letter", "transfer_completed"]
    assert outgoing.case(case_id).state is State.COMPLETED
    # Receipts themselves are acknowledged by nobody: four documents, four receipts.
    delivered = [t for _, t, _ in world.delivered]
    assert delivered.count("receipt") == 4
    assert not receiving.receipts and not outgoing.receipts
