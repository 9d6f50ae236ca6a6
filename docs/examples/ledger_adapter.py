"""An example ledger adapter: an imagined core system that keeps its books in one JSON file.

Your adapter wraps your own core system the same way. What it must do (`agents.ledger.LedgerPort`):

* ``lookup(id_number)``: the person's account, or None;
* ``terminate_and_debit``, ``credit``, ``pay_out``: change the books **once per (case_id,
  operation)**: the first call applies the change and stores its result *in the same
  transaction*; every later call with the same pair returns that stored result with
  ``replayed=True`` and changes nothing. The agent relies on it: it repeats a call after a crash;
  ``credit`` takes an optional ``continuity`` (the receiving case's decision: kept, back-payment
  months, waiting period, first month of benefits) to record with the credit and on the account;
  an adapter without that keyword still works, the agent then leaves continuity out of its books;
* ``statement(case_id)``: what the books hold for one case (for the reconciler);
* ``close()``.

The bookkeeping rules themselves (who may transfer, what moves, no negative balance) are the pure
functions in `agents.ledger.books`; use them, or apply your core system's own and let the contract
suite show they agree. The optional extras (``put_account``, ``statements``, the totals) let the
contract suite, ``jiexu ledger import`` and the demo fill and check the books.

Here the "transaction" is one atomic file replace: accounts and the operations log are written
together to a temporary file, flushed to disk and renamed over the old one, so a crash leaves
either the old books or the new, never a balance without its idempotency record. A JSON file
serves one process: for several replicas use ``JIEXU_LEDGER=postgres`` (or a core system that
locks per person and keeps a unique key on (case_id, operation)).

Run it::

    PYTHONPATH=docs/examples JIEXU_LEDGER=ledger_adapter:open_books jiexu agent --agency 360400

Prove it (``docs/examples/test_ledger_adapter.py``)::

    pytest docs/examples/test_ledger_adapter.py
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

from agents.domain.books import continuity_from_json, continuity_to_json
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
from agents.ledger.choice import LedgerContext
from schemas.common import Gender, InsuranceType

__all__ = ["JsonFileLedger", "open_books"]

Apply = Callable[[PersonAccount | None], tuple[PersonAccount, LedgerEntry]]


def _account_to_json(account: PersonAccount) -> dict[str, Any]:
    return {
        "id_number": account.id_number,
        "name": account.name,
        "gender": account.gender.value,
        "insurance_type": account.insurance_type.value,
        "enrolled": account.enrolled,
        "participation": account.participation,
        "region": account.region,
        "arrears_fen": account.arrears_fen,
        "retiree": account.retiree,
        "months_paid": account.months_paid,
        "deemed_months": account.deemed_months,
        "balance_fen": account.balance_fen,
        "periods": [period.to_json() for period in account.periods],
        "enrolment_start": account.enrolment_start,
        "continuity": continuity_to_json(account.continuity),
    }


def _account_from_json(value: Mapping[str, Any]) -> PersonAccount:
    # Books written before enrolment_start and continuity existed lack both keys: None then.
    fields = dict(value)
    fields["periods"] = tuple(LedgerPeriod.from_json(p) for p in value["periods"])
    fields["continuity"] = continuity_from_json(value.get("continuity"))
    return PersonAccount(**fields)


class JsonFileLedger:
    """The books in ``path``: ``{"accounts": {id: account}, "operations": {"case/op": {...}},
    "payouts": {case: {...}}}``."""

    def __init__(self, path: Path, region: str) -> None:
        self.path = path
        self.region = region
        self._lock = asyncio.Lock()  # one change at a time within this process
        if path.exists():
            books = json.loads(path.read_text(encoding="utf-8"))
        else:
            books = {"accounts": {}, "operations": {}, "payouts": {}}
        self._books: dict[str, dict[str, Any]] = books

    # -- the one "transaction": replace the whole file ---------------------------------------

    def _commit(self, books: dict[str, dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        with temporary.open("w", encoding="utf-8") as out:
            json.dump(books, out, ensure_ascii=False, sort_keys=True)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self.path)
        self._books = books

    async def _once(
        self,
        case_id: UUID,
        op: LedgerOperation,
        id_number: str,
        args: dict[str, Any],
        apply: Apply,
        payout: dict[str, Any] | None = None,
    ) -> LedgerEntry:
        key = f"{case_id}/{op}"
        async with self._lock:
            done = self._books["operations"].get(key)
            if done is not None:  # applied before: the first result, nothing changes
                entry = LedgerEntry.from_json(done["result"], replayed=True)
                warn_if_args_differ(entry, done["args"], args)
                return entry
            found = self._books["accounts"].get(id_number)
            account, entry = apply(_account_from_json(found) if found else None)  # may refuse
            books = json.loads(json.dumps(self._books))  # change a copy, then swap it in
            books["accounts"][id_number] = _account_to_json(account)
            books["operations"][key] = {"args": args, "result": entry.to_json()}
            if payout is not None:
                books["payouts"][str(case_id)] = {**payout, "amount_fen": entry.amount_fen}
            self._commit(books)
            return entry

    # -- the agent's port ----------------------------------------------------------------------

    async def lookup(self, id_number: str) -> PersonAccount | None:
        found = self._books["accounts"].get(id_number)
        return _account_from_json(found) if found else None

    async def terminate_and_debit(
        self, case_id: UUID, id_number: str, amount_fen: int, retain: bool = False
    ) -> LedgerEntry:
        args = {"id_number": id_number, "amount_fen": amount_fen, "retain": retain}
        return await self._once(
            case_id,
            "terminate_and_debit",
            id_number,
            args,
            lambda account: apply_terminate(account, case_id, amount_fen, retain),
        )

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
        return await self._once(
            case_id,
            "credit",
            id_number,
            args,
            lambda account: apply_credit(
                account,
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
            ),
        )

    async def pay_out(
        self, case_id: UUID, id_number: str, amount_fen: int, bank_account: Mapping[str, Any]
    ) -> LedgerEntry:
        args = {"id_number": id_number, "amount_fen": amount_fen, "bank_account": dict(bank_account)}
        return await self._once(
            case_id,
            "pay_out",
            id_number,
            args,
            lambda account: apply_pay_out(account, case_id, amount_fen),
            payout={"id_number": id_number, "bank_account": dict(bank_account)},
        )

    def _entries(self, case_id: UUID | None = None) -> dict[UUID, list[LedgerEntry]]:
        by_case: dict[UUID, list[LedgerEntry]] = {}
        for done in self._books["operations"].values():
            entry = LedgerEntry.from_json(done["result"])
            if case_id is None or entry.case_id == case_id:
                by_case.setdefault(entry.case_id, []).append(entry)
        return by_case

    async def statement(self, case_id: UUID) -> LedgerStatement:
        return statement_from_entries(case_id, self._entries(case_id).get(case_id, []))

    async def close(self) -> None:
        return None

    # -- optional: for the contract suite, `jiexu ledger import` and the demo --------------------

    async def put_account(self, account: PersonAccount) -> None:
        async with self._lock:
            books = json.loads(json.dumps(self._books))
            books["accounts"][account.id_number] = _account_to_json(account)
            self._commit(books)

    async def statements(self) -> list[LedgerStatement]:
        by_case = self._entries()
        return [statement_from_entries(cid, by_case[cid]) for cid in sorted(by_case, key=str)]

    def _sum_ops(self, op: LedgerOperation) -> int:
        return sum(
            done["result"]["amount_fen"]
            for done in self._books["operations"].values()
            if done["result"]["operation"] == op
        )

    async def total_balance_fen(self) -> int:
        return sum(a["balance_fen"] for a in self._books["accounts"].values())

    async def total_paid_out_fen(self) -> int:
        return sum(p["amount_fen"] for p in self._books["payouts"].values())

    async def total_debited_fen(self) -> int:
        return self._sum_ops("terminate_and_debit")

    async def total_credited_fen(self) -> int:
        return self._sum_ops("credit")


def open_books(context: LedgerContext) -> JsonFileLedger:
    """The factory ``JIEXU_LEDGER=ledger_adapter:open_books`` names: the agency's books in its
    data directory."""
    return JsonFileLedger(context.data_dir / "core-books.json", context.agency)
