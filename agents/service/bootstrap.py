"""The composition root: the one place that chooses adapters and wires an agency's objects.

Every process starts here, as cosmicpython's ``bootstrap`` does: settings in, wired objects out,
each dependency overridable (a test's in-memory store or ledger, a manual clock, a calendar, a
publisher) and defaulted from the settings otherwise:

* `open_service`: the service with its store and ledger, without a broker. ``jiexu apply`` and the
  front offices of the demo and the bench use it; so does `bootstrap_agent`.
* `bootstrap_agent`: everything ``jiexu agent`` runs (service, broker connection, publisher,
  outbox relay, consumer), wired at construction: the service's on-commit callback is the relay's
  wake. Nothing is started; `agents.service.process.AgentProcess` starts and stops them in order.
* `open_store` / `open_agency_store`: an agency's store alone (``jiexu case show``,
  ``jiexu status``).

Only this module chooses adapters (`SqliteStore`, `PostgresStore`; the ledger through
`agents.ledger.choice`, ``JIEXU_LEDGER``); everything else is given the ports (`Store`,
`LedgerPort`). Every path comes from `AgentSettings.paths` (`agents.service.paths.Paths`).
Objects handed in as overrides are owned by what is returned: closing it closes them too.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from agents.calendars import open_calendar
from agents.domain.case import Agency
from agents.domain.clock import Clock, SystemClock
from agents.domain.workdays import WorkdayCalendar
from agents.ledger import choice
from agents.ledger.base import LedgerPort
from agents.service.admission import Freshness
from agents.service.agency import AgencyService
from agents.service.directory_watch import DirectoryWatch
from agents.service.metrics import AgentMetrics
from agents.service.paths import Paths
from agents.service.relay import OutboxRelay
from agents.service.settings import AgentSettings
from agents.store.base import OutboxMessage, Store
from agents.store.sqlite import SqliteStore
from broker.address import parse_broker_url
from broker.connection import BrokerConnection, connect
from broker.consumer import Consumer, ConsumerSettings
from broker.directory import AgencyDirectory
from broker.publisher import Publisher
from broker.routes import InboxCheck
from broker.signing import Ed25519PrivateKey, load_private_key
from broker.tls import check_amqp_url
from broker.topology import load_agency_secret
from schemas.common import AgencyDetails, BankAccount

__all__ = [
    "AgentParts",
    "OpenedService",
    "agency_amqp_url",
    "agency_config",
    "bootstrap_agent",
    "follow_directory",
    "load_calendar",
    "open_agency_store",
    "open_ledger",
    "open_service",
    "open_store",
    "relay_claimant",
]


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
        waiting_months=settings.waiting_months,
        payout_approval_limit_fen=settings.payout_approval_limit_fen,
    )


async def open_agency_store(
    paths: Paths,
    code: str,
    *,
    database_url: str | None = None,
    clock: Clock | None = None,
    pool_size: int = 10,
) -> Store:
    """Agency ``code``'s store: its schema in PostgreSQL when ``database_url`` is given, else its
    SQLite file under ``paths``."""
    if database_url:
        # Imported here: asyncpg is loaded only where PostgreSQL is configured.
        from agents.store.postgres import PostgresStore

        return await PostgresStore.open(
            database_url, schema=f"agency_{code}", clock=clock, max_size=pool_size
        )
    return await SqliteStore.open(paths.store(code), clock=clock)


async def open_store(settings: AgentSettings, clock: Clock | None = None) -> Store:
    """The store ``settings`` configure (``JIEXU_DATABASE_URL``, else SQLite in the data dir)."""
    return await open_agency_store(
        settings.paths,
        settings.agency,
        database_url=settings.database_url,
        clock=clock,
        pool_size=settings.database_pool_size,
    )


async def open_ledger(settings: AgentSettings, clock: Clock | None = None) -> LedgerPort:
    """The agency's books, as ``JIEXU_LEDGER`` chooses (`agents.ledger.choice`; the default is
    the SQLite reference ledger in the data dir). Raises `choice.LedgerConfigError`."""
    return await choice.open_ledger(
        settings.ledger,
        agency=settings.agency,
        path=settings.paths.ledger(settings.agency),
        database_url=settings.database_url,
        ledger_url=settings.ledger_url,
        clock=clock,
        pool_size=settings.database_pool_size,
    )


def relay_claimant(settings: AgentSettings) -> str:
    """Who this process's relay claims outbox rows as: on PostgreSQL one replica among many,
    so this host and process (a restarted replica is a new claimant: what the dead one held
    waits for its lease); on SQLite the only process of the file, so always the same name (a
    restarted agent takes its rows back at once)."""
    if settings.database_url:
        return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    return f"sqlite:{settings.agency}"


def load_calendar(settings: AgentSettings) -> WorkdayCalendar:
    """China's working days, with the extra calendar files of ``calendar_dir`` when configured."""
    return open_calendar(directory=settings.calendar_dir)


