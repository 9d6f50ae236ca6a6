"""The reconciliation agent: both ends' books of each case compared, and totalled per pair of agencies.

`compare` and `statement_document` are pure; `ReconciliationReport` is the reconciler's store;
`Reconciler` handles its inbox and sweeps; `run_reconciler` is its composition root.
"""

from __future__ import annotations

from agents.reconcile.agent import (
    Reconciler,
    ReconcilerSettings,
    Sweeper,
    SweepOutcome,
    Transport,
    run_reconciler,
)
from agents.reconcile.compare import (
    CaseFigures,
    PairDayTotals,
    compare,
    control_totals,
    expected_from_form,
)
from agents.reconcile.report import CaseRecord, ReconciliationReport
from agents.reconcile.statements import statement_document

__all__ = [
    "CaseFigures",
    "CaseRecord",
    "PairDayTotals",
    "Reconciler",
    "ReconcilerSettings",
    "ReconciliationReport",
    "SweepOutcome",
    "Sweeper",
    "Transport",
    "compare",
    "control_totals",
    "expected_from_form",
    "run_reconciler",
    "statement_document",
]
