"""A letter to an agency the broker has no inbox for (the directory lists it, the topology was not
applied for it): the relay holds it in the outbox instead of letting the alternate exchange swallow
it, logs one warning, counts it, and the case shows it as undeliverable; once the inbox exists the
letter goes out unchanged and the case carries on."""

from __future__ import annotations

from pathlib import Path

from structlog.testing import capture_logs

from agents.domain.case import State
from agents.tools.provision import AgencyProfile
from broker.names import EXCHANGE, UNROUTABLE_QUEUE, inbox_binding, inbox_queue
from broker.pytest_plugin import TestVhost
from tests.integration.agent_world import agent_world

DONGGUAN, JIUJIANG = "441900", "360400"


async def test_a_letter_to_an_agency_without_an_inbox_is_held_shown_and_delivered_later(
    rabbitmq_vhost: TestVhost, tmp_path: Path
) -> None:
    async with agent_world(
        rabbitmq_vhost, tmp_path, [AgencyProfile(DONGGUAN), AgencyProfile(JIUJIANG)]
    ) as world:
        vhost, inbox = rabbitmq_vhost.name, inbox_queue(DONGGUAN)
        with rabbitmq_vhost.management() as api:
            arguments = api.get_queue(vhost, inbox)["arguments"]
            api.delete_queue(vhost, inbox)
        out, _ = await world.mover(DONGGUAN, JIUJIANG)
        agent = await world.start(JIUJIANG)
        with capture_logs() as logs:
            case_id = await world.apply(JIUJIANG, DONGGUAN, out)
            held = await world.wait_case(JIUJIANG, case_id, lambda c: c.undeliverable is not None)
        assert held.undeliverable == "contact_letter" and held.state is State.AWAITING_FORM
        warnings = [e for e in logs if e["event"] == "message_undeliverable"]
        assert len(warnings) == 1 and warnings[0]["recipient"] == DONGGUAN
        assert warnings[0]["log_level"] == "warning"
        counted = agent.metrics.registry.get_sample_value(
            "jiexu_outbox_undeliverable_total", {"agency": JIUJIANG, "recipient": DONGGUAN}
        )
        assert counted == 1
        history = await agent.service.store.history(case_id)
        assert [t.event for t in history][-1] == "DeliveryHeld"
        (row,) = [s for s in world.sent(JIUJIANG, case_id) if s.type == "contact_letter"]
        assert not row.published  # waiting in the outbox, not in the unroutable queue
        with rabbitmq_vhost.management() as api:
            assert api.get_queue(vhost, UNROUTABLE_QUEUE).get("messages", 0) == 0

            # The operator provisions the agency: the letter goes out and the case carries on.
            api.declare_queue(vhost, inbox, arguments)
            api.bind_queue(vhost, EXCHANGE, inbox, inbox_binding(DONGGUAN))
        await world.start(DONGGUAN)
        assert await world.wait_terminal(JIUJIANG, case_id) == State.COMPLETED
        assert await world.wait_terminal(DONGGUAN, case_id) == State.COMPLETED
        done = await world.case(JIUJIANG, case_id)
        assert done.undeliverable is None
        assert counted == agent.metrics.registry.get_sample_value(
            "jiexu_outbox_undeliverable_total", {"agency": JIUJIANG, "recipient": DONGGUAN}
        )


async def test_the_inbox_check_asks_once_for_many_rows_and_survives_a_miss(amqp_url: str) -> None:
    import asyncio

    from broker.connection import connect
    from broker.routes import InboxCheck

    async with await connect(amqp_url, name="inbox-check-test") as connection:
        channel = await connection.channel(confirms=False)
        await channel.declare_queue(inbox_queue(JIUJIANG), durable=True)
        check = InboxCheck(connection)
        asked: list[str] = []
        ask = check._ask

        async def counting(code: str) -> bool:
            asked.append(code)
            return await ask(code)

        check._ask = counting  # type: ignore[method-assign]
        answers = await asyncio.gather(
            *(check.exists(code) for code in [DONGGUAN] * 50 + [JIUJIANG] * 50)
        )
        assert answers == [False] * 50 + [True] * 50
        assert sorted(asked) == [JIUJIANG, DONGGUAN]
        check.forget(DONGGUAN)
        assert await check.exists(DONGGUAN) is False  # a new channel after the miss's closed one
        assert await check.exists(JIUJIANG) is True
