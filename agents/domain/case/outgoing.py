"""The outgoing agency's side: the letter, releasing (ledger commands, then the form and the funds),
and the answer (completion or rejection).

When the books have ended the relationship (``terminate_and_debit`` applied) and the form is
written, the case also gets the person's participation certificate (参保凭证,
`agents.domain.certificate`), built from the form: the same periods, months and balance, issued
today by this agency. It is unsigned here (the domain holds no keys); the service signs it before
the case is stored. A certificate the form cannot make (e.g. a form whose last month lies after
today) is left out with a note ``case.certificate_not_issued``; the transfer goes on without it.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import ValidationError

from agents.domain import policy
from agents.domain.books import LedgerEntry
from agents.domain.case.commands import Credit, PayOut, TerminateAndDebit
from agents.domain.case.decision import (
    Context,
    Decision,
    Note,
    OutboundMessage,
    _decision,
    _ids,
    _ignore,
    _message_id,
    _negotiate,
    _rejection,
    _seen,
    _send,
)
from agents.domain.case.events import (
    CompletionReceived,
    LedgerApplied,
    LetterReceived,
    PayoutApproved,
    RejectionReceived,
)
from agents.domain.case.model import Booked, Case, Discrepancy, Role, State
from agents.domain.case.timing import _enter
from agents.domain.certificate import Holder, IssuingAgency, ParticipationCertificate
from agents.domain.continuity import Continuity, ContinuityOutcome
from agents.domain.deadlines import Step, due_date
from schemas.common import BankAccount
from schemas.funds import FundTransferV1, RemittanceMark
from schemas.information import BalanceDisposition, ContributionPeriod, InformationFormV2
from schemas.notices import RejectionReason, TransferCompletedV1, TransferCompletedV2

__all__: list[str] = []


def _on_letter(event: LetterReceived, ctx: Context) -> Decision:
    agency, today, account, letter = ctx.agency, ctx.today, ctx.account, event.letter
    versions, missing = _negotiate(Role.OUTGOING, ctx.counterpart_versions)
    case = Case(
        case_id=event.case_id,
        role=Role.OUTGOING,
        state=State.REJECTED,
        person=letter.person,
        own_code=agency.code,
        counterpart_code=event.sender,
        insurance_type_from=account.insurance_type if account is not None else letter.insurance_type,
        regime=agency.regime,
        versions=versions,
        received_versions={"contact_letter": event.version},
        opened_on=today,
        letter=letter,
        letter_message_id=event.message_id,
        seen=(event.message_id,),
        flow_due_date=due_date(agency.regime, Step.WHOLE_FLOW, today, ctx.calendar),
    )
    refusal = policy.check_letter(
        own_code=agency.code,
        sender=event.sender,
        letter=letter,
        account=account,
        other_open_case=ctx.other_open_case,
        payee_known=ctx.counterpart_account is not None,
    )
    if refusal is None and "information_form" in missing:
        refusal = policy.Refusal(
            RejectionReason.OTHER,
            "转入地不支持本机构的信息表版本 (the receiving agency supports no common version of "
            "information_form).",
        )
    if refusal is not None or account is None:
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
            "LetterReceived",
            messages=(
                _send(rejected, _rejection(refusal.reason, refusal.text), "rejection", event.message_id),
            ),
            reason=refusal.reason.value,
        )
    plan = policy.release_plan(own_code=agency.code, letter=letter, account=account)
    commands: list[TerminateAndDebit | PayOut | Credit] = [
        TerminateAndDebit(
            case_id=case.case_id,
            id_number=account.id_number,
            amount_fen=plan.debit_fen,
            retain=plan.retain,
        )
    ]
    if plan.payout_fen > 0 and plan.payout_account is not None:
        commands.append(
            PayOut(
                case_id=case.case_id,
                id_number=account.id_number,
                amount_fen=plan.payout_fen,
                bank_account=plan.payout_account,
            )
        )
    notes: list[Note] = []
    if account.insurance_type is not letter.insurance_type:
        notes.append(
            Note(
                "case.insurance_type_differs",
                {**_ids(case), "letter": letter.insurance_type.value, "books": account.insurance_type.value},
            )
        )
    if letter.payout_requested and plan.disposition is not BalanceDisposition.PAID_TO_PERSON:
        notes.append(Note("case.payout_not_needed", {**_ids(case), "disposition": plan.disposition.value}))
    payee = ctx.counterpart_account
    if payee is not None and _account_key(letter.receiving_agency.bank_account) != _account_key(payee):
        # The money goes to the directory's account whatever the letter says; the operator is told.
        notes.append(Note("case.letter_account_differs", _ids(case)))
    limit = agency.payout_approval_limit_fen
    if plan.payout_fen > 0 and limit is not None and plan.payout_fen > limit:
        held = _enter(
            case,
            State.AWAITING_APPROVAL,
            today,
            ctx.calendar,
            held_commands=tuple(commands),
            note=(
                f"余额支付 {policy.yuan(plan.payout_fen)} 元超过审批限额，待经办人审批 (a payout above "
                f"the approval limit of {policy.yuan(limit)} yuan waits for an operator: jiexu case "
                "approve-payout)"
            ),
        )
        notes.append(
            Note("case.payout_held", {**_ids(held), "amount_fen": plan.payout_fen, "limit_fen": limit})
        )
        return _decision(
            None,
            held,
            "LetterReceived",
            notes=notes,
            disposition=plan.disposition.value,
            held_for_approval=True,
        )
    releasing = _enter(
        case,
        State.RELEASING,
        today,
        ctx.calendar,
        pending_commands=tuple(commands),
        note=f"余额处理 {plan.disposition.value}",
    )
    return _decision(
        None,
        releasing,
        "LetterReceived",
        commands=commands,
        notes=notes,
        disposition=plan.disposition.value,
    )


def _on_released(case: Case, event: LedgerApplied, ctx: Context) -> Decision:
    terminate = next((e for e in event.entries if e.operation == "terminate_and_debit"), None)
    payout = next((e for e in event.entries if e.operation == "pay_out"), None)
    wants_payout = any(isinstance(c, PayOut) for c in case.pending_commands)
    if terminate is None or (wants_payout and payout is None) or case.letter is None:
        return _ignore("case.ledger_result_incomplete", case, event)
    paid = payout.amount_fen if payout is not None else 0
    booked = Booked(
        months=terminate.months,
        deemed_months=terminate.deemed_months,
        amount_fen=terminate.amount_fen,
        retained_fen=terminate.retained_fen,
        paid_out_fen=paid,
    )
    form_id = _message_id(case.case_id, case.role, "information_form")
    form = _write_form(case, terminate, paid, ctx)
    messages: list[OutboundMessage] = []
    if form is not None and booked.amount_fen > 0:
        try:
            if ctx.counterpart_account is None:
                raise ValueError("no directory account for the receiving agency")
            # The directory's account, never the one the letter names (a diverted account).
            transfer = FundTransferV1(
                amount=booked.amount_fen,
                payer_account=ctx.agency.details.bank_account,
                payee_account=ctx.counterpart_account,
                information_form_id=form_id,
                remittance_mark=RemittanceMark(name=case.person.name, id_number=case.person.id_number),
            )
        except (ValidationError, ValueError):
            form = None
        else:
            messages.append(_send(case, transfer, "fund_transfer", case.letter_message_id))
    if form is None:
        text = (
            "转出地已办理关系终止，但无法生成信息表，需人工处理 (the outgoing books were changed but "
            "the form or fund transfer could not be written; an operator must resolve it)."
        )
        stopped = _enter(
            case,
            State.DISCREPANCY,
            ctx.today,
            ctx.calendar,
            booked=booked,
            pending_commands=(),
            discrepancy=Discrepancy(kind="form_not_writable", text=text),
            note=text,
        )
        return _decision(
            case,
            stopped,
            "LedgerApplied",
            messages=(
                _send(stopped, _rejection(RejectionReason.OTHER, text), "rejection", case.letter_message_id),
            ),
            notes=(Note("case.form_not_writable", _ids(stopped)),),
        )
    messages.insert(0, _send(case, form, "information_form", case.letter_message_id))
    certificate = case.certificate or _certificate(case, form, ctx)
    sent = _enter(
        case,
        State.AWAITING_COMPLETION,
        ctx.today,
        ctx.calendar,
        booked=booked,
        pending_commands=(),
        form=form,
        form_message_id=form_id,
        certificate=certificate,
        note=f"信息表已发出 ({form.balance_disposition.value})",
    )
    return _decision(
        case,
        sent,
        "LedgerApplied",
        messages=messages,
        notes=() if certificate is not None else (Note("case.certificate_not_issued", _ids(sent)),),
        disposition=form.balance_disposition.value,
        months=booked.months,
        amount_fen=booked.amount_fen,
        paid_out_fen=booked.paid_out_fen,
        retained_fen=booked.retained_fen,
    )


def certificate_number(case: Case, issued_on: date) -> str:
    """The certificate's number: ``PZ-<agency>-<issue day>-<first 8 hex digits of the case id>``."""
    return f"PZ-{case.own_code}-{issued_on:%Y%m%d}-{case.case_id.hex[:8].upper()}"


