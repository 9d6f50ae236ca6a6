"""The store port: cases with their history, the outbox, the inbox and held messages.

One agency, one store. Everything a handler changes goes through one unit of work::

    async with store.transaction() as tx:
        if not await tx.record_inbox("agent", envelope.message_id, sender=envelope.sender):
            return                                  # already handled: ack and forget
        case = await tx.get_case(envelope.case_id)
        ...                                         # the pure state machine decides
        case = await tx.save_case(new_case, transition)
        await tx.add_outbox(messages)

Leaving the block normally commits; an exception rolls everything back (case, history, outbox,
inbox, business keys, held messages) and propagates.

Open or closed is a column: `CaseRecord.open`. The state machine knows which of its states are
terminal and says so on the record it saves; the store never interprets `state`. At most one *open*
case per `person_key` may exist in one store (重复参保 is not allowed): saving a second one raises
`DuplicateOpenCase`.

Optimistic concurrency: a record read from the store carries `version`; `save_case` with
`version == 0` inserts, with `version == n` updates only if the stored version is still `n` and
returns the record with `version == n + 1`. Losing that race raises `ConcurrentCaseUpdate` (a
`TransientError`: roll back and handle the message again). Inside a transaction on PostgreSQL
`get_case` and `find_open_case` also lock the row (``FOR UPDATE``) so replicas queue up instead.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal, Protocol
from uuid import UUID

from schemas.errors import DomainRuleViolation, JiexuError, TransientError

__all__ = [
    "CaseRecord",
    "CaseRole",
    "ConcurrentCaseUpdate",
    "DuplicateOpenCase",
    "HeldMessage",
    "OutboxMessage",
    "Store",
    "StoreError",
    "StoreTransaction",
    "Transition",
]

CaseRole = Literal["outgoing", "receiving"]


class StoreError(JiexuError):
    """The store refused an operation for a reason that retrying will not fix."""


class ConcurrentCaseUpdate(TransientError):
    """Someone else saved this case since it was read: roll back and handle the message again."""


class DuplicateOpenCase(DomainRuleViolation):
    """A second open case for the same person in one agency (重复参保 / a transfer in progress)."""

    def __init__(self, person_key_masked: str) -> None:
        super().__init__(
            "duplicate_open_case",
            f"an open case already exists for person {person_key_masked}",
        )


def _require_aware(name: str, value: datetime | None) -> None:
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise ValueError(f"{name} must be timezone-aware")


@dataclass(frozen=True, kw_only=True)
class CaseRecord:
    """One transfer case as one agency sees it.

    `data` is the domain's own JSON snapshot (anything `json.dumps` accepts); the other fields are
    columns so operators and queries can use them. `version` is managed by the store (0 = new).
    """

    case_id: UUID
    role: CaseRole
    state: str
    person_key: str
    counterpart: str
    message_version: int
    open: bool
    created_at: datetime
    updated_at: datetime
    due_date: date | None = None
    whose_turn: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    version: int = 0

    def __post_init__(self) -> None:
        if self.role not in ("outgoing", "receiving"):
            raise ValueError(f"role must be 'outgoing' or 'receiving', not {self.role!r}")
        _require_aware("created_at", self.created_at)
        _require_aware("updated_at", self.updated_at)


@dataclass(frozen=True, kw_only=True)
class Transition:
    """One step in a case's history. `seq` is assigned by the store (1, 2, ...); pass 0."""

    case_id: UUID
    at: datetime
    from_state: str | None
    to_state: str
    event: str
    detail: Mapping[str, Any] = field(default_factory=dict)
    seq: int = 0

    def __post_init__(self) -> None:
        _require_aware("at", self.at)


@dataclass(frozen=True, kw_only=True)
class OutboxMessage:
    """A message committed with a state change, waiting for the relay to publish it.

    `id` is assigned by the store (pass 0); it orders the outbox. `body` is the encoded envelope,
    `headers` the AMQP headers the relay should set. `claims`: how many times a relay had claimed
    the row before the claim that returned it (`Store.claim_unpublished`); more than 0 means it
    may have been published already.
    """

    message_id: UUID
    recipient: str
    message_type: str
    routing_key: str
    body: bytes
    created_at: datetime
    headers: Mapping[str, Any] = field(default_factory=dict)
    published_at: datetime | None = None
    id: int = 0
    claims: int = 0

    def __post_init__(self) -> None:
        _require_aware("created_at", self.created_at)
        _require_aware("published_at", self.published_at)


@dataclass(frozen=True, kw_only=True)
class HeldMessage:
    """A message that arrived before its precondition (funds before the form), parked by case."""

    case_id: UUID
    message_id: UUID
    body: bytes
    reason: str
    held_at: datetime


