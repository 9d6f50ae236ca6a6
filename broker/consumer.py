"""Consuming an agency's inbox: checks in a fixed order, manual acks, retry and dead letters.

Every delivery runs the same pipeline::

    size -> decode -> recipient -> sender = user_id -> properties -> signature -> replay -> payload
    -> handler

and ends in exactly one place, `dispose` (`broker.disposition`: ack, retry with a delay, or
dead-letter with a reason), whose copy (a retry, a dead letter) is published to the agency's own
exchanges. Either copy is confirmed before the original is acked, so a crash in between
duplicates (harmless: the inbox of handled ids, `broker.replay`) and never loses. If the copy cannot
be published, the original is requeued after a pause; the quorum inbox's ``x-delivery-limit`` bounds
even that loop. A poison message therefore never blocks the queue and never stops the consumer.
`ConsumerSettings` (`broker.consumer_settings`) tunes it; `run_until_signal` (`broker.signals`) stops
consumers on SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

import structlog
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustChannel
from structlog.contextvars import bind_contextvars, reset_contextvars

from broker.connection import BrokerConnection
from broker.consumer_settings import DEFAULT_MAX_BODY_BYTES, DEFAULT_RETRY_DELAYS_MS, ConsumerSettings
from broker.delivery import (
    HEADER_REPUBLISHED,
    DeliveryInfo,
    attempt_of,
    header_str,
    printable,
    publisher_user,
)
from broker.disposition import (
    Ack,
    ConsumerStats,
    DeadLetter,
    Disposition,
    Retry,
    dead_letter_copy,
    dispose,
    retry_copy,
)
from broker.metrics import TransportMetrics
from broker.names import (
    agency_dlx,
    agency_retry_exchange,
    agency_user,
    inbox_queue,
    retry_delay_key,
)
from broker.properties import check_delivery_properties
from broker.publisher import Publisher
from broker.replay import RecentMessageIds, SeenCheck, SenderSeenCheck, _replay_check
from broker.signals import Stoppable, run_until_signal
from broker.signing import Ed25519PublicKey, verify_envelope, verify_envelope_async
from schemas.envelope import Envelope
from schemas.errors import ContractError, TransientError
from schemas.pii import mask_value
from schemas.registry import Message, decode_envelope_with_raw, validate_document

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_RETRY_DELAYS_MS",
    "Ack",
    "Consumer",
    "ConsumerSettings",
    "ConsumerStats",
    "DeadLetter",
    "DeliveryInfo",
    "Disposition",
    "Handler",
    "KeyDirectory",
    "RecentMessageIds",
    "Retry",
    "SeenCheck",
    "SenderSeenCheck",
    "Stoppable",
    "dispose",
    "run_until_signal",
]

log = structlog.get_logger("jiexu.broker.consumer")

DETAIL_MAX_CHARS = 2000
CANCEL_TIMEOUT_S = 5.0

Handler = Callable[[Message, DeliveryInfo], Awaitable[None]]
"""``async def handle(message, delivery) -> None``: returns only after its own commit."""


class KeyDirectory(Protocol):
    """Where the sender's public key comes from (`broker.directory.AgencyDirectory` is one)."""

    def public_key(self, code: str) -> Ed25519PublicKey: ...


class _Duplicate(Exception):
    """Internal: a broker redelivery of a message already handled (our ack got lost)."""


@dataclass
class _Tally:
    """Internal: what one delivery tells the metrics (its type once decoded, the handler's time)."""

    message_type: str | None = None
    handler_s: float = 0.0


# -- the consumer ---------------------------------------------------------------------------------


