"""The outbox relay: publishes what handlers committed, with confirms, then marks it published.

A handler writes its outgoing messages in the same transaction as its state change; this relay
publishes them afterwards. A crash between the confirm and ``mark_published`` publishes the row
again on restart: the recipient's inbox of handled message ids makes that harmless. Such a row (one
committed before this relay started, or one whose publish failed without a confirm) goes out with
the ``x-jiexu-republished`` header, so the recipient acks a copy it has handled instead of
dead-lettering it as a replay.

Several relays may share one outbox (an agency's replicas on one PostgreSQL store): each round
*claims* its rows for a lease (`agents.store.base.Store.claim_unpublished`), so no other relay
publishes them while the lease holds, and a relay that died holds them only until its lease
expires. A row claimed before (its `OutboxMessage.claims` > 0: a dead or stalled relay may have
published it) goes out marked republished too. ``claimant`` names this relay (unique per running
replica; stable across restarts where only one process can use the store, as with SQLite, so a
restarted agent takes its own rows back at once); ``lease_s`` must exceed how long a round's
publishing takes.

The relay needs only an `Outbox` (an agency's `agents.store.base.Store` is one; the reconciler's
report is one through `agents.reconcile.outbox.ReportOutbox`) and a `BodyPublisher`
(`broker.publisher.Publisher`).

Undeliverable rows: given ``routes`` (`broker.routes.InboxCheck`), the relay publishes a row only
when its recipient's inbox exists; otherwise it holds the row in the outbox (it is published,
unchanged, once the inbox appears), logs one ``message_undeliverable`` warning per recipient until
it recovers, counts each held row once (``jiexu_outbox_undeliverable_total``) and reports it to
``on_undeliverable`` (the agent records it in the case). A message the broker returns as
unroutable (``mandatory``, on a broker without the alternate exchange) is held the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import structlog

from agents.domain.clock import Clock, SystemClock
from agents.faults import crash_point
from agents.service.metrics import ProcessMetrics
from agents.store.base import OutboxMessage
from broker.delivery import HEADER_REPUBLISHED
from broker.names import EXCHANGE
from broker.outage import Outage
from broker.publisher import BasicProperties, UnroutableError, body_properties

__all__ = ["BodyPublisher", "Outbox", "OutboxRelay", "Routes"]

log = structlog.get_logger("jiexu.agents.service.relay")


class Outbox(Protocol):
    """Where committed outgoing messages wait: the part of a store the relay uses."""

    async def claim_unpublished(
        self, claimant: str, *, limit: int = 100, lease_s: float = 30.0
    ) -> Sequence[OutboxMessage]: ...

    async def mark_published(self, ids: Sequence[int]) -> None: ...


class BodyPublisher(Protocol):
    """Publishes an encoded envelope with confirms (`broker.publisher.Publisher`)."""

    @property
    def user_id(self) -> str: ...

    async def publish_body(
        self, exchange: str, routing_key: str, body: bytes, properties: BasicProperties
    ) -> None: ...


class Routes(Protocol):
    """Whether a recipient's inbox exists (`broker.routes.InboxCheck`)."""

    async def exists(self, code: str) -> bool: ...

    def forget(self, code: str) -> None: ...


class _Held(Exception):
    """A row not published: its recipient has no inbox (or the broker returned it)."""


