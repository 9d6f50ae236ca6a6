"""The AMQP properties and headers that repeat envelope fields, and the check that they agree.

A message's properties are what the broker, operators and routing read without the body; the
envelope is what is signed. If the two disagreed, tools and people would see one message and the
handler another, so a delivery whose properties disagree with its envelope is dead-lettered with
reason ``property_mismatch`` (a contract error: never retried). Each of these must be present and
equal to the envelope field beside it:

==================  ============================
AMQP                envelope
==================  ============================
``message_id``      ``message_id``
``correlation_id``  ``case_id``
``type``            ``type``
``x-jiexu-type``    ``type`` (header)
``x-jiexu-version`` ``version`` (header, integer)
==================  ============================

``user_id`` is checked separately (reason ``sender_mismatch``); ``timestamp`` is informative
(whole seconds of ``sent_at``) and not checked. Other ``x-jiexu-*`` headers (``x-jiexu-attempt``,
``x-jiexu-republished``, the dead-letter headers) carry transport state, not envelope fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aio_pika.abc import AbstractIncomingMessage

from broker.delivery import header_str
from broker.publisher import HEADER_TYPE, HEADER_VERSION
from schemas.envelope import Envelope
from schemas.errors import ContractError

__all__ = [
    "HEADER_TYPE",
    "HEADER_VERSION",
    "PROPERTY_MISMATCH",
    "PROPERTY_RULES",
    "check_delivery_properties",
    "check_properties",
]

PROPERTY_MISMATCH = "property_mismatch"

PROPERTY_RULES: tuple[tuple[str, str], ...] = (
    ("message_id", "message_id"),
    ("correlation_id", "case_id"),
    ("type", "type"),
    (f"headers[{HEADER_TYPE}]", "type"),
    (f"headers[{HEADER_VERSION}]", "version"),
)
"""(AMQP property or header, envelope field) pairs that must agree; for docs and the contract."""


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def check_properties(
    envelope: Envelope,
    *,
    message_id: Any,
    correlation_id: Any,
    message_type: Any,
    headers: Mapping[str, Any] | None,
) -> None:
    """Raise `ContractError` ``property_mismatch`` naming every property that disagrees."""
    version = (headers or {}).get(HEADER_VERSION)
    problems = []
    for name, actual, expected in (
        ("message_id", _text(message_id), str(envelope.message_id)),
        ("correlation_id", _text(correlation_id), str(envelope.case_id)),
        ("type", _text(message_type), envelope.type),
        (f"header {HEADER_TYPE}", header_str(headers, HEADER_TYPE), envelope.type),
    ):
        if actual is None:
            problems.append(f"{name} is absent (must equal the envelope's {expected!r})")
        elif actual != expected:
            problems.append(f"{name} is {actual[:80]!r}, the envelope says {expected!r}")
    if version is None:
        problems.append(f"header {HEADER_VERSION} is absent (must be {envelope.version})")
    elif type(version) is not int or version != envelope.version:
        problems.append(
            f"header {HEADER_VERSION} is {_text(version)!r:.80}, the envelope says "
            f"{envelope.version} (an integer)"
        )
    if problems:
        raise ContractError(PROPERTY_MISMATCH, "; ".join(problems))


def check_delivery_properties(envelope: Envelope, message: AbstractIncomingMessage) -> None:
    """`check_properties` of a delivery."""
    check_properties(
        envelope,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        message_type=message.type,
        headers=message.headers,
    )
