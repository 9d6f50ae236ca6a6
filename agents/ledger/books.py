"""The bookkeeping rules every ledger adapter applies: pure functions, account in, account out.

`credit_args` builds the arguments a credit's idempotency record keeps (the same dict in every
adapter, so a replay with other arguments is noticed alike); a credit without a continuity
decision has no ``continuity`` key, as records written before the port took it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any
from uuid import UUID

import structlog

from agents.domain.books import continuity_to_json
from agents.domain.continuity import Continuity
from agents.ledger.base import (
    InsufficientBalance,
    LedgerEntry,
    LedgerOperation,
    LedgerPeriod,
    PersonAccount,
    PersonNotFound,
    RelationshipEnded,
)
from schemas.common import Gender, InsuranceType

__all__ = [
    "BookkeepingCommands",
    "apply_credit",
    "apply_pay_out",
    "apply_terminate",
    "credit_args",
    "warn_if_args_differ",
]

log = structlog.get_logger(__name__)


def _non_negative(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be a non-negative int (fen or months), not {value!r}")


def apply_terminate(
    account: PersonAccount | None, case_id: UUID, amount_fen: int, retain: bool
) -> tuple[PersonAccount, LedgerEntry]:
    _non_negative("amount_fen", amount_fen)
    if account is None:
        raise PersonNotFound()
    if retain and amount_fen != 0:
        raise ValueError("with retain=True the balance stays here: amount_fen must be 0")
    if not account.enrolled:
        raise RelationshipEnded()
    if amount_fen > account.balance_fen:
        raise InsufficientBalance(account.balance_fen, amount_fen)
    balance_after = account.balance_fen - amount_fen
    entry = LedgerEntry(
        case_id=case_id,
        operation="terminate_and_debit",
        id_number=account.id_number,
        months=account.months_paid,
        deemed_months=account.deemed_months,
        amount_fen=amount_fen,
        retained_fen=account.balance_fen if retain else 0,
        balance_after_fen=balance_after,
        periods=account.periods,
    )
    updated = replace(
        account,
        enrolled=False,
        participation="stopped",
        months_paid=0,
        deemed_months=0,
        periods=(),
        balance_fen=balance_after,
        # The participation here has ended: its start and the continuity decided for it with it.
        enrolment_start=None,
        continuity=None,
    )
    return updated, entry


def apply_credit(
    account: PersonAccount | None,
    case_id: UUID,
    id_number: str,
    months: int,
    deemed_months: int,
    amount_fen: int,
    periods: Sequence[LedgerPeriod],
    insurance_type: InsuranceType,
    *,
    region: str,
    name: str | None,
    gender: Gender | None,
    continuity: Continuity | None = None,
) -> tuple[PersonAccount, LedgerEntry]:
    """Add what the credit brings. With ``continuity`` the account records that decision (replacing
    an earlier one) and, if the books had no enrolment start, the month the decision used."""
    _non_negative("months", months)
    _non_negative("deemed_months", deemed_months)
    _non_negative("amount_fen", amount_fen)
    if account is None:
        if name is None or gender is None:
            raise PersonNotFound()
        account = PersonAccount(
            id_number=id_number,
            name=name,
            gender=gender,
            insurance_type=insurance_type,
            enrolled=True,
            participation="active",
            region=region,
        )
    updated = replace(
        account,
        enrolled=True,
        participation="active",
        months_paid=account.months_paid + months,
        deemed_months=account.deemed_months + deemed_months,
        balance_fen=account.balance_fen + amount_fen,
        periods=tuple(sorted((*account.periods, *periods), key=lambda p: p.from_month)),
    )
    if continuity is not None:
        updated = replace(
            updated,
            continuity=continuity,
            enrolment_start=updated.enrolment_start or continuity.enrolment_start,
        )
    entry = LedgerEntry(
        case_id=case_id,
        operation="credit",
        id_number=id_number,
        months=months,
        deemed_months=deemed_months,
        amount_fen=amount_fen,
        balance_after_fen=updated.balance_fen,
        periods=tuple(periods),
        continuity=continuity,
    )
    return updated, entry


def credit_args(
    id_number: str,
    months: int,
    deemed_months: int,
    amount_fen: int,
    periods: Sequence[LedgerPeriod],
    insurance_type: InsuranceType,
    continuity: Continuity | None = None,
) -> dict[str, Any]:
    """The arguments of a credit as its idempotency record keeps them (JSON)."""
    args: dict[str, Any] = {
        "id_number": id_number,
        "months": months,
        "deemed_months": deemed_months,
        "amount_fen": amount_fen,
        "periods": [p.to_json() for p in periods],
        "insurance_type": insurance_type.value,
    }
    if continuity is not None:
        args["continuity"] = continuity_to_json(continuity)
    return args


def apply_pay_out(
    account: PersonAccount | None, case_id: UUID, amount_fen: int
) -> tuple[PersonAccount, LedgerEntry]:
    _non_negative("amount_fen", amount_fen)
    if account is None:
        raise PersonNotFound()
    if amount_fen > account.balance_fen:
        raise InsufficientBalance(account.balance_fen, amount_fen)
    updated = replace(account, balance_fen=account.balance_fen - amount_fen)
    entry = LedgerEntry(
        case_id=case_id,
        operation="pay_out",
        id_number=account.id_number,
        amount_fen=amount_fen,
        balance_after_fen=updated.balance_fen,
    )
    return updated, entry


def warn_if_args_differ(
    entry: LedgerEntry, first_args: Mapping[str, Any], args: Mapping[str, Any]
) -> None:
    """A replay with other arguments is a bug upstream: keep the first result, say so loudly."""
    if dict(first_args) != dict(args):
        log.warning(
            "ledger.replay_with_different_arguments",
            case_id=str(entry.case_id),
            operation=entry.operation,
            first=dict(first_args),
            now=dict(args),
        )


class BookkeepingCommands:
    """`terminate_and_debit` and `credit` of the reference ledgers, written once: an adapter gives
    `_run`, which applies one rule to a person's account and records its idempotency row, in one
    transaction of its store (`SqliteLedger`, `PostgresLedger`)."""

    region: str

    async def _run(
        self,
        case_id: UUID,
        op: LedgerOperation,
        id_number: str,
        args: dict[str, Any],
        apply: Callable[[PersonAccount | None], tuple[PersonAccount, LedgerEntry]],
    ) -> LedgerEntry:
        raise NotImplementedError

    async def terminate_and_debit(
        self, case_id: UUID, id_number: str, amount_fen: int, retain: bool = False
    ) -> LedgerEntry:
        return await self._run(
            case_id,
            "terminate_and_debit",
            id_number,
            {"id_number": id_number, "amount_fen": amount_fen, "retain": retain},
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
        return await self._run(
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

