"""The metrics of an agent and of the reconciler: names, labels, and the store-derived gauges."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Collection, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from agents.domain.case import Booked, Case, ReceivedFunds
from agents.domain.clock import ManualClock
from agents.service.figures import FiguresRefresher, in_flight_fen, take_store_figures
from agents.service.metrics import (
    AgentMetrics,
    ExchangeFigures,
    ReconcilerMetrics,
    StoreFigures,
    contracts_label,
)
from agents.store.base import CaseRecord, HeldMessage, OutboxMessage
from broker.metrics import TransportMetrics, message_type_label, reason_label
from schemas.funds import FundTransferV1
from schemas.registry import message_types

A = "110000"
B = "320100"
NOW = datetime(2027, 3, 10, 2, 0, tzinfo=UTC)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_transport_counts_by_type_and_reason_and_never_by_what_a_sender_chose() -> None:
    registry = CollectorRegistry()
    t = TransportMetrics(registry, A)
    t.message_received("contact_letter")
    t.message_received(None)
    t.message_handled("contact_letter", 0.02)
    t.message_handled("contact_letter", 0.2)
    t.retried("fund_transfer")
    t.duplicate("fund_transfer")
    t.dead_lettered("made_up_type_" + "x" * 50, "bad_signature")
    t.dead_lettered("fund_transfer", "Not A Code!")
    t.requeued()
    assert value(registry, "jiexu_messages_received_total", agency=A, type="contact_letter") == 1
    assert value(registry, "jiexu_messages_received_total", agency=A, type="unknown") == 1
    assert value(registry, "jiexu_messages_handled_total", agency=A, type="contact_letter") == 2
    assert value(registry, "jiexu_handler_duration_seconds_count", agency=A, type="contact_letter") == 2
    assert value(registry, "jiexu_handler_duration_seconds_sum", agency=A, type="contact_letter") == (
        pytest.approx(0.22)
    )
    assert value(registry, "jiexu_messages_retried_total", agency=A, type="fund_transfer") == 1
    assert value(registry, "jiexu_messages_duplicate_total", agency=A, type="fund_transfer") == 1
    assert value(
        registry, "jiexu_messages_dead_lettered_total", agency=A, type="unknown", reason="bad_signature"
    ) == 1
    assert value(
        registry, "jiexu_messages_dead_lettered_total", agency=A, type="fund_transfer", reason="other"
    ) == 1
    assert value(registry, "jiexu_messages_requeued_total", agency=A) == 1


def test_labels_are_bounded() -> None:
    assert {message_type_label(t) for t in message_types()} == set(message_types())
    assert message_type_label("DROP TABLE") == "unknown"
    assert message_type_label(None) == "unknown"
    assert reason_label("handler_failed") == "handler_failed"
    assert reason_label("x" * 41) == "other"


def test_connection_gauge_and_reconnections() -> None:
    registry = CollectorRegistry()
    t = TransportMetrics(registry, A)
    t.connection_up(True)
    assert value(registry, "jiexu_broker_connection_up", agency=A) == 1
    t.connection_up(False)
    t.reconnected()
    t.connection_up(True)
    assert value(registry, "jiexu_broker_connection_up", agency=A) == 1
    assert value(registry, "jiexu_broker_reconnections_total", agency=A) == 1


def test_agent_metrics_each_process_its_own_registry() -> None:
    one, two = AgentMetrics(A), AgentMetrics(A)
    one.transport.message_received("receipt")
    assert value(one.registry, "jiexu_messages_received_total", agency=A, type="receipt") == 1
    assert value(two.registry, "jiexu_messages_received_total", agency=A, type="receipt") is None
    one.ledger_command("credit", 0.5)
    one.ledger_command("terminate_and_debit", 1.5, outcome="refused")
    one.ledger_command("invented", 1.0, outcome="weird")
    one.published("information_form", 3)
    one.publish_failed()
    one.reminders_sent(2)
    one.reminders_sent(0)
    one.months_certified(B, 36)
    one.months_credited(B, 12)
    one.figures_refresh_failed()
    r = one.registry
    assert value(r, "jiexu_ledger_command_duration_seconds_count",
                 agency=A, operation="credit", outcome="applied") == 1
    assert value(r, "jiexu_ledger_command_duration_seconds_count",
                 agency=A, operation="terminate_and_debit", outcome="refused") == 1
    assert value(r, "jiexu_ledger_command_duration_seconds_count",
                 agency=A, operation="other", outcome="other") == 1
    assert value(r, "jiexu_outbox_published_total", agency=A, type="information_form") == 3
    assert value(r, "jiexu_outbox_publish_failures_total", agency=A) == 1
    assert value(r, "jiexu_reminders_sent_total", agency=A) == 2
    assert value(r, "jiexu_months_certified_total", agency=A, counterpart=B) == 36
    assert value(r, "jiexu_months_credited_total", agency=A, counterpart=B) == 12
    assert value(r, "jiexu_figures_refresh_failures_total", agency=A) == 1


def test_build_info_names_the_version_and_every_contract() -> None:
    metrics = AgentMetrics(A)
    text = generate_latest(metrics.registry).decode()
    line = next(x for x in text.splitlines() if x.startswith("jiexu_build_info{"))
    assert line.endswith(" 1.0")
    assert f'contracts="{contracts_label()}"' in line
    for message_type in message_types():
        assert f"{message_type}=" in contracts_label()
    assert "contact_letter=1,2" in contracts_label()


def test_store_gauges_serve_the_latest_figures_and_nothing_before_the_first() -> None:
    metrics = AgentMetrics(A)
    latest: list[StoreFigures | None] = [None]
    metrics.watch_store(lambda: latest[0])
    metrics.watch_store(lambda: latest[0])  # once only
    r = metrics.registry
    assert "jiexu_open_cases" in generate_latest(r).decode()  # the family, without samples
    assert value(r, "jiexu_outbox_unpublished_messages", agency=A) is None
    latest[0] = StoreFigures(
        taken_at=NOW.timestamp(),
        cases={"completed": 4, "awaiting_form": 2},
        open_cases={("receiving", "awaiting_form"): 2},
        overdue={("receiving", B): 1, ("outgoing", None): 3},
        money_in_flight_fen={"outgoing": 150_00, "receiving": 0},
        outbox_unpublished=7,
        outbox_oldest_created_at=0.0,
        held_messages=1,
    )
    assert value(r, "jiexu_cases", agency=A, state="completed") == 4
    assert value(r, "jiexu_open_cases", agency=A, role="receiving", state="awaiting_form") == 2
    assert value(r, "jiexu_overdue_steps", agency=A, role="receiving", whose_turn=B) == 1
    assert value(r, "jiexu_overdue_steps", agency=A, role="outgoing", whose_turn="none") == 3
    assert value(r, "jiexu_money_in_flight_fen", agency=A, role="outgoing") == 15000
    assert value(r, "jiexu_outbox_unpublished_messages", agency=A) == 7
    age = value(r, "jiexu_outbox_oldest_unpublished_age_seconds", agency=A)
    assert age is not None and age > 1e9  # created at the epoch: aged at scrape time
    assert value(r, "jiexu_held_messages", agency=A) == 1
    assert value(r, "jiexu_figures_timestamp_seconds", agency=A) == NOW.timestamp()


def test_reconciler_counts_results_and_serves_the_exchange_view() -> None:
    metrics = ReconcilerMetrics()
    metrics.reconciled("matched")
    metrics.reconciled("mismatched", ["amount", "months"])
    metrics.watch_exchange(lambda: ExchangeFigures(
        taken_at=1.0,
        outcomes={"matched": 9, "mismatched": 1},
        mismatched_fields={"amount": 1},
        pair_cases={(A, B, "completed"): 9},
        pair_overdue={(A, B, B): 2},
        pair_money_in_flight_fen={(A, B): 500},
    ))
    r = metrics.registry
    a = "000000"
    assert value(r, "jiexu_reconciliation_results_total", agency=a, outcome="mismatched") == 1
    assert value(r, "jiexu_reconciliation_differences_total", agency=a, field="amount") == 1
    assert value(r, "jiexu_reconciliation_cases", agency=a, outcome="matched") == 9
    assert value(r, "jiexu_reconciliation_mismatches", agency=a, field="amount") == 1
    assert value(r, "jiexu_exchange_cases", agency=a, outgoing=A, receiving=B, state="completed") == 9
    assert value(r, "jiexu_exchange_overdue_steps", agency=a, outgoing=A, receiving=B, whose_turn=B) == 2
    assert value(r, "jiexu_exchange_money_in_flight_fen", agency=a, outgoing=A, receiving=B) == 500


# -- reading the figures from a store ---------------------------------------------------------------


def _record(role: str, state: str, *, due: date | None = None, turn: str | None = None,
            data: dict[str, Any] | None = None, open_: bool = True) -> CaseRecord:
    return CaseRecord(
        case_id=uuid.uuid4(), role=role, state=state, person_key="k", counterpart=B,  # type: ignore[arg-type]
        message_version=2, open=open_, created_at=NOW, updated_at=NOW, due_date=due,
        whose_turn=turn, data=data or {},
    )


class FigureStore:
    """Just what `take_store_figures` reads."""

    def __init__(self, cases: Sequence[CaseRecord], outbox: Sequence[OutboxMessage], held: int) -> None:
        self.cases = list(cases)
        self.outbox = list(outbox)
        self.held = held
        self.fail = False

    async def cases_by_state(self) -> dict[str, int]:
        if self.fail:
            raise ConnectionError("store down")
        counts: dict[str, int] = {}
        for c in self.cases:
            counts[c.state] = counts.get(c.state, 0) + 1
        return counts

    async def list_cases(self, *, open_only: bool = False, states: Collection[str] | None = None,
                         ) -> list[CaseRecord]:
        return [c for c in self.cases if c.open or not open_only]

    async def fetch_unpublished(self, limit: int = 100) -> list[OutboxMessage]:
        return self.outbox[:limit]

    async def held_messages(self) -> list[HeldMessage]:
        return [HeldMessage(case_id=uuid.uuid4(), message_id=uuid.uuid4(), body=b"", reason="r",
                            held_at=NOW)] * self.held


def test_money_in_flight_reads_the_case_snapshot_fields_the_model_has() -> None:
    # The figures read two numbers from the case JSON without validating it: keep the names honest.
    assert {"booked", "funds"} <= set(Case.model_fields)
    assert "amount_fen" in Booked.model_fields
    assert "transfer" in ReceivedFunds.model_fields
    assert "amount" in FundTransferV1.model_fields
    outgoing = _record("outgoing", "awaiting_completion", data={"booked": {"amount_fen": 1234}})
    receiving = _record("receiving", "awaiting_form", data={
        "booked": None, "funds": [{"transfer": {"amount": 100}}, {"transfer": {"amount": 50}}]})
    credited = _record("receiving", "crediting", data={
        "booked": {"amount_fen": 150}, "funds": [{"transfer": {"amount": 150}}]})
    closed = _record("outgoing", "completed", data={"booked": {"amount_fen": 99}}, open_=False)
    assert [in_flight_fen(r) for r in (outgoing, receiving, credited, closed)] == [1234, 150, 0, 0]
    assert in_flight_fen(_record("outgoing", "releasing", data={"booked": None})) == 0


async def test_take_store_figures_counts_open_cases_overdue_steps_and_the_outbox() -> None:
    clock = ManualClock(NOW)
    today = clock.today()
    store = FigureStore(
        cases=[
            _record("receiving", "awaiting_form", due=today - timedelta(days=1), turn=B),
            _record("receiving", "awaiting_form", due=today, turn=B),
            _record("outgoing", "awaiting_completion", due=today - timedelta(days=3), turn=B,
                    data={"booked": {"amount_fen": 500}}),
            _record("outgoing", "releasing", due=today - timedelta(days=3), turn=A),
            _record("outgoing", "completed", open_=False),
        ],
        outbox=[
            OutboxMessage(message_id=uuid.uuid4(), recipient=B, message_type="receipt",
                          routing_key="k", body=b"", created_at=NOW - timedelta(minutes=m), id=i)
            for i, m in enumerate((3, 9, 1), start=1)
        ],
        held=2,
    )
    figures = await take_store_figures(store, clock)  # type: ignore[arg-type]
    assert figures.cases == {"awaiting_form": 2, "awaiting_completion": 1, "releasing": 1, "completed": 1}
    assert figures.open_cases == {
        ("receiving", "awaiting_form"): 2, ("outgoing", "awaiting_completion"): 1,
        ("outgoing", "releasing"): 1,
    }
    assert figures.overdue == {("receiving", B): 1, ("outgoing", B): 1, ("outgoing", A): 1}
    assert figures.money_in_flight_fen == {"outgoing": 500, "receiving": 0}
    assert figures.outbox_unpublished == 3
    assert figures.outbox_oldest_created_at == (NOW - timedelta(minutes=9)).timestamp()
    assert figures.held_messages == 2
    assert figures.taken_at == NOW.timestamp()


async def test_a_store_with_outbox_figures_answers_the_outbox_itself() -> None:
    class Counting(FigureStore):
        async def outbox_figures(self) -> tuple[int, datetime | None]:
            return 12_345, NOW - timedelta(hours=1)

    figures = await take_store_figures(Counting([], [], 0), ManualClock(NOW))  # type: ignore[arg-type]
    assert figures.outbox_unpublished == 12_345
    assert figures.outbox_oldest_created_at == (NOW - timedelta(hours=1)).timestamp()


async def test_the_refresher_keeps_the_last_figures_when_a_read_fails() -> None:
    metrics = AgentMetrics(A)
    store = FigureStore([_record("receiving", "awaiting_form")], [], 0)
    refresher = FiguresRefresher.for_store(
        store, ManualClock(NOW), interval_s=3600, on_failure=metrics.figures_refresh_failed  # type: ignore[arg-type]
    )
    metrics.watch_store(refresher.latest)
    refresher.start()
    for _ in range(50):
        if refresher.latest() is not None:
            break
        await asyncio.sleep(0.01)
    await refresher.stop()
    assert value(metrics.registry, "jiexu_cases", agency=A, state="awaiting_form") == 1
    store.fail = True
    assert (await refresher.refresh()) is not None
    assert value(metrics.registry, "jiexu_cases", agency=A, state="awaiting_form") == 1
    assert value(metrics.registry, "jiexu_figures_refresh_failures_total", agency=A) == 1


async def test_a_refresher_around_any_read_feeds_the_reconcilers_collector() -> None:
    metrics = ReconcilerMetrics()

    async def read() -> ExchangeFigures:
        return ExchangeFigures(taken_at=2.0, pair_money_in_flight_fen={(A, B): 700})

    refresher = FiguresRefresher(read, on_failure=metrics.figures_refresh_failed)
    metrics.watch_exchange(refresher.latest)
    assert metrics.registry.get_sample_value(
        "jiexu_exchange_money_in_flight_fen", {"agency": "000000", "outgoing": A, "receiving": B}
    ) is None
    await refresher.refresh()
    assert metrics.registry.get_sample_value(
        "jiexu_exchange_money_in_flight_fen", {"agency": "000000", "outgoing": A, "receiving": B}
    ) == 700


async def test_a_ledger_call_is_timed_by_outcome_and_counts_months_once() -> None:
    from agents.domain.books import LedgerEntry
    from agents.ledger.base import PersonNotFound

    metrics = AgentMetrics(A)
    r = metrics.registry
    case_id = uuid.uuid4()

    async def entry(operation: Any, months: int, replayed: bool = False) -> LedgerEntry:
        return LedgerEntry(
            case_id=case_id, operation=operation, id_number="X", months=months, replayed=replayed
        )

    async def refused() -> LedgerEntry:
        raise PersonNotFound()

    async def broken() -> LedgerEntry:
        raise OSError("ledger down")

    await metrics.ledger_call("terminate_and_debit", B, entry("terminate_and_debit", 30))
    await metrics.ledger_call("terminate_and_debit", B, entry("terminate_and_debit", 30, True))
    await metrics.ledger_call("credit", B, entry("credit", 12))
    with pytest.raises(PersonNotFound):
        await metrics.ledger_call("credit", B, refused())
    with pytest.raises(OSError):
        await metrics.ledger_call("pay_out", B, broken())

    def count(operation: str, outcome: str) -> float | None:
        return r.get_sample_value(
            "jiexu_ledger_command_duration_seconds_count",
            {"agency": A, "operation": operation, "outcome": outcome},
        )

    assert count("terminate_and_debit", "applied") == 2
    assert count("credit", "applied") == 1
    assert count("credit", "refused") == 1
    assert count("pay_out", "failed") == 1
    labels = {"agency": A, "counterpart": B}
    assert r.get_sample_value("jiexu_months_certified_total", labels) == 30  # the replay not again
    assert r.get_sample_value("jiexu_months_credited_total", labels) == 12
