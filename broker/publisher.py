"""Confirmed, mandatory, persistent publishing of envelopes (and of the consumer's copies).

Every publish waits for the broker's confirm; throughput comes from many confirms in flight at
once (a bounded semaphore), never from skipping them. A message the broker cannot route is
returned (``mandatory``) and raised as `UnroutableError`; a ``basic.nack`` as `PublishNacked`; a
connection lost before the confirm as `PublishInterrupted` (the message may or may not have
arrived, so the caller publishes again and the receiver's inbox absorbs the duplicate).

A confirm has a deadline (``confirm_timeout_s``): a quorum queue confirms once a majority of its
members has the message, and a node that stalls or has lost its majority never confirms. Past
the deadline the publish fails as `PublishInterrupted` (the outbox row stays, to be sent again)
and the connection is abandoned for another node (`BrokerConnection.abandon`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import aio_pika
import aiormq
import orjson
import structlog
from aio_pika.abc import AbstractRobustChannel, HeadersType
from pamqp.commands import Basic

from broker.connection import BrokerConnection
from broker.names import EXCHANGE, routing_key
from broker.signing import Ed25519PrivateKey, sign_and_encode
from schemas.envelope import Envelope
from schemas.errors import JiexuError, TransientError
from schemas.registry import encode_envelope

__all__ = [
    "HEADER_TYPE",
    "HEADER_VERSION",
    "PublishInterrupted",
    "PublishNacked",
    "PublishOutcome",
    "PublishRefused",
    "Publisher",
    "UnroutableError",
    "body_properties",
    "envelope_message",
    "envelope_properties",
]

log = structlog.get_logger("jiexu.broker.publisher")

BasicProperties = Basic.Properties

HEADER_TYPE = "x-jiexu-type"
HEADER_VERSION = "x-jiexu-version"
DEFAULT_MAX_IN_FLIGHT = 500
DEFAULT_CONFIRM_TIMEOUT_S = 10.0
CONTENT_TYPE = "application/json"
APP_ID = "jiexu"
PERSISTENT = int(aio_pika.DeliveryMode.PERSISTENT)


class UnroutableError(JiexuError):
    """The broker returned a ``mandatory`` message: no queue is bound for its routing key."""

    def __init__(self, exchange: str, routing_key: str, reply_text: str) -> None:
        super().__init__(f"unroutable: exchange {exchange!r} key {routing_key!r}: {reply_text}")
        self.exchange = exchange
        self.routing_key = routing_key
        self.reply_text = reply_text


class PublishNacked(TransientError):
    """The broker refused the message (``basic.nack``), e.g. a queue over its length limit."""


class PublishRefused(JiexuError):
    """The broker closed the channel over this publish (no such exchange, access refused, a
    ``user_id`` that is not the connection's user): a configuration error, not worth retrying."""


class PublishInterrupted(TransientError):
    """The channel or connection went away before the confirm; the message may have arrived."""


@dataclass(frozen=True)
class PublishOutcome:
    """What happened to one envelope of `Publisher.publish_many`."""

    message_id: UUID
    error: Exception | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def envelope_properties(
    envelope: Envelope, user_id: str, headers: Mapping[str, Any] | None = None
) -> BasicProperties:
    """The AMQP properties of an envelope: its ids, type and version, persistent, JSON."""
    return _properties(
        message_id=str(envelope.message_id),
        case_id=str(envelope.case_id),
        message_type=envelope.type,
        version=envelope.version,
        sent_at=envelope.sent_at,
        user_id=user_id,
        headers=headers,
    )


def body_properties(
    body: bytes, user_id: str, headers: Mapping[str, Any] | None = None
) -> BasicProperties:
    """`envelope_properties` of an envelope this agency encoded itself (an outbox row), read off
    its body without validating it again."""
    data = orjson.loads(body)
    return _properties(
        message_id=data["message_id"],
        case_id=data["case_id"],
        message_type=data["type"],
        version=data["version"],
        sent_at=datetime.fromisoformat(data["sent_at"]),
        user_id=user_id,
        headers=headers,
    )


def _properties(
    *,
    message_id: str,
    case_id: str,
    message_type: str,
    version: int,
    sent_at: datetime,
    user_id: str,
    headers: Mapping[str, Any] | None,
) -> BasicProperties:
    return BasicProperties(
        content_type=CONTENT_TYPE,
        delivery_mode=PERSISTENT,
        priority=0,  # as aio-pika writes it
        message_id=message_id,
        correlation_id=case_id,
        message_type=message_type,
        user_id=user_id,
        timestamp=sent_at,
        app_id=APP_ID,
        headers=_headers(message_type, version, headers),
    )


def _headers(
    message_type: str, version: int, extra: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Type and version as headers (what routing and operators read without the body), plus
    ``extra`` (a relay's republished flag, a test's own)."""
    headers: dict[str, Any] = {HEADER_TYPE: message_type, HEADER_VERSION: version}
    if extra:
        headers.update(extra)
    return headers


def envelope_message(
    envelope: Envelope, body: bytes, user_id: str, headers: Mapping[str, Any] | None = None
) -> aio_pika.Message:
    """The same message as an aio-pika `Message` (for code that wants to inspect or copy it)."""
    all_headers: HeadersType = _headers(envelope.type, envelope.version, headers)
    return aio_pika.Message(
        body,
        content_type=CONTENT_TYPE,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=str(envelope.message_id),
        correlation_id=str(envelope.case_id),
        type=envelope.type,
        user_id=user_id,
        timestamp=envelope.sent_at,
        app_id=APP_ID,
        headers=all_headers,
    )


class Publisher:
    """Publishes for one agency over one confirm channel of a `BrokerConnection`.

    ``agency`` is the code the envelopes must be sent by: an agency speaks only for itself, and the
    broker checks the ``user_id`` (the connection's user) on every message.
    """

    def __init__(
        self,
        connection: BrokerConnection,
        *,
        agency: str,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        private_key: Ed25519PrivateKey | None = None,
        confirm_timeout_s: float = DEFAULT_CONFIRM_TIMEOUT_S,
    ) -> None:
        self._connection = connection
        self.confirm_timeout_s = confirm_timeout_s
        self.agency = agency
        self.user_id = connection.user
        self._private_key = private_key
        self._in_flight = asyncio.Semaphore(max_in_flight)
        self._channel: AbstractRobustChannel | None = None

    async def start(self) -> Publisher:
        if self._channel is None:
            self._channel = await self._connection.channel(confirms=True)
        return self

    async def close(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            self._connection.forget(channel)
            if not channel.is_closed:
                try:
                    await asyncio.wait_for(channel.close(), self.confirm_timeout_s)
                except Exception as exc:  # a stalled node: the connection's close is bounded too
                    log.debug("publisher_channel_close_failed", error=repr(exc))

    # -- envelopes -------------------------------------------------------------------------------
    def prepare(self, envelope: Envelope) -> tuple[Envelope, bytes]:
        """Sign (when this publisher holds a key and the envelope is unsigned) and encode."""
        if envelope.sender != self.agency:
            raise ValueError(
                f"agency {self.agency} cannot send an envelope from {envelope.sender}"
            )
        if envelope.signature is None:
            if self._private_key is None:
                raise ValueError(f"envelope {envelope.message_id} is unsigned and no key is set")
            # One model dump serves both the signed bytes and the body.
            return sign_and_encode(envelope, self._private_key)
        return envelope, encode_envelope(envelope)

    async def publish(self, envelope: Envelope) -> Envelope:
        """Publish one envelope to the recipient's inbox and wait for the confirm.

        Returns the envelope as sent (signed). Raises `UnroutableError`, `PublishNacked`,
        `PublishInterrupted`.
        """
        envelope, body = self.prepare(envelope)
        properties = envelope_properties(envelope, self.user_id)
        await self.publish_body(
            EXCHANGE, routing_key(envelope.recipient, envelope.type), body, properties
        )
        log.debug(
            "envelope_published",
            message_id=properties.message_id,
            case_id=properties.correlation_id,
            type=envelope.type,
            recipient=envelope.recipient,
        )
        return envelope

    async def publish_many(self, envelopes: Iterable[Envelope]) -> list[PublishOutcome]:
        """Publish a batch concurrently (bounded in flight); one outcome per envelope, in order.

        Meant for the outbox relay: mark the rows whose outcome is ``ok`` as sent, leave the
        others for the next round. Nothing is raised for a single failure.
        """
        batch = list(envelopes)
        results = await asyncio.gather(
            *(self.publish(envelope) for envelope in batch), return_exceptions=True
        )
        outcomes: list[PublishOutcome] = []
        for envelope, result in zip(batch, results, strict=True):
            if isinstance(result, BaseException) and not isinstance(result, Exception):
                raise result  # cancellation and the like are not per-message outcomes
            error = result if isinstance(result, Exception) else None
            if error is not None:
                log.warning(
                    "envelope_publish_failed",
                    message_id=str(envelope.message_id),
                    case_id=str(envelope.case_id),
                    error=repr(error),
                )
            outcomes.append(PublishOutcome(envelope.message_id, error))
        return outcomes

    # -- raw messages ----------------------------------------------------------------------------
    async def publish_message(
        self, exchange: str, routing_key: str, message: aio_pika.Message
    ) -> None:
        """Publish a prepared aio-pika message (mandatory, confirmed) with the errors translated."""
        await self.publish_body(exchange, routing_key, message.body, message.properties)

    async def publish_body(
        self, exchange: str, routing_key: str, body: bytes, properties: BasicProperties
    ) -> None:
        """Publish ``body`` with ``properties`` (mandatory, confirmed), the errors translated.

        Straight onto the channel's current aiormq channel: the frames are what aio-pika's
        `Exchange.publish` writes, without building an aio-pika `Message` first.
        """
        message_id = properties.message_id
        async with self._in_flight:
            try:
                channel = await self._underlay()
                result = await asyncio.wait_for(
                    channel.basic_publish(
                        body,
                        exchange=exchange,
                        routing_key=routing_key,
                        properties=properties,
                        mandatory=True,
                    ),
                    self.confirm_timeout_s,
                )
            except asyncio.CancelledError as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # this task is being cancelled: not a publish outcome
                # aiormq cancels the pending confirms of a connection it closes.
                raise PublishInterrupted(
                    f"publishing {message_id} to {exchange!r} interrupted: connection closed"
                ) from exc
            except TimeoutError as exc:
                self._connection.abandon(f"no confirm within {self.confirm_timeout_s:g} s")
                raise PublishInterrupted(
                    f"publishing {message_id} to {exchange!r}: no confirm within "
                    f"{self.confirm_timeout_s:g} s"
                ) from exc
            except aiormq.exceptions.PublishError as exc:
                raise UnroutableError(exchange, routing_key, str(exc)) from exc
            except aiormq.exceptions.DeliveryError as exc:
                raise PublishNacked(
                    f"broker refused message {message_id} to {exchange!r}"
                ) from exc
            except aiormq.exceptions.ChannelClosed as exc:
                raise PublishRefused(
                    f"broker refused publishing {message_id} to {exchange!r}: {exc}"
                ) from exc
            except (
                aiormq.exceptions.AMQPConnectionError,
                aiormq.exceptions.ChannelInvalidStateError,
                ConnectionError,
            ) as exc:
                raise PublishInterrupted(
                    f"publishing {message_id} to {exchange!r} interrupted: {exc!r}"
                ) from exc
        if isinstance(result, aiormq.abc.DeliveredMessage):
            # Only without on_return_raises; kept so a changed channel setting cannot hide returns.
            raise UnroutableError(exchange, routing_key, "returned")

    async def _underlay(self) -> aiormq.abc.AbstractChannel:
        channel = self._channel
        if channel is None:
            raise RuntimeError("Publisher.start() was not awaited")
        if channel.is_closed:
            raise aiormq.exceptions.ChannelInvalidStateError(f"{channel!r} closed")
        return await channel.get_underlay_channel()
