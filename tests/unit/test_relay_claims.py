"""Several relays on one outbox (an agency's replicas): each row goes out once while its claim
holds; a dead relay's rows go out after its lease, marked republished."""

from __future__ import annotations

from datetime import datetime

from agents.domain.clock import CHINA_TZ, ManualClock
from agents.service.relay import OutboxRelay
from agents.testing import InMemoryStore
from broker.delivery import HEADER_REPUBLISHED
from tests.unit.test_service_world import RecordingPublisher, row


class DyingPublisher(RecordingPublisher):
    """A replica that claims its rows and dies before any confirm."""

    async def publish_body(self, exchange: str, routing_key: str, body: bytes, properties: object) -> None:
        raise ConnectionError("SIGKILL")


async def test_two_relays_publish_each_row_once() -> None:
    clock = ManualClock(datetime(2025, 3, 3, 9, tzinfo=CHINA_TZ))
    store = InMemoryStore(clock=clock)
    first, second = RecordingPublisher(), RecordingPublisher()
    relays = [
        OutboxRelay(store, first, clock=clock, claimant="a", batch_size=3),
        OutboxRelay(store, second, clock=clock, claimant="b", batch_size=3),
    ]
    clock.advance(seconds=1)
    async with store.transaction() as tx:
        await tx.add_outbox([row(n, clock.now()) for n in range(1, 11)])
    # interleaved rounds, as two processes would run them
    for _ in range(4):
        for relay in relays:
            await relay.publish_once()
    assert len(first.published) + len(second.published) == 10
    assert first.published and second.published
    assert all(HEADER_REPUBLISHED not in h for _, h in first.published + second.published)
    assert await store.fetch_unpublished() == []


async def test_a_dead_relays_rows_wait_for_its_lease_then_go_out_marked() -> None:
    clock = ManualClock(datetime(2025, 3, 3, 9, tzinfo=CHINA_TZ))
    store = InMemoryStore(clock=clock)
    dead = OutboxRelay(store, DyingPublisher(), clock=clock, claimant="dead", lease_s=10)
    live_publisher = RecordingPublisher()
    live = OutboxRelay(store, live_publisher, clock=clock, claimant="live", lease_s=10)
    clock.advance(seconds=1)
    async with store.transaction() as tx:
        await tx.add_outbox([row(1, clock.now()), row(2, clock.now())])
    assert await dead.publish_once() == (0, 2)
    assert await live.publish_once() == (0, 0)  # held by the dead relay's lease
    clock.advance(seconds=11)
    assert await live.publish_once() == (2, 0)
    assert [h.get(HEADER_REPUBLISHED) for _, h in live_publisher.published] == [True, True]
    assert await store.fetch_unpublished() == []


class RacingStore(InMemoryStore):
    """A commit (and its wake-up) that lands while the relay's round runs, after its claim."""

    relay: OutboxRelay | None = None
    raced = False

    async def claim_unpublished(self, claimant: str, **options: object) -> list:  # type: ignore[override]
        claimed = await super().claim_unpublished(claimant, **options)  # type: ignore[arg-type]
        if not self.raced and self.relay is not None:
            self.raced = True
            async with self.transaction() as tx:
                await tx.add_outbox([row(1, self._clock.now())])
            self.relay.wake()
        return list(claimed)


async def test_a_wake_up_during_a_round_is_not_lost() -> None:
    import asyncio

    clock = ManualClock(datetime(2025, 3, 3, 9, tzinfo=CHINA_TZ))
    store = RacingStore(clock=clock)
    publisher = RecordingPublisher()
    relay = OutboxRelay(store, publisher, clock=clock, poll_interval_s=3600)
    store.relay = relay
    relay.start()
    try:
        # Only the wake-up can publish the row in time: the poll is an hour away.
        async with asyncio.timeout(30):
            while not publisher.published:  # noqa: ASYNC110 - the publisher has no event to wait on
                await asyncio.sleep(0.01)
    finally:
        await relay.stop()
    assert store.raced and len(publisher.published) == 1
