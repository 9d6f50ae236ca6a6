"""The reconciler's report port: what `ReconcilerService`, the relay and the views need of a store.

Two adapters satisfy it: `agents.reconcile.report.ReconciliationReport` (one SQLite file, one
process; the default) and `agents.reconcile.report_postgres.PostgresReport` (a PostgreSQL schema
that several ``jiexu reconcile`` processes share). `agents.reconcile.stores.open_report` picks one.
The same tests run on both (tests/integration/test_report_contract.py).

`ReportQueries` holds what both derive from their queries alone (the ``--report`` summary, the
control totals, the overdue view), so the adapters implement the queries and nothing more.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol
from uuid import UUID

from agents.reconcile.compare import PairDayTotals, control_totals
from agents.reconcile.records import CaseStatus, ReconciledCase, RequestRow
from schemas.envelope import Envelope
from schemas.reconciliation import ReconciliationResultV1

__all__ = ["QueuedEnvelope", "ReportQueries", "ReportStore", "ReportStoreTransaction"]


@dataclass(frozen=True)
class QueuedEnvelope:
    """An outbox row not yet sent: its position, the envelope (unsigned) and when it was queued.
    ``claims``: how often a relay had claimed it before (more than 0: it may have been sent)."""

    seq: int
    envelope: Envelope
    created_at: datetime
    claims: int = 0


class ReportStoreTransaction(Protocol):
    """One unit of work: the handled message, the case it changed, requests and envelopes."""

    async def mark_handled(
        self, envelope: Envelope, at: datetime, *, republished: bool = False
    ) -> bool:
        """Record ``envelope`` as handled; False when (sender, message id) already was (then the
        message is a duplicate and the unit of work must change nothing). ``republished``: the
        copy came marked ``x-jiexu-republished`` (`ReportStore.handled_republished`)."""
        ...

    async def load(self, case_id: UUID) -> ReconciledCase | None:
        """The case's record, held by this unit of work until it ends: no other one loads the
        same case meanwhile (not even one about to create it)."""
        ...

    async def save(self, record: ReconciledCase, at: datetime) -> None: ...

    async def request(self, message_id: UUID) -> RequestRow | None: ...

    async def add_request(self, row: RequestRow) -> None: ...

    async def enqueue(self, envelope: Envelope, at: datetime) -> bool:
        """Queue an envelope to publish; False if one with its message id is already queued."""
        ...


class ReportStore(Protocol):
    """The reconciler's store."""

    def transaction(self) -> AbstractAsyncContextManager[ReportStoreTransaction]: ...

    async def close(self) -> None: ...

    async def schema_version(self) -> int: ...

    async def handled(self, sender: str, message_id: UUID) -> bool: ...

    async def handled_republished(self, sender: str, message_id: UUID) -> bool:
        """Whether the copy handled came marked republished: a later unmarked copy is its stale
        original (a lost confirm), acked, not dead-lettered as a replay."""
        ...

    async def prune_inbox(self, before: datetime) -> int: ...

    async def queued(self, limit: int) -> list[QueuedEnvelope]: ...

    async def claim_queued(
        self, claimant: str, *, limit: int = 100, lease_s: float = 30.0
    ) -> list[QueuedEnvelope]:
        """The oldest unsent envelopes nobody else holds, now held by ``claimant`` for
        ``lease_s`` seconds (or until it claims again)."""
        ...

    async def mark_sent_seqs(self, seqs: Sequence[int], at: datetime) -> None: ...

    async def outbox(self, case_id: UUID | None = None) -> list[tuple[Envelope, bool]]: ...

    async def case(self, case_id: UUID) -> ReconciledCase | None: ...

    async def cases(self, status: CaseStatus | None = None) -> list[ReconciledCase]: ...

    async def open_cases(self) -> list[ReconciledCase]: ...

    async def open_cases_started_before(
        self, day: date, *, after: UUID | None = None, limit: int = 500
    ) -> list[ReconciledCase]: ...

    async def pending_cases(self) -> list[ReconciledCase]: ...

    async def stuck_cases(self) -> list[ReconciledCase]: ...

    async def latest_mismatches(self, limit: int = 20) -> list[ReconciledCase]: ...

    async def counts(self) -> dict[str, int]: ...

    async def pair_states(self) -> dict[tuple[str | None, str | None, str], int]: ...

    async def mismatched_fields(self) -> dict[str, int]: ...

    async def money_in_flight(self) -> dict[tuple[str | None, str | None], int]: ...

    async def overdue_by_turn(self) -> dict[tuple[str | None, str | None, str | None], int]: ...

    async def control_totals(self, day: date | None = None) -> list[PairDayTotals]: ...

    async def summary(self, limit: int = 20) -> dict[str, Any]: ...


