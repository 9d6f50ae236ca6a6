"""The unit world's agencies and books: people, accounts, agency configurations, a ledger that
can be offline or refuse, and `settle`, which runs a coroutine that never waits.

`tests.unit.case_world` re-exports all of it; tests import from there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Coroutine, Mapping, Sequence
from datetime import date, timedelta
from typing import Any, TypeVar
from uuid import UUID

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agents.domain.case import Agency as AgencyConfig
from agents.domain.case import Credit, LedgerRefused, PayOut, TerminateAndDebit
from agents.domain.deadlines import Regime
from agents.ledger.base import LedgerEntry, LedgerPeriod, PersonAccount
from agents.testing.fakes import InMemoryLedger
from schemas.common import AgencyDetails, BankAccount, Gender, InsuranceType, Person, make_citizen_id
from schemas.errors import DomainRuleViolation, TransientError

__all__ = [
    "Books",
    "LedgerOffline",
    "WeekdayCalendar",
    "WorldLedger",
    "agency",
    "bank_account",
    "outgoing_account",
    "person",
    "receiving_account",
    "settle",
    "signing_key",
]

T = TypeVar("T")

def settle(work: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never waits (the service over in-memory fakes) to its result."""
    try:
        work.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    work.close()
    raise RuntimeError("the service waited on something: the unit world holds only in-memory fakes")


def signing_key(code: str) -> Ed25519PrivateKey:
    """Each agency's key in the unit world, derived from its code: every agent can know every key."""
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(f"jiexu-unit-{code}".encode()).digest())


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
) -> AgencyConfig:
    return AgencyConfig(
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


class LedgerOffline(TransientError):
    """The agency's books cannot be reached: the service leaves the commands pending."""


class WorldLedger(InMemoryLedger):
    """`InMemoryLedger` that counts the operations it runs and can be offline or refuse one."""

    def __init__(self, region: str, accounts: Sequence[PersonAccount] = ()) -> None:
        super().__init__(region, accounts)
        self.runs: list[str] = []
        self.offline = False
        self.refusal: LedgerRefused | None = None

    def _attempt(self, operation: str) -> None:
        if self.offline:
            raise LedgerOffline("the ledger is offline")
        if self.refusal is not None and self.refusal.operation == operation:
            raise DomainRuleViolation(self.refusal.reason_code, self.refusal.text)
        self.runs.append(operation)

    async def terminate_and_debit(
        self, case_id: UUID, id_number: str, amount_fen: int, retain: bool = False
    ) -> LedgerEntry:
        self._attempt("terminate_and_debit")
        return await super().terminate_and_debit(case_id, id_number, amount_fen, retain)

    async def credit(self, case_id: UUID, id_number: str, *args: Any, **kwargs: Any) -> LedgerEntry:
        self._attempt("credit")
        return await super().credit(case_id, id_number, *args, **kwargs)

    async def pay_out(
        self, case_id: UUID, id_number: str, amount_fen: int, bank_account: Mapping[str, Any]
    ) -> LedgerEntry:
        self._attempt("pay_out")
        return await super().pay_out(case_id, id_number, amount_fen, bank_account)


class Books:
    """One agency's books (a `WorldLedger`), read and written synchronously by the tests."""

    def __init__(self, region: str, accounts: Mapping[str, PersonAccount] | None = None) -> None:
        self.region = region
        self.ledger = WorldLedger(region, list((accounts or {}).values()))

    def put(self, account: PersonAccount) -> None:
        settle(self.ledger.put_account(account))

    def lookup(self, id_number: str) -> PersonAccount | None:
        return settle(self.ledger.lookup(id_number))

    @property
    def accounts(self) -> dict[str, PersonAccount]:
        return self.ledger.accounts

    @property
    def ops(self) -> dict[tuple[UUID, str], LedgerEntry]:
        return dict(self.ledger.entries)

    @property
    def calls(self) -> int:
        return len(self.ledger.runs)

    @property
    def payouts(self) -> dict[UUID, tuple[int, BankAccount]]:
        return {
            case_id: (amount, BankAccount.model_validate(account))
            for case_id, (amount, account) in self.ledger.payouts.items()
        }

    def entry(self, case_id: UUID, operation: str) -> LedgerEntry | None:
        return self.ledger.entries.get((case_id, operation))  # type: ignore[call-overload]

    def run(self, command: TerminateAndDebit | PayOut | Credit) -> LedgerEntry:
        """Apply one command directly, as if the service had (offline or not)."""
        offline, self.ledger.offline = self.ledger.offline, False
        try:
            if isinstance(command, TerminateAndDebit):
                work = self.ledger.terminate_and_debit(
                    command.case_id, command.id_number, command.amount_fen, command.retain
                )
            elif isinstance(command, PayOut):
                work = self.ledger.pay_out(
                    command.case_id,
                    command.id_number,
                    command.amount_fen,
                    command.bank_account.model_dump(mode="json"),
                )
            else:
                work = self.ledger.credit(
                    command.case_id,
                    command.id_number,
                    command.months,
                    command.deemed_months,
                    command.amount_fen,
                    [LedgerPeriod(**p.model_dump()) for p in command.periods],
                    command.insurance_type,
                    name=command.name,
                    gender=command.gender,
                )
            return settle(work)
        finally:
            self.ledger.offline = offline
