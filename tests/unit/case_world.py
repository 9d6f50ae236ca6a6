"""The service's unit tier: the real `AgencyService` of each agency, in memory, and the wire between.

Each `Agent` is an `agents.service.agency.AgencyService` over `InMemoryStore`, `InMemoryLedger`
(its `Books`) and a `ManualClock`, with a directory built from what the test says each agency
speaks. What an agent sends is what its service committed to the outbox: after every call the
agent takes the unpublished rows (the relay's half of the work, without a broker) into `outbox`.
`World.pump` delivers each one to the recipient's `AgencyService.handle` as signed bytes through
the real codec (parse, signature check, upcasting), optionally twice, asserting that the second
delivery changes nothing.

The fakes never wait, so each call into the service runs to completion at once (`settle`) and the
tests stay plain functions. What a call changed is returned as an `Outcome`, read from outside
the service: the case it saved, the messages it queued, the ledger operations it ran and the
notes (``case.*`` log events) it logged.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from uuid import UUID, uuid4

from structlog.testing import capture_logs

from agents.domain.case import Agency as AgencyConfig
from agents.domain.case import (
    ApplicationSubmitted,
    Case,
    Context,
    Event,
    LedgerApplied,
    LedgerRefused,
    LetterReceived,
    Note,
    OutboundMessage,
    PayoutApproved,
    Tick,
    case_from_data,
    event_for_message,
    person_key,
)
from agents.domain.clock import CHINA_TZ, ManualClock
from agents.domain.workdays import WorkdayCalendar
from agents.service.agency import AgencyService
from agents.testing.fakes import InMemoryStore
from broker.delivery import DeliveryInfo
from broker.directory import AgencyDirectory, AgencyEntry, DirectoryBankAccount
from broker.names import routing_key
from broker.signing import public_key_to_raw_b64, sign_envelope, verify_envelope
from schemas.common import BankAccount, InsuranceType, Person
from schemas.contact import PayoutReason
from schemas.registry import Message, encode_envelope, envelope_for, known_versions, message_types, parse
from tests.unit.case_books import (
    Books,
    LedgerOffline,
    WeekdayCalendar,
    WorldLedger,
    agency,
    bank_account,
    outgoing_account,
    person,
    receiving_account,
    settle,
    signing_key,
)

__all__ = [
    "EVERY_VERSION",
    "Agent",
    "Books",
    "LedgerOffline",
    "Outcome",
    "Sent",
    "WeekdayCalendar",
    "World",
    "WorldLedger",
    "agency",
    "bank_account",
    "note_events",
    "outgoing_account",
    "person",
    "receiving_account",
    "settle",
    "signing_key",
    "types_sent",
]

EVERY_VERSION: dict[str, tuple[int, ...]] = {t: known_versions(t) for t in message_types()}


@dataclass
class Sent:
    """One message an agent's service committed to send; ``body`` is the signed bytes it wrote
    (``None`` for a message a test made or changed: the world signs it as the sender)."""

    sender: str
    case_id: UUID
    message: OutboundMessage
    body: bytes | None = None


@dataclass(frozen=True)
class Outcome:
    """What one call into the service changed, like the `Decision` it was made from."""

    case: Case | None = None
    """The case as stored after the call, if the call saved it."""
    messages: tuple[OutboundMessage, ...] = ()
    commands: tuple[str, ...] = ()
    """The ledger operations the call ran."""
    notes: tuple[Note, ...] = ()


def _directory_entry(code: str, versions: Mapping[str, Sequence[int]]) -> AgencyEntry:
    return AgencyEntry(
        code=code,
        name=f"医保经办机构{code}",
        supported_versions={t: tuple(v) for t, v in versions.items()},
        public_key=public_key_to_raw_b64(signing_key(code)),
        bank_account=DirectoryBankAccount(**bank_account(code).model_dump()),
    )


class WorldDirectory(AgencyDirectory):
    """The directory of the unit world: an agency the test lists nothing for is still known by
    its bank account (as every counterpart is in production: its key is in the directory), but
    not listed (``in`` is false: this agency sends it the newest of everything)."""

    def get(self, code: str) -> AgencyEntry:
        if code in self:
            return super().get(code)
        return _directory_entry(code, EVERY_VERSION)


class Agent:
    """One agency: its real `AgencyService` over in-memory store, books and clock."""

    def __init__(
        self,
        agency: AgencyConfig,
        books: Books,
        calendar: WorkdayCalendar,
        versions: Mapping[str, Mapping[str, Sequence[int]]] | None = None,
        *,
        run_commands: bool = True,
        own_versions: Mapping[str, Sequence[int]] | None = None,
    ) -> None:
        self.books = books
        self.clock = ManualClock(datetime(2025, 3, 3, 9, tzinfo=CHINA_TZ))
        self.store = InMemoryStore(clock=self.clock)
        self.outbox: list[Sent] = []
        self.sent_log: list[Sent] = []
        """Everything this agent ever sent (`outbox` is emptied as the world delivers)."""
        self.receipts: list[Sent] = []
        """Receipts waiting for delivery, kept apart from `outbox` (the service sends one for
        every document it commits; `World.pump` delivers them too)."""
        self.receipt_log: list[Sent] = []
        self.notes: list[Note] = []
        self.logs: list[dict[str, Any]] = []
        self.service = AgencyService(
            agency=agency,
            store=self.store,
            ledger=books.ledger,
            directory=AgencyDirectory([]),
            calendar=calendar,
            clock=self.clock,
            private_key=signing_key(agency.code),
            check_counterparts=False,  # an agency not listed speaks every version here
        )
        self._versions = versions
        self._own_versions = own_versions
        self._rebuild_directory()
        self.run_commands = run_commands

    # -- what the test configures ---------------------------------------------------------------
    @property
    def code(self) -> str:
        return self.service.code

    @property
    def agency(self) -> AgencyConfig:
        return self.service.agency

    @agency.setter
    def agency(self, value: AgencyConfig) -> None:
        self.service.agency = value

    @property
    def versions(self) -> Mapping[str, Mapping[str, Sequence[int]]] | None:
        """The directory: counterpart code → the versions it declares (None: it is not listed, so
        this agency sends the newest of everything)."""
        return self._versions

    @versions.setter
    def versions(self, value: Mapping[str, Mapping[str, Sequence[int]]] | None) -> None:
        self._versions = value
        self._rebuild_directory()

    @property
    def own_versions(self) -> Mapping[str, Sequence[int]] | None:
        """What this agency itself declares in the directory (None: every known version)."""
        return self._own_versions

    @own_versions.setter
    def own_versions(self, value: Mapping[str, Sequence[int]] | None) -> None:
        self._own_versions = value
        self._rebuild_directory()

    def _rebuild_directory(self) -> None:
        entries = [_directory_entry(code, v) for code, v in (self._versions or {}).items()]
        if self.code not in (self._versions or {}):
            entries.append(_directory_entry(self.code, self._own_versions or EVERY_VERSION))
        self.service.directory = WorldDirectory(entries)

    @property
    def run_commands(self) -> bool:
        """False: the books are unreachable, so ledger commands stay pending (a crash between
        saving a decision and running its commands looks the same)."""
        return not self.books.ledger.offline

    @run_commands.setter
    def run_commands(self, value: bool) -> None:
        self.books.ledger.offline = not value

    # -- reading the store ----------------------------------------------------------------------
    def case(self, case_id: UUID) -> Case:
        record = settle(self.store.get_case(case_id))
        if record is None:
            raise KeyError(case_id)
        return case_from_data(record.data)

    @property
    def cases(self) -> dict[UUID, Case]:
        return {r.case_id: case_from_data(r.data) for r in settle(self.store.list_cases())}

    # -- driving the service --------------------------------------------------------------------
    def _at(self, today: date) -> None:
        if self.clock.today() == today:
            self.clock.advance(seconds=1)  # time moves on within the day
        else:
            self.clock.set_date(today)

    def _call(self, case_id: UUID | None, work: Coroutine[Any, Any, object]) -> Outcome:
        before = settle(self.store.get_case(case_id)) if case_id is not None else None
        runs = len(self.books.ledger.runs)
        with capture_logs() as logs:
            settle(work)
        sent = self._relay()
        notes = tuple(
            Note(entry["event"], {k: v for k, v in entry.items() if k not in ("event", "log_level")})
            for entry in logs
            if str(entry["event"]).startswith("case.")
        )
        self.logs.extend(logs)
        self.notes.extend(notes)
        after = settle(self.store.get_case(case_id)) if case_id is not None else None
        changed = after is not None and (before is None or after.version != before.version)
        return Outcome(
            case=case_from_data(after.data) if changed and after is not None else None,
            messages=tuple(s.message for s in sent),
            commands=tuple(self.books.ledger.runs[runs:]),
            notes=notes,
        )

    def _relay(self) -> list[Sent]:
        rows = settle(self.store.fetch_unpublished(limit=1_000_000))
        sent: list[Sent] = []
        for row in rows:
            message = parse(row.body)
            envelope = message.envelope
            outbound = OutboundMessage(
                recipient=envelope.recipient,
                document=message.document,
                message_id=envelope.message_id,
                causation_id=envelope.causation_id,
                version=envelope.version,
            )
            item = Sent(self.code, envelope.case_id, outbound, row.body)
            if envelope.type == "receipt":
                self.receipts.append(item)
                self.receipt_log.append(item)
            else:
                sent.append(item)
        settle(self.store.mark_published([row.id for row in rows]))
        self.outbox.extend(sent)
        self.sent_log.extend(sent)
        return sent

    def apply_for(
        self,
        who: Person,
        from_region: str,
        today: date,
        *,
        insurance_type: InsuranceType = InsuranceType.EMPLOYEE,
        payout_account: BankAccount | None = None,
        payout_reason: PayoutReason | None = None,
        case_id: UUID | None = None,
    ) -> UUID:
        case_id = case_id or uuid4()
        application = ApplicationSubmitted(
            case_id=case_id,
            person=who,
            insurance_type=insurance_type,
            from_region=from_region,
            letter_number=f"L-{str(case_id)[:8]}",
            payout_account=payout_account,
            payout_reason=payout_reason,
        )
        self._at(today)
        self._call(case_id, self.service.apply(application))
        return case_id

    def receive(self, message: Message, today: date) -> Outcome:
        """The consumer's call: `AgencyService.handle` for one verified, parsed message."""
        envelope = message.envelope
        delivery = DeliveryInfo(
            agency=self.code,
            routing_key=routing_key(self.code, envelope.type),
            redelivered=False,
            attempt=1,
            publisher_user=envelope.sender,
        )
        self._at(today)
        return self._call(envelope.case_id, self.service.handle(message, delivery))

    def handle(self, event: Event, today: date, case: Case | None = None) -> Outcome:
        """Feed one event to the service the way it arrives in production: a message from another
        agency as a signed envelope; a ledger result by running the case's pending commands (a
        `LedgerRefused` makes the books refuse that operation); a `Tick` as a deadline round."""
        if isinstance(event, ApplicationSubmitted):
            self._at(today)
            return self._call(event.case_id, self.service.apply(event))
        if isinstance(event, Tick):
            return self.tick(today)
        if isinstance(event, PayoutApproved):
            self._at(today)
            return self._call(event.case_id, self.service.approve_payout(event.case_id, event.approved_by))
        if isinstance(event, LedgerApplied | LedgerRefused):
            if case is None:
                raise ValueError("a ledger result needs the case whose commands it answers")
            self._at(today)
            offline = self.books.ledger.offline
            self.books.ledger.offline = False
            self.books.ledger.refusal = event if isinstance(event, LedgerRefused) else None
            try:
                return self._call(case.case_id, self.service.recover())
            finally:
                self.books.ledger.offline, self.books.ledger.refusal = offline, None
        document = _document_of(event)
        envelope = envelope_for(
            document,
            sender=event.sender,
            recipient=self.code,
            case_id=event.case_id,
            message_id=event.message_id,
            version=document.VERSION,
            sent_at=datetime(today.year, today.month, today.day, 9, tzinfo=CHINA_TZ),
        )
        body = encode_envelope(sign_envelope(envelope, signing_key(event.sender)))
        return self.receive(parse(body), today)

    def tick(self, today: date) -> Outcome:
        """The agent process's deadline round on `today`: `tick`, then `recover`."""
        self._at(today)

        async def deadline_round() -> None:
            await self.service.tick()
            await self.service.recover()

        return self._call(None, deadline_round())

    def _context(self, case: Case | None, event: Event, today: date) -> Context:
        """The `Context` the service gives `decide` for this event on `today`."""
        self._at(today)
        account, other_open, counterpart = None, False, getattr(event, "sender", None)
        who: Person | None = None
        if isinstance(event, ApplicationSubmitted):
            who, counterpart = event.person, event.from_region
        elif isinstance(event, LetterReceived):
            who = event.letter.person
        if who is not None:
            account = self.books.lookup(who.id_number)
            other = settle(self._find_open(person_key(who)))
            other_open = other is not None and other != getattr(event, "case_id", None)
        return self.service._context(account, other_open, counterpart)

    async def _find_open(self, key: str) -> UUID | None:
        async with self.store.transaction() as tx:
            record = await tx.find_open_case(key)
        return record.case_id if record is not None else None