def agency_amqp_url(settings: AgentSettings) -> str:
    """The URL the agent connects with: always as its own agency user, never as guest.

    The secrets file written by ``jiexu topology apply`` holds user, password and vhost (and the
    URL when known); ``JIEXU_AMQP_URL`` (host and port) overrides where the broker is.
    """
    secret = load_agency_secret(settings.paths.credentials(settings.agency))
    base = settings.amqp_url or secret.get("amqp_url")
    if not base:
        raise ValueError(
            f"no broker URL for agency {settings.agency}: set JIEXU_AMQP_URL or run "
            "`jiexu topology apply` with it set"
        )
    # Every node the URL names (a cluster), the scheme and the TLS query (cafile, certfile,
    # keyfile) kept, with this agency's own login.
    url = (
        parse_broker_url(base)
        .with_login(secret["username"], secret["password"], secret.get("vhost", "/"))
        .url()
    )
    return check_amqp_url(url, f"agency {settings.agency}'s broker URL")


@dataclass
class OpenedService:
    """The service and the resources it holds; `close` closes the store and the ledger."""

    service: AgencyService
    store: Store
    ledger: LedgerPort

    @property
    def directory(self) -> AgencyDirectory:
        """The directory in force (the service's: a reload replaces it)."""
        return self.service.directory

    async def close(self) -> None:
        await self.store.close()
        await self.ledger.close()


@dataclass
class _Resources:
    """What the service is built from, opened in this order: directory, key, store, ledger."""

    clock: Clock
    watch: DirectoryWatch
    private_key: Ed25519PrivateKey
    store: Store
    ledger: LedgerPort

    @property
    def directory(self) -> AgencyDirectory:
        return self.watch.directory

    async def close(self) -> None:
        await self.store.close()
        await self.ledger.close()

    def service(
        self,
        settings: AgentSettings,
        calendar: WorkdayCalendar | None,
        on_commit: Callable[[], None] | None,
        metrics: AgentMetrics | None = None,
    ) -> OpenedService:
        service = AgencyService(
            agency=agency_config(settings, self.directory),
            store=self.store,
            ledger=self.ledger,
            directory=self.directory,
            calendar=calendar if calendar is not None else load_calendar(settings),
            clock=self.clock,
            private_key=self.private_key,
            reconciler=settings.reconciler,
            on_commit=on_commit,
            metrics=metrics,
            freshness=Freshness(
                max_age=timedelta(days=settings.message_max_age_days),
                max_ahead=timedelta(seconds=settings.message_max_ahead_s),
            ),
            recover_grace_s=settings.recover_grace_s if settings.database_url else 0.0,
        )
        return OpenedService(service, self.store, self.ledger)


async def _open_resources(
    settings: AgentSettings, clock: Clock | None, store: Store | None, ledger: LedgerPort | None
) -> _Resources:
    clock = clock or SystemClock()
    watch = DirectoryWatch.open(settings.paths.directory, settings.secrets_dir)  # operator-signed
    private_key = load_private_key(settings.paths.private_key(settings.agency))
    store = store if store is not None else await open_store(settings, clock)
    try:
        ledger = ledger if ledger is not None else await open_ledger(settings, clock)
    except BaseException:
        await store.close()
        raise
    return _Resources(clock, watch, private_key, store, ledger)


