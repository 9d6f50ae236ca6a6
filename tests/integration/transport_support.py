"""Shared set-up for the transport tests: a provisioned vhost, agency keys and logins, helpers.

The fixtures built from it live in conftest.py files: `agencies_sync` in tests/conftest.py (the
e2e tests use it too), `agencies` in tests/integration/conftest.py.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import aio_pika
import pytest

from broker.connection import BrokerConnection, connect
from broker.consumer import Consumer, ConsumerSettings, DeliveryInfo, Handler
from broker.directory import AgencyDirectory, AgencyEntry, DirectoryBankAccount
from broker.names import EXCHANGE, routing_key
from broker.publisher import Publisher, envelope_message
from broker.pytest_plugin import TestVhost
from broker.signing import (
    Ed25519PrivateKey,
    public_key_to_raw_b64,
    sign_envelope,
)
from broker.topology import AgencyCredentials, TopologySpec
from schemas.envelope import Envelope
from schemas.notices import ReceiptV1
from schemas.registry import Message, encode_envelope, envelope_for

__all__ = [
    "RETRY_DELAYS_MS",
    "WAIT_S",
    "A",
    "Agencies",
    "B",
    "C",
    "MutableDirectory",
    "Recorder",
    "directory_entry",
    "drain_queue",
    "encoded",
    "eventually",
    "publish_raw",
    "queue_counts",
    "receipt",
]

A, B, C = "110000", "310000", "440300"
WAIT_S = 60.0  # how long to wait for an outcome; a bound on waiting, never asserted as a duration
RETRY_DELAYS_MS = (100, 300)


def directory_entry(code: str, key: Ed25519PrivateKey) -> AgencyEntry:
    return AgencyEntry(
        code=code,
        name=f"医疗保障事务中心 {code}",
        supported_versions={"receipt": (1,), "information_form": (1, 2)},
        public_key=public_key_to_raw_b64(key),
        bank_account=DirectoryBankAccount(
            bank_name="中国工商银行",
            bank_code="102100099996",
            account_name=f"医保中心 {code}",
            account_number=f"6222{code}000001",
        ),
    )


class MutableDirectory:
    """A directory an operator can fix while consumers run (the consumer asks it every time)."""

    def __init__(self, directory: AgencyDirectory) -> None:
        self.current = directory

    def public_key(self, code: str) -> Any:
        return self.current.public_key(code)


@dataclass
class Agencies:
    """A provisioned vhost with three agencies (A, B, C): logins, keys, directory."""

    vhost: TestVhost
    spec: TopologySpec
    credentials: AgencyCredentials
    keys: dict[str, Ed25519PrivateKey]
    directory: MutableDirectory
    _connections: list[BrokerConnection] = field(default_factory=list)

    def url(self, code: str) -> str:
        cred = self.credentials[code]
        return self.vhost.url_for(cred.username, cred.password)

    def user(self, code: str) -> str:
        return self.spec.user(code)

    async def connect(self, code: str, name: str | None = None) -> BrokerConnection:
        connection = await connect(
            self.url(code), name=name or f"test-{code}", reconnect_floor_s=0.2
        )
        self._connections.append(connection)
        return connection

    async def admin(self) -> BrokerConnection:
        connection = await connect(self.vhost.amqp_url, name="test-admin")
        self._connections.append(connection)
        return connection

    async def publisher(self, code: str) -> Publisher:
        connection = await self.connect(code, name=f"test-publisher-{code}")
        return await Publisher(connection, agency=code, private_key=self.keys[code]).start()

    def settings(self, **overrides: Any) -> ConsumerSettings:
        values: dict[str, Any] = {
            "prefetch": 20,
            "retry_delays_ms": self.spec.retry_delays_ms,
            "user_prefix": self.spec.user_prefix,
            "requeue_pause_s": 0.2,
        }
        values.update(overrides)
        return ConsumerSettings(**values)

    async def consumer(
        self, code: str, handler: Handler, *, name: str | None = None, **settings: Any
    ) -> Consumer:
        connection = await self.connect(code, name=name or f"test-consumer-{code}")
        consumer = Consumer(
            connection,
            agency=code,
            handler=handler,
            directory=self.directory,
            settings=self.settings(**settings),
        )
        return await consumer.start()

    def signed(self, envelope: Envelope, signer: str | None = None) -> Envelope:
        return sign_envelope(envelope, self.keys[signer or envelope.sender])

    async def close(self) -> None:
        for connection in reversed(self._connections):
            if not connection.is_closed:
                await connection.close()
        self._connections.clear()


def receipt(sender: str, recipient: str, **fields: Any) -> Envelope:
    """An unsigned, valid receipt envelope (the smallest document)."""
    return envelope_for(
        ReceiptV1(acknowledged_message_id=uuid.uuid4()),
        sender=sender,
        recipient=recipient,
        case_id=fields.pop("case_id", uuid.uuid4()),
        **fields,
    )


async def publish_raw(
    publisher: Publisher,
    body: bytes,
    *,
    envelope: Envelope | None = None,
    key: str | None = None,
    exchange: str = EXCHANGE,
) -> str:
    """Publish bytes as they are (hostile inputs), with the publisher's own user_id.

    Returns the AMQP message id used (the envelope's when given).
    """
    if envelope is not None:
        message = envelope_message(envelope, body, publisher.user_id)
    else:
        message = aio_pika.Message(
            body,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=str(uuid.uuid4()),
            user_id=publisher.user_id,
        )
    await publisher.publish_message(exchange, key or routing_key(A, "receipt"), message)
    assert message.message_id is not None
    return message.message_id


def encoded(envelope: Envelope) -> bytes:
    return encode_envelope(envelope)


@dataclass
class Recorder:
    """A handler that records what it handled; ``fail`` decides per (message, delivery)."""

    fail: Callable[[Message, DeliveryInfo], BaseException | None] = lambda m, d: None
    handled: list[UUID] = field(default_factory=list)
    deliveries: list[tuple[UUID, DeliveryInfo]] = field(default_factory=list)

    async def __call__(self, message: Message, delivery: DeliveryInfo) -> None:
        self.deliveries.append((message.envelope.message_id, delivery))
        error = self.fail(message, delivery)
        if error is not None:
            raise error
        self.handled.append(message.envelope.message_id)


async def eventually(
    condition: Callable[[], Awaitable[bool] | bool], what: str, timeout_s: float = WAIT_S
) -> None:
    """Poll ``condition`` until true; fail naming ``what`` after a generous timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            pytest.fail(f"timed out waiting for: {what}")
        await asyncio.sleep(0.05)


async def queue_counts(admin: BrokerConnection, name: str) -> tuple[int, int]:
    """(ready messages, consumers) of a queue, straight from the broker (passive declare)."""
    channel = await admin.channel(confirms=False)
    try:
        queue = await channel.declare_queue(name, passive=True, robust=False)
        result = queue.declaration_result
        return result.message_count or 0, result.consumer_count or 0
    finally:
        admin.forget(channel)
        await channel.close()


async def drain_queue(admin: BrokerConnection, name: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Take every message off a queue (acked), for inspection."""
    channel = await admin.channel(confirms=False)
    taken = []
    try:
        queue = await channel.declare_queue(name, passive=True, robust=False)
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            taken.append(message)
    finally:
        admin.forget(channel)
        await channel.close()
    return taken

