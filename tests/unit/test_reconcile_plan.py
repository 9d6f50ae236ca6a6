"""`reconcile_step`, the reconciler's pure decision: a record and an event in, the next record and
what to queue out; the record given is never changed."""

from __future__ import annotations

from datetime import date, datetime
from uuid import UUID

from agents.domain.clock import CHINA_TZ
from agents.domain.workdays import WorkingCalendar
from agents.reconcile.plan import (
    Event,
    FormCopy,
    Plan,
    Rules,
    StatementCopy,
    SweepTick,
    TerminalCopy,
    reconcile_step,
)
from agents.reconcile.records import ReconciledCase, RequestRow
from schemas.common import Document, Gender, InsuranceType, Person, make_citizen_id
from schemas.envelope import Envelope
from schemas.information import BalanceDisposition, InformationFormV2
from schemas.notices import TransferCompletedV1
from schemas.reconciliation import LedgerStatementV1, ReconciliationOutcome, Role
from schemas.registry import envelope_for

OUT, IN, RECONCILER = "360400", "440300", "000000"
CASE = UUID("3c9a4d2e-1f0b-4a7c-9e8d-554433221100")
BALANCE, MONTHS = 50_000, 36
SENT = datetime(2026, 3, 2, 9, 0, tzinfo=CHINA_TZ)  # a Monday
RULES = Rules(code=RECONCILER, calendar=WorkingCalendar(package_years=range(2004, 2027)))

FORM = InformationFormV2(
    person=Person(
        name="李娜", gender=Gender.FEMALE, id_number=make_citizen_id("360402", date(1990, 1, 2), 24)
    ),
    insurance_type=InsuranceType.EMPLOYEE,
    participation_start="2020-01",
    participation_end="2022-12",
    months_paid=MONTHS,
    deemed_months=0,
    account_balance=BALANCE,
    amount_transferred=BALANCE,
    balance_disposition=BalanceDisposition.TRANSFERRED,
    contribution_periods=None,
    seal_reference=None,
)
DONE = TransferCompletedV1(months_credited=MONTHS, deemed_months_credited=0, amount_credited=BALANCE)


def envelope(sender: str, document: Document, causation_id: UUID | None = None) -> Envelope:
    return envelope_for(
        document,
        sender=sender,
        recipient=RECONCILER,
        case_id=CASE,
        causation_id=causation_id,
        sent_at=SENT,
    )


def statement(role: Role, amount: int = BALANCE) -> LedgerStatementV1:
    return LedgerStatementV1(
        case_id=CASE,
        role=role,
        counterpart=IN if role is Role.OUTGOING else OUT,
        has_record=True,
        months=MONTHS,
        deemed_months=0,
        amount=amount,
        paid_out=0,
        retained=0,
    )


def fresh() -> ReconciledCase:
    return ReconciledCase(case_id=CASE, first_seen=SENT)


def step(record: ReconciledCase, event: Event, on: date = date(2026, 3, 2)) -> Plan:
    now = datetime(on.year, on.month, on.day, 10, tzinfo=CHINA_TZ)
    return reconcile_step(record, event, RULES, now=now, today=on)


def answer(plan: Plan, sender: str, document: LedgerStatementV1) -> StatementCopy:
    [request] = [r for r in plan.requests if r.recipient == sender]
    return StatementCopy(envelope(sender, document, request.message_id), document, request)


def test_a_form_names_the_outgoing_agency_and_asks_nobody_while_the_case_is_open() -> None:
    before = fresh()
    plan = step(before, FormCopy(envelope(OUT, FORM), FORM))
    assert plan.record.outgoing == OUT and plan.record.form == FORM
    assert plan.record.form_sent_on == date(2026, 3, 2)
    assert plan.envelopes == () and plan.requests == ()
    assert before == fresh()  # the record given is not changed


