"""The reconciliation agent: both ends' books of each case compared, and totalled per pair of agencies.

In the agency's shape:

* pure: `compare` (the two books and the form), `statement_document` (an agency's answer) and
  `reconcile_step` (`plan`: a `ReconciledCase` and one event in, the next record and the envelopes
  to queue out);
* the reconciler's store, behind the port `ReportStore` (`report_base`):
  `ReconciliationReport` (`report`), one SQLite file and one process, the default; or
  `agents.reconcile.report_postgres.PostgresReport`, a PostgreSQL schema several processes share
  (``JIEXU_DATABASE_URL``); `open_report` (`stores`) opens the one configured;
* `ReconcilerService` (`service`): one unit of work per message (inbox row, case record, outbox
  rows), and the sweep;
* `ReconcilerProcess` / `run_reconciler` / `run_reconciler_with` (`process`): the composition
  root; `agents.service.relay.OutboxRelay` publishes the report's outbox (`ReportOutbox`);
* `ReconcilerSettings` (`settings`): ``JIEXU_*`` variables or ``jiexu reconcile`` options.
"""

from __future__ import annotations

from agents.reconcile.compare import (
    CaseFigures,
    PairDayTotals,
    compare,
    control_totals,
    expected_from_form,
)
from agents.reconcile.outbox import ReportOutbox
from agents.reconcile.plan import (
    ID_NAMESPACE,
    FormCopy,
    Plan,
    Rules,
    StatementCopy,
    SweepTick,
    TerminalCopy,
    reconcile_step,
)
from agents.reconcile.process import ReconcilerProcess, Sweeper, run_reconciler, run_reconciler_with
from agents.reconcile.records import ReconciledCase, RequestRow, StoredStatement
from agents.reconcile.report import ReconciliationReport
from agents.reconcile.report_base import ReportStore
from agents.reconcile.service import ReconcilerService, SweepOutcome
from agents.reconcile.settings import ReconcilerSettings
from agents.reconcile.stores import open_report
from agents.service.statements import statement_document

__all__ = [
    "ID_NAMESPACE",
    "CaseFigures",
    "FormCopy",
    "PairDayTotals",
    "Plan",
    "ReconciledCase",
    "ReconcilerProcess",
    "ReconcilerService",
    "ReconcilerSettings",
    "ReconciliationReport",
    "ReportOutbox",
    "ReportStore",
    "RequestRow",
    "Rules",
    "StatementCopy",
    "StoredStatement",
    "SweepOutcome",
    "SweepTick",
    "Sweeper",
    "TerminalCopy",
    "compare",
    "control_totals",
    "expected_from_form",
    "open_report",
    "reconcile_step",
    "run_reconciler",
    "run_reconciler_with",
    "statement_document",
]
