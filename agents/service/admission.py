"""Who may send what, and when: the checks `AgencyService.handle` makes on a message the consumer
has verified (signature, sender = broker user), before it records anything.

A message refused here raises `ContractError`, which the consumer dead-letters with the reason
(never retried) and which rolls back the unit of work, so it leaves no inbox row behind:

* ``stale``: ``sent_at`` is older than the freshness window (``JIEXU_MESSAGE_MAX_AGE_DAYS``, 30
  days by default) or further ahead of this agency's clock than ``JIEXU_MESSAGE_MAX_AHEAD_S`` (10
  minutes). The window is also the inbox's retention: a message that old is refused whatever the
  inbox remembers, so rows older than ``max_age + max_ahead`` are pruned (`Freshness.inbox_cutoff`).
* ``wrong_sender``: a case's documents come from its counterpart only (a third agency cannot
  write into someone else's case, nor squat the id of a message the counterpart will send);
  statement requests and reconciliation traffic come from the reconciler only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from pydantic import ValidationError

from broker.directory import AgencyDirectory, UnknownAgency
from schemas.common import BankAccount
from schemas.envelope import Envelope
from schemas.errors import ContractError

__all__ = [
    "RECONCILER_TYPES",
    "Freshness",
    "check_counterpart",
    "check_reconciler",
    "directory_account",
]

log = structlog.get_logger("jiexu.agents.service.admission")

RECONCILER_TYPES = frozenset({"statement_request", "ledger_statement", "reconciliation_result"})
"""Message types only the reconciliation agent sends to an agency."""


@dataclass(frozen=True)
class Freshness:
    """How old (and how far ahead of our clock) a message's ``sent_at`` may be."""

    max_age: timedelta = timedelta(days=30)
    max_ahead: timedelta = timedelta(minutes=10)

    def check(self, envelope: Envelope, now: datetime) -> None:
        if envelope.sent_at < now - self.max_age:
            raise ContractError(
                "stale",
                f"sent_at is more than {self.max_age.days} days old (the freshness window); a "
                "message that old is refused, replayed or not",
            )
        if envelope.sent_at > now + self.max_ahead:
            raise ContractError(
                "stale",
                f"sent_at is more than {int(self.max_ahead.total_seconds())} s ahead of this "
                "agency's clock",
            )

    def inbox_cutoff(self, now: datetime) -> datetime:
        """Inbox rows handled before this can go: any copy of their message is now stale."""
        return now - self.max_age - self.max_ahead


def check_counterpart(envelope: Envelope, counterpart: str) -> None:
    """A document for a case comes from that case's counterpart and nobody else."""
    if envelope.sender != counterpart:
        raise ContractError(
            "wrong_sender",
            f"{envelope.type} from {envelope.sender} for a case whose counterpart is {counterpart}",
        )


def check_reconciler(envelope: Envelope, reconciler: str | None) -> None:
    """Statement requests and reconciliation results come from the reconciler only."""
    if reconciler is None or envelope.sender != reconciler:
        raise ContractError(
            "wrong_sender",
            f"{envelope.type} from {envelope.sender}: only the reconciliation agent "
            f"({reconciler or 'none configured'}) may send it",
        )


def directory_account(directory: AgencyDirectory, code: str | None) -> BankAccount | None:
    """An agency's bank account as the directory lists it: the only account a fund transfer pays
    (never one a message names). ``None`` when the directory has no valid one."""
    if code is None:
        return None
    try:
        return BankAccount(**directory.get(code).bank_account.model_dump())
    except UnknownAgency:
        return None
    except ValidationError:
        log.warning("directory_account_invalid", agency=code)
        return None