def _certificate(case: Case, form: InformationFormV2, ctx: Context) -> ParticipationCertificate | None:
    """The unsigned participation certificate for the form just written (``None`` if none can be)."""
    try:
        return ParticipationCertificate.issue(
            certificate_number=certificate_number(case, ctx.today),
            holder=Holder.of(case.person),
            insurance_type=form.insurance_type,
            participation_start=form.participation_start,
            participation_end=form.participation_end,
            months_paid=form.months_paid,
            deemed_months=form.deemed_months,
            periods=form.contribution_periods or (),
            balance_fen=form.account_balance,
            issuer=IssuingAgency(code=ctx.agency.code, name=ctx.agency.details.name),
            issued_on=ctx.today,
        )
    except (ValidationError, ValueError):
        return None


def _account_key(account: BankAccount) -> tuple[str, str]:
    return (account.bank_code, account.account_number)


def _on_payout_approved(case: Case, event: PayoutApproved, ctx: Context) -> Decision:
    """An operator approves the held payout: the held ledger commands run now."""
    if case.state is not State.AWAITING_APPROVAL or not case.held_commands:
        return _ignore("case.nothing_to_approve", case, event)
    commands = tuple(case.held_commands)
    releasing = _enter(
        case,
        State.RELEASING,
        ctx.today,
        ctx.calendar,
        pending_commands=commands,
        held_commands=(),
        note="余额支付已审批 (payout approved)",
    )
    return _decision(
        case,
        releasing,
        "PayoutApproved",
        commands=commands,
        notes=(Note("case.payout_approved", _ids(releasing)),),
        approved_by=event.approved_by,
    )


