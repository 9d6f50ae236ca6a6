"""What a delivery carries besides the envelope, and how a consumer re-publishes a delivery.

Re-publishing (a retry after a delay, a dead letter, an operator's replay) happens on the
*receiving* agency's connection, and RabbitMQ validates the ``user_id`` property against the
connection's user on every publish. So a copy of another agency's message cannot keep that agency's
``user_id``: the copy carries the receiving agency's own user, and the user that originally
published it travels in the ``x-jiexu-original-user-id`` header.

Why the header can be trusted, and only then: the broker guarantees that a message whose
``user_id`` is ``agency-A`` was published with agency A's credentials. A message that reaches A's
inbox with ``user_id`` = ``agency-A`` was therefore re-published by A itself (its consumer or its
operator), and A's own header is as trustworthy as A. A message with any other ``user_id`` was
published by someone else, who could write any header they like: there the header is ignored and
the ``user_id`` itself is the publisher. (A could forge a header on a message to itself, but only
to fool itself, and the envelope's signature is still checked against the claimed sender's key.)
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, HeadersType

__all__ = [
    "BROKER_DEATH_HEADERS",
    "DEAD_LETTER_HEADERS",
    "HEADER_ATTEMPT",
    "HEADER_DEAD_AT",
    "HEADER_DEAD_DETAIL",
    "HEADER_DEAD_REASON",
    "HEADER_ORIGINAL_ROUTING_KEY",
    "HEADER_ORIGINAL_USER",
    "HEADER_REPUBLISHED",
    "UNKNOWN_PUBLISHER",
    "DeliveryInfo",
    "attempt_of",
    "header_str",
    "printable",
    "publisher_user",
    "republish_copy",
]

HEADER_ATTEMPT = "x-jiexu-attempt"
HEADER_ORIGINAL_USER = "x-jiexu-original-user-id"
HEADER_DEAD_REASON = "x-jiexu-dead-reason"
HEADER_DEAD_DETAIL = "x-jiexu-dead-detail"
HEADER_DEAD_AT = "x-jiexu-dead-at"
HEADER_ORIGINAL_ROUTING_KEY = "x-jiexu-original-routing-key"
HEADER_REPUBLISHED = "x-jiexu-republished"
"""Set by a sender's outbox relay on a message it may have published before (a row left unmarked
by a crash, or whose confirm was lost): the recipient acks a copy it has already handled instead of
dead-lettering it as a replay. Only the sender's own broker login can publish with its user_id, so
the header cannot make anyone else's replay pass; and a duplicate still has no effect."""

DEAD_LETTER_HEADERS = (
    HEADER_DEAD_REASON,
    HEADER_DEAD_DETAIL,
    HEADER_DEAD_AT,
    HEADER_ORIGINAL_ROUTING_KEY,
)
# Added by the broker each time it dead-letters (retry-queue TTL, delivery limit); a copy that kept
# them would grow with every retry.
BROKER_DEATH_HEADERS = (
    "x-death",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-last-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
    "x-delivery-count",
)


@dataclass(frozen=True)
class DeliveryInfo:
    """The transport facts about one delivery, handed to the handler beside the message."""

    agency: str
    """The code of the agency consuming (the recipient)."""
    routing_key: str | None
    redelivered: bool
    attempt: int
    """1 for the first try; n for the (n-1)-th retry after a handler failure."""
    publisher_user: str | None
    """The broker user that originally published the message (see the module docstring)."""
    republished: bool = False
    """The copy came marked ``x-jiexu-republished``: the handler records that with the message as
    handled, so the unmarked original, should it arrive later, is acked as stale (any replica)."""


def header_str(headers: Mapping[str, Any] | None, name: str) -> str | None:
    value = (headers or {}).get(name)
    if value is None:
        return None
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


UNKNOWN_PUBLISHER = ""
"""The header's value on our copy of a message published without a ``user_id`` (RabbitMQ checks
the property only when it is set, so such a publisher cannot be known)."""


def printable(text: str | None, max_chars: int | None = None) -> str | None:
    """``text`` safe to store in a header or print on a terminal: every control or format character
    (ESC and the rest of C0/C1, DEL, bidirectional overrides, zero-width characters, line and
    paragraph separators) written out as its escape (``\\x1b``, ``\\u202e``), so nothing a
    publisher chose can move the cursor, recolour, rewrite or hide what an operator reads; then cut
    to ``max_chars``. Masking personal data is the caller's (``schemas.pii.mask_value``)."""
    if text is None:
        return None
    out = "".join(
        ch
        if unicodedata.category(ch) not in _UNPRINTABLE
        else (f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
        for ch in text
    )
    return out if max_chars is None else out[:max_chars]


_UNPRINTABLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def publisher_user(message: AbstractIncomingMessage, own_user: str) -> str | None:
    """The broker user that published ``message`` first (see the module docstring for why);
    ``None`` when it was published without a ``user_id``."""
    if message.user_id == own_user:
        original = header_str(message.headers, HEADER_ORIGINAL_USER)
        if original is None:
            return own_user  # our own message, never re-published
        return original or None  # UNKNOWN_PUBLISHER: the first publisher set no user_id
    return message.user_id


def attempt_of(message: AbstractIncomingMessage, own_user: str) -> int:
    """The delivery attempt; the header counts only on our own copies (anyone else could set it)."""
    if message.user_id != own_user:
        return 1
    raw = header_str(message.headers, HEADER_ATTEMPT)
    try:
        return max(1, int(raw)) if raw is not None else 1
    except ValueError:
        return 1


def republish_copy(
    message: AbstractIncomingMessage,
    *,
    own_user: str,
    set_headers: Mapping[str, Any] | None = None,
    drop_headers: Iterable[str] = (),
) -> aio_pika.Message:
    """A persistent copy of ``message`` that ``own_user`` may publish, with the publisher kept.

    The body and the identifying properties are unchanged; ``expiration`` is dropped (a copy must
    not expire in a DLQ or a retry queue).
    """
    original = publisher_user(message, own_user)
    dropped = set(BROKER_DEATH_HEADERS) | set(drop_headers)
    headers: HeadersType = {
        k: v for k, v in (message.headers or {}).items() if k not in dropped
    }
    headers[HEADER_ORIGINAL_USER] = original if original is not None else UNKNOWN_PUBLISHER
    if set_headers:
        headers.update(set_headers)
    return aio_pika.Message(
        message.body,
        headers=headers,
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        priority=message.priority,
        correlation_id=message.correlation_id,
        reply_to=message.reply_to,
        message_id=message.message_id,
        timestamp=message.timestamp,
        type=message.type,
        user_id=own_user,
        app_id=message.app_id,
    )