class Consumer:
    """Consumes ``inbox_queue(agency)`` and calls ``handler`` for each valid message.

    Connect as the agency's own broker user: it re-publishes retries and dead letters with that
    user's ``user_id`` (see `broker.delivery`).
    """

    def __init__(
        self,
        connection: BrokerConnection,
        *,
        agency: str,
        handler: Handler,
        directory: KeyDirectory,
        settings: ConsumerSettings | None = None,
        seen: SeenCheck | None = None,
        publisher: Publisher | None = None,
        queue_name: str | None = None,
        metrics: TransportMetrics | None = None,
        seen_from: SenderSeenCheck | None = None,
        republished_from: SenderSeenCheck | None = None,
    ) -> None:
        """``metrics``: counted per delivery (`broker.metrics.TransportMetrics`), if given.
        ``republished_from(sender, message_id)``: whether the copy handled came marked republished,
        as the handler committed it (`DeliveryInfo.republished`); without it, this consumer
        remembers the ids it handled from marked copies, in memory."""
        self.agency = agency
        self.settings = settings or ConsumerSettings()
        self.queue_name = queue_name or inbox_queue(agency)
        self.stats = ConsumerStats()
        self._connection = connection
        self._handler = handler
        self._directory = directory
        self._own_user = connection.user
        self._recent: RecentMessageIds | None = None
        self._seen = _replay_check(seen, seen_from)
        if seen is None and seen_from is None:
            self._recent = recent = RecentMessageIds()

            async def remembered(sender: str, message_id: UUID) -> bool:
                return await recent(message_id, sender)

            self._seen = remembered
        # Ids handled from a copy marked republished: their late originals are stale, not replays.
        # Asked of the store (what the handler committed) when given; else remembered here.
        self._republished_memory: RecentMessageIds | None = None
        if republished_from is None:
            self._republished_memory = memory = RecentMessageIds(capacity=10_000)

            async def remembered_marked(sender: str, message_id: UUID) -> bool:
                return memory.seen(message_id)

            republished_from = remembered_marked
        self._republished_from = republished_from
        self._publisher = publisher
        self._owns_publisher = publisher is None
        # Strong references: a channel or queue nobody holds is collected and never restored.
        self._channel: AbstractRobustChannel | None = None
        self._queue: AbstractQueue | None = None
        self._consumer_tag: str | None = None
        self._inflight: set[asyncio.Task[Any]] = set()
        self._in_progress: set[UUID] = set()
        self._stopping = False
        self._metrics = metrics

    @property
    def own_user(self) -> str:
        return self._own_user

    @property
    def directory(self) -> KeyDirectory:
        """Where senders' keys come from; replaced (a reloaded directory) for the deliveries
        verified from then on."""
        return self._directory

    @directory.setter
    def directory(self, directory: KeyDirectory) -> None:
        self._directory = directory

    @property
    def active(self) -> bool:
        """Consuming now: started, not stopping, and its channel open (not while reconnecting)."""
        return (
            self._consumer_tag is not None
            and not self._stopping
            and self._channel is not None
            and not self._channel.is_closed
        )

    async def start(self) -> Consumer:
        if self._publisher is None:
            self._publisher = Publisher(self._connection, agency=self.agency)
        await self._publisher.start()
        self._channel = await self._connection.channel(
            prefetch=self.settings.prefetch, confirms=False
        )
        # Passive: the agency user may not declare; the robust channel re-checks it on reconnect.
        self._queue = await self._channel.get_queue(self.queue_name, ensure=True)
        self._consumer_tag = await self._queue.consume(self._on_message)
        log.info(
            "consumer_started",
            agency=self.agency,
            queue=self.queue_name,
            prefetch=self.settings.prefetch,
        )
        return self

    async def stop(self, timeout_s: float | None = None) -> None:
        """Drain: stop taking deliveries, let in-flight handlers finish and ack, then close.

        Deliveries still unfinished after the timeout are cancelled; closing the channel returns
        them to the queue unacked, to be handled by the next consumer.
        """
        if self._stopping:
            return
        self._stopping = True
        timeout = self.settings.drain_timeout_s if timeout_s is None else timeout_s
        if self._queue is not None and self._consumer_tag is not None:
            try:
                # Bounded: a stalled node never answers the cancel.
                await asyncio.wait_for(self._queue.cancel(self._consumer_tag), CANCEL_TIMEOUT_S)
            except Exception as exc:  # the channel may already be gone; the drain still runs
                log.warning("consumer_cancel_failed", agency=self.agency, error=repr(exc))
        unfinished = await self._drain(timeout)
        if unfinished:
            log.warning("consumer_drain_timeout", agency=self.agency, unfinished=unfinished)
        if self._channel is not None:
            self._connection.forget(self._channel)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._channel.close(), CANCEL_TIMEOUT_S)
        if self._publisher is not None and self._owns_publisher:
            await self._publisher.close()
        log.info("consumer_stopped", agency=self.agency, **_stats_fields(self.stats))

    async def _drain(self, within_s: float) -> int:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        # Deliveries received before the cancel-ok are tasks that may not have started yet:
        # yield once so they register, then wait until none is left.
        await asyncio.sleep(0)
        while self._inflight:
            remaining = deadline - loop.time()
            if remaining <= 0:
                pending = list(self._inflight)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                return len(pending)
            await asyncio.wait(set(self._inflight), timeout=remaining)
            await asyncio.sleep(0)
        return 0

    # -- one delivery -----------------------------------------------------------------------------
    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            # Set and reset through tokens (not `bound_contextvars`, which snapshots the whole
            # context): the delivery's task has its own copy of the context anyway.
            tokens = bind_contextvars(
                agency=self.agency,
                message_id=message.message_id,
                case_id=message.correlation_id,
            )
            try:
                attempt = attempt_of(message, self._own_user)
                error: Exception | None = None
                disposition: Disposition
                tally = _Tally()
                try:
                    await self._process(message, attempt, tally)
                    disposition = Ack()
                except _Duplicate:
                    disposition = Ack(duplicate=True)
                except Exception as exc:
                    error = exc
                    disposition = dispose(
                        exc,
                        attempt=attempt,
                        retry_delays_ms=self.settings.retry_delays_ms,
                        max_attempts=self.settings.attempts,
                    )
                if self._metrics is not None and tally.message_type is None:
                    self._metrics.message_received(None)  # not decodable: counted as unknown
                await self._execute(disposition, message, error, tally)
            finally:
                _reset_context(tokens)
        finally:
            if task is not None:
                self._inflight.discard(task)

    async def _process(
        self, message: AbstractIncomingMessage, attempt: int, tally: _Tally
    ) -> None:
        size = len(message.body)
        if size > self.settings.max_body_bytes:
            raise ContractError(
                "too_large", f"body is {size} bytes, the limit is {self.settings.max_body_bytes}"
            )
        envelope, received = decode_envelope_with_raw(message.body)
        tally.message_type = envelope.type
        if self._metrics is not None:
            self._metrics.message_received(envelope.type)
        # The received strings are the ids' canonical text forms (the envelope model insists).
        bind_contextvars(
            message_id=received["message_id"],
            case_id=received["case_id"],
            message_type=envelope.type,
            sender=envelope.sender,
        )
        if envelope.recipient != self.agency:
            raise ContractError(
                "wrong_recipient",
                f"envelope is for {envelope.recipient}, this inbox is {self.agency}'s",
            )
        publisher = publisher_user(message, self._own_user)
        expected = agency_user(envelope.sender, self.settings.user_prefix)
        if publisher != expected:
            raise ContractError(
                "sender_mismatch",
                f"envelope sender {envelope.sender} must be published by {expected}, "
                f"was published by {publisher or 'an unnamed user (no user_id)'}",
            )
        check_delivery_properties(envelope, message)
        # The signature covers the JSON object the sender wrote, which a client in another
        # language may spell differently from our model's dump (an omitted null, say): verify
        # what was received, as parsed once by decode_envelope_with_raw.
        if self.settings.verify_in_thread:
            await verify_envelope_async(received, self._public_key(envelope))
        else:
            verify_envelope(received, self._public_key(envelope))
        if await self._seen(envelope.sender, envelope.message_id):
            if message.redelivered:
                raise _Duplicate
            if header_str(message.headers, HEADER_REPUBLISHED):
                # The sender's relay says it may have sent this before (it crashed or lost a
                # confirm): a harmless duplicate, logged, not a replay for the operators' DLQ.
                log.info("duplicate_republish_acked", publisher_user=publisher)
                raise _Duplicate
            if message.user_id == self._own_user:
                # Our own copy (a retry) of a message handled meanwhile: on a failover the ack
                # of the original can be lost after its retry copy was confirmed; the original
                # comes back redelivered and is handled, then the retry copy arrives.
                log.info("duplicate_own_copy_acked", publisher_user=publisher)
                raise _Duplicate
            if await self._republished_from(envelope.sender, envelope.message_id):
                # The original of a copy the sender's relay republished after a lost confirm
                # (a stalled node) and that was handled first (by this process, another replica
                # or before a restart): the original, held by the stalled node, arrives late.
                # A stale copy, not a replay.
                log.info("stale_original_acked", publisher_user=publisher)
                raise _Duplicate
            raise ContractError(
                "replayed", f"message {envelope.message_id} was already handled"
            )
        document = validate_document(envelope)
        if envelope.message_id in self._in_progress:
            # Two copies at once (a publisher's retry racing the original): let this one come back
            # after a delay, when the replay check can tell whether the first was handled.
            raise TransientError(f"message {envelope.message_id} is being handled right now")
        self._in_progress.add(envelope.message_id)
        started = time.perf_counter()
        try:
            await self._handler(
                Message(envelope=envelope, document=document),
                DeliveryInfo(
                    agency=self.agency,
                    routing_key=message.routing_key,
                    redelivered=bool(message.redelivered),
                    attempt=attempt,
                    publisher_user=publisher,
                    republished=bool(header_str(message.headers, HEADER_REPUBLISHED)),
                ),
            )
        finally:
            self._in_progress.discard(envelope.message_id)
            tally.handler_s = time.perf_counter() - started
        if self._recent is not None:
            self._recent.remember(envelope.message_id, envelope.sender)
        if self._republished_memory is not None and header_str(message.headers, HEADER_REPUBLISHED):
            self._republished_memory.remember(envelope.message_id)

    def _public_key(self, envelope: Envelope) -> Ed25519PublicKey | tuple[Ed25519PublicKey, ...]:
        valid_keys = getattr(self._directory, "valid_keys", None)  # every key valid now (rotation)
        try:
            if valid_keys is not None:
                return tuple(valid_keys(envelope.sender))
            return self._directory.public_key(envelope.sender)
        except KeyError as exc:
            # The sender passed the user_id check, so the broker knows it: the directory has not
            # caught up (a new agency). Worth retrying; after the retries an operator fixes the
            # directory and replays the dead letter.
            raise TransientError(
                f"sender {envelope.sender} is not in the agency directory"
            ) from exc

    async def _execute(
        self,
        disposition: Disposition,
        message: AbstractIncomingMessage,
        error: BaseException | None,
        tally: _Tally | None = None,
    ) -> None:
        assert self._publisher is not None
        metrics = self._metrics
        message_type = tally.message_type if tally is not None else None
        try:
            if isinstance(disposition, Retry):
                copy = retry_copy(message, own_user=self._own_user, attempt=disposition.attempt)
                await self._publisher.publish_message(
                    agency_retry_exchange(self.agency),
                    retry_delay_key(self.agency, disposition.delay_ms),
                    copy,
                )
                log.warning(
                    "message_retry_scheduled",
                    attempt=disposition.attempt,
                    delay_ms=disposition.delay_ms,
                    error=disposition.error,
                )
                self.stats.retried += 1
                if metrics is not None:
                    metrics.retried(message_type)
            elif isinstance(disposition, DeadLetter):
                detail = printable(mask_value(disposition.detail), DETAIL_MAX_CHARS) or ""
                copy = dead_letter_copy(
                    message, own_user=self._own_user, reason=disposition.reason, detail=detail
                )
                await self._publisher.publish_message(agency_dlx(self.agency), self.agency, copy)
                log.warning(
                    "message_dead_lettered",
                    reason=disposition.reason,
                    detail=detail,
                    routing_key=message.routing_key,
                    publisher_user=message.user_id,
                    body_bytes=len(message.body),
                    error=repr(error) if error is not None else None,
                )
                self.stats.dead_lettered += 1
                self.stats.dead_reasons[disposition.reason] = (
                    self.stats.dead_reasons.get(disposition.reason, 0) + 1
                )
                if metrics is not None:
                    metrics.dead_lettered(message_type, disposition.reason)
            elif disposition.duplicate:
                log.info("duplicate_redelivery_acked")
                self.stats.duplicates += 1
                if metrics is not None:
                    metrics.duplicate(message_type)
            else:
                self.stats.handled += 1
                if metrics is not None and message_type is not None:
                    metrics.message_handled(message_type, tally.handler_s if tally else 0.0)
        except Exception as exc:
            log.error("delivery_decision_failed", decision=repr(disposition), error=repr(exc))
            await self._requeue(message)
            return
        try:
            await message.ack()
        except Exception as exc:
            # The channel is gone: the broker requeues the delivery; the copy (if any) and the
            # handler's commit make the redelivery a duplicate, which the replay check absorbs.
            log.warning("ack_failed", error=repr(exc))

    async def _requeue(self, message: AbstractIncomingMessage) -> None:
        await asyncio.sleep(self.settings.requeue_pause_s)
        try:
            await message.nack(requeue=True)
            self.stats.requeued += 1
            if self._metrics is not None:
                self._metrics.requeued()
        except Exception as exc:
            log.warning("nack_failed", error=repr(exc))


def _reset_context(tokens: Mapping[str, contextvars.Token[Any]]) -> None:
    with contextlib.suppress(ValueError, RuntimeError):  # a token from another context
        reset_contextvars(**tokens)


def _stats_fields(stats: ConsumerStats) -> dict[str, Any]:
    return {
        "handled": stats.handled,
        "duplicates": stats.duplicates,
        "retried": stats.retried,
        "dead_lettered": stats.dead_lettered,
        "requeued": stats.requeued,
    }

