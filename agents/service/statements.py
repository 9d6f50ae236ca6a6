"""The ledger statement an agency sends in answer to the reconciler's statement request: pure.

The agency side of reconciliation (`AgencyService` answers statement requests with it); the
reconciler re-exports it for tests that play an agency."""

from __future__ import annotations

from uuid import UUID

from agents.ledger.base import LedgerStatement
from schemas.reconciliation import LedgerStatementV1, Role

__all__ = ["statement_document"]


def statement_document(
    case_id: UUID,
    ledger_statement: LedgerStatement,
    counterpart: str,
    *,
    role: Role | str | None = None,
) -> LedgerStatementV1:
    """What this agency's books say about ``case_id``, as a ``ledger_statement`` document.

    ``ledger_statement`` is ``await ledger.statement(case_id)``; ``counterpart`` is the other
    agency of the case. The books decide the role when they hold the case; ``role`` (this agency's
    side of the case, from its case store) is used only when they do not, giving a statement with
    ``has_record`` false and every number 0. Books that hold the case on the other side than
    ``role`` say so: the statement carries the books' role, and the reconciler reports it.
    """
    if ledger_statement.case_id != case_id:
        raise ValueError(f"statement of case {ledger_statement.case_id} is not for case {case_id}")
    if ledger_statement.role == "outgoing":
        return LedgerStatementV1(
            case_id=case_id,
            role=Role.OUTGOING,
            counterpart=counterpart,
            has_record=True,
            months=ledger_statement.months_certified,
            deemed_months=ledger_statement.deemed_certified,
            amount=ledger_statement.amount_debited_fen,
            paid_out=ledger_statement.paid_out_fen,
            retained=ledger_statement.retained_fen,
        )
    if ledger_statement.role == "receiving":
        return LedgerStatementV1(
            case_id=case_id,
            role=Role.RECEIVING,
            counterpart=counterpart,
            has_record=True,
            months=ledger_statement.months_credited,
            deemed_months=ledger_statement.deemed_credited,
            amount=ledger_statement.amount_credited_fen,
            paid_out=0,
            retained=0,
        )
    if role is None:
        raise ValueError(
            f"the books hold nothing for case {case_id}: pass this agency's role in the case"
        )
    return LedgerStatementV1(
        case_id=case_id,
        role=Role(role),
        counterpart=counterpart,
        has_record=False,
        months=0,
        deemed_months=0,
        amount=0,
        paid_out=0,
        retained=0,
    )
