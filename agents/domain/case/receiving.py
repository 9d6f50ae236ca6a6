"""The receiving agency's side: the application, the form, the funds, crediting, and refusals.

`_on_ledger_refused` serves both roles: a refused ledger command is handled alike at either end.

Continuity (`agents.domain.continuity`) is decided here when the case credits, from the form's
``participation_end`` and the person's **enrolment start** at this agency. The enrolment start is
read from the books when the application is accepted (``PersonAccount.enrolment_start``) and kept
in the case; where the books do not know it, the month of the application stands in. That is the
latest month the enrolment can have begun: an application is refused unless the person is already
enrolled here (`policy.check_application`), so the stand-in never shortens a gap; it can only
lengthen one for a person who enrolled earlier and applied later, which an adapter that knows the
date avoids by filling it. Deemed periods (视同缴费) are not placed in time by the information form
(it certifies a count of deemed months only), so here they cover no month of the gap.
"""

from __future__ import annotations

import uuid

from pydantic import ValidationError

from agents.domain import policy
from agents.domain.case.commands import Credit
from agents.domain.case.decision import (
    Context,
    Decision,
    Note,
    _decision,
    _ids,
    _ignore,
    _message_id,
    _negotiate,
    _received,
    _rejection,
    _seen,
    _send,
)
from agents.domain.case.events import (
    ApplicationSubmitted,
    FormReceived,
    FundsReceived,
    LedgerApplied,
    LedgerRefused,
    RejectionReceived,
)
from agents.domain.case.model import Booked, Case, Discrepancy, ReceivedFunds, Role, State
from agents.domain.case.timing import _enter
from agents.domain.continuity import MAX_WAITING_MONTHS, Continuity, assess_continuity
from agents.domain.deadlines import Step, due_date
from schemas.contact import ContactLetterV2
from schemas.information import BalanceDisposition, InformationFormV2
from schemas.notices import ContinuityNotice, ContinuityOutcome, RejectionReason, TransferCompletedV2

__all__: list[str] = []


def _on_application(event: ApplicationSubmitted, ctx: Context) -> Decision:
    agency, today = ctx.agency, ctx.today
    versions, missing = _negotiate(Role.RECEIVING, ctx.counterpart_versions)
    account = ctx.account
    case = Case(
        case_id=event.case_id,
        role=Role.RECEIVING,
        state=State.REJECTED,
        person=event.person,
        own_code=agency.code,
        counterpart_code=event.from_region,
        insurance_type_from=event.insurance_type,
        insurance_type_to=account.insurance_type if account is not None else None,
        regime=agency.regime,
        versions=versions,
        opened_on=today,
        flow_due_date=due_date(agency.regime, Step.WHOLE_FLOW, today, ctx.calendar),
        enrolment_start=(account.enrolment_start if account is not None else None) or f"{today:%Y-%m}",
    )
    refusal = policy.check_application(
        own_code=agency.code,
        from_region=event.from_region,
        account=account,
        other_open_case=ctx.other_open_case,
    )
    plan: policy.PayoutPlan | policy.Refusal | None = None
    if refusal is None and account is not None:
        plan = policy.payout_for_application(
            own_code=agency.code,
            from_region=event.from_region,
            insurance_type_from=event.insurance_type,
            insurance_type_to=account.insurance_type,
            accepts_funds=agency.accepts_funds,
            payout_account=event.payout_account,
            payout_reason=event.payout_reason,
        )
        if isinstance(plan, policy.Refusal):
            refusal = plan
    if refusal is None and missing:
        refusal = policy.Refusal(
            RejectionReason.OTHER,
            f"转出地不支持本机构使用的报文版本 (the outgoing agency supports no common version of "
            f"{', '.join(missing)}).",
        )
    payout = plan if isinstance(plan, policy.PayoutPlan) else None
    if refusal is None and payout is not None and versions.get("contact_letter", 1) < 2:
        refusal = policy.Refusal(
            RejectionReason.OTHER,
            "转出地尚不支持余额支付给本人的申请 (the outgoing agency does not support contact_letter "
            "v2, which carries the payout request).",
        )
    letter: ContactLetterV2 | None = None
    if refusal is None:
        try:
            letter = ContactLetterV2(
                letter_number=event.letter_number,
                person=event.person,
                insurance_type=event.insurance_type,
                from_region=event.from_region,
                to_region=agency.code,
                receiving_agency=agency.details,
                payout_account=payout.account if payout else None,
                payout_reason=payout.reason if payout else None,
            )
        except ValidationError as error:
            refusal = policy.Refusal(
                RejectionReason.INVALID_DOCUMENT,
                f"申请信息不完整 (the application does not make a valid contact letter: "
                f"{error.error_count()} problem(s)).",
            )
    if refusal is not None or letter is None:
        assert refusal is not None
        rejected = _enter(
            case,
            State.REJECTED,
            today,
            ctx.calendar,
            rejection_reason=refusal.reason,
            rejection_text=refusal.text,
            note=refusal.text,
        )
        return _decision(
            None,
            rejected,
            "ApplicationSubmitted",
            notes=(Note("case.rejected_locally", {**_ids(rejected), "reason": refusal.reason.value}),),
            reason=refusal.reason.value,
        )
    opened = _enter(
        case,
        State.AWAITING_FORM,
        today,
        ctx.calendar,
        letter=letter,
        letter_message_id=_message_id(case.case_id, Role.RECEIVING, "contact_letter"),
        note="联系函已发出 (contact letter sent)",
    )
    notes: list[Note] = []
    if event.payout_account is not None and payout is None:
        notes.append(Note("case.payout_request_dropped", {**_ids(opened), "reason": "no balance moves"}))
    return _decision(
        None,
        opened,
        "ApplicationSubmitted",
        messages=(_send(opened, letter, "contact_letter", None),),
        notes=notes,
        payout_reason=payout.reason.value if payout else None,
    )


