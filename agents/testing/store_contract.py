"""The store contract: what every `Store` adapter must do, as a pytest suite an agency runs.

Subclass `StoreContract` in a test module and supply `create_store`, as eventsourcing's
`AggregateRecorderTestCase` subclasses supply `create_recorder`::

    from agents.testing import StoreContract

    class TestOurStore(StoreContract):
        @pytest.fixture(autouse=True)
        def _database(self, tmp_path: Path) -> None:   # any fixture the factory needs
            self.path = tmp_path / "store.db"

        async def create_store(self) -> Store:
            return await OurStore.open(self.path, clock=self.clock)

`create_store` opens (or reopens) this test's database: every call within one test must reach the
same data, and the store must stamp times with `self.clock` (a `ManualClock` the tests move). The
suite runs under pytest with pytest-asyncio, in its ``auto`` or ``strict`` mode.
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from uuid import UUID, uuid4

import pytest
import pytest_asyncio

from agents.domain.clock import CHINA_TZ, ManualClock
from agents.store import (
    SCHEMA_VERSION,
    CaseRecord,
    ConcurrentCaseUpdate,
    DuplicateOpenCase,
    OutboxMessage,
    Store,
    Transition,
)

__all__ = ["PERSON", "T0", "StoreContract", "make_case", "make_message"]

T0 = datetime(2026, 2, 13, 9, 30, tzinfo=CHINA_TZ)
PERSON = "11010519491231002X"
OTHER_PERSON = "440300199208100027"
B, C = "441900", "440300"
"""Two senders, for the inbox."""


class Boom(Exception):
    """Raised inside a transaction to prove it rolls back."""


def make_case(
    person_key: str = PERSON,
    *,
    state: str = "letter_sent",
    open_: bool = True,
    due: date | None = date(2026, 3, 4),
    case_id: UUID | None = None,
) -> CaseRecord:
    return CaseRecord(
        case_id=case_id or uuid4(),
        role="receiving",
        state=state,
        person_key=person_key,
        counterpart="440300",
        message_version=2,
        open=open_,
        due_date=due,
        whose_turn="440300",
        data={"name": "买买提·艾力", "balance_fen": 123456, "periods": [{"months": 12}]},
        created_at=T0,
        updated_at=T0,
    )


def make_message(n: int = 0, recipient: str = "440300") -> OutboxMessage:
    return OutboxMessage(
        message_id=uuid4(),
        recipient=recipient,
        message_type="contact_letter",
        routing_key=f"agency.{recipient}",
        body=f'{{"n": {n}, "名": "张三"}}'.encode(),
        headers={"x-jiexu-version": 2, "n": n},
        created_at=T0 + timedelta(seconds=n),
    )


def transition(case: CaseRecord, to_state: str, event: str = "letter_sent") -> Transition:
    return Transition(
        case_id=case.case_id,
        at=T0,
        from_state=None,
        to_state=to_state,
        event=event,
        detail={"by": "test"},
    )


@pytest.mark.asyncio
class StoreContract(abc.ABC):
    """Every `Store` adapter must pass these."""

    clock: ManualClock
    """The clock the store under test stamps times with; set before each test, at `T0`."""

    @abc.abstractmethod
    async def create_store(self) -> Store:
        """Open this test's store (the same data on every call within one test), on `self.clock`."""

    @pytest.fixture(autouse=True)
    def _contract_clock(self) -> None:
        self.clock = ManualClock(T0)

    @pytest_asyncio.fixture
    async def store(self) -> AsyncIterator[Store]:
        store = await self.create_store()
        try:
            yield store
        finally:
            await store.close()

    # --- cases ---------------------------------------------------------------------------------

    async def test_a_saved_case_reads_back_unchanged(self, store: Store) -> None:
        case = make_case()
        async with store.transaction() as tx:
            saved = await tx.save_case(case, transition(case, "letter_sent"))
        assert saved == dataclasses.replace(case, version=1)
        assert await store.get_case(case.case_id) == saved
        async with store.transaction() as tx:
            assert await tx.get_case(case.case_id) == saved
            assert await tx.get_case(uuid4()) is None

    async def test_an_update_bumps_the_version_and_appends_history(self, store: Store) -> None:
        case = make_case()
        async with store.transaction() as tx:
            v1 = await tx.save_case(case, transition(case, "letter_sent"))
        later = T0 + timedelta(days=3)
        async with store.transaction() as tx:
            v2 = await tx.save_case(
                dataclasses.replace(v1, state="form_received", updated_at=later, due_date=None),
                dataclasses.replace(transition(case, "form_received", "form"), at=later),
            )
        async with store.transaction() as tx:
            v3 = await tx.save_case(dataclasses.replace(v2, whose_turn=None))  # no transition
        assert (v2.version, v3.version) == (2, 3)
        assert v3.due_date is None and v3.whose_turn is None and v3.updated_at == later
        history = await store.history(case.case_id)
        assert [(t.seq, t.to_state, t.event) for t in history] == [
            (1, "letter_sent", "letter_sent"),
            (2, "form_received", "form"),
        ]
        assert history[1].at == later
        assert history[0].detail == {"by": "test"}

    async def test_saving_a_stale_version_is_a_concurrent_update(self, store: Store) -> None:
        case = make_case()
        async with store.transaction() as tx:
            v1 = await tx.save_case(case)
        async with store.transaction() as tx:
            await tx.save_case(dataclasses.replace(v1, state="a"))
        with pytest.raises(ConcurrentCaseUpdate):
            async with store.transaction() as tx:
                await tx.save_case(dataclasses.replace(v1, state="b"))
        with pytest.raises(ConcurrentCaseUpdate):
            async with store.transaction() as tx:
                await tx.save_case(case)  # version 0 again: the case exists
        stored = await store.get_case(case.case_id)
        assert stored is not None and stored.state == "a"

    async def test_concurrent_handlers_of_one_case_lose_no_update(self, store: Store) -> None:
        case = dataclasses.replace(make_case(), data={"count": 0})
        async with store.transaction() as tx:
            await tx.save_case(case)

        async def increment() -> None:
            for _attempt in range(20):
                try:
                    async with store.transaction() as tx:
                        current = await tx.get_case(case.case_id)
                        assert current is not None
                        await asyncio.sleep(0)  # let the other handler interleave
                        data = {"count": current.data["count"] + 1}
                        await tx.save_case(dataclasses.replace(current, data=data))
                    return
                except ConcurrentCaseUpdate:
                    continue
            raise AssertionError("never committed")

        await asyncio.gather(*(increment() for _ in range(5)))
        final = await store.get_case(case.case_id)
        assert final is not None and final.data["count"] == 5 and final.version == 6

    async def test_one_open_case_per_person(self, store: Store) -> None:
        first = make_case()
        async with store.transaction() as tx:
            first = await tx.save_case(first)
            assert await tx.find_open_case(PERSON) == first
            assert await tx.find_open_case(PERSON, role="receiving") == first
            assert await tx.find_open_case(PERSON, role="outgoing") is None
            assert await tx.find_open_case(OTHER_PERSON) is None
        with pytest.raises(DuplicateOpenCase) as raised:
            async with store.transaction() as tx:
                await tx.save_case(make_case())
        assert raised.value.reason_code == "duplicate_open_case"
        assert PERSON not in str(raised.value)  # no ID numbers in errors
        async with store.transaction() as tx:
            await tx.save_case(dataclasses.replace(first, open=False, state="completed"))
            second = await tx.save_case(make_case())
            assert await tx.find_open_case(PERSON) == second
        cases = await store.find_cases_by_person(PERSON)
        assert [c.case_id for c in cases] == [first.case_id, second.case_id]
        assert [c.case_id for c in await store.list_cases(open_only=True)] == [second.case_id]
        assert len(await store.list_cases()) == 2

    async def test_a_duplicate_open_case_leaves_the_transaction_usable(self, store: Store) -> None:
        async with store.transaction() as tx:
            await tx.save_case(make_case())
        async with store.transaction() as tx:
            with pytest.raises(DuplicateOpenCase):
                await tx.save_case(make_case())
            assert await tx.record_inbox("agent", uuid4(), sender=B)
            await tx.add_outbox([make_message()])
        assert len(await store.fetch_unpublished()) == 1

    async def test_cases_due_before_lists_open_overdue_cases_earliest_first(
        self, store: Store
    ) -> None:
        late = make_case("110105194912310011", due=date(2026, 3, 2))
        later = make_case("110105194912310038", due=date(2026, 3, 3))
        on_day = make_case("110105194912310046", due=date(2026, 3, 4))
        closed = make_case("110105194912310054", due=date(2026, 3, 1), open_=False)
        undated = make_case("110105194912310062", due=None)
        async with store.transaction() as tx:
            for case in (later, on_day, closed, undated, late):
                await tx.save_case(case)
        due = await store.cases_due_before(date(2026, 3, 4))
        assert [c.case_id for c in due] == [late.case_id, later.case_id]

    async def test_cases_by_state_counts_every_case(self, store: Store) -> None:
        async with store.transaction() as tx:
            await tx.save_case(make_case("110105194912310011", state="letter_sent"))
            await tx.save_case(make_case("110105194912310038", state="letter_sent"))
            await tx.save_case(make_case("110105194912310046", state="done", open_=False))
        assert await store.cases_by_state() == {"letter_sent": 2, "done": 1}

    # --- atomicity -----------------------------------------------------------------------------

    async def test_an_exception_rolls_back_everything(self, store: Store) -> None:
        case = make_case()
        message_id = uuid4()
        with pytest.raises(Boom):
            async with store.transaction() as tx:
                await tx.save_case(case, transition(case, "letter_sent"))
                await tx.add_outbox([make_message(1), make_message(2)])
                assert await tx.record_inbox("agent", message_id, sender=B)
                assert await tx.claim_business_key("agent", "letter:L-1")
                assert await tx.hold_message(case.case_id, uuid4(), b"{}", "form missing")
                raise Boom
        assert await store.get_case(case.case_id) is None
        assert await store.history(case.case_id) == []
        assert await store.fetch_unpublished() == []
        assert await store.held_messages() == []
        assert await store.cases_by_state() == {}
        async with store.transaction() as tx:
            assert await tx.record_inbox("agent", message_id, sender=B)  # not recorded before
            assert await tx.claim_business_key("agent", "letter:L-1")

    async def test_a_committed_transaction_keeps_everything(self, store: Store) -> None:
        case = make_case()
        async with store.transaction() as tx:
            await tx.save_case(case)
            added = await tx.add_outbox([make_message(1)])
        assert await store.get_case(case.case_id) is not None
        assert [m.id for m in await store.fetch_unpublished()] == [added[0].id]

    # --- inbox and business keys ---------------------------------------------------------------

    async def test_the_inbox_knows_a_redelivery(self, store: Store) -> None:
        message_id = uuid4()
        async with store.transaction() as tx:
            assert await tx.record_inbox("agent", message_id, sender=B) is True
            assert await tx.record_inbox("agent", message_id, sender=B) is False
        async with store.transaction() as tx:
            assert await tx.record_inbox("agent", message_id, sender=B) is False
            assert await tx.record_inbox("reconciler", message_id, sender=B) is True

    async def test_has_handled_sees_only_committed_inbox_rows(self, store: Store) -> None:
        message_id = uuid4()
        assert await store.has_handled("agent", message_id, sender=B) is False
        with pytest.raises(RuntimeError):
            async with store.transaction() as tx:
                await tx.record_inbox("agent", message_id, sender=B)
                raise RuntimeError("rolled back")
        assert await store.has_handled("agent", message_id, sender=B) is False
        async with store.transaction() as tx:
            await tx.record_inbox("agent", message_id, sender=B)
        assert await store.has_handled("agent", message_id, sender=B) is True
        assert await store.has_handled("reconciler", message_id, sender=B) is False

    async def test_the_inbox_remembers_whether_the_copy_handled_came_republished(
        self, store: Store
    ) -> None:
        marked, plain, rolled_back = uuid4(), uuid4(), uuid4()
        assert await store.handled_republished("agent", marked, sender=B) is False
        async with store.transaction() as tx:
            assert await tx.record_inbox("agent", marked, sender=B, republished=True)
            assert await tx.record_inbox("agent", plain, sender=B)
            # A second copy changes nothing, marked or not.
            assert not await tx.record_inbox("agent", plain, sender=B, republished=True)
        with pytest.raises(RuntimeError):
            async with store.transaction() as tx:
                await tx.record_inbox("agent", rolled_back, sender=B, republished=True)
                raise RuntimeError("rolled back")
        assert await store.handled_republished("agent", marked, sender=B) is True
        assert await store.handled_republished("agent", marked, sender=C) is False
        assert await store.handled_republished("reconciler", marked, sender=B) is False
        assert await store.handled_republished("agent", plain, sender=B) is False
        assert await store.handled_republished("agent", rolled_back, sender=B) is False
        self.clock.advance(days=40)
        await store.prune_inbox(self.clock.now() - timedelta(days=30))
        assert await store.handled_republished("agent", marked, sender=B) is False

    async def test_the_inbox_is_keyed_by_sender_a_squatted_id_blocks_nothing(self, store: Store) -> None:
        message_id = uuid4()
        async with store.transaction() as tx:
            assert await tx.record_inbox("agent", message_id, sender=C) is True  # the squatter first
        assert await store.has_handled("agent", message_id, sender=C) is True
        assert await store.has_handled("agent", message_id, sender=B) is False
        async with store.transaction() as tx:
            assert await tx.record_inbox("agent", message_id, sender=B) is True  # the real sender
            assert await tx.record_inbox("agent", message_id, sender=B) is False
        assert await store.has_handled("agent", message_id, sender=B) is True

    async def test_prune_inbox_forgets_rows_handled_before_the_cutoff(self, store: Store) -> None:
        old, new = uuid4(), uuid4()
        async with store.transaction() as tx:
            await tx.record_inbox("agent", old, sender=B)
        self.clock.advance(days=40)
        async with store.transaction() as tx:
            await tx.record_inbox("agent", new, sender=B)
        assert await store.prune_inbox(self.clock.now() - timedelta(days=30)) == 1
        assert await store.has_handled("agent", old, sender=B) is False
        assert await store.has_handled("agent", new, sender=B) is True
        assert await store.prune_inbox(self.clock.now() - timedelta(days=30)) == 0

    async def test_concurrent_deliveries_of_one_message_are_handled_once(
        self, store: Store
    ) -> None:
        message_id = uuid4()

        async def deliver() -> bool:
            async with store.transaction() as tx:
                first = await tx.record_inbox("agent", message_id, sender=B)
                await asyncio.sleep(0)
                return first

        results = await asyncio.gather(*(deliver() for _ in range(4)))
        assert sorted(results) == [False, False, False, True]

    async def test_a_business_key_is_claimed_once_per_consumer(self, store: Store) -> None:
        async with store.transaction() as tx:
            assert await tx.claim_business_key("agent", "funds:case-1") is True
            assert await tx.claim_business_key("agent", "funds:case-1") is False
            assert await tx.claim_business_key("agent", "funds:case-2") is True
            assert await tx.claim_business_key("other", "funds:case-1") is True

    # --- outbox --------------------------------------------------------------------------------

    async def test_the_outbox_is_fetched_in_commit_order(self, store: Store) -> None:
        async with store.transaction() as tx:
            first = await tx.add_outbox([make_message(1), make_message(2), make_message(3)])
        async with store.transaction() as tx:
            second = await tx.add_outbox([make_message(4), make_message(5)])
        added = first + second
        assert [m.id for m in added] == sorted(m.id for m in added)
        fetched = await store.fetch_unpublished()
        assert fetched == added
        assert fetched[0].body == '{"n": 1, "名": "张三"}'.encode()
        assert fetched[0].headers == {"x-jiexu-version": 2, "n": 1}
        assert fetched[0].published_at is None
        assert [m.id for m in await store.fetch_unpublished(limit=2)] == [m.id for m in added[:2]]

    async def test_published_messages_leave_the_outbox_once(self, store: Store) -> None:
        clock = self.clock
        async with store.transaction() as tx:
            added = await tx.add_outbox([make_message(n) for n in range(4)])
        clock.advance(minutes=1)
        await store.mark_published([added[0].id, added[2].id])
        await store.mark_published([added[0].id])  # a relay retrying: harmless
        await store.mark_published([])
        assert [m.id for m in await store.fetch_unpublished()] == [added[1].id, added[3].id]

    async def test_a_claimed_row_is_no_other_claimants_while_the_lease_holds(
        self, store: Store
    ) -> None:
        async with store.transaction() as tx:
            added = await tx.add_outbox([make_message(n) for n in range(5)])
        first = await store.claim_unpublished("replica-a", limit=3, lease_s=30)
        assert [m.id for m in first] == [m.id for m in added[:3]]
        assert [m.claims for m in first] == [0, 0, 0]
        assert first[0].body == added[0].body and first[0].headers == added[0].headers
        second = await store.claim_unpublished("replica-b", limit=10, lease_s=30)
        assert [m.id for m in second] == [m.id for m in added[3:]]
        self.clock.advance(seconds=29)
        assert await store.claim_unpublished("replica-c", lease_s=30) == []
        # the holder may claim its own rows again (a failed publish retried): marked as such
        again = await store.claim_unpublished("replica-a", limit=10, lease_s=30)
        assert [(m.id, m.claims) for m in again] == [(m.id, 1) for m in added[:3]]
        # claiming does not publish: the rows stay in the outbox until marked
        assert len(await store.fetch_unpublished()) == 5

    async def test_concurrent_claimants_get_disjoint_rows(self, store: Store) -> None:
        async with store.transaction() as tx:
            added = await tx.add_outbox([make_message(n) for n in range(40)])
        batches = await asyncio.gather(
            *(store.claim_unpublished(f"replica-{n}", limit=7, lease_s=30) for n in range(8))
        )
        ids = [m.id for batch in batches for m in batch]
        assert len(ids) == len(set(ids))
        assert sorted(ids) == sorted(m.id for m in added)
        for batch in batches:
            assert [m.id for m in batch] == sorted(m.id for m in batch)

    async def test_an_expired_lease_is_claimable_and_marks_the_row_claimed_before(
        self, store: Store
    ) -> None:
        async with store.transaction() as tx:
            added = await tx.add_outbox([make_message(1), make_message(2)])
        held = await store.claim_unpublished("dead-replica", lease_s=10)
        assert len(held) == 2
        self.clock.advance(seconds=11)  # the holder died: its lease runs out
        taken = await store.claim_unpublished("live-replica", lease_s=10)
        assert [(m.id, m.claims) for m in taken] == [(m.id, 1) for m in added]
        await store.mark_published([taken[0].id])
        self.clock.advance(seconds=11)
        assert [m.id for m in await store.claim_unpublished("third", lease_s=10)] == [added[1].id]

    async def test_an_outbox_message_id_is_unique(self, store: Store) -> None:
        message = make_message()
        async with store.transaction() as tx:
            await tx.add_outbox([message])
        with pytest.raises(Exception):  # noqa: B017 - each driver has its own IntegrityError
            async with store.transaction() as tx:
                await tx.add_outbox([message])
        assert len(await store.fetch_unpublished()) == 1

    # --- held messages -------------------------------------------------------------------------

    async def test_held_messages_wait_for_their_case_and_come_back_in_order(
        self, store: Store
    ) -> None:
        clock = self.clock
        case_id, other_case = uuid4(), uuid4()
        first, second = uuid4(), uuid4()
        async with store.transaction() as tx:
            assert await tx.hold_message(case_id, first, b'{"funds": 1}', "form not yet received")
            clock.advance(seconds=1)
            assert await tx.hold_message(case_id, second, b'{"funds": 2}', "form not yet received")
            assert not await tx.hold_message(case_id, first, b'{"funds": 1}', "redelivered")
            assert await tx.hold_message(other_case, uuid4(), b"{}", "other")
        assert len(await store.held_messages()) == 3
        with pytest.raises(Boom):
            async with store.transaction() as tx:
                assert len(await tx.take_held(case_id)) == 2
                raise Boom
        async with store.transaction() as tx:
            taken = await tx.take_held(case_id)
            assert await tx.take_held(case_id) == []
        assert [(h.message_id, h.body, h.reason) for h in taken] == [
            (first, b'{"funds": 1}', "form not yet received"),
            (second, b'{"funds": 2}', "form not yet received"),
        ]
        assert taken[0].held_at == T0 and taken[0].case_id == case_id
        assert [h.case_id for h in await store.held_messages()] == [other_case]

    # --- schema --------------------------------------------------------------------------------

    async def test_migrations_apply_once_and_reopening_keeps_the_data(self) -> None:
        store = await self.create_store()
        case = make_case()
        async with store.transaction() as tx:
            await tx.save_case(case)
            await tx.add_outbox([make_message()])
        assert await store.schema_versions() == list(range(1, SCHEMA_VERSION + 1))
        await store.close()
        reopened = await self.create_store()
        try:
            assert await reopened.schema_versions() == list(range(1, SCHEMA_VERSION + 1))
            assert await reopened.get_case(case.case_id) is not None
            assert len(await reopened.fetch_unpublished()) == 1
        finally:
            await reopened.close()

    async def test_records_refuse_naive_timestamps(self) -> None:
        with pytest.raises(ValueError, match="timezone"):
            dataclasses.replace(make_case(), created_at=datetime(2026, 1, 1))
        with pytest.raises(ValueError, match="timezone"):
            dataclasses.replace(make_message(), created_at=datetime(2026, 1, 1))
