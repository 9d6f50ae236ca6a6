"""What the reconciler keeps about a case: `ReconciledCase` and its parts, plain values.

A `ReconciledCase` is stored whole, as JSON, in the report's ``cases`` table
(`agents.reconcile.report`); `agents.reconcile.plan` computes the next one from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from agents.reconcile.compare import CaseFigures, figures_of
from schemas.information import InformationFormV2
from schemas.reconciliation import (
    LedgerStatementV1,
    ReconciliationOutcome,
    ReconciliationResultV1,
    Role,
)

__all__ = [
    "CaseStatus",
    "FormClaim",
    "Purpose",
    "ReconciledCase",
    "RequestRow",
    "StoredStatement",
    "Terminal",
]

Terminal = Literal["transfer_completed", "rejection"]
Purpose = Literal["final", "probe"]
CaseStatus = Literal["open", "matched", "mismatched"]


class StoredStatement(BaseModel):
    """A ledger statement as received; ``final`` when it answers a request made after the case
    ended (only those are compared for the published result)."""

    model_config = ConfigDict(extra="forbid")

    statement: LedgerStatementV1
    final: bool
    message_id: UUID
    received_at: datetime


class FormClaim(BaseModel):
    """An information form copy as one agency sent it (only the case's outgoing agency's counts)."""

    model_config = ConfigDict(extra="forbid")

    form: InformationFormV2
    sent_on: date


class ReconciledCase(BaseModel):
    """Everything the reconciler knows about one case."""

    model_config = ConfigDict(extra="forbid", validate_assignment=False)

    case_id: UUID
    first_seen: datetime
    outgoing: str | None = None
    receiving: str | None = None
    confirmed: bool = False
    """``outgoing`` and ``receiving`` corroborated by both: each one's signed statement names the
    other as its counterpart, in the role the other claimed. Until then they are provisional (the
    one agency claiming the role, None when several do) and nothing is compared."""
    parties: list[str] = Field(default_factory=list, description="Every agency known in the case.")
    claims: dict[str, Role] = Field(
        default_factory=dict, description="The role each agency claimed for itself, signed."
    )
    counterparts: dict[str, str] = Field(
        default_factory=dict, description="The counterpart each agency's statement names."
    )
    form_claims: dict[str, FormClaim] = Field(
        default_factory=dict, description="Form copies by sender; the outgoing one's is `form`."
    )
    form: InformationFormV2 | None = None
    form_sent_on: date | None = None
    terminal: Terminal | None = None
    terminal_by: str | None = None
    terminal_on: date | None = None
    rejection_reason: str | None = None
    statements: dict[str, StoredStatement] = Field(default_factory=dict)
    final_round: int = 0
    final_asked: list[str] = Field(default_factory=list)
    probe_round: int = 0
    probe_asked: list[str] = Field(default_factory=list)
    last_request_on: date | None = None
    form_wait_over: bool = False
    result: ReconciliationResultV1 | None = None
    checked_at: datetime | None = None
    day: date | None = None
    probe_result: ReconciliationResultV1 | None = None
    overdue_since: date | None = None

    @property
    def status(self) -> CaseStatus:
        if self.result is None:
            return "open"
        return "matched" if self.result.outcome is ReconciliationOutcome.MATCHED else "mismatched"

    @property
    def stuck(self) -> bool:
        """Past its due date with no terminal notice (money in flight), or with no result yet."""
        return self.overdue_since is not None and self.result is None

    @property
    def waiting_for(self) -> str | None:
        """Whose move an open case waits for (None when reconciled, or when that agency is not
        known yet): with no terminal notice, the receiving agency's (it holds the money the form
        announced, and owes the credit and the completion notice); once ended, the first of the
        outgoing and the receiving agency whose final statement is missing; the outgoing agency's
        when only its form copy is."""
        if self.result is not None:
            return None
        if self.terminal is None:
            return self.receiving
        for code in (self.outgoing, self.receiving):
            if code is None or self.statement_of(code) is None:
                return code
        return self.outgoing

    def statement_of(self, agency: str | None, *, final: bool = True) -> LedgerStatementV1 | None:
        if agency is None:
            return None
        stored = self.statements.get(agency)
        if stored is None or (final and not stored.final):
            return None
        return stored.statement

    def figures(self) -> CaseFigures | None:
        if self.result is None or self.day is None:
            return None
        return figures_of(
            self.case_id,
            self.day,
            self.result,
            self.statement_of(self.result.outgoing),
            self.statement_of(self.result.receiving),
        )




@dataclass(frozen=True)
class RequestRow:
    """A statement request the reconciler sent: whom, for which round of which purpose."""

    message_id: UUID
    case_id: UUID
    recipient: str
    purpose: Purpose
    round: int