def _on_form(case: Case, event: FormReceived, ctx: Context) -> Decision:
    if case.state is not State.AWAITING_FORM:
        name = "case.second_form" if case.form is not None else "case.stale_form"
        return _ignore(name, case, event)
    form = event.form
    updated = case.model_copy(
        update={
            "form": form,
            "form_message_id": event.message_id,
            "form_received_on": ctx.today,
            "seen": _seen(case, event.message_id),
            "received_versions": _received(case, "information_form", event.version),
        }
    )
    refusal = policy.check_form(
        own_code=case.own_code,
        from_region=case.counterpart_code,
        id_number=case.person.id_number,
        payout_requested=case.payout_requested,
        form=form,
    )
    if refusal is not None:
        stopped = _enter(
            updated,
            State.DISCREPANCY,
            ctx.today,
            ctx.calendar,
            discrepancy=Discrepancy(kind="invalid_form", text=refusal.text),
            note=refusal.text,
        )
        return _decision(
            case,
            stopped,
            "FormReceived",
            messages=(
                _send(stopped, _rejection(refusal.reason, refusal.text), "rejection", event.message_id),
            ),
            notes=(Note("case.form_refused", {**_ids(stopped), "reason": refusal.reason.value}),),
            reason=refusal.reason.value,
        )
    return _settle(case, updated, "FormReceived", event.message_id, ctx)


def _on_funds(case: Case, event: FundsReceived, ctx: Context) -> Decision:
    received = ReceivedFunds(message_id=event.message_id, received_on=ctx.today, transfer=event.transfer)
    updated = case.model_copy(
        update={
            "funds": (*case.funds, received),
            "seen": _seen(case, event.message_id),
            "received_versions": _received(case, "fund_transfer", event.version),
        }
    )
    if case.state is State.AWAITING_FORM:
        held = updated.model_copy(
            update={"note": "余额已到账，等待信息表 (funds held until the form arrives)"}
        )
        return _decision(
            case,
            held,
            "FundsReceived",
            notes=(Note("case.funds_held", {**_ids(held), "amount_fen": event.transfer.amount}),),
            held=True,
            amount_fen=event.transfer.amount,
        )
    if case.state is State.AWAITING_FUNDS:
        return _settle(case, updated, "FundsReceived", event.message_id, ctx)
    return _decision(
        case,
        updated,
        "FundsReceived",
        notes=(Note("case.unexpected_funds", {**_ids(case, event), "amount_fen": event.transfer.amount}),),
        unexpected=True,
        amount_fen=event.transfer.amount,
    )


