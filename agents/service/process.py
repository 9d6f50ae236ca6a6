"""The agency agent process: the composition root that wires store, ledger, service and transport.

``jiexu agent --agency CODE`` runs `run_agent`: it consumes the agency's inbox, hands each message
to `AgencyService.handle`, relays the outbox with confirms, watches deadlines, answers statement
requests, and on SIGTERM drains (stop consuming, finish in-flight work, publish what is committed,
close).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path

import structlog

from agents.domain.case import Agency
from agents.domain.clock import Clock, SystemClock
from agents.domain.workdays import WorkingCalendar
from agents.ledger.sqlite import SqliteLedger
from agents.service.agency import AgencyService
from agents.service.relay import OutboxRelay
from agents.service.settings import AgentSettings
from agents.store.base import Store
from agents.store.postgres import PostgresStore
from agents.store.sqlite import SqliteStore
from broker.address import parse_broker_url
from broker.connection import BrokerConnection, connect
from broker.consumer import Consumer, ConsumerSettings, run_until_signal
from broker.directory import AgencyDirectory
from broker.publisher import Publisher
from broker.signing import load_private_key, private_key_path
from broker.topology import load_agency_secret, secret_path
from schemas.common import AgencyDetails, BankAccount

__all__ = ["AgentProcess", "agency_amqp_url", "agency_config", "open_service", "open_store", "run_agent"]

log = structlog.get_logger("jiexu.agents.service.process")


def agency_config(settings: AgentSettings, directory: AgencyDirectory) -> Agency:
    """This agency as the domain sees it, from the directory entry and the settings."""
    entry = directory.get(settings.agency)
    return Agency(
        code=entry.code,
        details=AgencyDetails(
            name=entry.name,
            address=entry.address or "(not stated)",
            phone=entry.phone or "00000000",
            bank_account=BankAccount(**entry.bank_account.model_dump()),
        ),
        regime=settings.regime,
        accepts_funds=settings.accepts_funds,
        seal_reference=f"seal:{entry.code}",
    )


def agency_amqp_url(settings: AgentSettings) -> str:
    """The URL the agent connects with: always as its own agency user, never as guest.

    The secrets file written by ``jiexu topology apply`` holds user, password and vhost (and the
    URL when known); ``JIEXU_AMQP_URL`` (host and port) overrides where the broker is.
    """
    secret = load_agency_secret(secret_path(settings.secrets_dir, settings.agency))
    base = settings.amqp_url or secret.get("amqp_url")
    if not base:
        raise ValueError(
            f"no broker URL for agency {settings.agency}: set JIEXU_AMQP_URL or run "
            "`jiexu topology apply` with it set"
        )
    # Every node the URL names (a cluster), with this agency's own login.
    return (
        parse_broker_url(base)
        .with_login(secret["username"], secret["password"], secret.get("vhost", "/"))
        .url()
    )


async def open_store(settings: AgentSettings, clock: Clock | None = None) -> Store:
    if settings.database_url:
        return await PostgresStore.open(
            settings.database_url, schema=f"agency_{settings.agency}", clock=clock
        )
    return await SqliteStore.open(settings.store_path, clock=clock)


def _calendar(settings: AgentSettings) -> WorkingCalendar:
    if settings.calendar_dir is not None:
        return WorkingCalendar.from_directory(settings.calendar_dir)
    return WorkingCalendar()


@dataclass
class OpenedService:
    service: AgencyService
    store: Store
    ledger: SqliteLedger
    directory: AgencyDirectory

    async def close(self) -> None:
        await self.store.close()
        await self.ledger.close()


async def open_service(settings: AgentSettings, clock: Clock | None = None) -> OpenedService:
    """The service with its store and ledger, without any broker (``jiexu apply`` uses this)."""
    clock = clock or SystemClock()
    directory = AgencyDirectory.load(settings.directory)
    private_key = load_private_key(Path(private_key_path(settings.secrets_dir, settings.agency)))
    store = await open_store(settings, clock)
    ledger = await SqliteLedger.open(settings.ledger_path, settings.agency, clock=clock)
    service = AgencyService(
        agency=agency_config(settings, directory),
        store=store,
        ledger=ledger,
        directory=directory,
        calendar=_calendar(settings),
        clock=clock,
        private_key=private_key,
        reconciler=settings.reconciler,
    )
    return OpenedService(service, store, ledger, directory)


class AgentProcess:
    """Everything one agency agent runs, started and stopped in order."""

    def __init__(self, settings: AgentSettings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.opened: OpenedService | None = None
        self.connection: BrokerConnection | None = None
        self.publisher: Publisher | None = None
        self.relay: OutboxRelay | None = None
        self.consumer: Consumer | None = None
        self._deadlines: asyncio.Task[None] | None = None

    @property
    def service(self) -> AgencyService:
        assert self.opened is not None, "start() first"
        return self.opened.service

    async def start(self) -> AgentProcess:
        settings = self.settings
        self.opened = await open_service(settings, self.clock)
        service = self.opened.service
        self.connection = await connect(
            agency_amqp_url(settings), name=f"jiexu-agent-{settings.agency}"
        )
        self.publisher = await Publisher(
            self.connection, agency=settings.agency, private_key=service.private_key
        ).start()
        self.relay = OutboxRelay(self.opened.store, self.publisher, clock=self.clock).start()
        service._on_commit = self.relay.wake
        await service.recover()
        self.consumer = await Consumer(
            self.connection,
            agency=settings.agency,
            handler=service.handle,
            directory=self.opened.directory,
            settings=ConsumerSettings(
                prefetch=settings.prefetch,
                retry_delays_ms=settings.retry_delays_ms,
                user_prefix=settings.user_prefix,
                verify_in_thread=settings.verify_in_thread,
            ),
            seen=service.seen,
            publisher=self.publisher,
        ).start()
        self._deadlines = asyncio.create_task(self._watch_deadlines(), name="deadlines")
        log.info("agent_started", regime=settings.regime.value)
        return self

    async def _watch_deadlines(self) -> None:
        while True:
            try:
                await self.service.tick()
                await self.service.recover()
            except Exception as exc:
                log.warning("deadline_round_failed", error=repr(exc))
            await asyncio.sleep(self.settings.deadline_interval_s)

    async def stop(self) -> None:
        """Drain: stop consuming and finish in-flight work, publish what is committed, close."""
        if self.consumer is not None:
            await self.consumer.stop()
        if self._deadlines is not None:
            self._deadlines.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._deadlines
        if self.relay is not None:
            await self.relay.stop()
        if self.publisher is not None:
            await self.publisher.close()
        if self.connection is not None:
            await self.connection.close()
        stats: dict[str, int] = {}
        if self.opened is not None:
            if isinstance(self.opened.store, SqliteStore):
                # How well units of work shared commits (group commit): units per fsync.
                stats["store_commits"], stats["store_units"] = self.opened.store.commits
            await self.opened.close()
        log.info("agent_stopped", **stats)


async def run_agent(settings: AgentSettings, stop_event: asyncio.Event | None = None) -> None:
    """Run until SIGTERM/SIGINT (or ``stop_event``), then drain and exit."""
    structlog.contextvars.bind_contextvars(agency=settings.agency)
    process = await AgentProcess(settings).start()
    try:
        await run_until_signal(stop_event=stop_event)
    finally:
        await process.stop()
