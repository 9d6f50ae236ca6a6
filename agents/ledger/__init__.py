"""The ledger port (an agency's books of people, months and money) and its adapters."""

from agents.ledger.base import (
    ContributionPeriod,
    InsufficientBalance,
    LedgerEntry,
    LedgerOperation,
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
from agents.ledger.memory import InMemoryLedger
from agents.ledger.sqlite import SqliteLedger

__all__ = [
    "ContributionPeriod",
    "InMemoryLedger",
    "InsufficientBalance",
    "LedgerEntry",
    "LedgerOperation",
    "LedgerPort",
    "LedgerStatement",
    "Participation",
    "PersonAccount",
    "PersonNotFound",
    "RelationshipEnded",
    "SeedableLedger",
    "SqliteLedger",
    "StatementRole",
    "period_months",
]
