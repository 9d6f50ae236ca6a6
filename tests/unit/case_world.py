"""A tiny in-memory world for the case state machine: two agencies, their books, the wire.

Each `Agent` keeps its cases (round-tripped through `case_to_data`/`case_from_data` on every save,
as the store would), a synchronous fake ledger built on the ledger's own pure bookkeeping rules,
and an outbox. `World.pump` carries every outbox message across the real codec (envelope, JSON,
version negotiation, upcasting) to the recipient's `decide`, optionally delivering each message
twice and asserting that the second delivery changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from agents.domain.case import (
    Agency,
    ApplicationSubmitted,
    Case,
    Context,
    Credit,
    Decision,
    Event,
    LedgerApplied,
    LedgerRefused,
    LetterReceived,
    Note,
    OutboundMessage,
    PayOut,
    TerminateAndDebit,
    Tick,
    TransitionRecord,
    case_from_data,
    case_to_data,
    decide,
    event_for_message,
)
from agents.domain.deadlines import Regime
from agents.ledger.base import LedgerEntry, LedgerPeriod, PersonAccount
from agents.ledger.books import apply_credit, apply_pay_out, apply_terminate
from schemas.common import AgencyDetails, BankAccount, Gender, InsuranceType, Person, make_citizen_id
from schemas.contact import PayoutReason
from schemas.errors import DomainRuleViolation
from schemas.registry import encode_envelope, envelope_for, parse

__all__ = [
    "Agent",
    "Books",
    "WeekdayCalendar",
    "World",
    "agency",
    "bank_account",
    "note_events",
    "outgoing_account",
    "person",
    "receiving_account",
    "types_sent",
]


class WeekdayCalendar:
    """Monday to Friday, no holidays: for tests whose dates are easy to count by hand."""

    def is_working_day(self, day: date) -> bool:
        return day.weekday() < 5

    def add_working_days(self, start: date, n: int) -> date:
        step = 1 if n >= 0 else -1
        day, remaining = start, abs(n)
        while remaining:
            day += timedelta(days=step)
            if self.is_working_day(day):
                remaining -= 1
        return day

    def working_days_between(self, a: date, b: date) -> int:
        if b < a:
            return -self.working_days_between(b, a)
        count, day = 0, a
        while day < b:
            day += timedelta(days=1)
            count += self.is_working_day(day)
        return count


def bank_account(code: str, owner: str = "医疗保障事业管理中心") -> BankAccount:
    return BankAccount(
        bank_name="中国工商银行",
        bank_code=f"102{code}000",
        account_name=owner,
        account_number=f"62{code}0000001",
    )


def agency(
    code: str, regime: Regime = Regime.R2021, *, accepts_funds: bool = True, seal: str | None = None
) -> Agency:
    return Agency(
        code=code,
        details=AgencyDetails(
            name=f"医保经办机构{code}",
            address="人民路1号",
            phone="010-12393",
            bank_account=bank_account(code),
        ),
        regime=regime,
        accepts_funds=accepts_funds,
        seal_reference=seal,
    )


def person(sequence: int = 135, region: str = "360402") -> Person:
    id_number = make_citizen_id(region, date(1988, 7, 21), sequence)
    gender = Gender.MALE if sequence % 2 else Gender.FEMALE
    return Person(name="张伟", gender=gender, id_number=id_number)


def _month(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def outgoing_account(
    who: Person,
    region: str,
    *,
    months: int = 120,
    deemed: int = 0,
    balance: int = 1_234_567,
    insurance_type: InsuranceType = InsuranceType.EMPLOYEE,
    participation: str = "stopped",
    arrears: int = 0,
    retiree: bool = False,
    enrolled: bool = True,
    itemised: bool = True,
) -> PersonAccount:
    """An account at the outgoing place whose periods add up to ``months`` (ending 2025-12)."""
    end = 2025 * 12 + 11
    periods: tuple[LedgerPeriod, ...] = ()
    if months and itemised:
        periods = (
            LedgerPeriod(
                from_month=_month(end - months + 1),
                to_month=_month(end),
                region=region,
                insurance_type=insurance_type,
                months=months,
            ),
        )
    return PersonAccount(
        id_number=who.id_number,
        name=who.name,
        gender=who.gender,
        insurance_type=insurance_type,
        enrolled=enrolled,
        participation="stopped" if participation == "stopped" else "active",
        region=region,
        arrears_fen=arrears,
        retiree=retiree,
        months_paid=months,
        deemed_months=deemed,
        balance_fen=balance if insurance_type is InsuranceType.EMPLOYEE else 0,
        periods=periods,
    )


def receiving_account(
    who: Person, region: str, insurance_type: InsuranceType = InsuranceType.EMPLOYEE
) -> PersonAccount:
    return PersonAccount(
        id_number=who.id_number,
        name=who.name,
        gender=who.gender,
        insurance_type=insurance_type,
        enrolled=True,
        participation="active",
        region=region,
    )


@dataclass
class Books:
    """A synchronous ledger with the real bookkeeping rules and per-(case, operation) idempotency."""

    region: str
    accounts: dict[str, PersonAccount] = field(default_factory=dict)
    ops: dict[tuple[UUID, str], LedgerEntry] = field(default_factory=dict)
    calls: int = 0
    payouts: dict[UUID, tuple[int, BankAccount]] = field(default_factory=dict)

    def put(self, account: PersonAccount) -> None:
        self.accounts[account.id_number] = account

    def lookup(self, id_number: str) -> PersonAccount | None:
        return self.accounts.get(id_number)

    def run(self, command: TerminateAndDebit | PayOut | Credit) -> LedgerEntry:
        self.calls += 1
        key = (command.case_id, command.operation)
        if key in self.ops:
            return LedgerEntry.from_json(self.ops[key].to_json(), replayed=True)
        current = self.accounts.get(command.id_number)
        if isinstance(command, TerminateAndDebit):
            account, entry = apply_terminate(current, command.case_id, command.amount_fen, command.retain)
        elif isinstance(command, PayOut):
            account, entry = apply_pay_out(current, command.case_id, command.amount_fen)
            self.payouts[command.case_id] = (command.amount_fen, command.bank_account)
        else:
            account, entry = apply_credit(
                current,
                command.case_id,
                command.id_number,
                command.months,
                command.deemed_months,
                command.amount_fen,
                [LedgerPeriod(**p.model_dump()) for p in command.periods],
                command.insurance_type,
                region=self.region,
                name=command.name,
                gender=command.gender,
            )
        self.accounts[account.id_number] = account
        self.ops[key] = entry
        return entry

    def entry(self, case_id: UUID, operation: str) -> LedgerEntry | None:
        return self.ops.get((case_id, operation))


@dataclass
class Sent:
    sender: str
    case_id: UUID
    message: OutboundMessage


@dataclass
class Agent:
    agency: Agency
    books: Books
    calendar: Any
    versions: Mapping[str, Mapping[str, Sequence[int]]] | None = None
    """The directory: counterpart code → supported versions (None: every known version)."""
    cases: dict[UUID, Case] = field(default_factory=dict)
    history: list[tuple[UUID, TransitionRecord]] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    outbox: list[Sent] = field(default_factory=list)
    run_commands: bool = True
    """False simulates a crash between saving a decision and running its ledger commands."""

    @property
    def code(self) -> str:
        return self.agency.code

    def _context(self, case: Case | None, event: Event, today: date) -> Context:
        account, other_open, counterpart = None, False, None
        who: Person | None = None
        case_id: UUID | None = None
        if isinstance(event, ApplicationSubmitted):
            who, counterpart, case_id = event.person, event.from_region, event.case_id
        elif isinstance(event, LetterReceived):
            who, counterpart, case_id = event.letter.person, event.sender, event.case_id
        if who is not None:
            account = self.books.lookup(who.id_number)
            other_open = any(
                c.is_open and c.person.id_number == who.id_number and c.case_id != case_id
                for c in self.cases.values()
            )
        supported = None
        if self.versions is not None and counterpart is not None:
            supported = self.versions.get(counterpart)
        return Context(
            agency=self.agency,
            today=today,
            calendar=self.calendar,
            account=account,
            other_open_case=other_open,
            counterpart_versions=supported,
        )

    def case_for(self, event: Event) -> Case | None:
        case_id = getattr(event, "case_id", None)
        return self.cases.get(case_id) if case_id is not None else None

    def handle(self, event: Event, today: date, case: Case | None = None) -> Decision:
        if case is None:
            case = self.case_for(event)
        decision = decide(case, event, self._context(case, event, today))
        self._apply(decision, today)
        return decision

    def tick(self, today: date) -> list[Decision]:
        return [self.handle(Tick(today=today), today, case) for case in list(self.cases.values())]

    def _apply(self, decision: Decision, today: date) -> None:
        self.notes.extend(decision.notes)
        case = decision.case
        if case is None:
            if decision.commands:
                self._run(decision.commands, self._case_of(decision), today)
            return
        # Every save goes through the store's JSON snapshot.
        stored = case_from_data(case_to_data(case))
        assert stored == case
        self.cases[case.case_id] = stored
        if decision.transition is not None:
            self.history.append((case.case_id, decision.transition))
        self.outbox.extend(Sent(self.code, case.case_id, message) for message in decision.messages)
        if decision.commands:
            assert not decision.messages, "a decision with ledger commands never sends messages"
            self._run(decision.commands, stored, today)

    def _case_of(self, decision: Decision) -> Case:
        case_id = decision.commands[0].case_id
        return self.cases[case_id]

    def _run(self, commands: Sequence[TerminateAndDebit | PayOut | Credit], case: Case, today: date) -> None:
        if not self.run_commands:
            return
        applied: list[LedgerEntry] = []
        for command in commands:
            try:
                applied.append(self.books.run(command))
            except DomainRuleViolation as refusal:
                event: Event = LedgerRefused(
                    operation=command.operation,
                    reason_code=refusal.reason_code,
                    text=refusal.text,
                    applied=tuple(applied),
                )
                self.handle(event, today, self.cases[case.case_id])
                return
        self.handle(LedgerApplied(entries=tuple(applied)), today, self.cases[case.case_id])

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
        self.handle(
            ApplicationSubmitted(
                case_id=case_id,
                person=who,
                insurance_type=insurance_type,
                from_region=from_region,
                letter_number=f"L-{str(case_id)[:8]}",
                payout_account=payout_account,
                payout_reason=payout_reason,
            ),
            today,
        )
        return case_id

    def case(self, case_id: UUID) -> Case:
        return self.cases[case_id]


Tamper = Callable[[Sent], Sent | None]


@dataclass
class World:
    """Two (or more) agents and the wire between them."""

    agents: dict[str, Agent]
    today: date = date(2025, 3, 3)
    delivered: list[tuple[str, str, int]] = field(default_factory=list)
    """(recipient, type, wire version) of every delivery."""

    @classmethod
    def of(cls, *agents: Agent, today: date = date(2025, 3, 3)) -> World:
        return cls({agent.code: agent for agent in agents}, today=today)

    def wire(self, sent: Sent) -> bytes:
        message = sent.message
        envelope = envelope_for(
            message.document,
            sender=sent.sender,
            recipient=message.recipient,
            case_id=sent.case_id,
            causation_id=message.causation_id,
            message_id=message.message_id,
            version=message.version,
            sent_at=datetime(self.today.year, self.today.month, self.today.day, 9, tzinfo=UTC),
        )
        return encode_envelope(envelope)

    def deliver(self, sent: Sent, *, twice: bool = False) -> Decision:
        body = self.wire(sent)
        parsed = parse(body)
        self.delivered.append((sent.message.recipient, parsed.envelope.type, parsed.envelope.version))
        event = event_for_message(parsed)
        assert event is not None
        recipient = self.agents[sent.message.recipient]
        first = recipient.handle(event, self.today)
        if twice:
            before = dict(recipient.cases)
            outbox, calls = len(recipient.outbox), recipient.books.calls
            again = recipient.handle(event, self.today)
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
