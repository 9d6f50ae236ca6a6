"""Each agency speaks only for itself: the broker enforces users, permissions and user_id."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Iterator

import aio_pika
import aiormq.exceptions
import pytest

from broker.names import (
    DLX,
    EXCHANGE,
    RETRY_EXCHANGE,
    agency_dlx,
    agency_retry_exchange,
    dlq_queue,
    inbox_queue,
    retry_queue,
    routing_key,
)
from broker.pytest_plugin import TestVhost
from broker.topology import (
    AgencyCredential,
    AgencyCredentials,
    TopologySpec,
    agency_permissions,
    apply_topology,
    delete_agency_users,
)

A, B = "110000", "110001"
WAIT_S = 30.0  # upper bound for a message to arrive; never asserted as a duration


@pytest.fixture
def provisioned(rabbitmq_vhost: TestVhost) -> Iterator[AgencyCredentials]:
    spec = TopologySpec(agency_codes=(A, B), user_prefix=f"t{uuid.uuid4().hex[:8]}-")
    with rabbitmq_vhost.management() as api:
        try:
            yield apply_topology(api, rabbitmq_vhost.name, spec)
        finally:
            delete_agency_users(api, spec)


async def _connect(vhost: TestVhost, cred: AgencyCredential) -> aio_pika.abc.AbstractConnection:
    return await aio_pika.connect(vhost.url_for(cred.username, cred.password))


async def _ignore(message: aio_pika.abc.AbstractIncomingMessage) -> None:
    await message.reject(requeue=True)


@pytest.fixture
async def agency_a(
    rabbitmq_vhost: TestVhost, provisioned: AgencyCredentials
) -> AsyncIterator[aio_pika.abc.AbstractConnection]:
    connection = await _connect(rabbitmq_vhost, provisioned[A])
    async with connection:
        yield connection


async def test_an_agency_cannot_consume_another_agencys_inbox(
    agency_a: aio_pika.abc.AbstractConnection,
) -> None:
    channel = await agency_a.channel()
    queue = await channel.get_queue(inbox_queue(B), ensure=False)
    with pytest.raises(aiormq.exceptions.ChannelAccessRefused, match="ACCESS_REFUSED"):
        await queue.consume(_ignore)


async def test_an_agency_cannot_read_another_agencys_dead_letters(
    agency_a: aio_pika.abc.AbstractConnection,
) -> None:
    channel = await agency_a.channel()
    queue = await channel.get_queue(dlq_queue(B), ensure=False)
    with pytest.raises(aiormq.exceptions.ChannelAccessRefused, match="ACCESS_REFUSED"):
        await queue.get(fail=False)


async def test_an_agency_consumes_its_own_inbox(
    agency_a: aio_pika.abc.AbstractConnection,
) -> None:
    channel = await agency_a.channel()
    queue = await channel.get_queue(inbox_queue(A), ensure=True)
    tag = await queue.consume(_ignore)
    await queue.cancel(tag)
    assert await (await channel.get_queue(dlq_queue(A), ensure=True)).get(fail=False) is None


async def test_an_agency_cannot_declare_queues(agency_a: aio_pika.abc.AbstractConnection) -> None:
    channel = await agency_a.channel()
    with pytest.raises(aiormq.exceptions.ChannelAccessRefused, match="ACCESS_REFUSED"):
        await channel.declare_queue(f"jiexu.inbox.{A}.mine", durable=True)


async def test_an_agency_cannot_bypass_the_exchange_through_the_default_exchange(
    agency_a: aio_pika.abc.AbstractConnection, provisioned: AgencyCredentials
) -> None:
    channel = await agency_a.channel(publisher_confirms=True)
    with pytest.raises(aiormq.exceptions.ChannelAccessRefused, match=r"amq\.default"):
        await channel.default_exchange.publish(
            aio_pika.Message(b"direct", user_id=provisioned[A].username),
            routing_key=inbox_queue(B),
        )


async def test_a_publish_claiming_another_agencys_user_id_is_refused_by_the_broker(
    agency_a: aio_pika.abc.AbstractConnection, provisioned: AgencyCredentials
) -> None:
    channel = await agency_a.channel(publisher_confirms=True)
    exchange = await channel.get_exchange(EXCHANGE, ensure=False)
    with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed, match="user_id"):
        await exchange.publish(
            aio_pika.Message(b"forged", user_id=provisioned[B].username),
            routing_key=routing_key(B, "contact_letter"),
        )
    assert channel.is_closed


async def test_a_publish_with_its_own_user_id_reaches_the_recipients_inbox(
    rabbitmq_vhost: TestVhost,
    agency_a: aio_pika.abc.AbstractConnection,
    provisioned: AgencyCredentials,
) -> None:
    channel = await agency_a.channel(publisher_confirms=True)
    exchange = await channel.get_exchange(EXCHANGE, ensure=False)
    await exchange.publish(
        aio_pika.Message(b"hello", user_id=provisioned[A].username),
        routing_key=routing_key(B, "contact_letter"),
        mandatory=True,
    )
    receiver = await _connect(rabbitmq_vhost, provisioned[B])
    async with receiver:
        inbox = await (await receiver.channel()).get_queue(inbox_queue(B), ensure=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_S
        message = await inbox.get(fail=False)
        while message is None and loop.time() < deadline:
            await asyncio.sleep(0.05)
            message = await inbox.get(fail=False)
        assert message is not None
        assert message.body == b"hello"
        assert message.user_id == provisioned[A].username
        await message.ack()


@pytest.mark.parametrize("exchange_name", [agency_dlx(A), agency_retry_exchange(A)])
async def test_an_agency_may_publish_to_its_own_dead_letter_and_retry_exchanges(
    agency_a: aio_pika.abc.AbstractConnection, provisioned: AgencyCredentials, exchange_name: str
) -> None:
    channel = await agency_a.channel(publisher_confirms=True)
    exchange = await channel.get_exchange(exchange_name, ensure=False)
    await exchange.publish(
        aio_pika.Message(b"x", user_id=provisioned[A].username), routing_key="nowhere"
    )
    assert not channel.is_closed


async def _queue_depth(vhost: TestVhost, queue: str) -> int:
    connection = await aio_pika.connect(vhost.amqp_url)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.message_count or 0


@pytest.mark.parametrize(
    ("exchange_name", "key", "target"),
    [
        # The shared exchanges the broker dead-letters into: before issue 13 any agency could
        # publish there with another agency's key and land in its dead-letter or retry queue.
        (DLX, B, dlq_queue(B)),
        (RETRY_EXCHANGE, f"delay.{B}.1000", retry_queue(B, 1000)),
        (RETRY_EXCHANGE, f"inbox.{B}", inbox_queue(B)),
        # And B's own.
        (agency_dlx(B), B, dlq_queue(B)),
        (agency_retry_exchange(B), f"delay.{B}.1000", retry_queue(B, 1000)),
    ],
)
async def test_an_agency_cannot_write_into_another_agencys_dead_letter_or_retry_queues(
    agency_a: aio_pika.abc.AbstractConnection,
    provisioned: AgencyCredentials,
    rabbitmq_vhost: TestVhost,
    exchange_name: str,
    key: str,
    target: str,
) -> None:
    channel = await agency_a.channel(publisher_confirms=True)
    exchange = await channel.get_exchange(exchange_name, ensure=False)
    with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
        await exchange.publish(
            aio_pika.Message(
                b"forged",
                user_id=provisioned[A].username,
                headers={"x-jiexu-dead-reason": "all fine, ignore"},
            ),
            routing_key=key,
        )
    await asyncio.sleep(0.2)
    assert await _queue_depth(rabbitmq_vhost, target) == 0


# -- the regexes themselves (RabbitMQ matches them unanchored, like re.search) ---------------


@pytest.mark.parametrize(
    "name",
    [inbox_queue(A), dlq_queue(A), retry_queue(A, 1000), retry_queue(A, 30000)],
)
def test_the_read_permission_covers_the_agencys_own_queues(name: str) -> None:
    assert re.search(agency_permissions(A).read, name)


@pytest.mark.parametrize(
    "name",
    [
        inbox_queue(B),
        inbox_queue("1100001"),
        "jiexu.inbox.110000x",
        "x" + inbox_queue(A),
        "jiexu.inbox.0110000",
        f"{inbox_queue(A)}\n{inbox_queue(B)}",
        "jiexu.unroutable",
        "jiexu.other.110000",
        dlq_queue("011000"),
        EXCHANGE,
    ],
)
def test_the_read_permission_excludes_every_other_name(name: str) -> None:
    assert not re.search(agency_permissions(A).read, name)


def test_the_write_permission_names_exactly_the_three_exchanges() -> None:
    write = agency_permissions(A).write
    assert all(re.search(write, x) for x in (EXCHANGE, agency_dlx(A), agency_retry_exchange(A)))
    assert not any(
        re.search(write, x)
        for x in (
            "amq.default",
            "",
            "jiexu.unroutable",
            "jiexuX",
            "jiexu.dlx.x",
            inbox_queue(A),
            DLX,
            RETRY_EXCHANGE,
            agency_dlx(B),
            agency_retry_exchange(B),
            agency_dlx(A) + "0",
            f"{agency_dlx(A)}\n{agency_dlx(B)}",
        )
    )
    assert agency_permissions(A).configure == "^$"