class StoreTransaction(Protocol):
    """The unit of work. Every method runs inside the one open database transaction."""

    async def get_case(self, case_id: UUID) -> CaseRecord | None: ...

    async def find_open_case(
        self, person_key: str, role: CaseRole | None = None
    ) -> CaseRecord | None: ...

    async def save_case(
        self, record: CaseRecord, transition: Transition | None = None
    ) -> CaseRecord:
        """Insert (`version == 0`) or update (`version == n`, stored must be `n`) the case and
        append `transition` to its history. Returns the record as stored (version bumped)."""
        ...

    async def add_outbox(self, messages: Sequence[OutboxMessage]) -> list[OutboxMessage]:
        """Queue messages for the relay, in order. Returns them with their store ids."""
        ...

    async def record_inbox(
        self, consumer: str, message_id: UUID, *, sender: str, republished: bool = False
    ) -> bool:
        """Mark `sender`'s message handled by `consumer`. False if it already was (a redelivery).

        Keyed by ``(consumer, sender, message_id)``: another agency sending the same id (a
        squatted id) neither blocks nor is blocked by the real sender's message. ``republished``:
        the copy handled came marked ``x-jiexu-republished`` (its sender lost a confirm), so an
        unmarked copy arriving later is the stale original, not a replay
        (`Store.handled_republished`)."""
        ...

    async def claim_business_key(self, consumer: str, key: str) -> bool:
        """Claim a business key (e.g. ``letter:<case>:<letter number>``). False if taken."""
        ...

    async def hold_message(
        self, case_id: UUID, message_id: UUID, body: bytes, reason: str
    ) -> bool:
        """Park a message until its precondition arrives. False if it is already held."""
        ...

    async def take_held(self, case_id: UUID) -> list[HeldMessage]:
        """Remove and return the case's held messages, oldest first."""
        ...


class Store(Protocol):
    """One agency's persistent state. Adapters: `SqliteStore`, `PostgresStore`."""

    def transaction(self) -> AbstractAsyncContextManager[StoreTransaction]: ...

    async def fetch_unpublished(self, limit: int = 100) -> list[OutboxMessage]:
        """The oldest outbox messages not yet published, in outbox order."""
        ...

    async def claim_unpublished(
        self, claimant: str, *, limit: int = 100, lease_s: float = 30.0
    ) -> list[OutboxMessage]:
        """Claim the oldest unpublished rows for ``claimant`` until now + ``lease_s``, and return
        them in outbox order: rows nobody holds, rows whose lease has expired (their holder died
        or stalled) and rows ``claimant`` already holds. While a lease holds, no other claimant
        gets the row; so several relays on one store (an agency's replicas) publish each row once
        in normal operation. Each returned row's `OutboxMessage.claims` counts the claims before
        this one: more than 0, it may have gone out already (the relay marks it republished).
        Times are the store's clock."""
        ...

    async def mark_published(self, ids: Sequence[int]) -> None:
        """Stamp outbox rows as published now (idempotent)."""
        ...

    async def has_handled(self, consumer: str, message_id: UUID, *, sender: str) -> bool:
        """Whether `consumer` has committed the handling of `sender`'s message (the inbox)."""
        ...

    async def handled_republished(self, consumer: str, message_id: UUID, *, sender: str) -> bool:
        """Whether the copy of `sender`'s message that `consumer` handled came marked republished
        (False when none was handled): the consumer then acks a later unmarked copy as the stale
        original of a lost confirm, whichever replica or restart of the agent handled the copy."""
        ...

    async def prune_inbox(self, before: datetime) -> int:
        """Forget inbox rows handled before `before` (retention: a message that old is refused as
        stale anyway, so its row no longer guards against anything). Returns the rows removed."""
        ...

    async def get_case(self, case_id: UUID) -> CaseRecord | None: ...

    async def history(self, case_id: UUID) -> list[Transition]: ...

    async def cases_by_state(self) -> dict[str, int]: ...

    async def cases_due_before(self, day: date) -> list[CaseRecord]:
        """Open cases whose `due_date` is earlier than `day`, earliest due first."""
        ...

    async def find_cases_by_person(self, person_key: str) -> list[CaseRecord]:
        """Every case (open or closed) for the person, oldest first."""
        ...

    async def list_cases(
        self, *, open_only: bool = False, states: Collection[str] | None = None
    ) -> list[CaseRecord]:
        """Every case (or every open case, or the cases in `states`), oldest first: for status
        output, reconciliation and recovery."""
        ...

    async def held_messages(self) -> list[HeldMessage]:
        """Every held message, for operators."""
        ...

    async def schema_versions(self) -> list[int]:
        """The schema migrations applied, in order."""
        ...

    async def close(self) -> None: ...
