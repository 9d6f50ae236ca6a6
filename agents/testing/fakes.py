"""In-memory fakes of the two ports, for unit tests: `InMemoryLedger` and `InMemoryStore`.

Both pass the contract suites the real adapters pass (`agents.testing.LedgerContract`,
`agents.testing.StoreContract`). A ledger operation runs without awaiting in between, so on one
event loop it is atomic exactly like the SQLite transaction of `SqliteLedger`.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

from agents.db.codec import dumps, loads, mask_key
from agents.domain.clock import Clock, SystemClock
from agents.ledger.base import (
    Continuity,
    LedgerEntry,
    LedgerOperation,
    LedgerPeriod,
    LedgerStatement,
    PersonAccount,
    statement_from_entries,
)
from agents.ledger.books import (
    apply_credit,
    apply_pay_out,
    apply_terminate,
    credit_args,
    warn_if_args_differ,
)
from agents.store import SCHEMA_VERSION
from agents.store.base import (
    CaseRecord,
    CaseRole,
    ConcurrentCaseUpdate,
    DuplicateOpenCase,
    HeldMessage,
    OutboxMessage,
    StoreError,
    StoreTransaction,
    Transition,
)
from agents.store.migrations import LEGACY_SENDER
from schemas.common import Gender, InsuranceType

__all__ = ["InMemoryLedger", "InMemoryStore", "InMemoryTransaction"]

_K = TypeVar("_K")


class InMemoryLedger:
    """A `SeedableLedger` kept in memory."""

    def __init__(self, region: str = "000000", accounts: Sequence[PersonAccount] = ()) -> None:
        self.region = region
        self._accounts: dict[str, PersonAccount] = {a.id_number: a for a in accounts}
        self._ops: dict[tuple[UUID, LedgerOperation], tuple[LedgerEntry, dict[str, Any]]] = {}
        self._payouts: dict[UUID, tuple[int, dict[str, Any]]] = {}

    def _replay(
        self, case_id: UUID, op: LedgerOperation, args: dict[str, Any]
    ) -> LedgerEntry | None:
        found = self._ops.get((case_id, op))
        if found is None:
            return None
        entry, first_args = found
        warn_if_args_differ(entry, first_args, args)
        return LedgerEntry.from_json(entry.to_json(), replayed=True)

    def _commit(
        self, account: PersonAccount, entry: LedgerEntry, args: dict[str, Any]
    ) -> LedgerEntry:
        self._accounts[account.id_number] = account
        self._ops[(entry.case_id, entry.operation)] = (entry, args)
        return entry

    # -- what a test may look at ------------------------------------------------------------
    @property
    def accounts(self) -> dict[str, PersonAccount]:
        """Every account by ID number (a copy)."""
        return dict(self._accounts)

    @property
    def entries(self) -> dict[tuple[UUID, LedgerOperation], LedgerEntry]:
        """The first result of every (case, operation) applied (a copy)."""
        return {key: entry for key, (entry, _) in self._ops.items()}

    def entry(self, case_id: UUID, operation: LedgerOperation) -> LedgerEntry | None:
        found = self._ops.get((case_id, operation))
        return found[0] if found is not None else None

    @property
    def payouts(self) -> dict[UUID, tuple[int, dict[str, Any]]]:
        """Amount and bank account of every payout, by case (a copy)."""
        return dict(self._payouts)

    # -- the port -----------------------------------------------------------------------------
    async def put_account(self, account: PersonAccount) -> None:
        self._accounts[account.id_number] = account

    async def lookup(self, id_number: str) -> PersonAccount | None:
        return self._accounts.get(id_number)

    async def terminate_and_debit(
        self, case_id: UUID, id_number: str, amount_fen: int, retain: bool = False
    ) -> LedgerEntry:
        args = {"id_number": id_number, "amount_fen": amount_fen, "retain": retain}
        replayed = self._replay(case_id, "terminate_and_debit", args)
        if replayed is not None:
            return replayed
        account, entry = apply_terminate(
            self._accounts.get(id_number), case_id, amount_fen, retain
        )
        return self._commit(account, entry, args)

    async def credit(
        self,
        case_id: UUID,
        id_number: str,
        months: int,
        deemed_months: int,
        amount_fen: int,
        periods: Sequence[LedgerPeriod] = (),
        insurance_type: InsuranceType = InsuranceType.EMPLOYEE,
        *,
        name: str | None = None,
        gender: Gender | None = None,
        continuity: Continuity | None = None,
    ) -> LedgerEntry:
        args = credit_args(
            id_number, months, deemed_months, amount_fen, periods, insurance_type, continuity
        )
        replayed = self._replay(case_id, "credit", args)
        if replayed is not None:
            return replayed
        account, entry = apply_credit(
            self._accounts.get(id_number),
            case_id,
            id_number,
            months,
            deemed_months,
            amount_fen,
            periods,
            insurance_type,
            region=self.region,
            name=name,
            gender=gender,
            continuity=continuity,
        )
        return self._commit(account, entry, args)

    async def pay_out(
        self, case_id: UUID, id_number: str, amount_fen: int, bank_account: Mapping[str, Any]
    ) -> LedgerEntry:
        args = {"id_number": id_number, "amount_fen": amount_fen, "bank_account": dict(bank_account)}
        replayed = self._replay(case_id, "pay_out", args)
        if replayed is not None:
            return replayed
        account, entry = apply_pay_out(self._accounts.get(id_number), case_id, amount_fen)
        self._payouts[case_id] = (amount_fen, dict(bank_account))
        return self._commit(account, entry, args)

    async def statement(self, case_id: UUID) -> LedgerStatement:
        entries = [entry for (cid, _), (entry, _) in self._ops.items() if cid == case_id]
        return statement_from_entries(case_id, entries)

    async def statements(self) -> list[LedgerStatement]:
        case_ids = sorted({cid for cid, _ in self._ops}, key=str)
        return [await self.statement(cid) for cid in case_ids]

    async def total_balance_fen(self) -> int:
        return sum(account.balance_fen for account in self._accounts.values())

    async def total_paid_out_fen(self) -> int:
        return sum(amount for amount, _ in self._payouts.values())

    async def total_debited_fen(self) -> int:
        return sum(
            entry.amount_fen
            for (_, op), (entry, _) in self._ops.items()
            if op == "terminate_and_debit"
        )

    async def total_credited_fen(self) -> int:
        return sum(entry.amount_fen for (_, op), (entry, _) in self._ops.items() if op == "credit")

    async def close(self) -> None:
        return None


class _Tables:
    """Everything an `InMemoryStore` holds; a transaction works on a copy and swaps it in on commit."""

    def __init__(self) -> None:
        self.cases: dict[UUID, CaseRecord] = {}
        self.history: dict[UUID, list[Transition]] = {}
        self.outbox: dict[int, OutboxMessage] = {}
        self.outbox_ids: set[UUID] = set()
        self.next_outbox_id = 1
        # outbox id -> (claimant, claimed until, claims so far)
        self.claims: dict[int, tuple[str, datetime, int]] = {}
        self.inbox: dict[tuple[str, str, UUID], datetime] = {}
        self.inbox_republished: set[tuple[str, str, UUID]] = set()
        self.business_keys: set[tuple[str, str]] = set()
        self.held: list[HeldMessage] = []

    def copy(self) -> _Tables:
        # Records are frozen: copying the containers is enough to roll back.
        tables = _Tables()
        tables.cases = dict(self.cases)
        tables.history = {case_id: list(steps) for case_id, steps in self.history.items()}
        tables.outbox = dict(self.outbox)
        tables.outbox_ids = set(self.outbox_ids)
        tables.next_outbox_id = self.next_outbox_id
        tables.claims = dict(self.claims)
        tables.inbox = dict(self.inbox)
        tables.inbox_republished = set(self.inbox_republished)
        tables.business_keys = set(self.business_keys)
        tables.held = list(self.held)
        return tables


def _stored(record: CaseRecord) -> CaseRecord:
    """The record as a database gives it back: `data` through JSON, like the real adapters."""
    return replace(record, data=loads(dumps(record.data)))


class InMemoryTransaction:
    """The unit of work of an `InMemoryStore`."""

    def __init__(self, tables: _Tables, clock: Clock) -> None:
        self._tables = tables
        self._clock = clock

    async def get_case(self, case_id: UUID) -> CaseRecord | None:
        return self._tables.cases.get(case_id)

    async def find_open_case(
        self, person_key: str, role: CaseRole | None = None
    ) -> CaseRecord | None:
        for record in self._tables.cases.values():
            if record.open and record.person_key == person_key and role in (None, record.role):
                return record
        return None

    async def save_case(
        self, record: CaseRecord, transition: Transition | None = None
    ) -> CaseRecord:
        if transition is not None and transition.case_id != record.case_id:
            raise StoreError("the transition belongs to another case")
        current = self._tables.cases.get(record.case_id)
        if record.version == 0 and current is not None:
            raise ConcurrentCaseUpdate(f"case {record.case_id} already exists")
        if record.version != 0 and (current is None or current.version != record.version):
            raise ConcurrentCaseUpdate(
                f"case {record.case_id} is no longer at version {record.version}"
            )
        if record.open:
            other = await self.find_open_case(record.person_key)
            if other is not None and other.case_id != record.case_id:
                raise DuplicateOpenCase(mask_key(record.person_key))
        saved = replace(record, version=record.version + 1)
        self._tables.cases[record.case_id] = _stored(saved)
        if transition is not None:
            steps = self._tables.history.setdefault(record.case_id, [])
            detail = loads(dumps(transition.detail))
            steps.append(replace(transition, detail=detail, seq=len(steps) + 1))
        return saved

    async def add_outbox(self, messages: Sequence[OutboxMessage]) -> list[OutboxMessage]:
        tables = self._tables
        duplicate = [m.message_id for m in messages if m.message_id in tables.outbox_ids]
        if duplicate or len({m.message_id for m in messages}) != len(messages):
            raise StoreError(f"outbox message id {duplicate or 'repeated'} is already queued")
        added: list[OutboxMessage] = []
        for message in messages:
            row = replace(
                message,
                id=tables.next_outbox_id,
                headers=loads(dumps(message.headers)),
                published_at=None,
            )
            tables.next_outbox_id += 1
            tables.outbox[row.id] = row
            tables.outbox_ids.add(row.message_id)
            added.append(row)
        return added

    async def record_inbox(
        self, consumer: str, message_id: UUID, *, sender: str, republished: bool = False
    ) -> bool:
        inbox = self._tables.inbox
        if (consumer, sender, message_id) in inbox or (consumer, LEGACY_SENDER, message_id) in inbox:
            return False
        inbox[(consumer, sender, message_id)] = self._clock.now()
        if republished:
            self._tables.inbox_republished.add((consumer, sender, message_id))
        return True

    async def claim_business_key(self, consumer: str, key: str) -> bool:
        return _claim(self._tables.business_keys, (consumer, key))

    async def hold_message(
        self, case_id: UUID, message_id: UUID, body: bytes, reason: str
    ) -> bool:
        held = self._tables.held
        if any(h.case_id == case_id and h.message_id == message_id for h in held):
            return False
        held.append(
            HeldMessage(
                case_id=case_id,
                message_id=message_id,
                body=bytes(body),
                reason=reason,
                held_at=self._clock.now(),
            )
        )
        return True

    async def take_held(self, case_id: UUID) -> list[HeldMessage]:
        taken = [h for h in self._tables.held if h.case_id == case_id]
        self._tables.held = [h for h in self._tables.held if h.case_id != case_id]
        return taken


def _claim(rows: set[tuple[str, _K]], row: tuple[str, _K]) -> bool:
    if row in rows:
        return False
    rows.add(row)
    return True


class InMemoryStore:
    """A `Store` in dictionaries, for unit tests of the service and the relay.

    Transactions run one at a time (a lock, like SQLite's single writer) on a copy of the tables
    that replaces them on commit; an exception leaves the tables as they were. Nothing in it
    suspends unless another transaction holds the lock. Closing keeps the data: the store is its
    own database, and "reopening" it is using the same object again.
    """

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._clock: Clock = clock or SystemClock()
        self._tables = _Tables()
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[StoreTransaction]:
        async with self._lock:
            working = self._tables.copy()
            yield InMemoryTransaction(working, self._clock)
            self._tables = working

    async def fetch_unpublished(self, limit: int = 100) -> list[OutboxMessage]:
        rows = (row for row in self._tables.outbox.values() if row.published_at is None)
        return sorted(rows, key=lambda row: row.id)[:limit]

    async def claim_unpublished(
        self, claimant: str, *, limit: int = 100, lease_s: float = 30.0
    ) -> list[OutboxMessage]:
        async with self._lock:
            now = self._clock.now()
            claims = dict(self._tables.claims)
            taken: list[OutboxMessage] = []
            for row in sorted(self._tables.outbox.values(), key=lambda row: row.id):
                if len(taken) >= limit:
                    break
                if row.published_at is not None:
                    continue
                holder, until, count = claims.get(row.id, ("", now, 0))
                if count and holder != claimant and until > now:
                    continue
                claims[row.id] = (claimant, now + timedelta(seconds=lease_s), count + 1)
                taken.append(replace(row, claims=count))
            self._tables.claims = claims
            return taken

    async def mark_published(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        async with self._lock:
            now = self._clock.now()
            outbox = dict(self._tables.outbox)
            for row_id in ids:
                row = outbox.get(row_id)
                if row is not None and row.published_at is None:
                    outbox[row_id] = replace(row, published_at=now)
            self._tables.outbox = outbox

    async def has_handled(self, consumer: str, message_id: UUID, *, sender: str) -> bool:
        inbox = self._tables.inbox
        return (consumer, sender, message_id) in inbox or (consumer, LEGACY_SENDER, message_id) in inbox

    async def handled_republished(self, consumer: str, message_id: UUID, *, sender: str) -> bool:
        return (consumer, sender, message_id) in self._tables.inbox_republished

    async def prune_inbox(self, before: datetime) -> int:
        async with self._lock:
            kept = {key: at for key, at in self._tables.inbox.items() if at >= before}
            removed = len(self._tables.inbox) - len(kept)
            self._tables.inbox = kept
            self._tables.inbox_republished &= set(kept)
            return removed

    async def get_case(self, case_id: UUID) -> CaseRecord | None:
        return self._tables.cases.get(case_id)

    async def history(self, case_id: UUID) -> list[Transition]:
        return list(self._tables.history.get(case_id, ()))

    async def cases_by_state(self) -> dict[str, int]:
        return dict(Counter(record.state for record in self._tables.cases.values()))

    async def cases_due_before(self, day: date) -> list[CaseRecord]:
        due = [
            record
            for record in self._tables.cases.values()
            if record.open and record.due_date is not None and record.due_date < day
        ]
        return sorted(due, key=lambda r: (r.due_date or day, r.created_at))

    async def find_cases_by_person(self, person_key: str) -> list[CaseRecord]:
        found = [r for r in self._tables.cases.values() if r.person_key == person_key]
        return sorted(found, key=lambda r: r.created_at)

    async def list_cases(
        self, *, open_only: bool = False, states: Collection[str] | None = None
    ) -> list[CaseRecord]:
        found = [
            record
            for record in self._tables.cases.values()
            if (record.open or not open_only) and (states is None or record.state in states)
        ]
        return sorted(found, key=lambda r: (r.created_at, str(r.case_id)))

    async def held_messages(self) -> list[HeldMessage]:
        return list(self._tables.held)

    async def schema_versions(self) -> list[int]:
        """Always the current schema: an in-memory store is created at it."""
        return list(range(1, SCHEMA_VERSION + 1))

    async def close(self) -> None:
        return None


if TYPE_CHECKING:  # both fakes implement their port completely
    from agents.ledger.base import SeedableLedger
    from agents.store.base import Store

    _store: Store = InMemoryStore()
    _ledger: SeedableLedger = InMemoryLedger()
