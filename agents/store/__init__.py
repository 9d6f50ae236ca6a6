"""The store port: cases, history, outbox, inbox, held messages.

Adapters live beside it (`agents.store.sqlite`, `agents.store.postgres`); importing the port loads
no driver.
"""

from agents.store.base import (
    CaseRecord,
    CaseRole,
    ConcurrentCaseUpdate,
    DuplicateOpenCase,
    HeldMessage,
    OutboxMessage,
    Store,
    StoreError,
    StoreTransaction,
    Transition,
)
from agents.store.migrations import SCHEMA_VERSION

__all__ = [
    "SCHEMA_VERSION",
    "CaseRecord",
    "CaseRole",
    "ConcurrentCaseUpdate",
    "DuplicateOpenCase",
    "HeldMessage",
    "OutboxMessage",
    "Store",
    "StoreError",
    "StoreTransaction",
    "Transition",
]