def test_a_completion_asks_both_known_ends_for_final_statements_with_ids_from_their_content() -> None:
    formed = step(fresh(), FormCopy(envelope(OUT, FORM), FORM)).record
    plan = step(formed, TerminalCopy(envelope(IN, DONE), "transfer_completed"))
    assert [(e.type, e.recipient) for e in plan.envelopes] == [
        ("statement_request", OUT),
        ("statement_request", IN),
    ]
    assert [(r.purpose, r.round) for r in plan.requests] == [("final", 1), ("final", 1)]
    assert [r.message_id for r in plan.requests] == [e.message_id for e in plan.envelopes]
    again = step(formed, TerminalCopy(envelope(IN, DONE), "transfer_completed"))
    assert [e.message_id for e in again.envelopes] == [e.message_id for e in plan.envelopes]
    assert [line.event for line in plan.logs] == ["reconcile.case_ended"]
    assert formed.terminal is None


def test_both_final_statements_give_a_result_to_both_agencies_and_a_repeat_gives_nothing() -> None:
    formed = step(fresh(), FormCopy(envelope(OUT, FORM), FORM)).record
    ended = step(formed, TerminalCopy(envelope(IN, DONE), "transfer_completed"))
    half = step(ended.record, answer(ended, OUT, statement(Role.OUTGOING)))
    assert half.envelopes == () and half.record.result is None
    done = step(half.record, answer(ended, IN, statement(Role.RECEIVING)))
    assert done.compared
    assert done.record.result is not None
    assert done.record.result.outcome is ReconciliationOutcome.MATCHED
    assert [(e.type, e.recipient) for e in done.envelopes] == [
        ("reconciliation_result", OUT),
        ("reconciliation_result", IN),
    ]
    assert [line.event for line in done.logs] == ["reconcile.matched"]
    repeat = step(done.record, answer(ended, IN, statement(Role.RECEIVING)))
    assert repeat.envelopes == () and not repeat.compared


def test_a_changed_final_statement_gives_a_new_mismatched_result() -> None:
    formed = step(fresh(), FormCopy(envelope(OUT, FORM), FORM)).record
    ended = step(formed, TerminalCopy(envelope(IN, DONE), "transfer_completed"))
    half = step(ended.record, answer(ended, OUT, statement(Role.OUTGOING))).record
    matched = step(half, answer(ended, IN, statement(Role.RECEIVING)))
    changed = step(matched.record, answer(ended, IN, statement(Role.RECEIVING, amount=BALANCE + 1)))
    assert changed.record.result is not None
    assert changed.record.result.outcome is ReconciliationOutcome.MISMATCHED
    assert len(changed.envelopes) == 2
    assert {e.message_id for e in changed.envelopes}.isdisjoint(e.message_id for e in matched.envelopes)
    assert [line.level for line in changed.logs] == ["warning"]


def test_the_sweep_leaves_a_case_on_time_alone_and_probes_money_in_flight_past_its_due_date() -> None:
    formed = step(fresh(), FormCopy(envelope(OUT, FORM), FORM)).record
    on_time = step(formed, SweepTick(), on=date(2026, 3, 9))
    assert not on_time.changed and on_time.envelopes == ()
    late = step(formed, SweepTick(), on=date(2026, 3, 10))
    assert late.changed and late.record.stuck and late.record.overdue_since == date(2026, 3, 10)
    assert [(r.purpose, r.recipient) for r in late.requests] == [("probe", OUT)]
    [warning] = late.logs
    assert warning.event == "reconcile.money_in_flight_overdue" and warning.fields["due_on"] == "2026-03-09"
    next_day = step(late.record, SweepTick(), on=date(2026, 3, 11))
    assert next_day.changed and next_day.requests == ()  # the repeat interval is in working days


def test_a_late_probe_answer_never_replaces_a_final_statement() -> None:
    formed = step(fresh(), FormCopy(envelope(OUT, FORM), FORM)).record
    probed = step(formed, SweepTick(), on=date(2026, 3, 10))
    ended = step(probed.record, TerminalCopy(envelope(IN, DONE), "transfer_completed"))
    final = step(ended.record, answer(ended, OUT, statement(Role.OUTGOING))).record
    late = step(final, answer(probed, OUT, statement(Role.OUTGOING, amount=1)))
    assert late.record.statements[OUT].statement.amount == BALANCE


