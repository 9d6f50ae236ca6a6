"""Running a `Credit` command against the agency's ledger, continuity included where it is taken.

The port's ``credit`` gained an optional ``continuity`` keyword after agencies had written
adapters to the older signature (docs/ledger.md). The agent passes the case's decision only to a
``credit`` that declares the parameter or takes ``**kwargs``; an older adapter is called exactly as
before (and the agent says once per adapter class that its books do not record continuity).
"""

from __future__ import annotations

import inspect

import structlog

from agents.domain.case import Credit
from agents.ledger.base import LedgerEntry, LedgerPeriod, LedgerPort

__all__ = ["run_credit", "takes_continuity"]

log = structlog.get_logger(__name__)
_TOLD: set[str] = set()


def takes_continuity(ledger: LedgerPort) -> bool:
    """Whether ``ledger.credit`` accepts ``continuity=`` (by name, or through ``**kwargs``)."""
    try:
        parameters = inspect.signature(ledger.credit).parameters
    except (TypeError, ValueError):  # pragma: no cover - a callable without a signature
        return False
    return "continuity" in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    )


async def run_credit(ledger: LedgerPort, command: Credit) -> LedgerEntry:
    """``ledger.credit(...)`` for the command: periods in the ledger's type, continuity if taken."""
    periods = tuple(
        LedgerPeriod(
            from_month=p.from_month,
            to_month=p.to_month,
            region=p.region,
            insurance_type=p.insurance_type,
            months=p.months,
        )
        for p in command.periods
    )
    args = (command.case_id, command.id_number, command.months, command.deemed_months)
    if command.continuity is not None and takes_continuity(ledger):
        return await ledger.credit(
            *args,
            command.amount_fen,
            periods,
            command.insurance_type,
            name=command.name,
            gender=command.gender,
            continuity=command.continuity,
        )
    if command.continuity is not None and type(ledger).__qualname__ not in _TOLD:
        _TOLD.add(type(ledger).__qualname__)
        log.warning("ledger.continuity_not_recorded", ledger=type(ledger).__qualname__)
    return await ledger.credit(
        *args,
        command.amount_fen,
        periods,
        command.insurance_type,
        name=command.name,
        gender=command.gender,
    )
