"""Operator tooling for an agency's dead-letter queue: list what is there, replay chosen ones.

Both work by ``basic.get`` without ack on one channel: the broker will not hand an unacked message
to the same channel twice, so fetching until the queue answers empty visits every dead letter once.
Listing then closes the channel, which returns every message unchanged. Replaying publishes a copy
of each chosen message back into the inbox (the agency's own ``agency_retry_exchange(code)``, key
``inbox.{code}``) with the
dead-letter headers and the attempt count removed, waits for the confirm and only then acks it off
the DLQ; the others go back untouched. A replayed message that was in fact handled before meets the
consumer's replay check (the store's inbox), so replaying is safe to repeat.

Connect as the agency's own broker user: the copies carry its ``user_id`` (see `broker.delivery`).

What a dead letter says is believed only as far as who wrote it: the ``x-jiexu-dead-*`` headers
count only on a copy published with the ``user_id`` of the agency whose queue it is (its consumer
wrote them; no other agency can publish into its dead-letter queue), whoever lists them. A message
another agency published that the broker dead-lettered (the delivery limit) is reported with the
broker's reason, whatever headers it carries. Every field is masked and has its control characters
escaped (`broker.delivery.printable`) before anyone prints it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustChannel

from broker.connection import BrokerConnection
from broker.delivery import (
    DEAD_LETTER_HEADERS,
    HEADER_ATTEMPT,
    HEADER_DEAD_AT,
    HEADER_DEAD_DETAIL,
    HEADER_DEAD_REASON,
    HEADER_ORIGINAL_ROUTING_KEY,
    attempt_of,
    header_str,
    printable,
    publisher_user,
    republish_copy,
)
from broker.names import agency_retry_exchange, dlq_queue, retry_inbox_key
from broker.publisher import HEADER_VERSION, Publisher
from schemas.pii import mask_value

__all__ = [
    "DeadLetterInfo",
    "ReplayReport",
    "describe",
    "list_dead_letters",
    "replay_dead_letters",
    "summarize",
]

log = structlog.get_logger("jiexu.broker.dlq")

DEFAULT_LIMIT = 10_000
FIELD_MAX_CHARS = 200
DETAIL_MAX_CHARS = 2000


@dataclass(frozen=True)
class DeadLetterInfo:
    """One dead letter as an operator sees it (no payload: that may hold personal data)."""

    message_id: str | None
    reason: str
    detail: str
    type: str | None
    version: str | None
    case_id: str | None
    publisher_user: str | None
    dead_at: datetime | None
    original_routing_key: str | None
    attempt: int
    body_bytes: int

    def age_s(self, now: datetime | None = None) -> float | None:
        if self.dead_at is None:
            return None
        return ((now or datetime.now(UTC)) - self.dead_at).total_seconds()

    def as_dict(self, now: datetime | None = None) -> dict[str, Any]:
        """JSON-ready, with ID numbers and account numbers in the free text masked."""
        age = self.age_s(now)
        return {
            "message_id": self.message_id,
            "reason": self.reason,
            "detail": mask_value(self.detail),
            "type": self.type,
            "version": self.version,
            "case_id": self.case_id,
            "publisher_user": self.publisher_user,
            "dead_at": self.dead_at.isoformat() if self.dead_at else None,
            "age_s": round(age, 1) if age is not None else None,
            "original_routing_key": self.original_routing_key,
            "attempt": self.attempt,
            "body_bytes": self.body_bytes,
        }


@dataclass
class ReplayReport:
    replayed: list[DeadLetterInfo] = field(default_factory=list)
    kept: int = 0
    failed: list[tuple[DeadLetterInfo, str]] = field(default_factory=list)


def _broker_death(message: AbstractIncomingMessage) -> tuple[str | None, datetime | None]:
    """Reason and time of the latest dead-lettering the broker did itself (e.g. the delivery limit).

    The newest ``x-death`` entry comes first and is the broker's own; ``x-last-death-reason`` next.
    (``x-first-death-*`` is kept from whoever set it first, the publisher included: never read.)
    """
    headers = message.headers or {}
    reason: str | None = None
    when: datetime | None = None
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        latest = deaths[0]
        reason = header_str(latest, "reason")
        stamp = latest.get("time")
        if isinstance(stamp, datetime):
            when = stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
    return reason or header_str(headers, "x-last-death-reason"), when


def _clean(text: str | None, max_chars: int = FIELD_MAX_CHARS) -> str | None:
    """Masked (personal data) and printable (no control characters), cut to ``max_chars``."""
    return None if text is None else printable(str(mask_value(text)), max_chars)


def _written_by(message: AbstractIncomingMessage, own_user: str, agency: str | None) -> bool:
    """Whether ``agency`` (the queue's owner) published this copy itself."""
    user = message.user_id or ""
    return user == own_user or (agency is not None and user.endswith(f"agency-{agency}"))


def describe(
    message: AbstractIncomingMessage, own_user: str, agency: str | None = None
) -> DeadLetterInfo:
    """What an operator is shown of one dead letter in ``agency``'s queue: trusted headers only,
    every field cleaned."""
    # Only the owner's own copies carry dead-letter headers it wrote; on anything else they are
    # the publisher's words (see the module docstring).
    headers = (message.headers or {}) if _written_by(message, own_user, agency) else {}
    reason = header_str(headers, HEADER_DEAD_REASON)
    dead_at: datetime | None = None
    raw_at = header_str(headers, HEADER_DEAD_AT)
    if raw_at:
        with contextlib.suppress(ValueError):
            dead_at = datetime.fromisoformat(raw_at)
    detail = header_str(headers, HEADER_DEAD_DETAIL) or ""
    if reason is None:
        broker_reason, broker_at = _broker_death(message)
        reason = f"broker_{broker_reason}" if broker_reason else "unknown"
        dead_at = dead_at or broker_at
        detail = detail or "dead-lettered by the broker (no jiexu reason headers)"
    return DeadLetterInfo(
        message_id=_clean(message.message_id),
        reason=_clean(reason) or "unknown",
        detail=_clean(detail, DETAIL_MAX_CHARS) or "",
        type=_clean(message.type),
        version=_clean(header_str(message.headers, HEADER_VERSION)),
        case_id=_clean(message.correlation_id),
        publisher_user=_clean(publisher_user(message, own_user)),
        dead_at=dead_at,
        original_routing_key=_clean(
            header_str(headers, HEADER_ORIGINAL_ROUTING_KEY) or message.routing_key
        ),
        attempt=attempt_of(message, own_user),
        body_bytes=len(message.body),
    )


async def _fetch_all(
    connection: BrokerConnection, agency: str, limit: int
) -> tuple[AbstractRobustChannel, list[AbstractIncomingMessage]]:
    channel = await connection.channel(confirms=False)
    queue: AbstractQueue = await channel.get_queue(dlq_queue(agency), ensure=True)
    fetched: list[AbstractIncomingMessage] = []
    while len(fetched) < limit:
        message = await queue.get(no_ack=False, fail=False)
        if message is None:
            break
        fetched.append(message)
    return channel, fetched


async def _close(connection: BrokerConnection, channel: AbstractRobustChannel) -> None:
    connection.forget(channel)
    with contextlib.suppress(Exception):
        await channel.close()


async def list_dead_letters(
    connection: BrokerConnection, agency: str, *, limit: int = DEFAULT_LIMIT
) -> list[DeadLetterInfo]:
    """Every dead letter in ``agency``'s DLQ (up to ``limit``), left in place."""
    channel, fetched = await _fetch_all(connection, agency, limit)
    try:
        return [describe(message, connection.user, agency) for message in fetched]
    finally:
        # Closing the channel returns every fetched message to the queue as it was.
        await _close(connection, channel)


async def replay_dead_letters(
    connection: BrokerConnection,
    agency: str,
    *,
    message_ids: Collection[str] | None = None,
    reasons: Collection[str] | None = None,
    replay_all: bool = False,
    limit: int = DEFAULT_LIMIT,
) -> ReplayReport:
    """Send the chosen dead letters back through ``agency``'s inbox and remove them from the DLQ.

    Chosen: every one with ``replay_all``; else those whose message id is in ``message_ids`` or
    whose reason is in ``reasons``. Choosing nothing is an error (so a typo replays nothing rather
    than everything).
    """
    if not replay_all and not message_ids and not reasons:
        raise ValueError("choose dead letters to replay: message ids, reasons, or all")
    wanted_ids = set(message_ids or ())
    wanted_reasons = set(reasons or ())
    publisher = await Publisher(connection, agency=agency).start()
    channel, fetched = await _fetch_all(connection, agency, limit)
    report = ReplayReport()
    try:
        for message in fetched:
            info = describe(message, connection.user, agency)
            chosen = (
                replay_all
                or (info.message_id is not None and info.message_id in wanted_ids)
                or info.reason in wanted_reasons
            )
            if not chosen:
                report.kept += 1
                continue
            copy = republish_copy(
                message,
                own_user=connection.user,
                drop_headers=(HEADER_ATTEMPT, *DEAD_LETTER_HEADERS),
            )
            try:
                await publisher.publish_message(
                    agency_retry_exchange(agency), retry_inbox_key(agency), copy
                )
                await message.ack()
            except Exception as exc:
                report.failed.append((info, repr(exc)))
                log.error(
                    "dead_letter_replay_failed",
                    agency=agency,
                    message_id=info.message_id,
                    case_id=info.case_id,
                    error=repr(exc),
                )
                continue
            report.replayed.append(info)
            log.info(
                "dead_letter_replayed",
                agency=agency,
                message_id=info.message_id,
                case_id=info.case_id,
                reason=info.reason,
            )
    finally:
        await _close(connection, channel)
        await publisher.close()
    return report


def summarize(letters: Sequence[DeadLetterInfo]) -> dict[str, int]:
    """Count of dead letters per reason."""
    counts: dict[str, int] = {}
    for letter in letters:
        counts[letter.reason] = counts.get(letter.reason, 0) + 1
    return dict(sorted(counts.items()))
