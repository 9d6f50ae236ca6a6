"""The agency agent process: starts what `agents.service.bootstrap` wires, and stops it in order.

``jiexu agent --agency CODE`` runs `run_agent`: it consumes the agency's inbox, hands each message
to `AgencyService.handle`, relays the outbox with confirms, watches deadlines, answers statement
requests, and on SIGTERM drains (stop consuming, finish in-flight work, publish what is committed,
close).

With ``JIEXU_METRICS_PORT`` set it also serves ``/metrics``, ``/healthz`` and ``/readyz``
(`agents.service.health`): the server starts first (a probe sees the process alive, and not ready,
while it connects), the readiness checks are registered once their parts run (``broker``,
``consumer``, ``store``, ``ledger``), and the store gauges are read in the background by a
`FiguresRefresher`. On stop the process turns unready first and closes the server last.

The agency directory is followed while it runs (`agents.service.directory_watch`): SIGHUP, or a
change of the file seen every ``JIEXU_DIRECTORY_CHECK_S`` seconds, reloads it, verified as at
start; a bad file is refused with one warning and the directory in force stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import structlog

from agents.domain.clock import Clock, SystemClock
from agents.domain.workdays import WorkdayCalendar
from agents.ledger.base import LedgerPort
from agents.service.agency import AgencyService
from agents.service.bootstrap import (
    AgentParts,
    OpenedService,
    agency_amqp_url,
    agency_config,
    bootstrap_agent,
    open_service,
    open_store,
)
from agents.service.figures import FiguresRefresher
from agents.service.health import HealthServer, Readiness, broker_check, start_health_server
from agents.service.metrics import AgentMetrics, StoreFigures
from agents.service.relay import OutboxRelay
from agents.service.settings import AgentSettings
from agents.store.base import Store
from agents.store.sqlite import SqliteStore
from broker.connection import BrokerConnection
from broker.consumer import Consumer, run_until_signal
from broker.metrics import watch_connection
from broker.publisher import Publisher

__all__ = [
    "AgentProcess",
    "OpenedService",
    "agency_amqp_url",
    "agency_config",
    "open_service",
    "open_store",
    "run_agent",
]

log = structlog.get_logger("jiexu.agents.service.process")

RELAY_DRAIN_TIMEOUT_S = 30.0
"""How long a stopping agent lets its relay publish what is committed (the rest waits in the outbox
for the next start)."""


class AgentProcess:
    """Everything one agency agent runs, started and stopped in order."""

    def __init__(
        self,
        settings: AgentSettings,
        clock: Clock | None = None,
        *,
        store: Store | None = None,
        ledger: LedgerPort | None = None,
        calendar: WorkdayCalendar | None = None,
    ) -> None:
        """``store``, ``ledger`` and ``calendar`` replace what the settings would open (see
        `agents.service.bootstrap`); the process closes them when it stops."""
        self.settings = settings
        self.clock = clock or SystemClock()
        self._store = store
        self._ledger = ledger
        self._calendar = calendar
        self.parts: AgentParts | None = None
        self._deadlines: asyncio.Task[None] | None = None
        self.metrics = AgentMetrics(settings.agency)
        self.readiness = Readiness()
        self.health: HealthServer | None = None
        """The metrics and health server (None when ``JIEXU_METRICS_PORT`` is unset)."""
        self.figures: FiguresRefresher[StoreFigures] | None = None
        """Reads the store gauges in the background while the server runs."""
        self._commit_watch: asyncio.Task[None] | None = None

    @property
    def opened(self) -> OpenedService | None:
        return self.parts.opened if self.parts is not None else None

    @property
    def connection(self) -> BrokerConnection | None:
        return self.parts.connection if self.parts is not None else None

    @property
    def publisher(self) -> Publisher | None:
        return self.parts.publisher if self.parts is not None else None

    @property
    def relay(self) -> OutboxRelay | None:
        return self.parts.relay if self.parts is not None else None

    @property
    def consumer(self) -> Consumer | None:
        return self.parts.consumer if self.parts is not None else None

    @property
    def service(self) -> AgencyService:
        assert self.parts is not None, "start() first"
        return self.parts.service

    async def start(self) -> AgentProcess:
        settings = self.settings
        self.health = await start_health_server(
            self.metrics.registry, self.readiness, settings.metrics
        )
        try:
            self.parts = parts = await bootstrap_agent(
                settings,
                clock=self.clock,
                store=self._store,
                ledger=self._ledger,
                calendar=self._calendar,
                metrics=self.metrics,
            )
        except BaseException:
            if self.health is not None:
                await self.health.stop()
            raise
        watch_connection(parts.connection.raw, self.metrics.transport)
        parts.relay.start()
        # Rows committed by another process (`jiexu apply`) wake the relay at once (a SQLite
        # data_version check, PostgreSQL LISTEN/NOTIFY) instead of at its next poll.
        watch = getattr(parts.opened.store, "watch_commits", None)
        if watch is not None:
            self._commit_watch = asyncio.create_task(watch(parts.relay.wake), name="commit-watch")
        await parts.service.recover()
        await parts.consumer.start()
        self._deadlines = asyncio.create_task(self._watch_deadlines(), name="deadlines")
        parts.directory_watch.start(settings.directory_check_s)
        if self.health is not None:
            self.figures = FiguresRefresher.for_store(
                parts.opened.store, self.clock, on_failure=self.metrics.figures_refresh_failed
            ).start()
            self.metrics.watch_store(self.figures.latest)
        self._register_checks(parts)
        if self.health is not None:
            log.info(
                "metrics_serving",
                agency=settings.agency,
                url=self.health.url,
                host=self.health.host,
                port=self.health.port,
                paths=["/metrics", "/healthz", "/readyz"],
            )
        log.info("agent_started", regime=settings.regime.value)
        return self

    def _register_checks(self, parts: AgentParts) -> None:
        """``broker``: the connection is open; ``consumer``: the inbox consumer runs; ``store``,
        ``ledger``: a small read answered in time (the applied schema migrations; the statement of
        the nil case id, which no case has)."""
        store, ledger, consumer = parts.opened.store, parts.opened.ledger, parts.consumer
        nil_case = uuid.UUID(int=0)
        self.readiness.add("broker", broker_check(parts.connection))
        self.readiness.add("consumer", lambda: consumer.active)
        self.readiness.add("store", store.schema_versions)
        self.readiness.add("ledger", lambda: ledger.statement(nil_case))

    async def _watch_deadlines(self) -> None:
        while True:
            try:
                await self.service.tick()
                await self.service.recover()
            except Exception as exc:
                log.warning("deadline_round_failed", error=repr(exc))
            await asyncio.sleep(self.settings.deadline_interval_s)

    async def stop(self) -> None:
        """Drain: stop consuming and finish in-flight work, publish what is committed, close.

        Unready first (probes stop routing to this replica), the figures' reads stopped before the
        store closes, the metrics server closed last."""
        self.readiness.add("stopping", lambda: False)
        if self.parts is not None:
            await self.parts.directory_watch.stop()
        if self.consumer is not None:
            await self.consumer.stop()
        if self._deadlines is not None:
            self._deadlines.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._deadlines
        if self._commit_watch is not None:
            self._commit_watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._commit_watch
        if self.relay is not None:
            # Bounded whatever the broker does: what is not published stays in the outbox.
            try:
                await asyncio.wait_for(self.relay.stop(), RELAY_DRAIN_TIMEOUT_S)
            except TimeoutError:
                log.warning("relay_drain_timeout", seconds=RELAY_DRAIN_TIMEOUT_S)
        if self.publisher is not None:
            await self.publisher.close()
        if self.connection is not None:
            await self.connection.close()
        if self.figures is not None:
            await self.figures.stop()
            self.figures = None
        stats: dict[str, int] = {}
        if self.opened is not None:
            if isinstance(self.opened.store, SqliteStore):
                # How well units of work shared commits (group commit): units per fsync.
                stats["store_commits"], stats["store_units"] = self.opened.store.commits
            await self.opened.close()
        if self.health is not None:
            await self.health.stop()
            self.health = None
        log.info("agent_stopped", **stats)


async def run_agent(settings: AgentSettings, stop_event: asyncio.Event | None = None) -> None:
    """Run until SIGTERM/SIGINT (or ``stop_event``), then drain and exit."""
    structlog.contextvars.bind_contextvars(agency=settings.agency)
    process = await AgentProcess(settings).start()
    assert process.parts is not None
    stop_reloading = process.parts.directory_watch.on_sighup()  # SIGHUP: reload the directory
    try:
        await run_until_signal(stop_event=stop_event)
    finally:
        stop_reloading()
        await process.stop()
