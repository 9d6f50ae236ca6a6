"""Running the ledger commands a decision asks for against the agency's books (`LedgerPort`)."""

from __future__ import annotations

from agents.domain.case import Credit, PayOut, TerminateAndDebit
from agents.ledger.base import LedgerEntry, LedgerPort
from agents.service.ledger_credit import run_credit

__all__ = ["run_command"]


async def run_command(ledger: LedgerPort, command: TerminateAndDebit | PayOut | Credit) -> LedgerEntry:
    """Run one ledger command against the agency's books (idempotent per case and operation)."""
    if isinstance(command, TerminateAndDebit):
        return await ledger.terminate_and_debit(
            command.case_id, command.id_number, command.amount_fen, command.retain
        )
    if isinstance(command, PayOut):
        return await ledger.pay_out(
            command.case_id,
            command.id_number,
            command.amount_fen,
            command.bank_account.model_dump(mode="json"),
        )
    return await run_credit(ledger, command)  # continuity too, if the ledger takes it
