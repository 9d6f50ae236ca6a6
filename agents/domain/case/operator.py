"""What an operator may do to a case: withdraw an application (cancel), resolve a discrepancy.

| role | from          | event           | to        | sends                          |
|------|---------------|-----------------|-----------|--------------------------------|
| recv | awaiting_form | CancelRequested | cancelled | rejection v2 ``withdrawn``     |
|      | (no funds)    |                 |           | (``other`` to a v1 agency)     |

Anything else is refused, with the reason in the note ``case.cancel_refused`` (``why``): once the
outgoing agency has released (a form or money has arrived) a withdrawal would strand money, so the
case goes on and, if it cannot, stops in ``discrepancy`` for the operator. The outgoing agency
handles the withdrawal as any rejection: before it has a case, nothing; after it released, its case
stops in ``discrepancy`` (kind ``withdrawn``) for its operator.

Resolving a discrepancy (``ResolveRequested``; the case keeps its ``discrepancy`` and gains a
``resolution``):

| role | decision           | to                       | commands / sends                          |
|------|--------------------|--------------------------|-------------------------------------------|
| recv | credit_as_received | crediting, then completed| Credit of the form's months and the money |
|      | (a form is here)   | as a normal crediting    | that actually arrived; then the completion|
|      |                    |                          | (copied to the reconciler: it reconciles) |
| recv | return_funds       | cancelled                | nothing booked; what arrived goes back    |
|      |                    |                          | outside jiexu (the bank transfer)         |
| out  | credit_as_received | completed                | nothing: the books stay as released       |
| out  | return_funds       | refused                  | (no ledger operation gives a balance back)|

The Credit is idempotent per ``(case_id, "credit")`` like every other; resolving twice is refused
(the case is no longer in ``discrepancy``).
"""

from __future__ import annotations

from typing import Any

from agents.domain.case.commands import Credit
from agents.domain.case.decision import Context, Decision, Note, _decision, _ids, _send
from agents.domain.case.events import CancelRequested, ResolveRequested
from agents.domain.case.model import Case, Resolution, Role, State
from agents.domain.case.timing import _enter
from schemas.notices import RejectionReason, RejectionV2

__all__: list[str] = []


def _refuse(case: Case, why: str) -> Decision:
    return Decision(notes=(Note("case.cancel_refused", {**_ids(case), "why": why}),))


def _on_cancel(case: Case, event: CancelRequested, ctx: Context) -> Decision:
    if case.role is not Role.RECEIVING:
        return _refuse(
            case,
            "only the receiving agency, where the person applied, can withdraw the application "
            "(this agency is the outgoing end)",
        )
    if not case.is_open:
        return _refuse(case, f"the case has already ended ({case.state.value})")
    if case.state is not State.AWAITING_FORM or case.funds or case.form is not None:
        return _refuse(
            case,
            f"the outgoing agency has already released (case is {case.state.value}: "
            "the information form or the funds have arrived); withdrawing now would strand the "
            "money, so the transfer goes on",
        )
    text = f"转入地撤回申请 (the application was withdrawn by the receiving agency): {event.reason}"
    cancelled = _enter(
        case,
        State.CANCELLED,
        ctx.today,
        ctx.calendar,
        rejection_reason=RejectionReason.WITHDRAWN,
        rejection_text=text,
        note=text,
    )
    withdrawal = RejectionV2(reason_code=RejectionReason.WITHDRAWN, text=text)
    return _decision(
        case,
        cancelled,
        "CancelRequested",
        messages=(_send(cancelled, withdrawal, "withdrawal", case.letter_message_id),),
        notes=(Note("case.cancelled", _ids(cancelled)),),
        reason=event.reason,
    )


DECISIONS = ("credit_as_received", "return_funds")


def _refuse_resolve(case: Case, why: str) -> Decision:
    return Decision(notes=(Note("case.resolve_refused", {**_ids(case), "why": why}),))


def _on_resolve(case: Case, event: ResolveRequested, ctx: Context) -> Decision:
    if event.decision not in DECISIONS:
        return _refuse_resolve(case, f"unknown decision {event.decision!r}: one of {', '.join(DECISIONS)}")
    if case.state is not State.DISCREPANCY:
        return _refuse_resolve(case, f"the case is {case.state.value}, not in discrepancy")
    resolution = Resolution(
        decision=event.decision,  # checked against DECISIONS above
        reason=event.reason,
        on=ctx.today,
        from_kind=case.discrepancy.kind if case.discrepancy else None,
    )
    detail: dict[str, Any] = {"decision": event.decision, "reason": event.reason}
    notes = (Note("case.resolved", {**_ids(case), "decision": event.decision}),)
    if case.role is Role.OUTGOING:
        if event.decision == "return_funds":
            return _refuse_resolve(
                case,
                "return_funds at the outgoing agency needs a ledger operation that gives the debited "
                "balance back, which the ledger port does not have yet; book it in the core system "
                "and resolve with credit_as_received",
            )
        done = _enter(
            case,
            State.COMPLETED,
            ctx.today,
            ctx.calendar,
            resolution=resolution,
            note=f"已人工处理 (resolved: books stay as released): {event.reason}",
        )
        return _decision(case, done, "ResolveRequested", notes=notes, **detail)
    if event.decision == "return_funds":
        received = sum(f.transfer.amount for f in case.funds)
        returned = _enter(
            case,
            State.CANCELLED,
            ctx.today,
            ctx.calendar,
            resolution=resolution,
            note=f"已人工处理，退回 {received} 分 (resolved: funds returned): {event.reason}",
        )
        return _decision(case, returned, "ResolveRequested", notes=notes, returned_fen=received, **detail)
    form = case.form
    if form is None:
        return _refuse_resolve(case, "no information form has arrived: nothing to credit; use return_funds")
    received = sum(f.transfer.amount for f in case.funds)
    credit = Credit(
        case_id=case.case_id,
        id_number=case.person.id_number,
        months=form.months_paid,
        deemed_months=form.deemed_months,
        amount_fen=received,
        periods=form.contribution_periods or (),
        insurance_type=case.insurance_type_to or form.insurance_type,
        name=case.person.name,
        gender=case.person.gender,
    )
    crediting = _enter(
        case,
        State.CREDITING,
        ctx.today,
        ctx.calendar,
        resolution=resolution,
        pending_commands=(credit,),
        note=f"已人工处理，按实际到账记账 (resolved: crediting as received): {event.reason}",
    )
    return _decision(
        case, crediting, "ResolveRequested", commands=(credit,), notes=notes, amount_fen=received, **detail
    )