async def open_service(
    settings: AgentSettings,
    clock: Clock | None = None,
    *,
    store: Store | None = None,
    ledger: LedgerPort | None = None,
    calendar: WorkdayCalendar | None = None,
    on_commit: Callable[[], None] | None = None,
) -> OpenedService:
    """The service with its store and ledger, without any broker (``jiexu apply`` uses this).

    ``on_commit`` is called after every commit that added outbox rows (the agent passes its
    relay's wake; a front office without a relay passes nothing).
    """
    resources = await _open_resources(settings, clock, store, ledger)
    return resources.service(settings, calendar, on_commit)


@dataclass
class AgentParts:
    """Everything one agency agent runs, wired and not yet started (the publisher's channel is
    open: the relay and the consumer need it)."""

    opened: OpenedService
    connection: BrokerConnection
    publisher: Publisher
    relay: OutboxRelay
    consumer: Consumer
    metrics: AgentMetrics
    directory_watch: DirectoryWatch
    """The directory in force; a reload replaces it in the service and the consumer."""

    @property
    def service(self) -> AgencyService:
        return self.opened.service


def follow_directory(
    settings: AgentSettings, watch: DirectoryWatch, service: AgencyService, consumer: Consumer
) -> None:
    """A reloaded directory goes into force for the service (accounts, versions, its own
    details) and the consumer (senders' keys); one that no longer lists this agency is refused."""

    def apply(directory: AgencyDirectory) -> None:
        agency = agency_config(settings, directory)  # UnknownAgency: refused, nothing changed
        service.agency = agency
        service.directory = directory
        consumer.directory = directory

    watch.listen(apply)


async def bootstrap_agent(
    settings: AgentSettings,
    *,
    clock: Clock | None = None,
    store: Store | None = None,
    ledger: LedgerPort | None = None,
    calendar: WorkdayCalendar | None = None,
    connection: BrokerConnection | None = None,
    publisher: Publisher | None = None,
    metrics: AgentMetrics | None = None,
) -> AgentParts:
    """Open the agency's store and ledger, connect as its broker user, and wire the publisher, the
    outbox relay, the service (its on-commit callback is the relay's wake) and the consumer, each
    counting into ``metrics`` (a new `AgentMetrics` for the agency when not given)."""
    metrics = metrics if metrics is not None else AgentMetrics(settings.agency)
    resources = await _open_resources(settings, clock, store, ledger)
    try:
        if connection is None:
            connection = await connect(
                agency_amqp_url(settings), name=f"jiexu-agent-{settings.agency}"
            )
        if publisher is None:
            publisher = Publisher(
                connection, agency=settings.agency, private_key=resources.private_key
            )
        await publisher.start()
        async def held(row: OutboxMessage) -> None:  # the service exists once a row is held
            await opened.service.record_undeliverable(row)

        relay = OutboxRelay(
            resources.store,
            publisher,
            clock=resources.clock,
            metrics=metrics,
            claimant=relay_claimant(settings),
            lease_s=settings.outbox_lease_s,
            routes=InboxCheck(connection),
            on_undeliverable=held,
        )
        opened = resources.service(settings, calendar, relay.wake, metrics)
        consumer = Consumer(
            connection,
            agency=settings.agency,
            handler=opened.service.handle,
            directory=opened.directory,
            settings=ConsumerSettings(
                prefetch=settings.prefetch,
                retry_delays_ms=settings.retry_delays_ms,
                user_prefix=settings.user_prefix,
                verify_in_thread=settings.verify_in_thread,
            ),
            seen_from=opened.service.seen,
            republished_from=opened.service.handled_republished,
            publisher=publisher,
            metrics=metrics.transport,
        )
    except BaseException:
        if connection is not None:
            await connection.close()
        await resources.close()
        raise
    follow_directory(settings, resources.watch, opened.service, consumer)
    return AgentParts(opened, connection, publisher, relay, consumer, metrics, resources.watch)