def _document_of(event: Event) -> Any:
    for name in ("letter", "form", "transfer", "completion", "rejection", "reminder"):
        if hasattr(event, name):
            return getattr(event, name)
    raise TypeError(f"{type(event).__name__} is not a message from another agency")


Tamper = Callable[[Sent], Sent | None]


@dataclass
class World:
    """Two (or more) agents and the wire between them."""

    agents: dict[str, Agent]
    today: date = date(2025, 3, 3)
    receipts: bool = True
    """`pump` delivers the agents' receipts as well as their documents."""
    delivered: list[tuple[str, str, int]] = field(default_factory=list)
    """(recipient, type, wire version) of every delivery."""

    @classmethod
    def of(cls, *agents: Agent, today: date = date(2025, 3, 3)) -> World:
        return cls({agent.code: agent for agent in agents}, today=today)

    def wire(self, sent: Sent) -> bytes:
        """The bytes on the wire: what the sender's service wrote, or `sent` signed as the sender."""
        if sent.body is not None:
            return sent.body
        message = sent.message
        envelope = envelope_for(
            message.document,
            sender=sent.sender,
            recipient=message.recipient,
            case_id=sent.case_id,
            causation_id=message.causation_id,
            message_id=message.message_id,
            version=message.version,
            sent_at=datetime(self.today.year, self.today.month, self.today.day, 9, tzinfo=CHINA_TZ),
        )
        return encode_envelope(sign_envelope(envelope, signing_key(sent.sender)))

    def deliver(self, sent: Sent, *, twice: bool = False) -> Outcome:
        message = parse(self.wire(sent))
        envelope = message.envelope
        verify_envelope(envelope, signing_key(envelope.sender).public_key())
        self.delivered.append((envelope.recipient, envelope.type, envelope.version))
        assert event_for_message(message) is not None
        recipient = self.agents[envelope.recipient]
        first = recipient.receive(message, self.today)
        if twice:
            before = recipient.cases
            outbox, calls = len(recipient.outbox), recipient.books.calls
            again = recipient.receive(message, self.today)
            assert again.case is None and not again.messages and not again.commands, again
            assert recipient.cases == before
            assert len(recipient.outbox) == outbox and recipient.books.calls == calls
        return first

    def pump(
        self,
        *,
        twice: bool = False,
        tamper: Tamper | None = None,
        order: Callable[[list[Sent]], list[Sent]] | None = None,
        limit: int = 100,
    ) -> int:
        """Deliver until every outbox is empty; returns how many messages were delivered."""
        count = 0
        while count < limit:
            pending: list[Sent] = []
            for agent in self.agents.values():
                pending.extend(agent.outbox)
                agent.outbox.clear()
                if self.receipts:
                    pending.extend(agent.receipts)
                    agent.receipts.clear()
            if not pending:
                return count
            if order is not None:
                pending = order(pending)
            for sent in pending:
                if tamper is not None:
                    changed = tamper(sent)
                    if changed is None:
                        continue
                    sent = changed
                self.deliver(sent, twice=twice)
                count += 1
        raise AssertionError("messages keep flowing")

    def tick(self, today: date) -> None:
        self.today = today
        for agent in self.agents.values():
            agent.tick(today)


def types_sent(agent: Agent) -> list[str]:
    return [sent.message.document.MESSAGE_TYPE for sent in agent.outbox]


def note_events(notes: Sequence[Note]) -> list[str]:
    return [note.event for note in notes]
