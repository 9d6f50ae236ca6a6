"""Two real agents on a real broker serve their metrics: what a scrape says agrees with the stores
and the broker, and /readyz follows the broker connection the management API closes."""

from __future__ import annotations

import logging
import sqlite3
from collections import Counter
from pathlib import Path

import aio_pika
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agents.service.process import AgentProcess
from agents.tools.provision import AgencyProfile
from broker.connection import connect
from broker.logging import relevel_reconnection_logs
from broker.names import EXCHANGE, dlq_queue, inbox_queue, routing_key
from broker.pytest_plugin import TestVhost
from tests.integration.agent_world import World, agent_world
from tests.integration.transport_support import eventually, queue_counts

pytestmark = pytest.mark.integration

DONGGUAN, JIUJIANG = "441900", "360400"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


SERVED = {"metrics_port": 0, "metrics_host": "127.0.0.1"}
"""Agent settings that serve the endpoints on a free port of 127.0.0.1."""


async def scrape(agent: AgentProcess) -> Samples:
    assert agent.health is not None, "the agent serves metrics"
    async with httpx.AsyncClient(base_url=agent.health.url) as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, lbls), v in samples.items() if n == name and wanted <= lbls)


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for (n, lbls), value in samples.items():
        if n == name:
            found[dict(lbls)[label]] = value
    return found


def inbox_rows(world: World, code: str) -> int:
    path = world.provisioned.paths.store(code)
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        (count,) = db.execute("SELECT count(*) FROM inbox").fetchone()
    return int(count)


async def test_a_scrape_agrees_with_the_stores_and_the_broker(
    rabbitmq_vhost: TestVhost, tmp_path: Path
) -> None:
    async with agent_world(
        rabbitmq_vhost, tmp_path, [AgencyProfile(DONGGUAN), AgencyProfile(JIUJIANG)]
    ) as world:
        out_agent = await world.start(DONGGUAN, **SERVED)
        in_agent = await world.start(JIUJIANG, **SERVED)
        out, _ = await world.mover(
            DONGGUAN, JIUJIANG, zero_balance=False, arrears=False, retiree=False, insurance_type="310"
        )
        case_id = await world.apply(JIUJIANG, DONGGUAN, out)
        assert await world.wait_terminal(JIUJIANG, case_id) == "completed"
        assert await world.wait_terminal(DONGGUAN, case_id) == "completed"

        # One poison message (as the administrator, who may publish anything) for JIUJIANG.
        connection = await aio_pika.connect(rabbitmq_vhost.amqp_url)
        async with connection:
            channel = await connection.channel()
            exchange = await channel.get_exchange(EXCHANGE)
            await exchange.publish(aio_pika.Message(b"{not json"), routing_key(JIUJIANG, "junk"))

        admin = await connect(rabbitmq_vhost.amqp_url, name="test-admin")
        async with admin:

            async def settled() -> bool:
                """Both inboxes empty, JIUJIANG's poison dead-lettered, both relays idle."""
                for code in (DONGGUAN, JIUJIANG):
                    if (await queue_counts(admin, inbox_queue(code)))[0]:
                        return False
                if (await queue_counts(admin, dlq_queue(JIUJIANG)))[0] != 1:
                    return False
                return all(s.published for c in (DONGGUAN, JIUJIANG) for s in world.sent(c))

            await eventually(settled, "both inboxes drained, the poison dead-lettered, outboxes sent")
            dlq_depth = {
                code: (await queue_counts(admin, dlq_queue(code)))[0] for code in (DONGGUAN, JIUJIANG)
            }

        for code, agent in ((DONGGUAN, out_agent), (JIUJIANG, in_agent)):

            async def handled_matches(agent: AgentProcess = agent, code: str = code) -> bool:
                # The ack follows the commit: wait for the counter to catch up with the inbox rows.
                samples = await scrape(agent)
                return total(samples, "jiexu_messages_handled_total") == inbox_rows(world, code)

            await eventually(handled_matches, f"{code}: messages handled = inbox rows")
            assert agent.figures is not None
            await agent.figures.refresh()
            samples = await scrape(agent)
            store = agent.service.store

            # Messages: handled = the inbox's rows; dead-lettered = the DLQ's depth; every delivery
            # received ended one way or another.
            handled = total(samples, "jiexu_messages_handled_total")
            assert handled == inbox_rows(world, code) > 0
            dead = total(samples, "jiexu_messages_dead_lettered_total")
            assert dead == dlq_depth[code]
            received = total(samples, "jiexu_messages_received_total")
            assert received == handled + dead + total(
                samples, "jiexu_messages_duplicate_total"
            ) + total(samples, "jiexu_messages_retried_total")
            handled_by_type = by_label(samples, "jiexu_messages_handled_total", "type")
            assert total(samples, "jiexu_handler_duration_seconds_count") == handled
            assert "unknown" not in handled_by_type

            # Cases by state = the store's own count.
            cases = {
                state: int(v) for state, v in by_label(samples, "jiexu_cases", "state").items()
            }
            assert cases == await store.cases_by_state() == {"completed": 1}
            assert total(samples, "jiexu_outbox_unpublished_messages") == 0
            assert total(samples, "jiexu_outbox_oldest_unpublished_age_seconds") == 0

            # Published = the outbox rows marked published.
            sent = world.sent(code)
            published = by_label(samples, "jiexu_outbox_published_total", "type")
            assert {t: int(v) for t, v in published.items()} == dict(
                Counter(s.type for s in sent if s.published)
            )
            assert total(samples, "jiexu_broker_connection_up") == 1
            assert total(samples, "jiexu_build_info") == 1

        # JIUJIANG's poison: counted as an undecodable delivery, dead-lettered as invalid JSON.
        in_samples = await scrape(in_agent)
        assert total(
            in_samples, "jiexu_messages_dead_lettered_total", type="unknown", reason="invalid_json"
        ) == 1
        assert total(in_samples, "jiexu_messages_received_total", type="unknown") == 1

        # The ledgers: one command each, applied; the months certified are the months credited.
        out_samples = await scrape(out_agent)
        assert total(
            out_samples, "jiexu_ledger_command_duration_seconds_count",
            operation="terminate_and_debit", outcome="applied",
        ) == 1
        assert total(
            in_samples, "jiexu_ledger_command_duration_seconds_count",
            operation="credit", outcome="applied",
        ) == 1
        certified = total(out_samples, "jiexu_months_certified_total", counterpart=JIUJIANG)
        credited = total(in_samples, "jiexu_months_credited_total", counterpart=DONGGUAN)
        assert certified == credited == out.months_paid > 0


