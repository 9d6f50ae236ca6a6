"""Time: the deadline fields a state carries (`_enter`) and what a `Tick` does (reminders, re-issued
ledger commands).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from agents.domain import policy
from agents.domain.case.decision import (
    Context,
    Decision,
    Note,
    OutboundMessage,
    TransitionRecord,
    _ids,
    _send,
)
from agents.domain.case.model import Case, Role, State
from agents.domain.deadlines import Step, due_date
from agents.domain.workdays import WorkdayCalendar
from schemas.notices import OverdueStep, ReminderV1

__all__: list[str] = []


_DEADLINES: Mapping[State, tuple[Step, OverdueStep, bool]] = {
    # state: (step, document owed, counterpart's turn?)
    State.AWAITING_FORM: (Step.LETTER_TO_FORM_AND_FUNDS, OverdueStep.INFORMATION_FORM, True),
    State.AWAITING_FUNDS: (Step.LETTER_TO_FORM_AND_FUNDS, OverdueStep.FUND_TRANSFER, True),
    State.CREDITING: (Step.FORM_TO_COMPLETION, OverdueStep.TRANSFER_COMPLETED, False),
    State.AWAITING_APPROVAL: (Step.LETTER_TO_FORM_AND_FUNDS, OverdueStep.INFORMATION_FORM, False),
    State.RELEASING: (Step.LETTER_TO_FORM_AND_FUNDS, OverdueStep.INFORMATION_FORM, False),
    State.AWAITING_COMPLETION: (Step.FORM_TO_COMPLETION, OverdueStep.TRANSFER_COMPLETED, True),
}


def _enter(case: Case, state: State, today: date, calendar: WorkdayCalendar, **updates: Any) -> Case:
    """``case`` moved to ``state``, with the deadline fields of that state."""
    case = case.model_copy(update={**updates, "state": state, "reminders_sent": 0, "last_reminder_on": None})
    timing = _DEADLINES.get(state)
    if timing is None:
        return case.model_copy(
            update={
                "waiting_since": None,
                "due_date": None,
                "whose_turn": None,
                "overdue_step": None,
                "pending_commands": (),
                "held_commands": (),
            }
        )
    step, owed, theirs = timing
    if step is Step.LETTER_TO_FORM_AND_FUNDS:
        since = case.opened_on
    elif state is State.CREDITING and case.form_received_on is not None:
        since = case.form_received_on
    else:
        since = today
    return case.model_copy(
        update={
            "waiting_since": since,
            "due_date": due_date(case.regime, step, since, calendar),
            "whose_turn": case.counterpart_code if theirs else case.own_code,
            "overdue_step": owed,
        }
    )


def _on_tick(case: Case, today: date, ctx: Context) -> Decision:
    if not case.is_open:
        return Decision()
    commands = tuple(case.pending_commands)
    notes: list[Note] = []
    if commands:
        notes.append(Note("case.ledger_commands_reissued", {**_ids(case), "count": len(commands)}))
    if not policy.reminder_due(
        today=today,
        due_date=case.due_date,
        reminders_sent=case.reminders_sent,
        last_reminder_on=case.last_reminder_on,
        calendar=ctx.calendar,
    ):
        return Decision(commands=commands, notes=tuple(notes))
    assert case.due_date is not None and case.waiting_since is not None and case.overdue_step is not None
    number = case.reminders_sent + 1
    updated = case.model_copy(update={"reminders_sent": number, "last_reminder_on": today})
    detail = {
        **_ids(case),
        "overdue_step": case.overdue_step.value,
        "due_date": case.due_date.isoformat(),
        "whose_turn": case.whose_turn,
        "reminder": number,
    }
    messages: list[OutboundMessage] = []
    if case.whose_turn == case.counterpart_code:
        reminder = ReminderV1(
            overdue_step=case.overdue_step, waiting_since=case.waiting_since, due_on=case.due_date
        )
        causation = case.letter_message_id if case.role is Role.RECEIVING else case.form_message_id
        messages.append(_send(case, reminder, f"reminder/{case.state.value}/{number}", causation))
        notes.append(Note("case.reminder_sent", detail))
    else:
        notes.append(Note("case.own_step_overdue", detail))
    return Decision(
        case=updated,
        messages=tuple(messages),
        commands=commands,
        transition=TransitionRecord(case.state, case.state, "Tick", {"reminder": number}),
        notes=tuple(notes),
    )
