"""`decide`: the one entry point, which sends each event to the handler of its role and state."""

from __future__ import annotations

from agents.domain.case.decision import Context, Decision, Note, _ids, _ignore
from agents.domain.case.events import (
    ApplicationSubmitted,
    CancelRequested,
    CompletionReceived,
    DeliveryHeld,
    Event,
    FormReceived,
    FundsReceived,
    LedgerApplied,
    LedgerRefused,
    LetterReceived,
    MessageEvent,
    PayoutApproved,
    ReceiptReceived,
    RejectionReceived,
    ReminderReceived,
    ResolveRequested,
    Tick,
)
from agents.domain.case.model import Case, Role, State
from agents.domain.case.operator import _on_cancel, _on_resolve
from agents.domain.case.outgoing import (
    _on_completion,
    _on_letter,
    _on_payout_approved,
    _on_rejection_at_outgoing,
    _on_released,
)
from agents.domain.case.receipts import _on_delivery_held, _on_receipt, cleared
from agents.domain.case.receiving import (
    _on_application,
    _on_credited,
    _on_form,
    _on_funds,
    _on_ledger_refused,
    _on_rejection_at_receiving,
)
from agents.domain.case.timing import _on_tick

__all__ = ["decide"]


def decide(case: Case | None, event: Event, ctx: Context) -> Decision:
    """The new case, messages, ledger commands, transition and notes for one event."""
    decision = _decide(case, event, ctx)
    if case is not None and case.undeliverable is not None and isinstance(event, MessageEvent):
        return cleared(decision)
    return decision


def _decide(case: Case | None, event: Event, ctx: Context) -> Decision:
    if isinstance(event, ApplicationSubmitted):
        if case is not None:
            return _ignore("case.duplicate_application", case)
        return _on_application(event, ctx)
    if isinstance(event, LetterReceived):
        if case is not None:
            same = event.message_id in case.seen
            return _ignore("case.duplicate_message" if same else "case.second_letter", case, event)
        return _on_letter(event, ctx)
    if case is None:
        return Decision(notes=(Note("case.unknown_case", {"event": type(event).__name__}),))
    if isinstance(event, Tick):
        return _on_tick(case, event.today, ctx)
    if isinstance(event, PayoutApproved):
        return _on_payout_approved(case, event, ctx)
    if isinstance(event, CancelRequested):
        return _on_cancel(case, event, ctx)
    if isinstance(event, ResolveRequested):
        return _on_resolve(case, event, ctx)
    if isinstance(event, DeliveryHeld):
        return _on_delivery_held(case, event)
    if isinstance(event, LedgerApplied | LedgerRefused):
        if case.state not in (State.RELEASING, State.CREDITING):
            return _ignore("case.stale_ledger_result", case, event)
        if isinstance(event, LedgerRefused):
            return _on_ledger_refused(case, event, ctx)
        if case.role is Role.OUTGOING:
            return _on_released(case, event, ctx)
        return _on_credited(case, event, ctx)
    if event.message_id in case.seen:
        return _ignore("case.duplicate_message", case, event)
    if event.case_id != case.case_id:
        return _ignore("case.wrong_case", case, event)
    if event.sender != case.counterpart_code:
        return _ignore("case.wrong_sender", case, event)
    if isinstance(event, ReceiptReceived):
        return _on_receipt(case, event, ctx)
    if isinstance(event, ReminderReceived):
        return Decision(
            notes=(
                Note(
                    "case.reminder_received",
                    {**_ids(case, event), "overdue_step": event.reminder.overdue_step.value},
                ),
            )
        )
    if case.role is Role.RECEIVING:
        if isinstance(event, FormReceived):
            return _on_form(case, event, ctx)
        if isinstance(event, FundsReceived):
            return _on_funds(case, event, ctx)
        if isinstance(event, RejectionReceived):
            return _on_rejection_at_receiving(case, event, ctx)
    else:
        if isinstance(event, CompletionReceived):
            return _on_completion(case, event, ctx)
        if isinstance(event, RejectionReceived):
            return _on_rejection_at_outgoing(case, event, ctx)
    return _ignore("case.unexpected_event", case, event)
