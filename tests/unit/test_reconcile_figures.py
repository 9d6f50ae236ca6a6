"""The reconciler's national view: read from its report, served on its /metrics, and its result
counters agreeing with the report."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from agents.reconcile.figures import take_exchange_figures
from agents.service.figures import FiguresRefresher
from tests.unit.report_world import ReportWorld, form, open_report_world

OUT, IN, OTHER = "360400", "440300", "110000"


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[ReportWorld]:
    world = await open_report_world(tmp_path / "report.db")
    try:
        yield world
    finally:
        await world.report.close()


async def build(world: ReportWorld) -> None:
    await world.ended_case(OUT, IN, date(2026, 3, 2), 50_000, credited=50_000)
    await world.ended_case(OUT, IN, date(2026, 3, 3), 40_000, credited=41_000)  # amount differs
    await world.ended_case(OTHER, IN, date(2026, 3, 3), 10_000, credited=10_000)
    # Money sent on Monday 2 March, due five working days later (the 9th), swept on the 10th.
    await world.money_in_flight(OUT, OTHER, date(2026, 3, 2), date(2026, 3, 10), 70_000)
    # A form copy only: the receiving agency is not known yet.
    world.clock.set_date(date(2026, 3, 10))
    await world.deliver(OTHER, form(1_500), uuid.uuid4())


async def test_the_figures_give_cases_overdue_steps_and_money_per_pair(world: ReportWorld) -> None:
    await build(world)
    figures = await take_exchange_figures(world.report, world.clock)
    assert figures.taken_at == world.clock.now().timestamp()
    assert figures.outcomes == {"matched": 2, "mismatched": 1, "pending": 1, "stuck": 1}
    assert figures.mismatched_fields == {"amount": 1}
    assert figures.pair_cases == {
        (OUT, IN, "matched"): 1,
        (OUT, IN, "mismatched"): 1,
        (OTHER, IN, "matched"): 1,
        (OUT, OTHER, "in_progress"): 1,
        (OTHER, None, "in_progress"): 1,
    }
    # No completion: the receiving agency's move.
    assert figures.pair_overdue == {(OUT, OTHER, OTHER): 1}
    assert figures.pair_money_in_flight_fen == {(OUT, OTHER): 70_000, (OTHER, None): 1_500}


async def test_the_metrics_serve_the_figures_and_the_counters_agree_with_the_report(
    world: ReportWorld,
) -> None:
    await build(world)
    metrics = world.metrics
    refresher = FiguresRefresher(lambda: take_exchange_figures(world.report, world.clock))
    metrics.watch_exchange(refresher.latest)
    await refresher.refresh()
    r = metrics.registry

    def gauge(name: str, **labels: str) -> float | None:
        return r.get_sample_value(name, {"agency": "000000", **labels})

    counts = await world.report.counts()
    for outcome in ("matched", "mismatched"):
        assert gauge("jiexu_reconciliation_results_total", outcome=outcome) == counts[outcome]
        assert gauge("jiexu_reconciliation_cases", outcome=outcome) == counts[outcome]
    assert gauge("jiexu_reconciliation_differences_total", field="amount") == 1
    assert gauge("jiexu_reconciliation_mismatches", field="amount") == 1
    assert gauge("jiexu_reconciliation_cases", outcome="stuck") == counts["stuck"] == 1
    assert gauge("jiexu_exchange_cases", outgoing=OUT, receiving=IN, state="mismatched") == 1
    assert gauge("jiexu_exchange_cases", outgoing=OTHER, receiving="none", state="in_progress") == 1
    assert gauge(
        "jiexu_exchange_overdue_steps", outgoing=OUT, receiving=OTHER, whose_turn=OTHER
    ) == 1
    assert gauge("jiexu_exchange_money_in_flight_fen", outgoing=OUT, receiving=OTHER) == 70_000
    assert gauge("jiexu_figures_timestamp_seconds") == world.clock.now().timestamp()
    text = generate_latest(r).decode()
    assert (
        'jiexu_exchange_money_in_flight_fen{agency="000000",outgoing="110000",receiving="none"} 1500.0'
        in text
    )


async def test_an_empty_report_gives_zero_outcomes_and_no_pairs(world: ReportWorld) -> None:
    figures = await take_exchange_figures(world.report, world.clock)
    assert figures.outcomes == {"matched": 0, "mismatched": 0, "pending": 0, "stuck": 0}
    assert figures.pair_cases == {} and figures.pair_overdue == {}
    assert figures.pair_money_in_flight_fen == {} and figures.mismatched_fields == {}
