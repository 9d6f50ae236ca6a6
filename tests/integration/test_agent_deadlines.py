"""Deadlines on a real broker: an overdue step reminds the counterpart, and status shows it.

The agents run on a `ManualClock`; the counterpart is not running, and the test reads its inbox
with its own broker credentials.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from typer.testing import CliRunner

from agents.cli import app
from agents.domain.case import State
from agents.domain.clock import CHINA_TZ, ManualClock
from agents.tools.provision import AgencyProfile
from broker.pytest_plugin import TestVhost
from schemas.common import Person
from schemas.contact import ContactLetterV2
from schemas.notices import OverdueStep, ReminderV1
from schemas.registry import Message
from tests.integration.agent_world import World, agent_world

DONGGUAN, JIUJIANG = "441900", "360400"
EMPLOYEE: dict[str, Any] = {
    "insurance_type": "310",
    "arrears": False,
    "retiree": False,
    "zero_balance": False,
}
MONDAY = datetime(2026, 3, 2, 9, 0, tzinfo=CHINA_TZ)


def _reminders(messages: list[Message]) -> list[Message]:
    return [m for m in messages if isinstance(m.document, ReminderV1)]


async def _case_show(world: World, code: str, case_id: uuid.UUID) -> dict[str, object]:
    """``jiexu case show CASE --agency CODE --data-dir ... --json``, as an operator runs it."""
    args = ["case", "show", str(case_id), "--agency", code]
    args += ["--data-dir", str(world.provisioned.data_dir), "--json"]
    # The command configures logging onto the runner's streams, which close after the run.
    saved = structlog.get_config()
    handlers = list(logging.getLogger().handlers)
    try:
        result = await asyncio.to_thread(CliRunner().invoke, app, args)
    finally:
        structlog.configure(**saved)
        logging.getLogger().handlers[:] = handlers
    assert result.exit_code == 0, result.output
    shown: dict[str, object] = json.loads(result.stdout)
    return shown


async def test_an_overdue_form_reminds_the_outgoing_agency_and_case_show_says_whose_turn(
    rabbitmq_vhost: TestVhost, tmp_path: Path
) -> None:
    async with agent_world(
        rabbitmq_vhost, tmp_path, [AgencyProfile(DONGGUAN), AgencyProfile(JIUJIANG)]
    ) as world:
        clock = ManualClock(MONDAY)
        agent = await world.start(JIUJIANG, clock=clock)  # Dongguan's agent never runs here
        out, _ = await world.mover(DONGGUAN, JIUJIANG, **EMPLOYEE)
        case_id = await world.apply(JIUJIANG, DONGGUAN, out)
        opened = await world.case(JIUJIANG, case_id)
        assert opened.state is State.AWAITING_FORM
        assert opened.opened_on == MONDAY.date()
        assert opened.due_date is not None and opened.due_date > opened.opened_on
        assert opened.whose_turn == DONGGUAN
        assert opened.overdue_step is OverdueStep.INFORMATION_FORM

        # On the due date itself nothing is overdue.
        clock.set_date(opened.due_date)
        await agent.service.tick()
        assert (await world.case(JIUJIANG, case_id)).reminders_sent == 0

        clock.set_date(opened.due_date + timedelta(days=1))
        assert await agent.service.tick() == 1
        inbox = await world.drain(DONGGUAN, lambda ms: len(_reminders(ms)) == 1)
        letter = next(m for m in inbox if m.envelope.type == "contact_letter")
        assert isinstance(letter.document, ContactLetterV2)
        (reminder,) = _reminders(inbox)
        assert (reminder.envelope.sender, reminder.envelope.case_id) == (JIUJIANG, case_id)
        assert reminder.envelope.causation_id == letter.envelope.message_id
        assert reminder.document == ReminderV1(
            overdue_step=OverdueStep.INFORMATION_FORM,
            waiting_since=opened.opened_on,
            due_on=opened.due_date,
        )

        # A second round on the same day reminds no one again.
        await agent.service.tick()
        reminded = await world.case(JIUJIANG, case_id)
        assert (reminded.reminders_sent, reminded.last_reminder_on) == (1, clock.today())
        assert [s.type for s in world.sent(JIUJIANG, case_id)] == ["contact_letter", "reminder"]

        await world.stop(JIUJIANG)
        shown = await _case_show(world, JIUJIANG, case_id)
        assert shown["state"] == "awaiting_form"
        assert shown["whose_turn"] == DONGGUAN
        assert shown["due_date"] == opened.due_date.isoformat()
        assert shown["overdue_step"] == "information_form"
        assert shown["reminders_sent"] == 1
        assert shown["flow_due_date"] == (opened.flow_due_date.isoformat() if opened.flow_due_date else None)
        assert out.id_number not in json.dumps(shown, ensure_ascii=False)  # personal data masked


async def test_an_overdue_completion_reminds_the_receiving_agency(
    rabbitmq_vhost: TestVhost, tmp_path: Path
) -> None:
    """The outgoing side waits for the completion notice: once that is overdue, it reminds."""
    async with agent_world(
        rabbitmq_vhost, tmp_path, [AgencyProfile(DONGGUAN), AgencyProfile(JIUJIANG)]
    ) as world:
        clock = ManualClock(MONDAY)
        agent = await world.start(DONGGUAN, clock=clock)
        out, _ = await world.mover(DONGGUAN, JIUJIANG, **EMPLOYEE)
        case_id = uuid.uuid4()
        async with world.impersonate(JIUJIANG) as jiujiang:
            await jiujiang.send(
                ContactLetterV2(
                    letter_number="LX-360400-0002",
                    person=Person(name=out.name, gender=out.gender, id_number=out.id_number),
                    insurance_type=out.insurance_type,
                    from_region=DONGGUAN,
                    to_region=JIUJIANG,
                    receiving_agency=world.details(JIUJIANG),
                    payout_account=None,
                    payout_reason=None,
                ),
                recipient=DONGGUAN,
                case_id=case_id,
                sent_at=clock.now(),  # Dongguan lives on its manual clock (freshness window)
            )
        waiting = await world.wait_case(DONGGUAN, case_id, lambda c: c.state is State.AWAITING_COMPLETION)
        assert waiting.whose_turn == JIUJIANG and waiting.due_date is not None

        clock.set_date(waiting.due_date + timedelta(days=1))
        assert await agent.service.tick() == 1
        inbox = await world.drain(JIUJIANG, lambda ms: len(_reminders(ms)) == 1)
        # (and the receipt for the letter the test client sent)
        assert sorted(m.envelope.type for m in inbox) == [
            "fund_transfer", "information_form", "receipt", "reminder",
        ]
        (reminder,) = _reminders(inbox)
        form = next(m for m in inbox if m.envelope.type == "information_form")
        assert reminder.envelope.causation_id == form.envelope.message_id
        assert reminder.document == ReminderV1(
            overdue_step=OverdueStep.TRANSFER_COMPLETED,
            waiting_since=MONDAY.date(),
            due_on=waiting.due_date,
        )