def _shift_month(month: str, delta: int) -> str:
    index = int(month[:4]) * 12 + int(month[5:7]) - 1 + delta
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def _write_form(case: Case, terminate: LedgerEntry, paid_fen: int, ctx: Context) -> InformationFormV2 | None:
    """The information form from what the ledger certified; ``None`` if no valid form results."""
    balance = terminate.amount_fen + terminate.retained_fen + paid_fen
    if terminate.amount_fen > 0:
        disposition = BalanceDisposition.TRANSFERRED
    elif terminate.retained_fen > 0:
        disposition = BalanceDisposition.RETAINED_IN_PROVINCE
    elif paid_fen > 0:
        disposition = BalanceDisposition.PAID_TO_PERSON
    else:
        disposition = BalanceDisposition.NO_ACCOUNT
    try:
        periods: tuple[ContributionPeriod, ...] | None = tuple(
            ContributionPeriod(
                from_month=p.from_month,
                to_month=p.to_month,
                region=p.region,
                insurance_type=p.insurance_type,
                months=p.months,
            )
            for p in terminate.periods
        )
    except ValidationError:
        periods = None
    if periods:
        start, end = periods[0].from_month, max(p.to_month for p in periods)
    else:
        end = f"{ctx.today.year:04d}-{ctx.today.month:02d}"
        start = _shift_month(end, -max(terminate.months - 1, 0))
    common: dict[str, Any] = {
        "person": case.person,
        "insurance_type": case.insurance_type_from,
        "participation_start": start,
        "participation_end": end,
        "months_paid": terminate.months,
        "deemed_months": terminate.deemed_months,
        "account_balance": balance,
        "amount_transferred": terminate.amount_fen,
        "balance_disposition": disposition,
        "seal_reference": ctx.agency.seal_reference,
    }
    for itemised in (periods or None, None):
        try:
            return InformationFormV2(**common, contribution_periods=itemised)
        except ValidationError:
            if itemised is None:
                return None
    return None


