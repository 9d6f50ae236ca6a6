"""The ledger port: an agency's books of people, months and money.

Adapters live beside it (`agents.ledger.sqlite`); importing the port loads no driver.
"""

from agents.ledger.base import (
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

__all__ = [
    "InsufficientBalance",
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
    "period_months",
]