def test_a_statement_naming_another_request_is_taken_by_whether_the_case_ended() -> None:
    stranger = RequestRow(UUID(int=1), CASE, IN, "probe", 1)  # a request to someone else
    ended = step(fresh(), TerminalCopy(envelope(IN, DONE), "transfer_completed")).record
    document = statement(Role.OUTGOING)
    plan = step(ended, StatementCopy(envelope(OUT, document, stranger.message_id), document, stranger))
    assert plan.record.statements[OUT].final


STRANGER = "510100"


def test_a_strangers_form_copy_does_not_make_it_the_outgoing_agency_and_the_real_one_is_asked() -> None:
    # Issue 13: a stranger's copy of a form used to make it the outgoing party (first claim won),
    # and the real outgoing agency was never asked for its statement.
    forged = FORM.model_copy(update={"amount_transferred": 1, "account_balance": 1})
    first = step(fresh(), FormCopy(envelope(STRANGER, forged), forged)).record
    formed = step(first, FormCopy(envelope(OUT, FORM), FORM)).record
    assert formed.outgoing is None and not formed.confirmed  # contested: nobody's yet
    ended = step(formed, TerminalCopy(envelope(IN, DONE), "transfer_completed"))
    asked = {e.recipient for e in ended.envelopes if e.type == "statement_request"}
    assert {OUT, IN} <= asked  # the real agency is asked
    out = step(ended.record, answer(ended, OUT, statement(Role.OUTGOING)))
    done = step(out.record, answer(ended, IN, statement(Role.RECEIVING)))
    record = done.record
    assert (record.outgoing, record.receiving, record.confirmed) == (OUT, IN, True)
    assert record.parties == [OUT, IN]
    assert record.form == FORM  # the outgoing agency's own form, not the stranger's
    assert record.result is not None and record.result.outcome is ReconciliationOutcome.MATCHED
    assert {e.recipient for e in done.envelopes} == {OUT, IN}
    [dropped] = [line for line in done.logs if line.event == "reconcile.party_not_corroborated"]
    assert dropped.level == "warning" and dropped.fields["agency"] == STRANGER
    # From now on the stranger's documents are ignored and reported.
    later = step(record, FormCopy(envelope(STRANGER, forged), forged))
    assert later.record.form == FORM and later.envelopes == ()
    assert [line.event for line in later.logs] == ["reconcile.form_from_stranger"]


def test_a_strangers_statement_claiming_a_side_does_not_fit_and_changes_no_result() -> None:
    formed = step(fresh(), FormCopy(envelope(OUT, FORM), FORM)).record
    ended = step(formed, TerminalCopy(envelope(IN, DONE), "transfer_completed"))
    lie = LedgerStatementV1(
        case_id=CASE, role=Role.OUTGOING, counterpart=IN, has_record=True, months=MONTHS,
        deemed_months=0, amount=1, paid_out=0, retained=0,
    )
    meddled = step(ended.record, StatementCopy(envelope(STRANGER, lie), lie, None))
    assert meddled.record.outgoing is None and meddled.record.result is None  # two claim "outgoing"
    out = step(meddled.record, answer(ended, OUT, statement(Role.OUTGOING)))
    done = step(out.record, answer(ended, IN, statement(Role.RECEIVING)))
    assert (done.record.outgoing, done.record.receiving) == (OUT, IN)
    assert done.record.result is not None
    assert done.record.result.outcome is ReconciliationOutcome.MATCHED
    assert STRANGER not in done.record.parties


def test_the_first_form_alone_is_only_a_claim_until_the_other_side_names_its_sender() -> None:
    formed = step(fresh(), FormCopy(envelope(OUT, FORM), FORM)).record
    assert formed.outgoing == OUT and not formed.confirmed  # provisional: the one claimant
    ended = step(formed, TerminalCopy(envelope(IN, DONE), "transfer_completed"))
    # IN's books name someone else as the outgoing agency: OUT's claim is not corroborated.
    other = statement(Role.RECEIVING).model_copy(update={"counterpart": STRANGER})
    plan = step(ended.record, answer(ended, IN, other))
    assert not plan.record.confirmed and plan.record.result is None
    assert STRANGER in plan.record.parties  # asked in turn
