"""Messages only from who may send them (issue 13, finding 2), against a real broker and agents.

* The squatted id: agency C sends agency A a reminder carrying the message id of the fund transfer
  that B, A's counterpart, will send later (ids are predictable). C's message is dead-lettered as
  ``wrong_sender`` and leaves no inbox row; B's real fund transfer is still handled (it used to be
  dead-lettered as ``replayed`` every time, after B had debited the person).
* A statement request from anyone but the reconciler gets no statement.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path

from agents.service.agency import CONSUMER
from agents.tools.provision import AgencyProfile
from broker.connection import connect
from broker.dlq import DeadLetterInfo, list_dead_letters
from broker.pytest_plugin import TestVhost
from schemas.notices import OverdueStep, ReminderV1
from schemas.reconciliation import StatementRequestV1
from tests.integration.agent_world import agent_world

A, B, C = "360400", "441900", "410100"  # Jiujiang receives from Dongguan; Zhengzhou is a stranger


async def _dead_letters(vhost: TestVhost, code: str, count: int) -> list[DeadLetterInfo]:
    admin = await connect(vhost.amqp_url, name="test-admin")
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            letters = await list_dead_letters(admin, code)
            if len(letters) >= count or asyncio.get_running_loop().time() > deadline:
                return letters
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def test_a_squatted_message_id_is_dead_lettered_and_the_real_fund_transfer_is_handled(
    rabbitmq_vhost: TestVhost, tmp_path: Path
) -> None:
    async with agent_world(
        rabbitmq_vhost, tmp_path, [AgencyProfile(A), AgencyProfile(B), AgencyProfile(C)]
    ) as world:
        receiving = await world.start(A)
        out, _ = await world.mover(
            B, A, zero_balance=False, arrears=False, retiree=False, insurance_type="310"
        )
        case_id = await world.apply(A, B, out)
        # The id B's agent will give its fund transfer (deterministic, so predictable).
        future_funds_id = uuid.uuid5(case_id, "outgoing/fund_transfer")
        today = world.agents[A].clock.today()
        async with world.impersonate(C) as stranger:
            await stranger.send(
                ReminderV1(
                    overdue_step=OverdueStep.FUND_TRANSFER,
                    waiting_since=today,
                    due_on=today + timedelta(days=1),
                ),
                recipient=A,
                case_id=case_id,
                message_id=future_funds_id,
            )
        (letter,) = await _dead_letters(rabbitmq_vhost, A, 1)
        assert letter.reason == "wrong_sender" and letter.message_id == str(future_funds_id)
        store = receiving.service.store
        assert not await store.has_handled(CONSUMER, future_funds_id, sender=C)
        assert not await store.has_handled(CONSUMER, future_funds_id, sender=B)

        await world.start(B)
        assert await world.wait_terminal(A, case_id) == "completed"
        assert await world.wait_terminal(B, case_id) == "completed"
        assert await store.has_handled(CONSUMER, future_funds_id, sender=B)
        case = await world.case(A, case_id)
        assert [f.message_id for f in case.funds] == [future_funds_id]
        assert len(await _dead_letters(rabbitmq_vhost, A, 1)) == 1  # nothing more


async def test_a_statement_request_from_a_stranger_gets_no_statement(
    rabbitmq_vhost: TestVhost, tmp_path: Path
) -> None:
    async with agent_world(rabbitmq_vhost, tmp_path, [AgencyProfile(A), AgencyProfile(C)]) as world:
        await world.start(A)
        out, _ = await world.mover(
            C, A, zero_balance=False, arrears=False, retiree=False, insurance_type="310"
        )
        case_id = await world.apply(A, C, out)
        request_id = uuid.uuid4()
        async with world.impersonate(C) as stranger:
            await stranger.send(
                StatementRequestV1(case_id=case_id), recipient=A, case_id=case_id, message_id=request_id
            )
        (letter,) = await _dead_letters(rabbitmq_vhost, A, 1)
        assert letter.reason == "wrong_sender" and letter.message_id == str(request_id)
        assert [s.type for s in world.sent(A, case_id) if s.type == "ledger_statement"] == []
        inbox = await world.drain(C, lambda ms: any(m.envelope.type == "contact_letter" for m in ms))
        assert "ledger_statement" not in [m.envelope.type for m in inbox]
