"""`InMemoryLedger`: the ledger contract in dictionaries, for unit tests of pure logic.

Each operation runs without awaiting in between, so on one event loop it is atomic exactly like
the SQLite transaction of `SqliteLedger`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from agents.ledger.base import (
    LedgerEntry,
    LedgerOperation,
    LedgerPeriod,
    LedgerStatement,
    PersonAccount,
    statement_from_entries,
)
from agents.ledger.books import apply_credit, apply_pay_out, apply_terminate, warn_if_args_differ
from schemas.common import Gender, InsuranceType

__all__ = ["InMemoryLedger"]


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
    ) -> LedgerEntry:
        args = {
            "id_number": id_number,
            "months": months,
            "deemed_months": deemed_months,
            "amount_fen": amount_fen,
            "periods": [p.to_json() for p in periods],
            "insurance_type": insurance_type.value,
        }
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
