"""Deadlines: every waiting state's due date under both regimes, reminders and their cadence."""

from __future__ import annotations

from datetime import date, timedelta
from uuid import uuid4

import pytest

from agents.domain.case import ReminderReceived, State, Tick, decide
from agents.domain.deadlines import Regime
from agents.domain.policy import REMINDER_INTERVAL_WORKING_DAYS
from agents.domain.workdays import WorkingCalendar
from schemas.notices import OverdueStep, ReminderV1
from tests.unit.case_world import (
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
IN = "110000"
MONDAY = date(2025, 3, 3)

# Working days per step: (letter → form and funds, form → completion, whole flow).
LIMITS = {Regime.R2016: (15, 15, 45), Regime.R2021: (10, 5, 15)}


def weekdays_after(start: date, n: int) -> date:
    return WeekdayCalendar().add_working_days(start, n)


def world_for(
    regime: Regime,
    *,
    calendar: object | None = None,
    today: date = MONDAY,
    out_regime: Regime | None = None,
) -> tuple[World, Agent, Agent]:
    who = person()
    cal = calendar if calendar is not None else WeekdayCalendar()
    receiving = Agent(agency(IN, regime), Books(IN, {who.id_number: receiving_account(who, IN)}), cal)
    outgoing = Agent(
        agency(OUT, out_regime or regime), Books(OUT, {who.id_number: outgoing_account(who, OUT)}), cal
    )
    return World.of(receiving, outgoing, today=today), receiving, outgoing


@pytest.mark.parametrize("regime", list(Regime))
def test_awaiting_form_is_due_the_letter_limit_after_acceptance_and_is_the_outgoing_turn(
    regime: Regime,
) -> None:
    _world, receiving, _ = world_for(regime)
    case_id = receiving.apply_for(person(), OUT, MONDAY)

    case = receiving.case(case_id)
    letter_limit, _, whole = LIMITS[regime]
    assert case.state is State.AWAITING_FORM
    assert case.waiting_since == MONDAY
    assert case.due_date == weekdays_after(MONDAY, letter_limit)
    assert case.flow_due_date == weekdays_after(MONDAY, whole)
    assert case.whose_turn == OUT and case.overdue_step is OverdueStep.INFORMATION_FORM


@pytest.mark.parametrize(
    ("regime", "due"), [(Regime.R2021, date(2025, 10, 16)), (Regime.R2016, date(2025, 10, 23))]
)
def test_due_dates_count_chinas_working_days_across_national_day(regime: Regime, due: date) -> None:
    # 2025: 28 Sep (Sunday) and 11 Oct (Saturday) are worked; 1-8 Oct are holidays.
    friday = date(2025, 9, 26)
    _world, receiving, _ = world_for(regime, calendar=WorkingCalendar(), today=friday)
    case_id = receiving.apply_for(person(), OUT, friday)
    assert receiving.case(case_id).due_date == due


@pytest.mark.parametrize("regime", list(Regime))
def test_outgoing_releasing_is_its_own_turn_due_the_letter_limit_after_the_letter(regime: Regime) -> None:
    world, receiving, outgoing = world_for(regime)
    outgoing.run_commands = False
    case_id = receiving.apply_for(person(), OUT, MONDAY)
    world.today = MONDAY + timedelta(days=1)
    world.pump()

    case = outgoing.case(case_id)
    assert case.state is State.RELEASING
    assert case.waiting_since == world.today and case.whose_turn == OUT
    assert case.due_date == weekdays_after(world.today, LIMITS[regime][0])


@pytest.mark.parametrize("regime", list(Regime))
def test_awaiting_funds_keeps_the_form_due_date_and_names_the_fund_transfer(regime: Regime) -> None:
    world, receiving, outgoing = world_for(regime)
    case_id = receiving.apply_for(person(), OUT, MONDAY)
    (letter,) = receiving.outbox
    receiving.outbox.clear()
    world.deliver(letter)
    form, _funds = outgoing.outbox
    outgoing.outbox.clear()
    world.today = MONDAY + timedelta(days=2)
    world.deliver(form)

    case = receiving.case(case_id)
    assert case.state is State.AWAITING_FUNDS
    assert case.due_date == weekdays_after(MONDAY, LIMITS[regime][0])
    assert case.waiting_since == MONDAY
    assert case.overdue_step is OverdueStep.FUND_TRANSFER and case.whose_turn == OUT


@pytest.mark.parametrize("regime", list(Regime))
def test_completion_is_due_the_form_limit_after_the_form_at_both_ends(regime: Regime) -> None:
    world, receiving, outgoing = world_for(regime)
    receiving.run_commands = False  # the credit has not run yet: the completion is still owed
    case_id = receiving.apply_for(person(), OUT, MONDAY)
    world.today = MONDAY + timedelta(days=1)
    world.pump()

    form_limit = LIMITS[regime][1]
    at_receiving, at_outgoing = receiving.case(case_id), outgoing.case(case_id)
    assert at_receiving.state is State.CREDITING and at_receiving.whose_turn == IN
    assert at_receiving.due_date == weekdays_after(world.today, form_limit)
    assert at_outgoing.state is State.AWAITING_COMPLETION and at_outgoing.whose_turn == IN
    assert at_outgoing.waiting_since == world.today
    assert at_outgoing.due_date == weekdays_after(world.today, form_limit)
    assert at_outgoing.overdue_step is OverdueStep.TRANSFER_COMPLETED


def test_a_case_keeps_the_regime_it_opened_with() -> None:
    world, receiving, _outgoing = world_for(Regime.R2016)
    receiving.run_commands = False
    case_id = receiving.apply_for(person(), OUT, MONDAY)
    receiving.agency = agency(IN, Regime.R2021)
    world.pump()

    assert receiving.case(case_id).regime is Regime.R2016
    assert receiving.case(case_id).due_date == weekdays_after(MONDAY, 15)


@pytest.mark.parametrize("regime", list(Regime))
def test_an_overdue_form_is_reminded_once_then_every_interval(regime: Regime) -> None:
    _world, receiving, _outgoing = world_for(regime)
    case_id = receiving.apply_for(person(), OUT, MONDAY)
    receiving.outbox.clear()  # the letter is lost: the form never comes
    due = receiving.case(case_id).due_date
    assert due is not None

    receiving.tick(due)
    assert receiving.outbox == []  # on time on the due date itself

    overdue = due + timedelta(days=1)
    while overdue.weekday() >= 5:
        overdue += timedelta(days=1)
    receiving.tick(overdue)
    (sent,) = receiving.outbox
    reminder = sent.message.document
    assert isinstance(reminder, ReminderV1) and sent.message.recipient == OUT
    assert reminder.overdue_step is OverdueStep.INFORMATION_FORM
    assert (reminder.waiting_since, reminder.due_on) == (MONDAY, due)
    assert receiving.case(case_id).reminders_sent == 1
    assert "case.reminder_sent" in note_events(receiving.notes)

    later = overdue
    for _ in range(REMINDER_INTERVAL_WORKING_DAYS - 1):
        later = weekdays_after(later, 1)
        receiving.tick(later)
    assert len(receiving.outbox) == 1  # not again within the interval

    receiving.tick(weekdays_after(later, 1))
    assert len(receiving.outbox) == 2
    first, second = receiving.outbox
    assert first.message.message_id != second.message.message_id
    assert receiving.case(case_id).reminders_sent == 2


def test_a_reminder_arrives_as_a_note_and_changes_nothing() -> None:
    world, receiving, outgoing = world_for(Regime.R2021)
    outgoing.run_commands = False
    case_id = receiving.apply_for(person(), OUT, MONDAY)
    world.pump()
    due = receiving.case(case_id).due_date
    assert due is not None
    world.tick(weekdays_after(due, 1))
    before = outgoing.case(case_id)

    world.pump(twice=True)

    assert outgoing.case(case_id) == before
    assert "case.reminder_received" in note_events(outgoing.notes)
    assert "case.own_step_overdue" in note_events(outgoing.notes)  # its own releasing step is late


def test_an_overdue_completion_is_reminded_to_the_receiving_agency() -> None:
    world, receiving, outgoing = world_for(Regime.R2021)
    receiving.run_commands = False
    case_id = receiving.apply_for(person(), OUT, MONDAY)
    world.pump()
    due = outgoing.case(case_id).due_date
    assert due is not None

    outgoing.tick(weekdays_after(due, 1))

    (sent,) = outgoing.outbox
    assert isinstance(sent.message.document, ReminderV1) and sent.message.recipient == IN
    assert sent.message.document.overdue_step is OverdueStep.TRANSFER_COMPLETED
    assert sent.message.causation_id == outgoing.case(case_id).form_message_id


def test_the_reminder_count_starts_again_in_the_next_state() -> None:
    world, receiving, outgoing = world_for(Regime.R2021)
    case_id = receiving.apply_for(person(), OUT, MONDAY)
    (letter,) = receiving.outbox
    receiving.outbox.clear()
    due = receiving.case(case_id).due_date
    assert due is not None
    world.today = weekdays_after(due, 1)
    receiving.tick(world.today)
    assert receiving.case(case_id).reminders_sent == 1
    receiving.outbox.clear()

    world.deliver(letter)
    form, _funds = outgoing.outbox
    outgoing.outbox.clear()
    world.deliver(form)

    case = receiving.case(case_id)
    assert case.state is State.AWAITING_FUNDS and case.reminders_sent == 0
    receiving.tick(world.today)
    (sent,) = receiving.outbox
    assert isinstance(sent.message.document, ReminderV1)
    assert sent.message.document.overdue_step is OverdueStep.FUND_TRANSFER


def test_a_tick_before_the_due_date_changes_nothing() -> None:
    _world, receiving, _ = world_for(Regime.R2016)
    case_id = receiving.apply_for(person(), OUT, MONDAY)
    case = receiving.case(case_id)
    ctx = receiving._context(case, Tick(today=MONDAY), MONDAY)

    decision = decide(case, Tick(today=MONDAY + timedelta(days=7)), ctx)

    assert decision.case is None and decision.messages == () and decision.commands == ()


def test_a_reminder_for_an_unknown_case_is_only_a_note() -> None:
    _world, receiving, _ = world_for(Regime.R2021)
    ctx = receiving._context(None, Tick(today=MONDAY), MONDAY)
    event = ReminderReceived(
        case_id=uuid4(),
        message_id=uuid4(),
        sender=OUT,
        reminder=ReminderV1(overdue_step=OverdueStep.CONTACT_LETTER, waiting_since=MONDAY, due_on=MONDAY),
    )
    decision = decide(None, event, ctx)
    assert decision.case is None and note_events(decision.notes) == ["case.unknown_case"]
