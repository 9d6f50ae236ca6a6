"""The test vectors on a real broker, through jiexu's own `Consumer`: every invalid vector is
dead-lettered with the reason it states, every valid one is handled.

The agencies are the vectors' own (their directory is ``schemas/vectors/directory.json``, every key
the published test key); each message is published with the login its ``user_id`` names.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from broker.connection import BrokerConnection, connect
from broker.consumer import Consumer, ConsumerSettings
from broker.delivery import HEADER_DEAD_REASON, header_str
from broker.directory import AgencyDirectory
from broker.names import EXCHANGE, dlq_queue, routing_key
from broker.publisher import Publisher
from broker.pytest_plugin import TestVhost
from broker.topology import TopologySpec, apply_topology, delete_agency_users
from tests.integration.transport_support import Recorder, drain_queue, eventually, queue_counts

pytestmark = pytest.mark.integration

VECTORS = Path(__file__).resolve().parents[2] / "schemas" / "vectors"
DIRECTORY = AgencyDirectory.load(VECTORS / "directory.json")
TAG = "x-test-vector"


def _vectors(kind: str) -> list[dict[str, Any]]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted((VECTORS / kind).glob("*.json"))]


class World:
    def __init__(self, vhost: TestVhost, spec: TopologySpec, credentials: Any) -> None:
        self.vhost, self.spec, self.credentials = vhost, spec, credentials
        self.connections: list[BrokerConnection] = []
        self.publishers: dict[str, Publisher] = {}

    async def connect(self, code: str) -> BrokerConnection:
        cred = self.credentials[code]
        connection = await connect(self.vhost.url_for(cred.username, cred.password), name=f"v-{code}")
        self.connections.append(connection)
        return connection

    async def publisher(self, code: str) -> Publisher:
        if code not in self.publishers:
            self.publishers[code] = await Publisher(await self.connect(code), agency=code).start()
        return self.publishers[code]

    async def publish(self, vector: dict[str, Any], inbox: str) -> None:
        props = vector["properties"]
        user = props.get("user_id") or f"agency-{inbox}"
        code = user.removeprefix("agency-")
        publisher = await self.publisher(code)
        headers = dict(props.get("headers") or {})
        headers[TAG] = vector["name"]
        message = aio_pika.Message(
            base64.b64decode(vector["body_base64"]),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=props.get("message_id"),
            correlation_id=props.get("correlation_id"),
            type=props.get("type"),
            user_id=self.spec.user(code),
            headers=headers,
        )
        await publisher.publish_message(EXCHANGE, routing_key(inbox, props.get("type") or "x"), message)


@pytest.fixture
async def world(rabbitmq_vhost: TestVhost) -> AsyncIterator[World]:
    spec = TopologySpec(
        agency_codes=DIRECTORY.codes,
        retry_delays_ms=(100,),
        user_prefix=f"v{uuid.uuid4().hex[:8]}-",
    )
    with rabbitmq_vhost.management() as api:
        credentials = apply_topology(api, rabbitmq_vhost.name, spec)
        result = World(rabbitmq_vhost, spec, credentials)
        try:
            yield result
        finally:
            for connection in reversed(result.connections):
                if not connection.is_closed:
                    await connection.close()
            delete_agency_users(api, spec)


def _inbox(vector: dict[str, Any]) -> str:
    if vector.get("inbox"):
        return str(vector["inbox"])
    try:
        recipient = json.loads(base64.b64decode(vector["body_base64"]))["recipient"]
    except (ValueError, TypeError, KeyError):
        return DIRECTORY.codes[-1]
    return recipient if recipient in DIRECTORY else DIRECTORY.codes[-1]


async def test_jiexus_consumer_agrees_with_every_vector(world: World) -> None:
    recorder = Recorder()
    consumers = {}
    for code in DIRECTORY.codes:
        consumers[code] = await Consumer(
            await world.connect(code),
            agency=code,
            handler=recorder,
            directory=DIRECTORY,
            settings=ConsumerSettings(retry_delays_ms=(100,), user_prefix=world.spec.user_prefix),
        ).start()
    admin = await connect(world.vhost.amqp_url, name="v-admin")
    world.connections.append(admin)

    # Invalid first: several reuse a valid vector's message id, and a handled id would make
    # the later ones replays rather than what they are.
    invalid = _vectors("invalid")
    expected: dict[str, tuple[str, str]] = {}
    for vector in invalid:
        inbox = _inbox(vector)
        await world.publish(vector, inbox)
        expected[vector["name"]] = (inbox, vector["reason"])

    async def all_dead() -> bool:
        total = 0
        for code in DIRECTORY.codes:
            total += (await queue_counts(admin, dlq_queue(code)))[0]
        return total >= len(expected)

    await eventually(all_dead, f"{len(expected)} dead letters")
    found: dict[str, tuple[str, str | None]] = {}
    for code in DIRECTORY.codes:
        for message in await drain_queue(admin, dlq_queue(code)):
            found[str(header_str(message.headers, TAG))] = (
                code,
                header_str(message.headers, HEADER_DEAD_REASON),
            )
    assert found == expected
    assert recorder.handled == []

    # Valid: information_form.v2 shares its message id with foreign-form (the same message
    # written another way); the broker sees the foreign spelling, the unit test both.
    valid = [v for v in _vectors("valid") if v["name"] != "information_form.v2"]
    for vector in valid:
        await world.publish(vector, vector["envelope"]["recipient"])
    await eventually(lambda: len(recorder.handled) == len(valid), f"{len(valid)} handled")
    assert sorted(str(m) for m in recorder.handled) == sorted(
        v["envelope"]["message_id"] for v in valid
    )
    for consumer in consumers.values():
        await consumer.stop()
