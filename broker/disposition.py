"""What becomes of a delivery: ack, retry or dead-letter, and the copy a retry or dead letter is.

Every delivery the consumer takes (`broker.consumer`) ends in exactly one place, `dispose`, which
turns what happened into one `Disposition`:

* the handler returned (it has committed)            -> ack
* a `ContractError` anywhere (hostile or broken)      -> dead-letter with its reason, never retry
* a `DomainRuleViolation` escaped the handler          -> dead-letter (answering with a rejection
                                                          is the handler's job; escaping is a bug)
* a `TransientError` or any other exception            -> retry after a delay; after
                                                          ``max_attempts`` -> dead-letter
                                                          ``handler_failed``

A retry is a copy (`retry_copy`) published to the agency's own ``agency_retry_exchange(code)`` with
key ``delay.{code}.{ms}`` (a TTL queue that dead-letters it back into the inbox) with
``x-jiexu-attempt`` incremented and any ``x-jiexu-dead-*`` header a publisher set dropped; a dead
letter is a copy (`dead_letter_copy`) published to the agency's own ``agency_dlx(code)`` with key
``{code}`` and the ``x-jiexu-dead-*`` headers (the detail masked, control characters escaped). No
other agency can publish to either. `ConsumerStats` counts what the consumer did with each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from broker.delivery import (
    DEAD_LETTER_HEADERS,
    HEADER_ATTEMPT,
    HEADER_DEAD_AT,
    HEADER_DEAD_DETAIL,
    HEADER_DEAD_REASON,
    HEADER_ORIGINAL_ROUTING_KEY,
    attempt_of,
    republish_copy,
)
from schemas.errors import ContractError, DomainRuleViolation

__all__ = [
    "Ack",
    "ConsumerStats",
    "DeadLetter",
    "Disposition",
    "Retry",
    "dead_letter_copy",
    "dispose",
    "retry_copy",
]


@dataclass(frozen=True)
class Ack:
    """Done with this delivery: handled, or a harmless duplicate of a handled one."""

    duplicate: bool = False


@dataclass(frozen=True)
class Retry:
    attempt: int
    """The attempt the copy will be (2 for the first retry)."""
    delay_ms: int
    error: str


@dataclass(frozen=True)
class DeadLetter:
    reason: str
    detail: str


Disposition = Ack | Retry | DeadLetter


def dispose(
    error: BaseException | None,
    *,
    attempt: int,
    retry_delays_ms: Sequence[int],
    max_attempts: int,
) -> Disposition:
    """The one place that maps what happened to a delivery onto ack, retry or dead-letter."""
    if error is None:
        return Ack()
    if isinstance(error, ContractError):
        return DeadLetter(error.reason, error.detail)
    if isinstance(error, DomainRuleViolation):
        return DeadLetter(
            "handler_failed",
            f"domain rule violation escaped the handler ({error.reason_code}): {error.text}",
        )
    described = f"{type(error).__name__}: {error}"
    if attempt >= max_attempts or not retry_delays_ms:
        return DeadLetter("handler_failed", f"failed {attempt} attempt(s); last: {described}")
    delay = retry_delays_ms[min(attempt - 1, len(retry_delays_ms) - 1)]
    return Retry(attempt=attempt + 1, delay_ms=delay, error=described)


def retry_copy(message: AbstractIncomingMessage, *, own_user: str, attempt: int) -> aio_pika.Message:
    """The copy of ``message`` that ``own_user`` publishes to retry it as attempt ``attempt``."""
    return republish_copy(
        message,
        own_user=own_user,
        # Our own copy: a dead-letter reason its publisher wrote must not ride on it.
        drop_headers=DEAD_LETTER_HEADERS,
        set_headers={HEADER_ATTEMPT: attempt},
    )


def dead_letter_copy(
    message: AbstractIncomingMessage, *, own_user: str, reason: str, detail: str
) -> aio_pika.Message:
    """The copy of ``message`` that ``own_user`` dead-letters; ``detail`` already masked and
    printable."""
    return republish_copy(
        message,
        own_user=own_user,
        drop_headers=(HEADER_ATTEMPT, *DEAD_LETTER_HEADERS),
        set_headers={
            HEADER_DEAD_REASON: reason,
            HEADER_DEAD_DETAIL: detail,
            HEADER_DEAD_AT: datetime.now(UTC).isoformat(),
            HEADER_ORIGINAL_ROUTING_KEY: message.routing_key or "",
            HEADER_ATTEMPT: attempt_of(message, own_user),
        },
    )


@dataclass
class ConsumerStats:
    handled: int = 0
    duplicates: int = 0
    retried: int = 0
    dead_lettered: int = 0
    requeued: int = 0
    dead_reasons: dict[str, int] = field(default_factory=dict)