async def test_readyz_follows_the_agents_broker_connection(
    rabbitmq_vhost: TestVhost, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    relevel_reconnection_logs()
    async with agent_world(rabbitmq_vhost, tmp_path, [AgencyProfile(DONGGUAN)]) as world:
        agent = await world.start(DONGGUAN, **SERVED)
        assert agent.health is not None
        credential = world.provisioned.credentials[DONGGUAN]

        def listed() -> list[str]:
            with rabbitmq_vhost.management() as api:
                return [
                    c["name"] for c in api.list_connections() if c.get("user") == credential.username
                ]

        async with httpx.AsyncClient(base_url=agent.health.url) as client:

            async def readyz() -> tuple[int, dict[str, object]]:
                response = await client.get("/readyz")
                return response.status_code, response.json()

            status, body = await readyz()
            assert status == 200, body
            assert body["checks"] == {
                "broker": {"ok": True}, "consumer": {"ok": True},
                "ledger": {"ok": True}, "store": {"ok": True},
            }
            assert (await client.get("/healthz")).status_code == 200

            await eventually(lambda: bool(listed()), "the agent's connection listed")
            caplog.clear()
            with caplog.at_level(logging.INFO):
                # aio-pika reconnects at once: the broker refuses the agent's user meanwhile.
                with rabbitmq_vhost.management() as api:
                    api.put_user(credential.username, "not-the-password")
                    for name in listed():
                        api.close_connection(name, reason="test: readiness")

                async def unready() -> bool:
                    return (await readyz())[0] == 503

                await eventually(unready, "unready while the broker refuses the agent")
                status, body = await readyz()
                checks = body["checks"]
                assert isinstance(checks, dict)
                assert checks["broker"] == {"ok": False, "error": "not ready"}
                assert checks["store"] == {"ok": True} and checks["ledger"] == {"ok": True}
                assert total(await scrape(agent), "jiexu_broker_connection_up") == 0

                with rabbitmq_vhost.management() as api:
                    api.put_user(credential.username, credential.password)

                async def ready() -> bool:
                    return (await readyz())[0] == 200

                await eventually(ready, "ready again after the reconnection", timeout_s=90)

                # The gauge follows the reconnect callback, which may run just after /readyz sees
                # the restored connection: wait for it (bounded), then check both figures.
                async def gauge_up() -> bool:
                    return total(await scrape(agent), "jiexu_broker_connection_up") == 1

                await eventually(gauge_up, "the connection gauge back up", timeout_s=30)
            samples = await scrape(agent)
            assert total(samples, "jiexu_broker_connection_up") == 1
            assert total(samples, "jiexu_broker_reconnections_total") == 1

            # The reconnection was logged as warnings, never as an error.
            library = [r for r in caplog.records if r.name.startswith(("aio_pika", "aiormq"))]
            assert library, "the library logged the lost connection"
            # (r.msg and r.args, not getMessage(): aio-pika's OneShotCallback cannot repr itself
            # once it has run.)
            errors = [(r.name, r.msg, r.args[1:2]) for r in library if r.levelno >= logging.ERROR]
            assert errors == []

        # A stopping agent turns unready first, and closes its server last.
        await world.stop(DONGGUAN)
        assert agent.health is None
        assert "stopping" in agent.readiness.names
