"""The ledger port: an agency's books of people, months and money.

Adapters live beside it (`agents.ledger.sqlite`, `agents.ledger.postgres`); which one a process
opens is `open_ledger`'s choice (``JIEXU_LEDGER``, `agents.ledger.choice`). Importing the port
loads no driver.
"""

from agents.ledger.base import (
    Continuity,
    InsufficientBalance,
    LedgerEntry,
    LedgerOperation,
    LedgerPeriod,
    LedgerPort,
    LedgerStatement,
    Participation,
    PersonAccount,
    PersonNotFound,
    RelationshipEnded,
    SeedableLedger,
    StatementRole,
    period_months,
)
from agents.ledger.choice import LedgerConfigError, LedgerContext, open_ledger

__all__ = [
    "Continuity",
    "InsufficientBalance",
    "LedgerConfigError",
    "LedgerContext",
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
    "open_ledger",
    "period_months",
]