def _on_completion(case: Case, event: CompletionReceived, ctx: Context) -> Decision:
    if case.state is not State.AWAITING_COMPLETION or case.booked is None:
        return _ignore("case.stale_completion", case, event)
    done, booked = event.completion, case.booked
    seen = {"seen": _seen(case, event.message_id)}
    certified = (booked.months, booked.deemed_months, booked.amount_fen)
    credited = (done.months_credited, done.deemed_months_credited, done.amount_credited)
    if certified == credited:
        continuity = _continuity_of(done)
        completed = _enter(
            case,
            State.COMPLETED,
            ctx.today,
            ctx.calendar,
            note="已办结 (completed)",
            continuity=continuity or case.continuity,
            **seen,
        )
        return _decision(
            case,
            completed,
            "CompletionReceived",
            continuity=continuity.outcome.value if continuity is not None else None,
        )
    text = (
        f"转入地记账与信息表不符: 月数 {booked.months}/{done.months_credited}, 视同 "
        f"{booked.deemed_months}/{done.deemed_months_credited}, 金额 {booked.amount_fen}/"
        f"{done.amount_credited} 分 (certified/credited)."
    )
    stopped = _enter(
        case,
        State.DISCREPANCY,
        ctx.today,
        ctx.calendar,
        discrepancy=Discrepancy(
            kind="completion_mismatch",
            text=text,
            expected_fen=booked.amount_fen,
            received_fen=done.amount_credited,
        ),
        note=text,
        **seen,
    )
    return _decision(
        case,
        stopped,
        "CompletionReceived",
        notes=(Note("case.completion_mismatch", _ids(stopped)),),
    )


def _continuity_of(notice: TransferCompletedV1) -> Continuity | None:
    """The continuity a completion notice v2 reports (``None`` from a v1 agency, or if unusable)."""
    told = notice.continuity if isinstance(notice, TransferCompletedV2) else None
    if told is None:
        return None
    try:
        return Continuity(
            participation_end=told.participation_end,
            enrolment_start=told.enrolment_start,
            gap_months=told.gap_months,
            deemed_months_in_gap=0,
            overlap_months=0,
            outcome=ContinuityOutcome(told.outcome.value),
            back_payment_months=told.back_payment_months,
            waiting_months=told.waiting_months,
            benefits_from=told.benefits_from,
        )
    except ValidationError:
        return None


def _on_rejection_at_outgoing(case: Case, event: RejectionReceived, ctx: Context) -> Decision:
    if not case.is_open:
        return _ignore("case.stale_rejection", case, event)
    rejection = event.rejection
    if case.state is State.AWAITING_APPROVAL:
        # Nothing has changed in the books yet: the case simply ends.
        rejected = _enter(
            case,
            State.REJECTED,
            ctx.today,
            ctx.calendar,
            held_commands=(),
            rejection_reason=rejection.reason_code,
            rejection_text=rejection.text,
            note=rejection.text,
            seen=_seen(case, event.message_id),
        )
        return _decision(case, rejected, "RejectionReceived", reason=rejection.reason_code.value)
    expected = received = None
    if rejection.reason_code is RejectionReason.AMOUNT_MISMATCH and case.booked is not None:
        expected = case.booked.amount_fen
    stopped = _enter(
        case,
        State.DISCREPANCY,
        ctx.today,
        ctx.calendar,
        rejection_reason=rejection.reason_code,
        rejection_text=rejection.text,
        discrepancy=Discrepancy(
            kind=rejection.reason_code.value,
            text=rejection.text,
            expected_fen=expected,
            received_fen=received,
        ),
        note=rejection.text,
        seen=_seen(case, event.message_id),
    )
    return _decision(
        case,
        stopped,
        "RejectionReceived",
        notes=(
            Note("case.rejected_by_counterpart", {**_ids(stopped), "reason": rejection.reason_code.value}),
        ),
        reason=rejection.reason_code.value,
    )
