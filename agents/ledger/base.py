"""The ledger port: the agency's own books of insured people, months and personal-account money.

The agent never edits balances itself; it asks the ledger. Every operation that changes the books is
idempotent per ``(case_id, operation)``: the first call applies it and records its result in the same
database transaction; any later call with the same pair returns that first result (with
``replayed=True``) and changes nothing, even if its arguments differ (that is logged as a warning).
So a handler that crashes after the ledger call and before its own commit can simply run again.

Money is integer fen; time is whole months. Policy (arrears block a transfer, retirees are outside
the 2021 process, resident insurance has no personal account, ...) is decided by the pure domain
from `lookup`; the ledger enforces only what keeps the books consistent: the person exists where
that is required, and no balance goes negative.

The value types the pure domain also reads (`PersonAccount`, `LedgerEntry`, `LedgerPeriod`,
`period_months`) live in `agents.domain.books` and are re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable
from uuid import UUID

from agents.domain.books import (
    LedgerEntry,
    LedgerOperation,
    LedgerPeriod,
    Participation,
    PersonAccount,
    period_months,
)
from agents.domain.continuity import Continuity
from schemas.common import Gender, InsuranceType
from schemas.errors import DomainRuleViolation

__all__ = [
    "Continuity",
    "Gender",
    "InsufficientBalance",
    "InsuranceType",
    "LedgerEntry",
    "LedgerOperation",
    "LedgerPeriod",
    "LedgerPort",
    "LedgerStatement",
    "Participation",
    "PersonAccount",
    "PersonNotFound",
    "RelationshipEnded",
    "SeedableLedger",
    "StatementRole",
    "period_months",
    "statement_from_entries",
]

StatementRole = Literal["outgoing", "receiving", "none"]


class PersonNotFound(DomainRuleViolation):
    """The ledger has no account for this ID number."""

    def __init__(self) -> None:
        super().__init__("person_not_found", "no insured person with this ID number here")


class InsufficientBalance(DomainRuleViolation):
    """A debit or payout larger than the personal-account balance."""

    def __init__(self, balance_fen: int, amount_fen: int) -> None:
        super().__init__(
            "insufficient_balance",
            f"personal-account balance {balance_fen} fen is less than {amount_fen} fen",
        )


class RelationshipEnded(DomainRuleViolation):
    """The person's relationship here was already transferred out (another case)."""

    def __init__(self) -> None:
        super().__init__(
            "relationship_ended", "the insurance relationship here has already been transferred"
        )


@dataclass(frozen=True, kw_only=True)
class LedgerStatement:
    """One case as this agency's books record it: what the reconciliation agent compares.

    Outgoing side: ``months_certified``/``deemed_certified`` (on the information form),
    ``amount_debited_fen`` (sent as the fund transfer), ``paid_out_fen`` (to the person's own
    account) and ``retained_fen`` (left in place: Guangdong within the province). Receiving side:
    ``months_credited``/``deemed_credited`` and ``amount_credited_fen``. ``role`` is ``none`` when
    the ledger has not touched the case.
    """

    case_id: UUID
    role: StatementRole
    months_certified: int = 0
    deemed_certified: int = 0
    months_credited: int = 0
    deemed_credited: int = 0
    amount_debited_fen: int = 0
    amount_credited_fen: int = 0
    paid_out_fen: int = 0
    retained_fen: int = 0


def statement_from_entries(case_id: UUID, entries: Sequence[LedgerEntry]) -> LedgerStatement:
    """Fold a case's ledger entries into its statement (shared by every adapter)."""
    ops = {entry.operation: entry for entry in entries}
    terminate = ops.get("terminate_and_debit")
    credit = ops.get("credit")
    payout = ops.get("pay_out")
    role: StatementRole
    if credit is not None:
        role = "receiving"
    elif terminate is not None or payout is not None:
        role = "outgoing"
    else:
        role = "none"
    return LedgerStatement(
        case_id=case_id,
        role=role,
        months_certified=terminate.months if terminate else 0,
        deemed_certified=terminate.deemed_months if terminate else 0,
        months_credited=credit.months if credit else 0,
        deemed_credited=credit.deemed_months if credit else 0,
        amount_debited_fen=terminate.amount_fen if terminate else 0,
        amount_credited_fen=credit.amount_fen if credit else 0,
        paid_out_fen=payout.amount_fen if payout else 0,
        retained_fen=terminate.retained_fen if terminate else 0,
    )


