"""The rounds an agency agent runs besides the messages: the deadline round (`AgencyService.tick`)
and, at start, the recovery of ledger commands a crash left pending (`AgencyService.recover`).

Functions of an `AgencyService`, which delegates both methods here; every replica runs them, and
the case row's version (and the ledger's idempotency) lets one of them change each case.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import structlog

from agents.domain.case import State, Tick, case_from_data, decide
from agents.store.base import ConcurrentCaseUpdate

if TYPE_CHECKING:
    from agents.service.agency import AgencyService

__all__ = ["recover", "tick"]

log = structlog.get_logger("jiexu.agents.service.rounds")

_PENDING_STATES = frozenset({State.RELEASING, State.CREDITING})


async def tick(service: AgencyService) -> int:
    """Every open case past its due date gets a `Tick` (reminders, notes), then the inbox is
    pruned. Returns the number of cases ticked."""
    today = service.clock.today()
    ticked = 0
    for record in await service.store.cases_due_before(today):
        ticked += 1
        try:  # every replica ticks: the case row lock and version let one remind
            async with service.store.transaction() as tx:
                current = await tx.get_case(record.case_id)
                if current is None or not current.open:
                    continue
                decision = decide(case_from_data(current.data), Tick(today=today), service._context())
                saved = await service._commit(tx, current, decision)
        except ConcurrentCaseUpdate:
            continue  # changed meanwhile; the next round ticks what is stored then
        reminders = sum(1 for m in decision.messages if m.document.MESSAGE_TYPE == "reminder")
        service.stats.reminders += reminders
        if service.metrics is not None:
            service.metrics.reminders_sent(reminders)
        service._committed(decision)
        if saved is not None and saved.pending_commands:
            await service._drive_commands_safely(saved.case_id)
    # Inbox retention follows from the freshness window (see `agents.service.admission`).
    pruned = await service.store.prune_inbox(service.freshness.inbox_cutoff(service.clock.now()))
    if pruned:
        log.info("inbox_pruned", rows=pruned)
    return ticked


async def recover(service: AgencyService) -> int:
    """Drive the ledger commands of every open case in a pending state but those changed within
    ``recover_grace_s``. Returns the number of cases driven."""
    settled = service.clock.now() - timedelta(seconds=service.recover_grace_s)
    pending = [
        record.case_id
        for record in await service.store.list_cases(
            open_only=True, states=sorted(state.value for state in _PENDING_STATES)
        )
        if not service.recover_grace_s or record.updated_at <= settled
    ]
    for case_id in pending:
        await service._drive_commands_safely(case_id)
    if pending:
        log.info("pending_commands_recovered", cases=len(pending))
    return len(pending)
