"""A case's pending ledger commands, run after the commit that recorded them, and their result
committed in a second unit of work: functions of an `AgencyService` (its `handle`,
`approve_payout`, `tick` and `recover` call them through ``_drive_commands``).

Every command is idempotent per ``(case_id, operation)`` in the ledger, so running them again
after a crash (or in two replicas at once) changes the books once; the case's version lets one
commit of the result win. One command against the ledger port is `agents.service.commands`.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import structlog

from agents.domain.case import Case, LedgerApplied, LedgerRefused, case_from_data, decide
from agents.faults import crash_point
from agents.ledger.base import LedgerEntry
from agents.service.commands import run_command
from agents.store.base import CaseRecord, ConcurrentCaseUpdate
from schemas.errors import DomainRuleViolation

if TYPE_CHECKING:
    from agents.service.agency import AgencyService

__all__ = ["drive_commands", "drive_commands_safely", "run_commands"]

log = structlog.get_logger("jiexu.agents.service.ledger_commands")


async def drive_commands_safely(
    service: AgencyService, case_id: uuid.UUID, known: tuple[Case, CaseRecord] | None = None
) -> None:
    """`drive_commands`, a failure logged and left for `recover`."""
    # The message that led here is committed (and will be acked): a failure now must not
    # fail the delivery. The case stays in its pending state and `recover` runs it again.
    try:
        await service._drive_commands(case_id, known)
    except Exception as exc:
        log.warning("ledger_commands_deferred", case_id=str(case_id), error=repr(exc))


async def drive_commands(
    service: AgencyService, case_id: uuid.UUID, known: tuple[Case, CaseRecord] | None = None
) -> None:
    """Run the case's pending ledger commands, then commit their result.

    ``known``: the case and its record as this process has just committed them; they spare
    reading the case back. Its version guards the second commit: if anyone changed the case
    meanwhile, the store refuses the save, and the result is decided again on what is stored.
    """
    if known is None:
        record = await service.store.get_case(case_id)
        if record is None:
            return
        case = case_from_data(record.data)
    else:
        case, record = known
    if not case.pending_commands:
        return
    result = await run_commands(service, case)
    crash_point("after_ledger_before_commit")
    context = service._context(counterpart=case.counterpart_code)
    try:
        async with service.store.transaction() as tx:
            decision = decide(case, result, context)
            await service._save(tx, record, decision)
    except ConcurrentCaseUpdate:
        async with service.store.transaction() as tx:
            current = await tx.get_case(case_id)
            if current is None:
                return
            case = case_from_data(current.data)
            if not case.pending_commands:
                return  # another worker finished it
            decision = decide(case, result, context)
            await service._save(tx, current, decision)
    service._committed(decision)


async def run_commands(service: AgencyService, case: Case) -> LedgerApplied | LedgerRefused:
    """Run the case's pending commands in order (each timed by the agent's metrics, if any):
    every entry applied, or the refusal and the entries applied before it."""
    applied: list[LedgerEntry] = []
    for index, command in enumerate(case.pending_commands):
        if index:
            crash_point("mid_ledger_change")
        try:
            entry = await (
                run_command(service.ledger, command)
                if service.metrics is None
                else service.metrics.ledger_call(
                    command.operation, case.counterpart_code, run_command(service.ledger, command)
                )
            )
        except DomainRuleViolation as exc:
            log.warning(
                "ledger_refused", operation=command.operation, reason=exc.reason_code
            )
            return LedgerRefused(
                operation=command.operation,
                reason_code=exc.reason_code,
                text=exc.text,
                applied=tuple(applied),
            )
        applied.append(entry)
        service.stats.commands_run += 1
    return LedgerApplied(entries=tuple(applied))
