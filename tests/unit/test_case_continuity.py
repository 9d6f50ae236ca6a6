"""Continuity through the real service: the receiving agency decides it when it credits, records it
in its case and tells the outgoing agency in the completion notice v2 (a v1 agency gets v1); the
outgoing agency issues the signed participation certificate when its books end the relationship.

The outgoing books' periods end 2025-12 (`outgoing_account`); the receiving books give the
person's enrolment start (``PersonAccount.enrolment_start``), or, where they do not, the month of
the application stands in.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from uuid import UUID

import pytest

from agents.domain.case import State
from agents.domain.continuity import ContinuityOutcome, DeemedPeriod, assess_continuity
from agents.domain.deadlines import Regime
from agents.service.certificates import verify_certificate
from schemas.notices import ContinuityOutcome as WireOutcome
from schemas.notices import TransferCompletedV2
from tests.unit.case_world import (
    EVERY_VERSION,
    Agent,
    Books,
    WeekdayCalendar,
    World,
    agency,
    note_events,
    outgoing_account,
    person,
    receiving_account,
)

OUT = "360400"
IN = "440300"
APPLIED = date(2026, 6, 1)  # a Monday after every enrolment start below


def transfer(
    enrolment_start: str | None,
    *,
    regime: Regime = Regime.R2021,
    waiting_months: int = 6,
    deemed: int = 0,
    outgoing_versions: dict[str, tuple[int, ...]] | None = None,
    today: date = APPLIED,
) -> tuple[World, Agent, Agent, UUID]:
    """One transfer OUT → IN, run to the end."""
    who = person()
    calendar = WeekdayCalendar()
    books_in = replace(receiving_account(who, IN), enrolment_start=enrolment_start)
    receiving = Agent(
        replace(agency(IN, regime), waiting_months=waiting_months),
        Books(IN, {who.id_number: books_in}),
        calendar,
    )
    outgoing = Agent(
        agency(OUT, regime),
        Books(OUT, {who.id_number: outgoing_account(who, OUT, deemed=deemed)}),
        calendar,
    )
    if outgoing_versions is not None:
        receiving.versions = {OUT: outgoing_versions}
        outgoing.own_versions = outgoing_versions
    world = World.of(receiving, outgoing, today=today)
    case_id = receiving.apply_for(who, OUT, today)
    world.pump(twice=True)
    assert receiving.case(case_id).state is State.COMPLETED, receiving.case(case_id).note
    assert outgoing.case(case_id).state is State.COMPLETED, outgoing.case(case_id).note
    return world, receiving, outgoing, case_id


@pytest.mark.parametrize("regime", list(Regime))
@pytest.mark.parametrize(
    ("start", "gap", "outcome", "back_payment", "benefits_from"),
    [
        ("2026-01", 0, ContinuityOutcome.KEPT, (), "2026-01"),
        ("2025-11", 0, ContinuityOutcome.KEPT, (), "2025-11"),  # overlapping months: no gap
        ("2026-03", 2, ContinuityOutcome.KEPT_WITH_BACK_PAYMENT, ("2026-01", "2026-02"), "2026-03"),
        (
            "2026-04",
            3,
            ContinuityOutcome.KEPT_WITH_BACK_PAYMENT,
            ("2026-01", "2026-02", "2026-03"),
            "2026-04",
        ),
        ("2026-05", 4, ContinuityOutcome.BROKEN, (), "2026-11"),
    ],
)
def test_every_gap_class_is_decided_by_the_receiving_case_and_told_to_the_outgoing(
    regime: Regime,
    start: str,
    gap: int,
    outcome: ContinuityOutcome,
    back_payment: tuple[str, ...],
    benefits_from: str,
) -> None:
    world, receiving, outgoing, case_id = transfer(start, regime=regime)

    decided = receiving.case(case_id).continuity
    assert decided is not None
    assert (decided.participation_end, decided.enrolment_start) == ("2025-12", start)
    assert (decided.gap_months, decided.outcome) == (gap, outcome)
    assert decided.back_payment_months == back_payment
    assert decided.waiting_months == (6 if outcome is ContinuityOutcome.BROKEN else 0)
    assert decided.benefits_from == benefits_from
    # The notice went as v2 and the outgoing case keeps what it said.
    assert (OUT, "transfer_completed", 2) in world.delivered
    told = outgoing.case(case_id).continuity
    assert told is not None
    assert (told.outcome, told.gap_months, told.waiting_months, told.benefits_from) == (
        outcome,
        gap,
        decided.waiting_months,
        benefits_from,
    )
    assert told.back_payment_months == back_payment


@pytest.mark.parametrize("regime", list(Regime))
@pytest.mark.parametrize(("waiting", "benefits_from"), [(6, "2027-03"), (3, "2026-12"), (0, "2026-09")])
def test_a_broken_continuity_waits_as_long_as_the_receiving_agency_is_configured(
    regime: Regime, waiting: int, benefits_from: str
) -> None:
    _, receiving, outgoing, case_id = transfer("2026-09", regime=regime, waiting_months=waiting)

    decided = receiving.case(case_id).continuity
    assert decided is not None
    assert (decided.gap_months, decided.outcome) == (8, ContinuityOutcome.BROKEN)
    assert (decided.waiting_months, decided.benefits_from) == (waiting, benefits_from)
    told = outgoing.case(case_id).continuity
    assert told is not None and told.waiting_months == waiting


def test_a_gap_across_the_year_counts_the_months_of_both_years() -> None:
    # Ended 2025-12, enrolled 2026-04: 2026-01 to 2026-03 (three months, none in 2025); ended
    # 2025-12, enrolled 2026-05: four months, broken. A gap from November to March is the pure
    # module's case too (tests/unit/test_continuity.py); here through the service:
    _, receiving, _, case_id = transfer("2026-04")
    decided = receiving.case(case_id).continuity
    assert decided is not None and decided.back_payment_months == ("2026-01", "2026-02", "2026-03")

    _, receiving, _, case_id = transfer("2027-01")
    decided = receiving.case(case_id).continuity
    assert decided is not None
    assert (decided.gap_months, decided.outcome, decided.benefits_from) == (
        12,
        ContinuityOutcome.BROKEN,
        "2027-07",
    )


def test_without_an_enrolment_start_in_the_books_the_application_month_stands_in() -> None:
    _, receiving, _, case_id = transfer(None, today=date(2026, 3, 2))

    case = receiving.case(case_id)
    assert case.enrolment_start == "2026-03"
    assert case.continuity is not None
    assert (case.continuity.gap_months, case.continuity.outcome) == (
        2,
        ContinuityOutcome.KEPT_WITH_BACK_PAYMENT,
    )


def test_deemed_months_certified_as_a_count_do_not_fill_a_gap() -> None:
    # The information form certifies deemed months (视同缴费) as a number only: it cannot place
    # them in time, so they cover no month of the gap and the transfer is decided on the gap.
    _, receiving, _, case_id = transfer("2026-05", deemed=24)
    decided = receiving.case(case_id).continuity
    assert decided is not None
    assert (decided.gap_months, decided.deemed_months_in_gap) == (4, 0)
    assert decided.outcome is ContinuityOutcome.BROKEN
    # A deemed period placed in time does cover the months (the pure rule the case uses):
    covered = assess_continuity(
        "2025-12", "2026-05", deemed=(DeemedPeriod(from_month="2026-01", to_month="2026-02"),)
    )
    assert (covered.gap_months, covered.deemed_months_in_gap, covered.outcome) == (
        2,
        2,
        ContinuityOutcome.KEPT_WITH_BACK_PAYMENT,
    )


def test_an_outgoing_agency_on_v1_gets_a_v1_completion_and_still_completes() -> None:
    v1_completion = {**EVERY_VERSION, "transfer_completed": (1,)}
    world, receiving, outgoing, case_id = transfer("2026-05", outgoing_versions=v1_completion)

    assert (OUT, "transfer_completed", 1) in world.delivered
    assert (OUT, "transfer_completed", 2) not in world.delivered
    assert receiving.case(case_id).continuity is not None  # decided all the same
    assert outgoing.case(case_id).continuity is None  # a v1 notice does not say


def test_the_completion_notice_v2_carries_the_decision() -> None:
    who = person()
    calendar = WeekdayCalendar()
    receiving = Agent(
        agency(IN),
        Books(IN, {who.id_number: replace(receiving_account(who, IN), enrolment_start="2026-04")}),
        calendar,
    )
    outgoing = Agent(agency(OUT), Books(OUT, {who.id_number: outgoing_account(who, OUT)}), calendar)
    world = World.of(receiving, outgoing, today=APPLIED)
    receiving.apply_for(who, OUT, APPLIED)
    notices = []
    while True:
        pending = [*receiving.outbox, *outgoing.outbox]
        receiving.outbox.clear()
        outgoing.outbox.clear()
        if not pending:
            break
        for sent in pending:
            if sent.message.document.MESSAGE_TYPE == "transfer_completed":
                notices.append(sent.message.document)
            world.deliver(sent)
    (notice,) = notices
    assert isinstance(notice, TransferCompletedV2) and notice.continuity is not None
    assert notice.continuity.outcome is WireOutcome.KEPT_WITH_BACK_PAYMENT
    assert notice.continuity.back_payment_months == ("2026-01", "2026-02", "2026-03")
    assert (notice.continuity.gap_months, notice.continuity.waiting_months) == (3, 0)


def test_the_outgoing_case_holds_a_signed_certificate_the_directory_verifies() -> None:
    _, _, outgoing, case_id = transfer("2026-01")

    case = outgoing.case(case_id)
    certificate = case.certificate
    assert certificate is not None and certificate.signature is not None
    assert case.form is not None
    assert certificate.holder.id_number == case.person.id_number
    assert certificate.issuer.code == OUT
    assert certificate.issued_on == APPLIED
    assert certificate.register_by == date(2026, 9, 1)
    assert (certificate.participation_start, certificate.participation_end) == (
        case.form.participation_start,
        case.form.participation_end,
    )
    assert certificate.months_paid == case.form.months_paid == 120
    assert certificate.balance_fen == case.form.account_balance == 1_234_567
    assert certificate.periods == case.form.contribution_periods
    assert certificate.certificate_number == f"PZ-{OUT}-20260601-{case_id.hex[:8].upper()}"
    verified = verify_certificate(
        certificate,
        outgoing.service.directory,
        printed_check_code=certificate.check_code,
        on=APPLIED,
    )
    assert verified == certificate


def test_the_receiving_case_holds_no_certificate() -> None:
    _, receiving, _, case_id = transfer("2026-01")
    assert receiving.case(case_id).certificate is None


def test_a_form_that_cannot_make_a_certificate_leaves_it_out_and_the_transfer_goes_on() -> None:
    # The outgoing books certify months up to 2025-12; on 2025-03-03 a certificate cannot be
    # issued for them (its last month would lie after the month of issue).
    who = person()
    calendar = WeekdayCalendar()
    receiving = Agent(agency(IN), Books(IN, {who.id_number: receiving_account(who, IN)}), calendar)
    outgoing = Agent(agency(OUT), Books(OUT, {who.id_number: outgoing_account(who, OUT)}), calendar)
    world = World.of(receiving, outgoing, today=date(2025, 3, 3))
    case_id = receiving.apply_for(who, OUT, date(2025, 3, 3))
    world.pump()

    assert outgoing.case(case_id).state is State.COMPLETED
    assert outgoing.case(case_id).certificate is None
    assert "case.certificate_not_issued" in note_events(outgoing.notes)