def _settle(old: Case, case: Case, event_name: str, causation: uuid.UUID, ctx: Context) -> Decision:
    """The form is here: wait for the money, stop on a mismatch, or credit."""
    form = case.form
    assert form is not None
    expected = form.amount_transferred
    received = sum(funds.transfer.amount for funds in case.funds)
    if form.balance_disposition is BalanceDisposition.TRANSFERRED and not case.funds:
        waiting = _enter(
            case, State.AWAITING_FUNDS, ctx.today, ctx.calendar, note="等待余额划转 (awaiting the funds)"
        )
        return _decision(old, waiting, event_name, expected_fen=expected)
    if received != expected:
        text = (
            f"信息表划转金额 {policy.yuan(expected)} 元与实际到账 {policy.yuan(received)} 元不符 "
            f"(the form states {expected} fen transferred; {received} fen received)."
        )
        stopped = _enter(
            case,
            State.DISCREPANCY,
            ctx.today,
            ctx.calendar,
            discrepancy=Discrepancy(
                kind="amount_mismatch", text=text, expected_fen=expected, received_fen=received
            ),
            note=text,
        )
        return _decision(
            old,
            stopped,
            event_name,
            messages=(
                _send(stopped, _rejection(RejectionReason.AMOUNT_MISMATCH, text), "rejection", causation),
            ),
            notes=(
                Note(
                    "case.amount_mismatch",
                    {**_ids(stopped), "expected_fen": expected, "received_fen": received},
                ),
            ),
            expected_fen=expected,
            received_fen=received,
        )
    notes: list[Note] = []
    mismatched_ids = [f for f in case.funds if f.transfer.information_form_id != case.form_message_id]
    if mismatched_ids:
        notes.append(Note("case.funds_name_another_form", {**_ids(case), "count": len(mismatched_ids)}))
    insurance_type = case.insurance_type_to or form.insurance_type
    credit = Credit(
        case_id=case.case_id,
        id_number=case.person.id_number,
        months=form.months_paid,
        deemed_months=form.deemed_months,
        amount_fen=expected,
        periods=form.contribution_periods or (),
        insurance_type=insurance_type,
        name=case.person.name,
        gender=case.person.gender,
    )
    continuity = _continuity(case, form, ctx)
    crediting = _enter(
        case,
        State.CREDITING,
        ctx.today,
        ctx.calendar,
        pending_commands=(credit,),
        continuity=continuity,
        note="记账中 (crediting)",
    )
    return _decision(
        old,
        crediting,
        event_name,
        commands=(credit,),
        notes=notes,
        months=credit.months,
        amount_fen=credit.amount_fen,
        continuity=continuity.outcome.value,
        gap_months=continuity.gap_months,
        waiting_months=continuity.waiting_months,
    )


def _continuity(case: Case, form: InformationFormV2, ctx: Context) -> Continuity:
    """Continuity for the form's last month and the case's enrolment start (module docstring)."""
    start = case.enrolment_start or f"{case.opened_on:%Y-%m}"
    waiting = min(max(ctx.agency.waiting_months, 0), MAX_WAITING_MONTHS)
    return assess_continuity(form.participation_end, start, waiting_months=waiting)


def _continuity_notice(continuity: Continuity) -> ContinuityNotice:
    return ContinuityNotice(
        participation_end=continuity.participation_end,
        enrolment_start=continuity.enrolment_start,
        gap_months=continuity.gap_months,
        outcome=ContinuityOutcome(continuity.outcome.value),
        back_payment_months=continuity.back_payment_months,
        waiting_months=continuity.waiting_months,
        benefits_from=continuity.benefits_from,
    )


