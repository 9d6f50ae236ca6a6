"""The reconciler's national view: `ExchangeFigures` read from its report, for ``/metrics``.

Every case's copies reach the reconciler (the outgoing agency's form, the completion or the
rejection, both ends' ledger statements), so its report knows the exchange across agencies.
`take_exchange_figures` reads it in a few grouped queries; the process runs it in a
`agents.service.figures.FiguresRefresher` (every ``figures_interval_s`` seconds, 15 by default) and
`agents.service.metrics.ReconcilerMetrics.watch_exchange` serves the latest figures:

* ``jiexu_reconciliation_cases{outcome}``: ``matched``, ``mismatched``, ``pending`` (open, on
  time) and ``stuck`` (open, flagged past its due date by the last sweep); they add up to every
  case the reconciler knows;
* ``jiexu_reconciliation_mismatches{field}``: cases mismatched now, by each differing field;
* ``jiexu_exchange_cases{outgoing, receiving, state}``: see
  `agents.reconcile.report.ReconciliationReport.pair_states`;
* ``jiexu_exchange_overdue_steps{outgoing, receiving, whose_turn}``: the stuck cases, by
  `agents.reconcile.records.ReconciledCase.waiting_for`;
* ``jiexu_exchange_money_in_flight_fen{outgoing, receiving}``: the amount of each open case's
  form copy until its terminal notice arrives.

An agency not known yet is exported as ``none`` (the form copy does not name the receiving
agency; the reconciler learns it from the terminal notice or a statement).
"""

from __future__ import annotations

from agents.domain.clock import Clock, SystemClock
from agents.reconcile.report_base import ReportStore
from agents.service.metrics import ExchangeFigures

__all__ = ["outcomes", "take_exchange_figures"]


def outcomes(counts: dict[str, int]) -> dict[str, int]:
    """`ReconciliationReport.counts` as a partition: ``pending`` and ``stuck`` split ``open``."""
    return {
        "matched": counts.get("matched", 0),
        "mismatched": counts.get("mismatched", 0),
        "pending": counts.get("open", 0) - counts.get("stuck", 0),
        "stuck": counts.get("stuck", 0),
    }


async def take_exchange_figures(
    report: ReportStore, clock: Clock | None = None
) -> ExchangeFigures:
    """The figures the reconciler's gauges export, read from ``report`` now."""
    taken_at = (clock or SystemClock()).now().timestamp()
    return ExchangeFigures(
        taken_at=taken_at,
        outcomes=outcomes(await report.counts()),
        mismatched_fields=await report.mismatched_fields(),
        pair_cases=await report.pair_states(),
        pair_overdue=await report.overdue_by_turn(),
        pair_money_in_flight_fen=await report.money_in_flight(),
    )
