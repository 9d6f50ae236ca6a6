"""What an operator may do to a case: withdraw an application (cancel).

| role | from          | event           | to        | sends                          |
|------|---------------|-----------------|-----------|--------------------------------|
| recv | awaiting_form | CancelRequested | cancelled | rejection v2 ``withdrawn``     |
|      | (no funds)    |                 |           | (``other`` to a v1 agency)     |

Anything else is refused, with the reason in the note ``case.cancel_refused`` (``why``): once the
outgoing agency has released (a form or money has arrived) a withdrawal would strand money, so the
case goes on and, if it cannot, stops in ``discrepancy`` for the operator. The outgoing agency
handles the withdrawal as any rejection: before it has a case, nothing; after it released, its case
stops in ``discrepancy`` (kind ``withdrawn``) for its operator.
"""

from __future__ import annotations

from agents.domain.case.decision import Context, Decision, Note, _decision, _ids, _send
from agents.domain.case.events import CancelRequested
from agents.domain.case.model import Case, Role, State
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