@runtime_checkable
class LedgerPort(Protocol):
    """An agency's books, as the agent uses them: look a person up, the three idempotent
    changes, the statement the reconciler asks for, and close.

    Adapters: `SqliteLedger` (default), `PostgresLedger` (production, several replicas),
    `InMemoryLedger` (tests), or an agency's own (``JIEXU_LEDGER=module:factory``, see
    `agents.ledger.choice`); prove one with the shipped `LedgerContract` suite.
    """

    async def lookup(self, id_number: str) -> PersonAccount | None: ...

    async def terminate_and_debit(
        self, case_id: UUID, id_number: str, amount_fen: int, retain: bool = False
    ) -> LedgerEntry:
        """Outgoing side: end the relationship here (enrolled=False, participation stopped),
        certify the months paid and deemed and the periods, which move out with the person
        (the account keeps 0 of each, so a later return transfer cannot count them twice), and
        debit `amount_fen` (the amount of the fund transfer; 0 for a zero balance or when the
        balance is paid out instead).

        ``retain=True`` (Guangdong within the province): the balance stays where it is;
        `amount_fen` must be 0 and the entry's ``retained_fen`` records the balance kept.
        Raises `PersonNotFound`, `RelationshipEnded` (already transferred out and not enrolled
        again), `InsufficientBalance`, or ValueError for a bad amount.
        """
        ...

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
        """Receiving side: add the months, deemed months, periods and balance; the person is
        enrolled and active here afterwards. An unknown person is enrolled with `name`/`gender`
        (required then, else `PersonNotFound`).

        `continuity` (added after the first release of the port, optional): what the receiving
        case decided (`agents.domain.continuity.Continuity`: kept, kept with back-payment, or
        broken; the months to pay back; the waiting period and the first month of benefits).
        Record it with the credit, once (it is part of the idempotent operation: the entry's
        ``continuity`` and the account's ``continuity``; the account's ``enrolment_start`` takes
        its month when the books had none). The agent passes it only when it has one and the
        adapter's ``credit`` declares the parameter (or ``**kwargs``), so an adapter written to
        the older signature keeps working and simply does not record it."""
        ...

    async def pay_out(
        self, case_id: UUID, id_number: str, amount_fen: int, bank_account: Mapping[str, Any]
    ) -> LedgerEntry:
        """Pay `amount_fen` of the balance to the person's own bank account: debit it and record
        the payout. Raises `PersonNotFound`, `InsufficientBalance`."""
        ...

    async def statement(self, case_id: UUID) -> LedgerStatement:
        """What the books hold for one case (role ``none`` if untouched): answers the
        reconciler's statement request."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class SeedableLedger(LedgerPort, Protocol):
    """Optional: what the demo, the bench, the importer and the contract suite use besides the
    agent's port: filling the books directly, listing every case, and totals for conservation
    checks. An agency's own adapter need not offer it (the agent never calls these)."""

    async def put_account(self, account: PersonAccount) -> None:
        """Insert or replace an account (not idempotency-tracked: for seeding only)."""
        ...

    async def statements(self) -> list[LedgerStatement]:
        """Every case the ledger has touched, ordered by case id."""
        ...

    async def total_balance_fen(self) -> int: ...

    async def total_paid_out_fen(self) -> int: ...

    async def total_debited_fen(self) -> int:
        """Sum of every fund transfer sent (terminate_and_debit amounts)."""
        ...

    async def total_credited_fen(self) -> int:
        """Sum of every fund transfer received (credit amounts)."""
        ...
