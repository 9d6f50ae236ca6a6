"""Publishing on a real broker: confirmed, persistent, properly labelled, unroutable is an error."""

from __future__ import annotations

import uuid

import aio_pika
import pytest

from broker.connection import BrokerConnection
from broker.names import UNROUTABLE_QUEUE, agency_dlx, inbox_queue
from broker.publisher import HEADER_TYPE, HEADER_VERSION, UnroutableError
from schemas.registry import decode_envelope
from tests.integration.transport_support import (
    A,
    Agencies,
    B,
    drain_queue,
    eventually,
    queue_counts,
    receipt,
)


async def test_a_published_envelope_arrives_confirmed_with_its_ids_in_the_properties(
    agencies: Agencies,
) -> None:
    publisher = await agencies.publisher(B)
    sent = await publisher.publish(receipt(B, A))
    admin = await agencies.admin()
    await eventually(
        lambda: _depth(admin, inbox_queue(A), 1), "the message in A's inbox"
    )
    (message,) = await drain_queue(admin, inbox_queue(A))
    assert message.message_id == str(sent.message_id)
    assert message.correlation_id == str(sent.case_id)
    assert message.type == "receipt"
    assert message.user_id == agencies.user(B)
    assert message.content_type == "application/json"
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.timestamp is not None
    assert (message.headers or {})[HEADER_TYPE] == "receipt"
    assert (message.headers or {})[HEADER_VERSION] == 1
    assert decode_envelope(message.body) == sent
    assert sent.signature is not None


async def test_a_message_no_queue_is_bound_for_is_raised_as_unroutable(agencies: Agencies) -> None:
    publisher = await agencies.publisher(B)
    message = aio_pika.Message(b"{}", user_id=publisher.user_id)
    with pytest.raises(UnroutableError) as raised:
        await publisher.publish_message(agency_dlx(B), "999999", message)
    assert raised.value.routing_key == "999999"
    # The publisher's channel survives the return and keeps publishing.
    await publisher.publish(receipt(B, A))


async def test_an_envelope_to_an_unknown_agency_lands_in_the_unroutable_queue(
    agencies: Agencies,
) -> None:
    # The main exchange has an alternate exchange, so the broker keeps such a message for an
    # operator instead of returning it.
    publisher = await agencies.publisher(B)
    await publisher.publish(receipt(B, "654321"))
    admin = await agencies.admin()
    await eventually(lambda: _depth(admin, UNROUTABLE_QUEUE, 1), "the unroutable queue")


async def test_publish_many_confirms_every_envelope_of_a_batch(agencies: Agencies) -> None:
    publisher = await agencies.publisher(B)
    batch = [receipt(B, A) for _ in range(300)]
    outcomes = await publisher.publish_many(batch)
    assert [o.message_id for o in outcomes] == [e.message_id for e in batch]
    assert all(o.ok for o in outcomes)
    admin = await agencies.admin()
    await eventually(lambda: _depth(admin, inbox_queue(A), 300), "300 messages in A's inbox")


async def test_publish_many_reports_a_failed_envelope_without_failing_the_batch(
    agencies: Agencies,
) -> None:
    publisher = await agencies.publisher(B)
    good = receipt(B, A)
    foreign = receipt(A, B)  # B may not speak for A
    outcomes = await publisher.publish_many([good, foreign])
    assert outcomes[0].ok
    assert not outcomes[1].ok and isinstance(outcomes[1].error, ValueError)


async def test_a_publisher_cannot_send_in_another_agencys_name(agencies: Agencies) -> None:
    publisher = await agencies.publisher(B)
    with pytest.raises(ValueError, match="cannot send"):
        await publisher.publish(receipt(A, B, case_id=uuid.uuid4()))


async def _depth(admin: BrokerConnection, queue: str, expected: int) -> bool:
    ready, _ = await queue_counts(admin, queue)
    return ready == expected
