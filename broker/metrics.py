"""Transport metrics: what one process's consumer and broker connection did, for Prometheus.

Everything here is a **per-process** figure (counters, a histogram, the connection gauge): several
replicas of one agency each export their own, and the exchange's total is their ``sum``. The
figures that come from the agency's store (cases, outbox, overdue steps) are in
`agents.service.metrics`; the two share one `prometheus_client.CollectorRegistry`, which the
process creates (never the global default registry, so tests and several agents in one process
each have their own).

=====================================  =========  ========================  ====================
metric                                 type       labels                    set by
=====================================  =========  ========================  ====================
``jiexu_messages_received_total``      counter    agency, type              the consumer, per
                                                                            delivery taken
``jiexu_messages_handled_total``       counter    agency, type              handler committed,
                                                                            acked
``jiexu_messages_duplicate_total``     counter    agency, type              harmless duplicate
                                                                            acked
``jiexu_messages_retried_total``       counter    agency, type              retry copy confirmed
``jiexu_messages_dead_lettered_total`` counter    agency, type, reason      dead letter confirmed
``jiexu_messages_requeued_total``      counter    agency                    copy failed, requeued
``jiexu_handler_duration_seconds``     histogram  agency, type              the handler's time
``jiexu_broker_connection_up``         gauge      agency                    `watch_connection`
``jiexu_broker_reconnections_total``   counter    agency                    `watch_connection`
=====================================  =========  ========================  ====================

``type`` is the envelope's message type when it is one the contract knows
(`schemas.registry.message_types`), else ``unknown``: a label never takes a value a sender chose,
so a hostile or broken sender cannot blow up the number of series. ``reason`` is a dead-letter
reason code (``invalid_json``, ``bad_signature``, ``handler_failed``, ...), written by our code.
"""

from __future__ import annotations

import re
from typing import Any

from aio_pika.abc import AbstractRobustConnection
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from schemas.registry import message_types

__all__ = [
    "LATENCY_BUCKETS_S",
    "UNKNOWN_TYPE",
    "TransportMetrics",
    "message_type_label",
    "reason_label",
    "watch_connection",
]

UNKNOWN_TYPE = "unknown"
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""From a few milliseconds (an in-memory check) to a minute (a core system's slow ledger call)."""

_KNOWN_TYPES = frozenset(message_types())
_REASON = re.compile(r"^[a-z][a-z0-9_]{0,39}$")

def message_type_label(message_type: str | None) -> str:
    """The ``type`` label for a message type: a known type, or ``unknown``."""
    return message_type if message_type in _KNOWN_TYPES else UNKNOWN_TYPE


def reason_label(reason: str) -> str:
    """The ``reason`` label: a short snake_case code, or ``other``."""
    return reason if _REASON.match(reason) else "other"


class _Children:
    """A labelled metric's children by their labels after ``agency``, looked up in a dict.

    `labels()` validates and takes a lock on every call; the hot path (one delivery) finds the child
    here instead and makes it once.
    """

    __slots__ = ("_agency", "_children", "_metric")

    def __init__(self, metric: Any, agency: str) -> None:
        self._metric = metric
        self._agency = agency
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(self._agency, *values)
        return child


class TransportMetrics:
    """The consumer's and the connection's counters for one agency (or the reconciler).

    Call from the event loop; each method is a dictionary lookup and an increment.
    """

    def __init__(self, registry: CollectorRegistry, agency: str) -> None:
        self.agency = agency
        self._received = Counter(
            "jiexu_messages_received",
            "Deliveries taken from the agency's inbox, by message type (unknown: not decodable).",
            ["agency", "type"],
            registry=registry,
        )
        self._handled = Counter(
            "jiexu_messages_handled",
            "Messages whose handler committed and that were acked.",
            ["agency", "type"],
            registry=registry,
        )
        self._duplicates = Counter(
            "jiexu_messages_duplicate",
            "Redeliveries and republished copies of messages already handled, acked harmlessly.",
            ["agency", "type"],
            registry=registry,
        )
        self._retried = Counter(
            "jiexu_messages_retried",
            "Messages sent to a retry queue after a transient failure.",
            ["agency", "type"],
            registry=registry,
        )
        self._dead = Counter(
            "jiexu_messages_dead_lettered",
            "Messages sent to the agency's dead-letter queue, by reason.",
            ["agency", "type", "reason"],
            registry=registry,
        )
        self._requeued = Counter(
            "jiexu_messages_requeued",
            "Deliveries requeued because their retry or dead-letter copy could not be published.",
            ["agency"],
            registry=registry,
        )
        self._handler_seconds = Histogram(
            "jiexu_handler_duration_seconds",
            "Time the handler took for one message, through its commit.",
            ["agency", "type"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self._up = Gauge(
            "jiexu_broker_connection_up",
            "1 while the process's AMQP connection is open, 0 while it is down or reconnecting.",
            ["agency"],
            registry=registry,
        )
        self._reconnections = Counter(
            "jiexu_broker_reconnections",
            "Times the AMQP connection was restored after the broker dropped it.",
            ["agency"],
            registry=registry,
        )
        self._requeued_child = self._requeued.labels(agency)
        self._up_child = self._up.labels(agency)
        self._reconnections_child = self._reconnections.labels(agency)
        self._received_by = _Children(self._received, agency)
        self._handled_by = _Children(self._handled, agency)
        self._duplicates_by = _Children(self._duplicates, agency)
        self._retried_by = _Children(self._retried, agency)
        self._dead_by = _Children(self._dead, agency)
        self._seconds_by = _Children(self._handler_seconds, agency)

    # -- the consumer -----------------------------------------------------------------------------
    def message_received(self, message_type: str | None) -> None:
        """A delivery was taken from the inbox (before any check). ``None``: not decoded yet."""
        self._received_by(message_type_label(message_type)).inc()

    def message_handled(self, message_type: str, seconds: float) -> None:
        """The handler returned (it has committed) and the delivery is acked."""
        label = message_type_label(message_type)
        self._handled_by(label).inc()
        self._seconds_by(label).observe(seconds)

    def duplicate(self, message_type: str | None) -> None:
        self._duplicates_by(message_type_label(message_type)).inc()

    def retried(self, message_type: str | None) -> None:
        self._retried_by(message_type_label(message_type)).inc()

    def dead_lettered(self, message_type: str | None, reason: str) -> None:
        self._dead_by(message_type_label(message_type), reason_label(reason)).inc()

    def requeued(self) -> None:
        self._requeued_child.inc()

    # -- the connection ---------------------------------------------------------------------------
    def connection_up(self, up: bool) -> None:
        self._up_child.set(1 if up else 0)

    def reconnected(self) -> None:
        self._reconnections_child.inc()


def watch_connection(raw: AbstractRobustConnection, metrics: TransportMetrics) -> None:
    """Keep ``jiexu_broker_connection_up`` and the reconnection count from aio-pika's callbacks.

    ``raw`` is `broker.connection.BrokerConnection.raw`. aio-pika calls ``close_callbacks`` each
    time the connection is lost (and on the final close) and ``reconnect_callbacks`` once each
    time it is restored, after its channels and consumers are back.
    """

    def on_close(_sender: Any, *_args: Any) -> None:
        metrics.connection_up(False)

    def on_reconnect(_sender: Any, *_args: Any) -> None:
        metrics.reconnected()
        metrics.connection_up(True)

    metrics.connection_up(not raw.is_closed and raw.connected.is_set())
    raw.close_callbacks.add(on_close)
    raw.reconnect_callbacks.add(on_reconnect)
