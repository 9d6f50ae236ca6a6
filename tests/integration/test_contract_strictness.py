"""Strictness where the contract is strict, on a real broker: each case dead-lettered with its reason.

A numeric ``sent_at`` (pydantic would read it as Unix time) and AMQP properties or ``x-jiexu-*``
headers that disagree with the signed envelope; a message whose properties all agree is handled.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from agents.domain.case import State
from agents.tools.provision import AgencyProfile
from broker.delivery import HEADER_DEAD_DETAIL, HEADER_DEAD_REASON, header_str
from broker.names import EXCHANGE, dlq_queue, routing_key
from broker.publisher import envelope_message
from broker.pytest_plugin import TestVhost
from broker.signing import canonical_bytes, ed25519_sign
from schemas.notices import RejectionReason
from tests.integration.agent_world import agent_world
from tests.integration.test_agent_branches import DONGGUAN, EMPLOYEE, JIUJIANG
from tests.integration.transport_support import (
    A,
    Agencies,
    B,
    Recorder,
    drain_queue,
    encoded,
    eventually,
    queue_counts,
    receipt,
)

pytestmark = pytest.mark.integration


def _signed_body(agencies: Agencies, data: dict[str, Any]) -> bytes:
    """``data`` signed with B's key exactly as it stands (a foreign client's own JSON)."""
    key = agencies.keys[B]
    data = {k: v for k, v in data.items() if k != "signature"}
    data["signature"] = base64.b64encode(ed25519_sign(key, canonical_bytes(data))).decode()
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


async def test_a_numeric_or_non_canonical_sent_at_is_dead_lettered(agencies: Agencies) -> None:
    recorder = Recorder()
    await agencies.consumer(A, recorder)
    from_b = await agencies.publisher(B)
    expected: dict[str, str] = {}
    for value in (-1, 1, 1741915800, 1741915800.5, "2025-03-14T01:30:00+00:00", "2025-03-14 01:30:00Z"):
        envelope = receipt(B, A)
        data = json.loads(encoded(envelope))
        data["sent_at"] = value
        message = envelope_message(envelope, _signed_body(agencies, data), from_b.user_id)
        await from_b.publish_message(EXCHANGE, routing_key(A, "receipt"), message)
        assert message.message_id is not None
        expected[message.message_id] = "invalid_envelope"
    valid = await from_b.publish(receipt(B, A))
    admin = await agencies.admin()

    async def all_dead() -> bool:
        return (await queue_counts(admin, dlq_queue(A)))[0] >= len(expected)

    await eventually(all_dead, f"{len(expected)} dead letters")
    await eventually(lambda: recorder.handled == [valid.message_id], "the valid one handled")
    dead = {m.message_id: m for m in await drain_queue(admin, dlq_queue(A))}
    assert {k: header_str(m.headers, HEADER_DEAD_REASON) for k, m in dead.items()} == expected
    for message in dead.values():
        assert "sent_at" in (header_str(message.headers, HEADER_DEAD_DETAIL) or "")


def _variant(message: aio_pika.Message, **changes: Any) -> aio_pika.Message:
    headers = dict(message.headers or {})
    for name in ("x-jiexu-type", "x-jiexu-version"):
        if name in changes:
            value = changes.pop(name)
            if value is None:
                headers.pop(name, None)
            else:
                headers[name] = value
    fields: dict[str, Any] = {
        "content_type": message.content_type,
        "delivery_mode": aio_pika.DeliveryMode.PERSISTENT,
        "message_id": message.message_id,
        "correlation_id": message.correlation_id,
        "type": message.type,
        "user_id": message.user_id,
        "timestamp": message.timestamp,
        "headers": headers,
    }
    fields.update(changes)
    return aio_pika.Message(message.body, **fields)


MISMATCHES: list[tuple[str, dict[str, Any]]] = [
    ("message_id", {"message_id": "6f1c0c5e-7a1b-4a8e-9e0e-000000000001"}),
    ("message_id", {"message_id": None}),
    ("correlation_id", {"correlation_id": "6f1c0c5e-7a1b-4a8e-9e0e-000000000002"}),
    ("correlation_id", {"correlation_id": None}),
    ("type", {"type": "information_form"}),
    ("type", {"type": None}),
    ("x-jiexu-type", {"x-jiexu-type": "rejection"}),
    ("x-jiexu-type", {"x-jiexu-type": None}),
    ("x-jiexu-version", {"x-jiexu-version": 2}),
    ("x-jiexu-version", {"x-jiexu-version": "1"}),
    ("x-jiexu-version", {"x-jiexu-version": None}),
]


async def test_properties_that_disagree_with_the_envelope_are_dead_lettered(
    agencies: Agencies,
) -> None:
    recorder = Recorder()
    await agencies.consumer(A, recorder)
    from_b = await agencies.publisher(B)
    expected: dict[str, str] = {}  # the envelope's message id -> the property named
    for name, changes in MISMATCHES:
        envelope = agencies.signed(receipt(B, A))
        message = _variant(envelope_message(envelope, encoded(envelope), from_b.user_id), **changes)
        await from_b.publish_message(EXCHANGE, routing_key(A, "receipt"), message)
        expected[str(envelope.message_id)] = name
    valid = await from_b.publish(receipt(B, A))
    admin = await agencies.admin()

    async def all_dead() -> bool:
        return (await queue_counts(admin, dlq_queue(A)))[0] >= len(expected)

    await eventually(all_dead, f"{len(expected)} dead letters")
    await eventually(lambda: recorder.handled == [valid.message_id], "the valid one handled")
    dead = await drain_queue(admin, dlq_queue(A))
    assert len(dead) == len(expected)
    for message in dead:
        body = json.loads(message.body)
        assert header_str(message.headers, HEADER_DEAD_REASON) == "property_mismatch"
        detail = header_str(message.headers, HEADER_DEAD_DETAIL) or ""
        named = expected.pop(body["message_id"])
        assert named.replace("-", "_") in detail.replace("-", "_"), (named, detail)
    assert expected == {}


async def test_a_second_case_for_a_person_already_transferred_is_rejected_as_duplicate_case(
    rabbitmq_vhost: TestVhost, tmp_path: Path
) -> None:
    """Two real agents: the first case completes; a second application for the same person
    reaches the outgoing agent, which answers ``duplicate_case`` (it used to say ``other``)."""
    async with agent_world(
        rabbitmq_vhost, tmp_path, [AgencyProfile(DONGGUAN), AgencyProfile(JIUJIANG)]
    ) as world:
        await world.start(DONGGUAN)
        await world.start(JIUJIANG)
        out, _ = await world.mover(DONGGUAN, JIUJIANG, **EMPLOYEE)
        first = await world.apply(JIUJIANG, DONGGUAN, out)
        assert await world.wait_terminal(JIUJIANG, first) == State.COMPLETED
        assert await world.wait_terminal(DONGGUAN, first) == State.COMPLETED

        second = await world.apply(JIUJIANG, DONGGUAN, out)
        assert await world.wait_terminal(JIUJIANG, second) == State.REJECTED
        assert await world.wait_terminal(DONGGUAN, second) == State.REJECTED
        for code in (DONGGUAN, JIUJIANG):
            assert (await world.case(code, second)).rejection_reason is RejectionReason.DUPLICATE_CASE
        assert await world.ledger(DONGGUAN).total_debited_fen() == out.balance_fen