class ReportQueries:
    """What the adapters derive from their own queries (mixed into both)."""

    async def cases(self, status: CaseStatus | None = None) -> list[ReconciledCase]:
        raise NotImplementedError

    async def stuck_cases(self) -> list[ReconciledCase]:
        raise NotImplementedError

    async def latest_mismatches(self, limit: int = 20) -> list[ReconciledCase]:
        raise NotImplementedError

    async def counts(self) -> dict[str, int]:
        raise NotImplementedError

    async def reconciled(self, day: date | None) -> list[ReconciledCase]:
        """The cases with a result (that ended on ``day``)."""
        raise NotImplementedError

    async def open_cases(self) -> list[ReconciledCase]:
        """Cases without a published result: waiting for a terminal notice, statements or a form."""
        return await self.cases("open")

    async def pending_cases(self) -> list[ReconciledCase]:
        """Open cases that are not (yet) past their due date."""
        return [case for case in await self.open_cases() if not case.stuck]

    async def overdue_by_turn(self) -> dict[tuple[str | None, str | None, str | None], int]:
        """Stuck cases (flagged by the last sweep) per (outgoing, receiving, whose turn)
        (`ReconciledCase.waiting_for`)."""
        found: dict[tuple[str | None, str | None, str | None], int] = {}
        for case in await self.stuck_cases():
            key = (case.outgoing, case.receiving, case.waiting_for)
            found[key] = found.get(key, 0) + 1
        return found

    async def control_totals(self, day: date | None = None) -> list[PairDayTotals]:
        """Per (day, outgoing, receiving): what left one end and what arrived at the other, over
        the reconciled cases (``day`` is the day the case ended, Asia/Shanghai)."""
        figures = []
        for record in await self.reconciled(day):
            item = record.figures()
            if item is not None:
                figures.append(item)
        return control_totals(figures)

    async def summary(self, limit: int = 20) -> dict[str, Any]:
        """Everything ``jiexu reconcile --report`` shows, as JSON-ready values."""

        def differences(result: ReconciliationResultV1 | None) -> list[dict[str, Any]]:
            return [d.model_dump(mode="json") for d in result.differences] if result else []

        return {
            "counts": await self.counts(),
            "control_totals": [
                {
                    "day": t.day.isoformat(),
                    "outgoing": t.outgoing,
                    "receiving": t.receiving,
                    "cases": t.cases,
                    "matched": t.matched,
                    "mismatched": t.mismatched,
                    "amount_out_fen": t.amount_out,
                    "amount_in_fen": t.amount_in,
                    "months_out": t.months_out,
                    "months_in": t.months_in,
                    "deemed_out": t.deemed_out,
                    "deemed_in": t.deemed_in,
                    "paid_out_fen": t.paid_out,
                    "retained_fen": t.retained,
                    "balanced": t.balanced,
                }
                for t in await self.control_totals()
            ],
            "mismatches": [
                {
                    "case_id": str(case.case_id),
                    "outgoing": case.outgoing,
                    "receiving": case.receiving,
                    "day": case.day.isoformat() if case.day else None,
                    "terminal": case.terminal,
                    "rejection_reason": case.rejection_reason,
                    "differences": differences(case.result),
                }
                for case in await self.latest_mismatches(limit)
            ],
            "stuck": [
                {
                    "case_id": str(case.case_id),
                    "outgoing": case.outgoing,
                    "receiving": case.receiving,
                    "overdue_since": case.overdue_since.isoformat() if case.overdue_since else None,
                    "terminal": case.terminal,
                    "amount_in_flight_fen": case.form.amount_transferred if case.form else None,
                    "probe_differences": differences(case.probe_result),
                }
                for case in await self.stuck_cases()
            ],
        }


def by_overdue(records: list[ReconciledCase]) -> list[ReconciledCase]:
    """Oldest overdue first (then by case id)."""
    return sorted(records, key=lambda case: (case.overdue_since or date.min, str(case.case_id)))
