"""Prometheus metrics of an agency agent and of the reconciliation agent.

Each process makes one registry (`AgentMetrics` or `ReconcilerMetrics`; never prometheus-client's
global default registry) and serves it on ``JIEXU_METRICS_PORT`` (`agents.service.health`). Every
series carries ``agency`` (the reconciler's is ``000000``), set by the process itself; so a scrape
configuration must not set a target label called ``agency``.

Two kinds of figures, aggregated differently
--------------------------------------------

**From the process** (counters and histograms; names end in ``_total``, ``_seconds``): what this
replica did since it started. Several replicas of one agency each count their own share, so the
agency's figure is the ``sum`` over replicas (``sum by (agency) (rate(...))``); a restart resets
them, which ``rate``/``increase`` absorb.

* the transport's, defined in `broker.metrics.TransportMetrics` (messages received, handled,
  duplicate, retried, dead-lettered by type and reason, requeued, handler latency, connection up,
  reconnections);
* ``jiexu_ledger_command_duration_seconds{operation, outcome}``: each ledger command
  (``terminate_and_debit``, ``pay_out``, ``credit``) and how it ended (``applied``, ``refused``,
  ``failed``);
* ``jiexu_outbox_published_total{type}``, ``jiexu_outbox_publish_failures_total``: the relay (the
  agent's, and the reconciler's, which publishes statement requests and results);
  ``jiexu_outbox_undeliverable_total{recipient}``: messages held because the recipient has no
  inbox on the broker (each counted once; they go out when it appears);
* ``jiexu_reminders_sent_total``: reminders committed by the deadline watcher;
* ``jiexu_months_certified_total{counterpart}`` (outgoing: months the ledger certified on
  terminate-and-debit) and ``jiexu_months_credited_total{counterpart}`` (receiving: months the
  ledger credited): compare A's certified-to-B with B's credited-from-A over a window;
* ``jiexu_figures_refresh_failures_total``: failed reads of the store for the gauges below;
* the reconciler's ``jiexu_reconciliation_results_total{outcome}`` and
  ``jiexu_reconciliation_differences_total{field}``.

**From the store** (gauges, `StoreFigures` / `ExchangeFigures`): the state of the agency's books,
read every few seconds by `agents.service.figures.FiguresRefresher`. Every replica of an agency reads
the same store and exports the **same** values: aggregate with ``max by (agency, ...)`` (or ``avg``),
never ``sum``, which would multiply them by the number of replicas.

* ``jiexu_cases{state}`` every case by state (closed ones included), ``jiexu_open_cases{role,
  state}`` the open ones by role and state;
* ``jiexu_overdue_steps{role, whose_turn}``: open cases past their step's due date, by the agency
  whose move it is (this agency's code: we are late; the counterpart's: they are);
* ``jiexu_money_in_flight_fen{role}``: outgoing, debited and sent but not yet confirmed by the
  receiving agency; receiving, received but not yet credited;
* ``jiexu_outbox_unpublished_messages`` and ``jiexu_outbox_oldest_unpublished_age_seconds``;
* ``jiexu_held_messages``: messages waiting for their precondition (funds before the form);
* ``jiexu_figures_timestamp_seconds``: when the figures were read (staleness);
* the reconciler's: ``jiexu_reconciliation_cases{outcome}``, ``jiexu_reconciliation_mismatches
  {field}`` (cases mismatched now, by differing field), and the national view
  ``jiexu_exchange_cases{outgoing, receiving, state}``, ``jiexu_exchange_overdue_steps{outgoing,
  receiving, whose_turn}``, ``jiexu_exchange_money_in_flight_fen{outgoing, receiving}``.

``jiexu_build_info{version, contracts}`` is 1; ``contracts`` lists the message types and versions
this build speaks (``contact_letter=1,2;...``), from `schemas.registry`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from agents.domain.books import LedgerEntry
from broker.metrics import LATENCY_BUCKETS_S, TransportMetrics, message_type_label
from schemas.errors import DomainRuleViolation
from schemas.names import RECONCILER_CODE
from schemas.registry import known_versions, message_types

__all__ = [
    "AgentMetrics",
    "ExchangeCollector",
    "ExchangeFigures",
    "ProcessMetrics",
    "ReconcilerMetrics",
    "StoreCollector",
    "StoreFigures",
    "build_version",
    "contracts_label",
]

_LABEL = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_LEDGER_OPERATIONS = frozenset({"terminate_and_debit", "pay_out", "credit"})
_LEDGER_OUTCOMES = frozenset({"applied", "refused", "failed"})


def _bounded(value: str, allowed: frozenset[str] | None = None) -> str:
    if allowed is not None:
        return value if value in allowed else "other"
    return value if _LABEL.match(value) else "other"


def _code(value: str | None) -> str:
    """An agency code label: six digits, else ``none`` (no one's turn) or ``other``."""
    if value is None:
        return "none"
    return value if len(value) == 6 and value.isascii() and value.isdigit() else "other"


def build_version() -> str:
    try:
        return version("jiexu")
    except PackageNotFoundError:  # pragma: no cover - running from a tree that is not installed
        return "unknown"


def contracts_label() -> str:
    """``type=v1,v2;...`` for every message type the schemas registry knows, sorted."""
    return ";".join(
        f"{t}={','.join(str(v) for v in known_versions(t))}" for t in sorted(message_types())
    )


# -- figures read from the store ------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class StoreFigures:
    """One agency's state as its store holds it, read at ``taken_at`` (Unix seconds)."""

    taken_at: float
    cases: Mapping[str, int] = field(default_factory=dict)
    """Every case by state."""
    open_cases: Mapping[tuple[str, str], int] = field(default_factory=dict)
    """Open cases by (role, state)."""
    overdue: Mapping[tuple[str, str | None], int] = field(default_factory=dict)
    """Open cases past their due date by (role, whose turn)."""
    money_in_flight_fen: Mapping[str, int] = field(default_factory=dict)
    """By role (see the module docstring)."""
    outbox_unpublished: int = 0
    outbox_oldest_created_at: float | None = None
    """Unix seconds of the oldest unpublished outbox row; its age is taken at scrape time."""
    held_messages: int = 0


@dataclass(frozen=True, kw_only=True)
class ExchangeFigures:
    """The reconciler's view of the exchange, read from its report at ``taken_at``."""

    taken_at: float
    outcomes: Mapping[str, int] = field(default_factory=dict)
    """Cases by latest reconciliation outcome (``matched``, ``mismatched``, ``pending``...)."""
    mismatched_fields: Mapping[str, int] = field(default_factory=dict)
    """Cases mismatched now, by each field that differs."""
    pair_cases: Mapping[tuple[str | None, str | None, str], int] = field(default_factory=dict)
    """(outgoing, receiving, state) -> cases; None: the agency is not known yet (``none``)."""
    pair_overdue: Mapping[tuple[str | None, str | None, str | None], int] = field(
        default_factory=dict
    )
    """(outgoing, receiving, whose turn) -> overdue steps."""
    pair_money_in_flight_fen: Mapping[tuple[str | None, str | None], int] = field(
        default_factory=dict
    )


FiguresSource = Callable[[], StoreFigures | None]
ExchangeSource = Callable[[], ExchangeFigures | None]


def _gauge(name: str, documentation: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=labels)


class StoreCollector:
    """A prometheus-client collector serving the latest `StoreFigures` (no I/O at scrape time).

    Before the first figures are read the families are exported without samples.
    """

    def __init__(self, agency: str, source: FiguresSource, now: Callable[[], float] = time.time):
        self._agency = agency
        self._source = source
        self._now = now

    def collect(self) -> Iterator[Metric]:
        a = self._agency
        figures = self._source()
        cases = _gauge("jiexu_cases", "Cases by state, closed ones included (from the store).",
                       ["agency", "state"])
        open_cases = _gauge("jiexu_open_cases", "Open cases by role and state (from the store).",
                            ["agency", "role", "state"])
        overdue = _gauge(
            "jiexu_overdue_steps",
            "Open cases past their step's due date, by role and the agency whose turn it is.",
            ["agency", "role", "whose_turn"],
        )
        money = _gauge(
            "jiexu_money_in_flight_fen",
            "Money moved but not yet confirmed (outgoing) or received but not credited "
            "(receiving), in fen.",
            ["agency", "role"],
        )
        depth = _gauge("jiexu_outbox_unpublished_messages",
                       "Outbox rows committed and not yet published.", ["agency"])
        age = _gauge("jiexu_outbox_oldest_unpublished_age_seconds",
                     "Age of the oldest unpublished outbox row (0 when none waits).", ["agency"])
        held = _gauge("jiexu_held_messages",
                      "Messages held until their precondition arrives.", ["agency"])
        taken = _gauge("jiexu_figures_timestamp_seconds",
                       "When the store figures were last read (Unix seconds).", ["agency"])
        if figures is not None:
            for state, n in sorted(figures.cases.items()):
                cases.add_metric([a, state], n)
            for (role, state), n in sorted(figures.open_cases.items()):
                open_cases.add_metric([a, role, state], n)
            for (role, turn), n in sorted(figures.overdue.items(), key=str):
                overdue.add_metric([a, role, _code(turn)], n)
            for role, fen in sorted(figures.money_in_flight_fen.items()):
                money.add_metric([a, role], fen)
            depth.add_metric([a], figures.outbox_unpublished)
            oldest = figures.outbox_oldest_created_at
            age.add_metric([a], 0.0 if oldest is None else max(0.0, self._now() - oldest))
            held.add_metric([a], figures.held_messages)
            taken.add_metric([a], figures.taken_at)
        yield from (cases, open_cases, overdue, money, depth, age, held, taken)


class ExchangeCollector:
    """The reconciler's collector: serves the latest `ExchangeFigures`."""

    def __init__(self, agency: str, source: ExchangeSource) -> None:
        self._agency = agency
        self._source = source

    def collect(self) -> Iterator[Metric]:
        a = self._agency
        figures = self._source()
        outcomes = _gauge("jiexu_reconciliation_cases",
                          "Cases by their latest reconciliation outcome (from the report).",
                          ["agency", "outcome"])
        fields = _gauge("jiexu_reconciliation_mismatches",
                        "Cases mismatched now, by each field that differs (from the report).",
                        ["agency", "field"])
        pairs = _gauge("jiexu_exchange_cases",
                       "Cases the reconciler knows, by agency pair and state.",
                       ["agency", "outgoing", "receiving", "state"])
        overdue = _gauge("jiexu_exchange_overdue_steps",
                         "Overdue steps by agency pair and whose turn it is.",
                         ["agency", "outgoing", "receiving", "whose_turn"])
        money = _gauge("jiexu_exchange_money_in_flight_fen",
                       "Money debited by the outgoing agency and not yet credited, by pair, in fen.",
                       ["agency", "outgoing", "receiving"])
        taken = _gauge("jiexu_figures_timestamp_seconds",
                       "When the store figures were last read (Unix seconds).", ["agency"])
        if figures is not None:
            for outcome, n in sorted(figures.outcomes.items()):
                outcomes.add_metric([a, _bounded(outcome)], n)
            for name, n in sorted(figures.mismatched_fields.items()):
                fields.add_metric([a, _bounded(name)], n)
            for (out, rec, state), n in sorted(figures.pair_cases.items(), key=str):
                pairs.add_metric([a, _code(out), _code(rec), _bounded(state)], n)
            for (out, rec, turn), n in sorted(figures.pair_overdue.items(), key=str):
                overdue.add_metric([a, _code(out), _code(rec), _code(turn)], n)
            for (out, rec), fen in sorted(figures.pair_money_in_flight_fen.items(), key=str):
                money.add_metric([a, _code(out), _code(rec)], fen)
            taken.add_metric([a], figures.taken_at)
        yield from (outcomes, fields, pairs, overdue, money, taken)


# -- the processes' metrics -----------------------------------------------------------------------


class ProcessMetrics:
    """What the agent and the reconciler share: a registry, the transport, build info, the relay's
    counters."""

    def __init__(self, agency: str, registry: CollectorRegistry | None) -> None:
        self.agency = agency
        self.registry = registry if registry is not None else CollectorRegistry()
        self.transport = TransportMetrics(self.registry, agency)
        Gauge(
            "jiexu_build_info",
            "Always 1: the jiexu version and the message contracts (type=versions) it speaks.",
            ["agency", "version", "contracts"],
            registry=self.registry,
        ).labels(agency, build_version(), contracts_label()).set(1)
        self._refresh_failures = Counter(
            "jiexu_figures_refresh_failures",
            "Failed reads of the store for the state gauges (the last figures stay exported).",
            ["agency"],
            registry=self.registry,
        ).labels(agency)

        self._published = Counter(
            "jiexu_outbox_published", "Outbox messages published with a confirm, by type.",
            ["agency", "type"], registry=self.registry,
        )
        self._publish_failures = Counter(
            "jiexu_outbox_publish_failures",
            "Outbox messages whose publish failed (they are retried).", ["agency"],
            registry=self.registry,
        ).labels(agency)
        self._undeliverable = Counter(
            "jiexu_outbox_undeliverable",
            "Outbox messages held because the recipient has no inbox on the broker (each once).",
            ["agency", "recipient"], registry=self.registry,
        )

    def figures_refresh_failed(self) -> None:
        self._refresh_failures.inc()

    # -- the outbox relay (`agents.service.relay.OutboxRelay`) ------------------------------------
    def published(self, message_type: str, count: int = 1) -> None:
        self._published.labels(self.agency, message_type_label(message_type)).inc(count)

    def publish_failed(self, count: int = 1) -> None:
        self._publish_failures.inc(count)

    def undeliverable(self, recipient: str) -> None:
        self._undeliverable.labels(self.agency, recipient).inc()


class AgentMetrics(ProcessMetrics):
    """An agency agent's metrics. Pass ``transport`` to the consumer and `watch_connection`.

    >>> metrics = AgentMetrics("110000")
    >>> metrics.ledger_command("credit", 0.02)
    >>> metrics.registry.get_sample_value(
    ...     "jiexu_ledger_command_duration_seconds_count",
    ...     {"agency": "110000", "operation": "credit", "outcome": "applied"})
    1.0
    """

    def __init__(self, agency: str, registry: CollectorRegistry | None = None) -> None:
        super().__init__(agency, registry)
        r = self.registry
        self._ledger = Histogram(
            "jiexu_ledger_command_duration_seconds",
            "Time one ledger command took, by operation and outcome (applied, refused, failed).",
            ["agency", "operation", "outcome"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self._reminders = Counter(
            "jiexu_reminders_sent", "Reminders committed for overdue steps.", ["agency"],
            registry=r,
        ).labels(agency)
        self._certified = Counter(
            "jiexu_months_certified",
            "Months of contributions certified by this agency's ledger (outgoing), by counterpart.",
            ["agency", "counterpart"], registry=r,
        )
        self._credited = Counter(
            "jiexu_months_credited",
            "Months of contributions credited by this agency's ledger (receiving), by counterpart.",
            ["agency", "counterpart"], registry=r,
        )
        self._store: StoreCollector | None = None

    def ledger_command(self, operation: str, seconds: float, outcome: str = "applied") -> None:
        self._ledger.labels(
            self.agency, _bounded(operation, _LEDGER_OPERATIONS), _bounded(outcome, _LEDGER_OUTCOMES)
        ).observe(seconds)

    async def ledger_call(
        self, operation: str, counterpart: str, call: Awaitable[LedgerEntry]
    ) -> LedgerEntry:
        """Await one ledger command, timed by how it ended (``applied``; ``refused``: a domain
        rule; ``failed``: anything else), and count its months once: not when the ledger replays
        a command it has already applied (``entry.replayed``, as after a crash)."""
        started = time.perf_counter()
        try:
            entry = await call
        except DomainRuleViolation:
            self.ledger_command(operation, time.perf_counter() - started, "refused")
            raise
        except Exception:
            self.ledger_command(operation, time.perf_counter() - started, "failed")
            raise
        self.ledger_command(operation, time.perf_counter() - started, "applied")
        if not entry.replayed and operation == "terminate_and_debit":
            self.months_certified(counterpart, entry.months)
        elif not entry.replayed and operation == "credit":
            self.months_credited(counterpart, entry.months)
        return entry

    def reminders_sent(self, count: int = 1) -> None:
        if count:
            self._reminders.inc(count)

    def months_certified(self, counterpart: str, months: int) -> None:
        self._certified.labels(self.agency, _code(counterpart)).inc(months)

    def months_credited(self, counterpart: str, months: int) -> None:
        self._credited.labels(self.agency, _code(counterpart)).inc(months)

    def watch_store(self, source: FiguresSource) -> None:
        """Export the store gauges from ``source`` (e.g. ``FiguresRefresher.latest``); once."""
        if self._store is None:
            self._store = StoreCollector(self.agency, source)
            self.registry.register(self._store)


class ReconcilerMetrics(ProcessMetrics):
    """The reconciliation agent's metrics (its agency code is ``000000``)."""

    def __init__(
        self, registry: CollectorRegistry | None = None, agency: str = RECONCILER_CODE
    ) -> None:
        super().__init__(agency, registry)
        self._results = Counter(
            "jiexu_reconciliation_results", "Reconciliation results sent, by outcome.",
            ["agency", "outcome"], registry=self.registry,
        )
        self._differences = Counter(
            "jiexu_reconciliation_differences",
            "Differences found by reconciliation, by field.",
            ["agency", "field"], registry=self.registry,
        )
        self._exchange: ExchangeCollector | None = None

    def reconciled(self, outcome: str, fields: Iterable[str] = ()) -> None:
        """One case compared: ``outcome`` (``matched``/``mismatched``), the fields that differ."""
        self._results.labels(self.agency, _bounded(outcome)).inc()
        for name in fields:
            self._differences.labels(self.agency, _bounded(name)).inc()

    def watch_exchange(self, source: ExchangeSource) -> None:
        if self._exchange is None:
            self._exchange = ExchangeCollector(self.agency, source)
            self.registry.register(self._exchange)
