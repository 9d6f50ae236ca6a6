"""The store port and its adapters: cases, history, outbox, inbox, held messages."""

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
from agents.store.postgres import PostgresStore
from agents.store.sqlite import SqliteStore

__all__ = [
    "SCHEMA_VERSION",
    "CaseRecord",
    "CaseRole",
    "ConcurrentCaseUpdate",
    "DuplicateOpenCase",
    "HeldMessage",
    "OutboxMessage",
    "PostgresStore",
    "SqliteStore",
    "Store",
    "StoreError",
    "StoreTransaction",
    "Transition",
]
