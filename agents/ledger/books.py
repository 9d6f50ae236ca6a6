"""The bookkeeping rules every ledger adapter applies: pure functions, account in, account out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any
from uuid import UUID

import structlog

from agents.ledger.base import (
    InsufficientBalance,
    LedgerEntry,
    LedgerPeriod,
    PersonAccount,
    PersonNotFound,
    RelationshipEnded,
)
from schemas.common import Gender, InsuranceType

__all__ = ["apply_credit", "apply_pay_out", "apply_terminate", "warn_if_args_differ"]

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
) -> tuple[PersonAccount, LedgerEntry]:
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
    entry = LedgerEntry(
        case_id=case_id,
        operation="credit",
        id_number=id_number,
        months=months,
        deemed_months=deemed_months,
        amount_fen=amount_fen,
        balance_after_fen=updated.balance_fen,
        periods=tuple(periods),
    )
    return updated, entry


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
