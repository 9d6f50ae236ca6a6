"""The names of the wire topology, part of the contract: one place, shared by topology, publisher,
consumer, the AsyncAPI document and docs."""

from __future__ import annotations

__all__ = [
    "DLX",
    "EXCHANGE",
    "RECONCILER_CODE",
    "RETRY_EXCHANGE",
    "UNROUTABLE_EXCHANGE",
    "UNROUTABLE_QUEUE",
    "agency_dlx",
    "agency_retry_exchange",
    "agency_user",
    "code_of_user",
    "dlq_queue",
    "inbox_binding",
    "inbox_queue",
    "retry_delay_key",
    "retry_inbox_key",
    "retry_queue",
    "routing_key",
]

EXCHANGE = "jiexu"
"""The one durable topic exchange every agency publishes to."""

UNROUTABLE_EXCHANGE = "jiexu.unroutable"
"""Alternate exchange of `EXCHANGE` (fanout): catches messages no inbox is bound for."""

UNROUTABLE_QUEUE = "jiexu.unroutable"

DLX = "jiexu.dlx"
"""Dead-letter exchange (direct) of the *broker*: an inbox dead-letters here (key: the agency code)
what exceeded its delivery limit. No agency may publish to it (issue 13): an agency's own dead
letters go through `agency_dlx`."""

RETRY_EXCHANGE = "jiexu.retry"
"""Delay exchange (direct) of the *broker*: a retry queue dead-letters an expired message here (key
``inbox.{code}``) to return it to the inbox. No agency may publish to it: an agency's retries and
replays go through `agency_retry_exchange`."""

RECONCILER_CODE = "000000"
"""The reconciliation agent's own code: it has an inbox like an agency, but no region."""


def inbox_queue(code: str) -> str:
    return f"jiexu.inbox.{code}"


def dlq_queue(code: str) -> str:
    return f"jiexu.dlq.{code}"


def retry_queue(code: str, delay_ms: int) -> str:
    return f"jiexu.retry.{code}.{delay_ms}ms"


def agency_dlx(code: str) -> str:
    """The agency's own dead-letter exchange (direct; key: the code) into ``dlq_queue(code)``.

    Only that agency may publish to it, so no other agency can write into its dead-letter queue.
    """
    return f"jiexu.dlx.{code}"


def agency_retry_exchange(code: str) -> str:
    """The agency's own retry exchange (direct): ``retry_delay_key(code, ms)`` parks a message in
    ``retry_queue(code, ms)``, ``retry_inbox_key(code)`` replays it into ``inbox_queue(code)``.

    Only that agency may publish to it (a name no read permission pattern matches).
    """
    return f"jiexu.redeliver.{code}"


def routing_key(recipient: str, message_type: str) -> str:
    return f"agency.{recipient}.{message_type}"


def inbox_binding(code: str) -> str:
    return f"agency.{code}.#"


def retry_delay_key(code: str, delay_ms: int) -> str:
    """Routing key on `agency_retry_exchange(code)` (and the broker's `RETRY_EXCHANGE`) that parks
    a message in ``retry_queue(code, delay_ms)``."""
    return f"delay.{code}.{delay_ms}"


def retry_inbox_key(code: str) -> str:
    """Routing key that delivers straight into ``inbox_queue(code)``.

    Expired retry messages are dead-lettered with it to `RETRY_EXCHANGE`; operators replay dead
    letters with it through `agency_retry_exchange(code)`.
    """
    return f"inbox.{code}"


def agency_user(code: str, prefix: str = "") -> str:
    """The broker user an agency connects as; ``prefix`` keeps test users apart (users are global)."""
    return f"{prefix}agency-{code}"


def code_of_user(username: str, prefix: str = "") -> str | None:
    """The agency code of a broker user named by `agency_user`, or None for any other user."""
    head = f"{prefix}agency-"
    if not username.startswith(head):
        return None
    code = username[len(head) :]
    return code if len(code) == 6 and code.isascii() and code.isdigit() else None
