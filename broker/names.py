"""The wire topology's names (exchange, queues, routing keys, broker users).

They are part of the published contract, so they live in `schemas.names`; the transport uses them
from here.
"""

from schemas.names import (
    DLX,
    EXCHANGE,
    RECONCILER_CODE,
    RETRY_EXCHANGE,
    UNROUTABLE_EXCHANGE,
    UNROUTABLE_QUEUE,
    agency_dlx,
    agency_retry_exchange,
    agency_user,
    code_of_user,
    dlq_queue,
    inbox_binding,
    inbox_queue,
    retry_delay_key,
    retry_inbox_key,
    retry_queue,
    routing_key,
)

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
