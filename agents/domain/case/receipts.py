"""Evidence of delivery: a counterpart's receipt (which document of the case it acknowledges,
kept in ``Case.receipts``) and a document the relay could not deliver (``Case.undeliverable``).

Every business document an agency sends for a case has a message id derived from the case, the
role and its purpose (`decision._message_id`), so the acknowledged id names the document without
any record of what was sent. A receipt for an id this case never made, or a second receipt for
the same document, changes nothing and yields a note.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace

from agents.domain.case.decision import Context, Decision, Note, _decision, _ids, _message_id, _seen
from agents.domain.case.events import DeliveryHeld, ReceiptReceived
from agents.domain.case.model import Case, Receipt, Role, State

__all__ = ["acknowledged_document", "cleared"]

_FIXED: dict[Role, tuple[str, ...]] = {
    Role.RECEIVING: ("contact_letter", "transfer_completed", "rejection", "withdrawal"),
    Role.OUTGOING: ("information_form", "fund_transfer", "rejection"),
}


def _purposes(case: Case) -> Iterator[str]:
    yield from _FIXED[case.role]
    for state in State:
        for number in range(1, case.reminders_sent + 1):
            yield f"reminder/{state.value}/{number}"


def acknowledged_document(case: Case, message_id: uuid.UUID) -> str | None:
    """The purpose of the document of `case` whose message id is `message_id` (``None``: none)."""
    for purpose in _purposes(case):
        if _message_id(case.case_id, case.role, purpose) == message_id:
            return purpose
    return None


def _on_receipt(case: Case, event: ReceiptReceived, ctx: Context) -> Decision:
    document = acknowledged_document(case, event.acknowledged_message_id)
    detail = {**_ids(case, event), "acknowledged_message_id": str(event.acknowledged_message_id)}
    if document is None:
        return Decision(notes=(Note("case.receipt_for_unknown_message", detail),))
    if any(r.acknowledged_message_id == event.acknowledged_message_id for r in case.receipts):
        return Decision(notes=(Note("case.duplicate_receipt", {**detail, "document": document}),))
    receipt = Receipt(
        acknowledged_message_id=event.acknowledged_message_id,
        document=document,
        receipt_message_id=event.message_id,
        received_on=ctx.today,
    )
    updated = case.model_copy(
        update={"receipts": (*case.receipts, receipt), "seen": _seen(case, event.message_id)}
    )
    return _decision(
        case,
        updated,
        "ReceiptReceived",
        notes=(Note("case.receipt_received", {**detail, "document": document}),),
        acknowledged_message_id=str(event.acknowledged_message_id),
        document=document,
    )


def _on_delivery_held(case: Case, event: DeliveryHeld) -> Decision:
    document = acknowledged_document(case, event.message_id) or "message"
    detail = {**_ids(case, event), "recipient": event.recipient, "document": document}
    if case.undeliverable == document:
        return Decision(notes=(Note("case.still_undeliverable", detail),))
    held = case.model_copy(update={"undeliverable": document})
    return _decision(
        case,
        held,
        "DeliveryHeld",
        notes=(Note("case.undeliverable", detail),),
        recipient=event.recipient,
        document=document,
    )


def cleared(decision: Decision) -> Decision:
    """A message from the counterpart proves the route works again: no more ``undeliverable``."""
    case = decision.case
    if case is None or case.undeliverable is None:
        return decision
    return replace(decision, case=case.model_copy(update={"undeliverable": None}))
