"""The reconciler process: the composition root that wires report, service, relay and transport.

``jiexu reconcile`` runs `run_reconciler_with` on a `ReconcilerSettings`; tests and the demo call
`run_reconciler` with the pieces already loaded. Either way `ReconcilerProcess` starts, in order:
the report (`agents.reconcile.stores.open_report`: SQLite, or the PostgreSQL schema of
``JIEXU_DATABASE_URL``), the connection and a confirming `Publisher`, the
`agents.service.relay.OutboxRelay` over the report's outbox (`ReportOutbox`: what an earlier run
queued and did not send goes out first, marked as possible re-sends; on PostgreSQL each
process's relay claims rows with a lease, `relay_claimant`, and is woken by the others' commits),
the `ReconcilerService` behind a `Consumer`, and the `Sweeper`. It stops in the reverse order: stop
consuming, stop the sweeper, publish what is committed, close. Given the directory's
`DirectoryWatch` (``jiexu reconcile``), it follows the directory file as an agent does (SIGHUP, or
a change seen every ``JIEXU_DIRECTORY_CHECK_S`` seconds; `agents.service.directory_watch`).

With ``JIEXU_RECONCILER_METRICS_PORT`` or ``JIEXU_METRICS_PORT`` set (`ReconcilerSettings.metrics`)
it serves ``/metrics``, ``/healthz`` and ``/readyz`` as an agent does (`agents.service.health`): the
server starts first (alive, not ready), the readiness checks ``broker``, ``consumer`` and
``report`` are registered once their parts run, the transport, relay and result counters of
`ReconcilerMetrics` count from the start, and the national view (`agents.reconcile.figures`) is
read from the report in the background. On stop it turns unready first, stops reading the report
before closing it, and closes the server last.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import structlog

from agents.calendars import open_calendar
from agents.domain.clock import Clock, SystemClock
from agents.domain.workdays import WorkdayCalendar
from agents.reconcile.figures import take_exchange_figures
from agents.reconcile.outbox import ReportOutbox
from agents.reconcile.plan import Rules
from agents.reconcile.report_base import ReportStore
from agents.reconcile.service import ReconcilerService, SweepOutcome
from agents.reconcile.settings import ReconcilerSettings
from agents.reconcile.stores import open_report
from agents.service.admission import Freshness
from agents.service.directory_watch import DirectoryWatch
from agents.service.figures import FiguresRefresher
from agents.service.health import HealthServer, Readiness, broker_check, start_health_server
from agents.service.metrics import ExchangeFigures, ReconcilerMetrics
from agents.service.relay import OutboxRelay
from broker.address import parse_broker_url
from broker.connection import BrokerConnection, connect
from broker.consumer import Consumer, ConsumerSettings, KeyDirectory, run_until_signal
from broker.metrics import watch_connection
from broker.names import inbox_queue
from broker.publisher import Publisher
from broker.signing import Ed25519PrivateKey, load_private_key, private_key_path
from broker.tls import check_amqp_url
from broker.topology import load_agency_secret

__all__ = [
    "DEFAULT_AMQP_URL",
    "ReconcilerProcess",
    "Sweeper",
    "reconciler_amqp_url",
    "relay_claimant",
    "run_reconciler",
    "run_reconciler_with",
]

log = structlog.get_logger("jiexu.reconcile")

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


class Sweeper:
    """Runs `ReconcilerService.sweep` every ``interval_s`` seconds until stopped."""

    def __init__(self, service: ReconcilerService, interval_s: float) -> None:
        self._service = service
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    def start(self) -> Sweeper:
        self._task = asyncio.create_task(self._loop(), name="reconcile-sweeper")
        return self

    async def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                await self._service.sweep()
            except Exception as exc:  # a failed sweep is retried at the next interval, visibly
                log.error("reconcile.sweep_failed", error=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self._interval_s)

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task


def reconciler_amqp_url(settings: ReconcilerSettings) -> str:
    """The URL the reconciler connects with: its own login, never guest.

    ``reconciler_amqp_url`` when set; else the secrets file written by ``jiexu topology apply``
    (its URL, unless a vhost is given), on the broker of ``amqp_url`` (``JIEXU_AMQP_URL``).
    Raises ValueError saying what is missing.
    """
    if settings.reconciler_amqp_url:
        return check_amqp_url(settings.reconciler_amqp_url, "JIEXU_RECONCILER_AMQP_URL")
    path = settings.paths.credentials(settings.code)
    if not path.exists():
        raise ValueError(
            f"no broker login for the reconciler: pass --amqp-url or --secrets-dir holding {path.name} "
            "(written by `jiexu topology apply`)"
        )
    secret = load_agency_secret(path)
    # JIEXU_AMQP_URL says where the broker is (every node of a cluster): it wins over the URL the
    # secrets file remembers from `topology apply`, as for the agents.
    base = settings.amqp_url or os.environ.get("JIEXU_AMQP_URL")
    if not base and secret.get("amqp_url") and settings.vhost is None:
        return check_amqp_url(str(secret["amqp_url"]), f"the URL in {path.name}")
    try:
        url = parse_broker_url(base or DEFAULT_AMQP_URL)
    except ValueError as exc:
        raise ValueError(f"JIEXU_AMQP_URL: {exc}") from exc
    vhost = settings.vhost or secret.get("vhost", url.vhost)
    login = url.with_login(secret["username"], secret["password"], vhost)
    return check_amqp_url(login.url(), "JIEXU_AMQP_URL")


def relay_claimant(settings: ReconcilerSettings) -> str:
    """Who this process's relay claims the report's outbox rows as: on PostgreSQL one reconciler
    among several, so this host and process (what a dead one held waits for its lease); on
    SQLite the only process of the file, always the same name."""
    if settings.database_url:
        return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    return "relay"


@dataclass
class _Parts:
    report: ReportStore
    connection: BrokerConnection
    publisher: Publisher
    relay: OutboxRelay
    service: ReconcilerService
    consumer: Consumer


class ReconcilerProcess:
    """Everything the reconciler runs, started and stopped in order. Wiring at construction."""

    def __init__(
        self,
        *,
        amqp_url: str,
        directory: KeyDirectory,
        private_key: Ed25519PrivateKey,
        store_path: Path,
        settings: ReconcilerSettings | None = None,
        consumer_settings: ConsumerSettings | None = None,
        clock: Clock | None = None,
        calendar: WorkdayCalendar | None = None,
        directory_watch: DirectoryWatch | None = None,
    ) -> None:
        """``directory_watch``: the file ``directory`` came from, followed while the process
        runs (a reload replaces the consumer's directory); None: ``directory`` stays."""
        self.settings = settings or ReconcilerSettings()
        self.amqp_url = amqp_url
        self.directory = directory
        self.directory_watch = directory_watch
        self.private_key = private_key
        self.store_path = store_path
        self.consumer_settings = consumer_settings
        self.clock = clock or SystemClock()
        self.rules = Rules(
            code=self.settings.code,
            calendar=calendar or open_calendar(),
            regime=self.settings.regime,
            repeat_working_days=self.settings.repeat_working_days,
        )
        self._parts: _Parts | None = None
        self._commit_watch: asyncio.Task[None] | None = None
        self._sweeper: Sweeper | None = None
        self.metrics = ReconcilerMetrics(agency=self.settings.code)
        self.readiness = Readiness()
        self.health: HealthServer | None = None
        """The metrics and health server (None when no metrics port is set)."""
        self.figures: FiguresRefresher[ExchangeFigures] | None = None
        """Reads the national view from the report in the background while the server runs."""

    @property
    def service(self) -> ReconcilerService:
        assert self._parts is not None, "start() first"
        return self._parts.service

    @property
    def relay(self) -> OutboxRelay:
        assert self._parts is not None, "start() first"
        return self._parts.relay

    @property
    def report(self) -> ReportStore:
        assert self._parts is not None, "start() first"
        return self._parts.report

    async def start(self) -> ReconcilerProcess:
        code = self.settings.code
        metrics = self.metrics
        self.health = await start_health_server(
            metrics.registry, self.readiness, self.settings.metrics
        )
        try:
            report = await open_report(
                self.store_path,
                database_url=self.settings.database_url,
                code=code,
                clock=self.clock,
                pool_size=self.settings.database_pool_size,
            )
        except BaseException:
            await self._stop_health()
            raise
        try:
            connection = await connect(self.amqp_url, name=f"jiexu-reconciler-{code}")
        except BaseException:
            await report.close()
            await self._stop_health()
            raise
        watch_connection(connection.raw, metrics.transport)
        publisher = await Publisher(connection, agency=code, private_key=self.private_key).start()
        relay = OutboxRelay(
            ReportOutbox(report, self.private_key, self.clock),
            publisher,
            clock=self.clock,
            metrics=metrics,
            claimant=relay_claimant(self.settings),
            lease_s=self.settings.outbox_lease_s,
        ).start()
        # Envelopes queued by another reconciler sharing the report (PostgreSQL LISTEN/NOTIFY)
        # wake this relay too, instead of waiting for its next poll.
        watch = getattr(report, "watch_commits", None)
        if watch is not None:
            self._commit_watch = asyncio.create_task(watch(relay.wake), name="report-commit-watch")
        service = ReconcilerService(
            report,
            self.rules,
            clock=self.clock,
            on_commit=relay.wake,
            metrics=metrics,
            freshness=Freshness(
                max_age=timedelta(days=self.settings.message_max_age_days),
                max_ahead=timedelta(seconds=self.settings.message_max_ahead_s),
            ),
        )
        consumer = Consumer(
            connection,
            agency=code,
            handler=service.handle,
            directory=self.directory,
            settings=self.consumer_settings,
            seen_from=service.seen_from,
            republished_from=service.handled_republished,
            publisher=publisher,
            metrics=metrics.transport,
        )
        self._parts = _Parts(report, connection, publisher, relay, service, consumer)
        await consumer.start()
        if self.directory_watch is not None:
            self.directory_watch.listen(lambda directory: self._follow(directory, consumer))
            self.directory_watch.start(self.settings.directory_check_s)
        if self.health is not None:
            self.figures = FiguresRefresher(
                lambda: take_exchange_figures(report, self.clock),
                interval_s=self.settings.figures_interval_s,
                on_failure=metrics.figures_refresh_failed,
            ).start()
            metrics.watch_exchange(self.figures.latest)
        self.readiness.add("broker", broker_check(connection))
        self.readiness.add("consumer", lambda: consumer.active)
        self.readiness.add("report", report.schema_version)
        if self.health is not None:
            log.info(
                "metrics_serving",
                agency=code,
                url=self.health.url,
                host=self.health.host,
                port=self.health.port,
                paths=["/metrics", "/healthz", "/readyz"],
            )
        return self

    async def _stop_commit_watch(self) -> None:
        task, self._commit_watch = self._commit_watch, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _follow(self, directory: KeyDirectory, consumer: Consumer) -> None:
        self.directory = directory
        consumer.directory = directory

    async def _stop_health(self) -> None:
        if self.health is not None:
            await self.health.stop()
            self.health = None

    def start_sweeper(self, interval_s: float) -> Sweeper:
        self._sweeper = Sweeper(self.service, interval_s).start()
        return self._sweeper

    async def run_once(self) -> SweepOutcome:
        """Handle what is in the inbox now, sweep once, publish everything, and say what the sweep did."""
        assert self._parts is not None, "start() first"
        parts = self._parts
        try:
            await _wait_until_idle(parts.connection, inbox_queue(self.settings.code), parts.consumer)
        finally:
            await parts.consumer.stop()
        # The relay's loop ends (publishing what is committed) before the flush below: two
        # publishers of the same rows would send a row twice without marking the second a re-send.
        await parts.relay.stop()
        before = parts.relay.published
        outcome = await parts.service.sweep()
        await parts.relay.flush()
        outcome.published = parts.relay.published - before
        return outcome

    async def stop(self) -> None:
        """Drain: stop consuming and sweeping, publish what is committed, close."""
        parts, self._parts = self._parts, None
        if parts is None:
            return
        self.readiness.add("stopping", lambda: False)
        if self.directory_watch is not None:
            await self.directory_watch.stop()
        try:
            await parts.consumer.stop()
            if self._sweeper is not None:
                await self._sweeper.stop()
            await parts.relay.stop()
            await parts.publisher.close()
            await parts.connection.close()
        finally:
            await self._stop_commit_watch()
            if self.figures is not None:
                await self.figures.stop()
                self.figures = None
            await parts.report.close()
            await self._stop_health()


async def _wait_until_idle(
    connection: BrokerConnection, queue_name: str, consumer: Consumer, poll_s: float = 0.2
) -> None:
    """Until the inbox has no ready message and the consumer handled nothing new twice running."""
    channel = await connection.channel(confirms=False)
    try:
        quiet = 0
        last = -1
        while quiet < 2:
            queue = await channel.declare_queue(queue_name, passive=True, robust=False)
            ready = queue.declaration_result.message_count or 0
            stats = consumer.stats
            seen = stats.handled + stats.duplicates + stats.dead_lettered + stats.retried
            quiet = quiet + 1 if ready == 0 and seen == last else 0
            last = seen
            await asyncio.sleep(poll_s)
    finally:
        connection.forget(channel)
        await channel.close()


async def run_reconciler(
    *,
    amqp_url: str,
    directory: KeyDirectory,
    private_key: Ed25519PrivateKey,
    store_path: Path,
    settings: ReconcilerSettings | None = None,
    consumer_settings: ConsumerSettings | None = None,
    clock: Clock | None = None,
    calendar: WorkdayCalendar | None = None,
    once: bool = False,
    sweep_interval_s: float = 300.0,
    stop_event: asyncio.Event | None = None,
    signals: Sequence[signal.Signals] = (signal.SIGTERM, signal.SIGINT),
    directory_watch: DirectoryWatch | None = None,
) -> SweepOutcome | None:
    """Run the reconciler from loaded pieces (`ReconcilerProcess`).

    ``once``: handle what is in the inbox now, sweep once, publish, and return the sweep's outcome.
    Otherwise run until SIGTERM/SIGINT (or ``stop_event``), then drain and return None; with a
    ``directory_watch`` (where ``directory`` came from) the directory file is followed, and
    reloaded on SIGHUP too when ``signals`` are handled.
    """
    process = ReconcilerProcess(
        amqp_url=amqp_url,
        directory=directory,
        private_key=private_key,
        store_path=store_path,
        settings=settings,
        consumer_settings=consumer_settings,
        clock=clock,
        calendar=calendar,
        directory_watch=directory_watch,
    )
    await process.start()
    stop_reloading: Callable[[], None] = lambda: None  # noqa: E731
    try:
        if once:
            return await process.run_once()
        process.start_sweeper(sweep_interval_s)
        if directory_watch is not None and signals:
            stop_reloading = directory_watch.on_sighup()
        await run_until_signal(signals=signals, stop_event=stop_event)
        return None
    finally:
        stop_reloading()
        await process.stop()


async def run_reconciler_with(
    settings: ReconcilerSettings,
    *,
    once: bool = False,
    clock: Clock | None = None,
    stop_event: asyncio.Event | None = None,
) -> SweepOutcome | None:
    """`run_reconciler` configured by ``settings`` alone (``jiexu reconcile``).

    Raises ValueError (or `broker.directory.DirectoryError`, `agents.calendars.CalendarFileError`,
    OSError) when a file it needs is missing or wrong, before connecting.
    """
    calendar = open_calendar(directory=settings.calendar_dir)
    watch = DirectoryWatch.open(settings.directory, settings.secrets_dir)  # operator-signed
    private_key = load_private_key(private_key_path(settings.key_dir, settings.code))
    return await run_reconciler(
        amqp_url=reconciler_amqp_url(settings),
        directory=watch.directory,
        directory_watch=watch,
        private_key=private_key,
        store_path=settings.report_path,
        settings=settings,
        consumer_settings=ConsumerSettings(
            retry_delays_ms=settings.retry_delays_ms, user_prefix=settings.user_prefix
        ),
        clock=clock,
        calendar=calendar,
        once=once,
        sweep_interval_s=settings.sweep_interval_s,
        stop_event=stop_event,
    )
