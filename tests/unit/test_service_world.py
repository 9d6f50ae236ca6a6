"""The real service in the unit world: what the old copy of it in case_world.py got wrong or
could not show, and the relay over the in-memory store."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from uuid import UUID

from agents.domain.case import State
from agents.domain.clock import CHINA_TZ, ManualClock
from agents.service.relay import OutboxRelay
from agents.store.base import OutboxMessage
from agents.testing import InMemoryStore
from broker.delivery import HEADER_REPUBLISHED
from tests.unit.case_world import (
    EVERY_VERSION,
    Agent,
    Books,
    WeekdayCalendar,
    World,
    agency,
    note_events,
    outgoing_account,
    person,
    receiving_account,
)

OUT = "360400"
IN = "110000"
MONDAY = date(2025, 3, 3)


def pair() -> tuple[World, Agent, Agent]:
    who = person()
    calendar = WeekdayCalendar()
    receiving = Agent(agency(IN), Books(IN, {who.id_number: receiving_account(who, IN)}), calendar)
    outgoing = Agent(agency(OUT), Books(OUT, {who.id_number: outgoing_account(who, OUT)}), calendar)
    return World.of(receiving, outgoing, today=MONDAY), receiving, outgoing


def test_an_agency_that_declares_only_v1_itself_sends_v1_to_a_counterpart_that_speaks_v2() -> None:
    world, receiving, outgoing = pair()
    receiving.versions = {OUT: EVERY_VERSION}
    receiving.own_versions = {t: (1,) for t in EVERY_VERSION}
    outgoing.versions = {IN: {t: (1,) for t in EVERY_VERSION}}

    case_id = receiving.apply_for(person(), OUT, MONDAY)
    world.pump(twice=True)

    assert world.delivered[0] == (OUT, "contact_letter", 1)
    assert receiving.case(case_id).versions["contact_letter"] == 1
    assert receiving.case(case_id).state is outgoing.case(case_id).state is State.COMPLETED


def test_an_overdue_step_with_pending_ledger_commands_is_reissued_by_the_tick() -> None:
    world, receiving, outgoing = pair()
    outgoing.run_commands = False
    case_id = receiving.apply_for(person(), OUT, MONDAY)
    world.pump()
    due = outgoing.case(case_id).due_date
    assert due is not None and outgoing.case(case_id).state is State.RELEASING

    outgoing.run_commands = True
    world.today = WeekdayCalendar().add_working_days(due, 1)  # one clock for both ends (sent_at)
    outgoing.tick(world.today)
    world.pump(twice=True)

    assert "case.ledger_commands_reissued" in note_events(outgoing.notes)
    assert receiving.case(case_id).state is outgoing.case(case_id).state is State.COMPLETED


def test_a_redelivered_message_is_stopped_by_the_inbox_before_any_ledger_command() -> None:
    world, receiving, outgoing = pair()
    receiving.apply_for(person(), OUT, MONDAY)
    (letter,) = receiving.outbox
    receiving.outbox.clear()

    first = world.deliver(letter)
    again = world.deliver(letter)

    assert first.commands == ("terminate_and_debit",) and len(first.messages) == 2
    assert again.case is None and again.messages == () and again.commands == ()
    assert outgoing.service.stats.duplicates == 1


class RecordingPublisher:
    """The publisher's surface the relay uses, recording instead of publishing."""

    user_id = "jiexu-360400"

    def __init__(self) -> None:
        self.published: list[tuple[str, dict[str, Any]]] = []

    async def publish_body(self, exchange: str, routing_key: str, body: bytes, properties: Any) -> None:
        self.published.append((routing_key, dict(properties.headers or {})))


def row(n: int, at: datetime) -> OutboxMessage:
    message_id = UUID(int=n)
    body = (
        f'{{"message_id": "{message_id}", "case_id": "{UUID(int=0)}", "type": "receipt", '
        f'"version": 1, "sent_at": "{at.isoformat()}"}}'
    ).encode()
    return OutboxMessage(
        message_id=message_id,
        recipient="110000",
        message_type="receipt",
        routing_key="agency.110000.receipt",
        body=body,
        created_at=at,
    )


async def test_the_relay_marks_rows_committed_before_it_started_as_republished() -> None:
    clock = ManualClock(datetime(2025, 3, 3, 9, tzinfo=CHINA_TZ))
    store = InMemoryStore(clock=clock)
    async with store.transaction() as tx:
        await tx.add_outbox([row(1, clock.now())])
    clock.advance(minutes=1)
    publisher = RecordingPublisher()
    relay = OutboxRelay(store, publisher, clock=clock)  # type: ignore[arg-type]
    clock.advance(minutes=1)
    async with store.transaction() as tx:
        await tx.add_outbox([row(2, clock.now())])

    assert await relay.flush() == 2

    assert [key for key, _ in publisher.published] == ["agency.110000.receipt"] * 2
    assert [h.get(HEADER_REPUBLISHED) for _, h in publisher.published] == [True, None]
    assert await store.fetch_unpublished() == []