def _on_credited(case: Case, event: LedgerApplied, ctx: Context) -> Decision:
    entry = next((e for e in event.entries if e.operation == "credit"), None)
    if entry is None:
        return _ignore("case.ledger_result_incomplete", case, event)
    booked = Booked(months=entry.months, deemed_months=entry.deemed_months, amount_fen=entry.amount_fen)
    continuity = case.continuity
    if continuity is None and case.form is not None:  # a case that credited before it was decided
        continuity = _continuity(case, case.form, ctx)
    done = _enter(
        case,
        State.COMPLETED,
        ctx.today,
        ctx.calendar,
        booked=booked,
        pending_commands=(),
        continuity=continuity,
        note="已办结 (completed)",
    )
    completion = TransferCompletedV2(
        months_credited=entry.months,
        deemed_months_credited=entry.deemed_months,
        amount_credited=entry.amount_fen,
        continuity=_continuity_notice(continuity) if continuity is not None else None,
    )
    return _decision(
        case,
        done,
        "LedgerApplied",
        messages=(_send(done, completion, "transfer_completed", case.form_message_id),),
        months=entry.months,
        amount_fen=entry.amount_fen,
    )


def _on_ledger_refused(case: Case, event: LedgerRefused, ctx: Context) -> Decision:
    detail = {**_ids(case, event), "operation": event.operation, "reason_code": event.reason_code}
    if case.role is Role.OUTGOING and not event.applied:
        reason = {
            "person_not_found": RejectionReason.UNKNOWN_PERSON,
            # Another case transferred the relationship out between our check and our books:
            # this case is a second one for the same person.
            "relationship_ended": RejectionReason.DUPLICATE_CASE,
        }.get(event.reason_code, RejectionReason.OTHER)
        text = f"转出地无法办理 (the outgoing books refused: {event.reason_code})."
        rejected = _enter(
            case,
            State.REJECTED,
            ctx.today,
            ctx.calendar,
            pending_commands=(),
            rejection_reason=reason,
            rejection_text=text,
            note=text,
        )
        return _decision(
            case,
            rejected,
            "LedgerRefused",
            messages=(_send(rejected, _rejection(reason, text), "rejection", case.letter_message_id),),
            notes=(Note("case.ledger_refused", detail),),
            reason_code=event.reason_code,
        )
    text = (
        f"账务处理失败，需人工处理 (the {case.role.value} agency's books refused "
        f"{event.operation}: {event.reason_code}; an operator must resolve it)."
    )
    causation = case.letter_message_id if case.role is Role.OUTGOING else case.form_message_id
    stopped = _enter(
        case,
        State.DISCREPANCY,
        ctx.today,
        ctx.calendar,
        pending_commands=(),
        discrepancy=Discrepancy(kind="ledger_refused", text=text),
        note=text,
    )
    return _decision(
        case,
        stopped,
        "LedgerRefused",
        messages=(_send(stopped, _rejection(RejectionReason.OTHER, text), "rejection", causation),),
        notes=(Note("case.ledger_refused", detail),),
        reason_code=event.reason_code,
    )


def _on_rejection_at_receiving(case: Case, event: RejectionReceived, ctx: Context) -> Decision:
    if not case.is_open:
        return _ignore("case.stale_rejection", case, event)
    rejection = event.rejection
    seen = {"seen": _seen(case, event.message_id)}
    if case.state is State.AWAITING_FORM:
        new = _enter(
            case,
            State.REJECTED,
            ctx.today,
            ctx.calendar,
            rejection_reason=rejection.reason_code,
            rejection_text=rejection.text,
            note=rejection.text,
            **seen,
        )
    else:
        new = _enter(
            case,
            State.DISCREPANCY,
            ctx.today,
            ctx.calendar,
            rejection_reason=rejection.reason_code,
            rejection_text=rejection.text,
            discrepancy=Discrepancy(kind="rejected_after_form", text=rejection.text),
            note=rejection.text,
            **seen,
        )
    return _decision(case, new, "RejectionReceived", reason=rejection.reason_code.value)
