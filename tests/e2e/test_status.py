"""`jiexu status` shows an operator the queues, dead letters, cases and reconciliation at a glance."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aio_pika
import pytest
from typer.testing import CliRunner

from agents.cli import app
from agents.tools.provision import AgencyProfile
from broker.names import EXCHANGE, routing_key
from broker.pytest_plugin import TestVhost
from tests.integration.agent_world import agent_world

DONGGUAN, JIUJIANG = "441900", "360400"


async def test_status_reports_queues_dead_letters_and_cases(
    rabbitmq_vhost: TestVhost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with agent_world(
        rabbitmq_vhost, tmp_path, [AgencyProfile(DONGGUAN), AgencyProfile(JIUJIANG)]
    ) as world:
        await world.start(DONGGUAN)
        await world.start(JIUJIANG)
        out, _ = await world.mover(
            DONGGUAN, JIUJIANG, zero_balance=False, arrears=False, retiree=False, insurance_type="310"
        )
        case_id = await world.apply(JIUJIANG, DONGGUAN, out)
        assert await world.wait_terminal(DONGGUAN, case_id) == "completed"
        # A broken message (as the administrator, who may publish anything) ends in a DLQ.
        connection = await aio_pika.connect(rabbitmq_vhost.amqp_url)
        async with connection:
            channel = await connection.channel()
            exchange = await channel.get_exchange(EXCHANGE)
            await exchange.publish(aio_pika.Message(b"{not json"), routing_key(JIUJIANG, "junk"))
        monkeypatch.setenv("JIEXU_AMQP_URL", rabbitmq_vhost.endpoint.amqp_url())
        monkeypatch.setenv("JIEXU_MANAGEMENT_URL", rabbitmq_vhost.endpoint.management_url)
        status: dict = {}
        # The management API refreshes queue statistics every few seconds: poll.
        for _ in range(150):
            result = await asyncio.to_thread(
                CliRunner().invoke,
                app,
                ["status", "--vhost", rabbitmq_vhost.name, "--data-dir",
                 str(world.provisioned.data_dir), "--json"],
            )
            assert result.exit_code == 0, result.output
            status = json.loads(result.stdout)
            agencies = status["broker"]["agencies"]
            if agencies[JIUJIANG]["dead_letters"] == 1 and all(
                agencies[code]["inbox"]["consumers"] == 1 for code in (DONGGUAN, JIUJIANG)
            ):
                break
            await asyncio.sleep(0.1)
        queues = status["broker"]["agencies"]
        assert queues[JIUJIANG]["dead_letters"] == 1
        assert queues[DONGGUAN]["dead_letters"] == 0
        assert queues[DONGGUAN]["inbox"]["consumers"] == 1
        assert queues[JIUJIANG]["inbox"]["consumers"] == 1
        assert "000000" in queues
        assert status["broker"]["unroutable"] == 0
        assert status["cases"][JIUJIANG]["by_state"] == {"completed": 1}
        assert status["cases"][DONGGUAN]["by_state"] == {"completed": 1}
        assert status["cases"][JIUJIANG]["overdue"] == 0
        # Human output too.
        human = await asyncio.to_thread(
            CliRunner().invoke,
            app,
            ["status", "--vhost", rabbitmq_vhost.name, "--data-dir", str(world.provisioned.data_dir)],
        )
        assert human.exit_code == 0
        assert JIUJIANG in human.stdout and "unroutable messages: 0" in human.stdout