class OutboxRelay:
    """Moves committed outbox rows onto the broker, oldest first, many in flight."""

    def __init__(
        self,
        store: Outbox,
        publisher: BodyPublisher,
        *,
        batch_size: int = 200,
        poll_interval_s: float = 0.5,
        failure_pause_s: float = 1.0,
        clock: Clock | None = None,
        metrics: ProcessMetrics | None = None,
        claimant: str = "relay",
        lease_s: float = 30.0,
        routes: Routes | None = None,
        on_undeliverable: Callable[[OutboxMessage], Awaitable[None]] | None = None,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self.claimant = claimant
        self._lease_s = lease_s
        self._publisher = publisher
        self._batch_size = batch_size
        self._poll_interval_s = poll_interval_s
        self._failure_pause_s = failure_pause_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        # The clock that stamps the outbox rows: a row stamped before this relay started may
        # have been published by the previous run.
        self._started_at = (clock or SystemClock()).now()
        self._attempted: set[int] = set()
        self.published = 0
        # One warning when publishing starts failing (a broker outage), one when it recovers.
        self._outage = Outage("outbox_publish_failed", log)
        self._routes = routes
        self._on_undeliverable = on_undeliverable
        self._held: set[int] = set()
        self._undeliverable: dict[str, Outage] = {}
        self.held = 0
        """Rows held in the last round (their recipient had no inbox)."""

    def wake(self) -> None:
        """A handler committed new rows: publish them now instead of at the next poll."""
        self._wake.set()

    def start(self) -> OutboxRelay:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")
        return self

    async def stop(self) -> None:
        """Publish what is committed, then stop (the drain on SIGTERM)."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            await self.flush()
        except Exception as exc:
            log.warning("relay_flush_failed", error=repr(exc))

    async def flush(self) -> int:
        """Publish until the outbox is empty or a round fails; returns how many were published."""
        total = 0
        while True:
            sent, failed = await self.publish_once()
            total += sent
            if failed or sent == 0:
                return total

    async def publish_once(self) -> tuple[int, int]:
        """One round: returns (published, failed)."""
        rows = await self._store.claim_unpublished(
            self.claimant, limit=self._batch_size, lease_s=self._lease_s
        )
        if not rows:
            return 0, 0
        crash_point("before_publish")
        results = await asyncio.gather(
            *(self._publish(row) for row in rows), return_exceptions=True
        )
        done: list[int] = []
        failed = 0
        held: list[OutboxMessage] = []
        first_error: Exception | None = None
        for row, result in zip(rows, results, strict=True):
            if isinstance(result, _Held):
                held.append(row)
                continue
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result
                failed += 1
                if self._metrics is not None:
                    self._metrics.publish_failed()
                first_error = first_error or result
                self._attempted.add(row.id)
                log.debug("outbox_row_publish_failed", message_id=str(row.message_id), error=repr(result))
            else:
                done.append(row.id)
        if first_error is not None:
            self._outage.failed(failed, error=repr(first_error))
        elif done:
            self._outage.succeeded(published=len(done))
        await self._hold(held, {row.recipient for row, r in zip(rows, results, strict=True)
                                if not isinstance(r, BaseException)})
        if done:
            crash_point("after_publish_before_mark")
            await self._store.mark_published(done)
            self._attempted.difference_update(done)
            self.published += len(done)
            if self._metrics is not None:
                for row, result in zip(rows, results, strict=True):
                    if not isinstance(result, BaseException):
                        self._metrics.published(row.message_type)
        self.held = len(held)
        return len(done), failed

    async def _hold(self, held: list[OutboxMessage], delivered: set[str]) -> None:
        """Log, count and report the rows held this round (each row once); log the recovery of
        a recipient whose rows went out again."""
        for code in delivered:
            outage = self._undeliverable.get(code)
            if outage is not None and outage.active:
                outage.succeeded(recipient=code)
        for row in held:
            outage = self._undeliverable.setdefault(
                row.recipient, Outage("message_undeliverable", log)
            )
            outage.failed(recipient=row.recipient, message_type=row.message_type,
                          why="no inbox for the recipient on the broker: run `jiexu topology apply`")
            if row.id in self._held:
                continue
            self._held.add(row.id)
            if self._metrics is not None:
                self._metrics.undeliverable(row.recipient)
            if self._on_undeliverable is not None:
                try:
                    await self._on_undeliverable(row)
                except Exception as exc:  # the row stays held; the case is told next time
                    self._held.discard(row.id)
                    log.warning("undeliverable_not_recorded", error=repr(exc))

    async def _publish(self, row: OutboxMessage) -> None:
        if self._routes is not None and not await self._routes.exists(row.recipient):
            raise _Held(row.recipient)
        headers = dict(row.headers)
        if row.claims or row.created_at < self._started_at or row.id in self._attempted:
            headers[HEADER_REPUBLISHED] = True
        properties = body_properties(row.body, self._publisher.user_id, headers)
        try:
            await self._publisher.publish_body(EXCHANGE, row.routing_key, row.body, properties)
        except UnroutableError as exc:
            if self._routes is not None:
                self._routes.forget(row.recipient)
            raise _Held(row.recipient) from exc

    async def _run(self) -> None:
        while not self._stopping:
            # Cleared before the round, not after it: a commit that wakes the relay while a round
            # runs (after its claim) leaves the event set, and the wait below returns at once.
            self._wake.clear()
            try:
                sent, failed = await self.publish_once()
            except Exception as exc:
                log.warning("relay_round_failed", error=repr(exc))
                sent, failed = 0, 1
            if failed or (self.held and not sent):
                await asyncio.sleep(self._failure_pause_s)
                continue
            if sent:
                continue  # more may be waiting
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_interval_s)
