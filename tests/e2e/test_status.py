"""`jiexu status` shows an operator the queues, dead letters, cases and reconciliation at a glance."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import aio_pika
import pytest
from typer.testing import CliRunner

from agents.cli import app
from agents.domain.clock import ManualClock, SystemClock
from agents.reconcile.figures import take_exchange_figures
from agents.reconcile.stores import open_report
from agents.service.bootstrap import open_agency_store
from agents.service.figures import FiguresRefresher
from agents.service.health import HealthServer
from agents.service.paths import Paths
from agents.store.base import CaseRecord
from agents.store.sqlite import SqliteStore
from agents.tools.provision import AgencyProfile
from broker.names import EXCHANGE, routing_key
from broker.pytest_plugin import TestVhost
from tests.integration.agent_world import agent_world
from tests.integration.postgres_support import fresh_database
from tests.unit.report_world import at, open_report_world, report_world_on

DONGGUAN, JIUJIANG = "441900", "360400"


async def test_status_reports_queues_dead_letters_and_cases(
    rabbitmq_vhost: TestVhost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with agent_world(
        rabbitmq_vhost, tmp_path, [AgencyProfile(DONGGUAN), AgencyProfile(JIUJIANG)]
    ) as world:
        await world.start(DONGGUAN)
        await world.start(JIUJIANG)
        out, _ = await world.mover(
            DONGGUAN, JIUJIANG, zero_balance=False, arrears=False, retiree=False, insurance_type="310"
        )
        case_id = await world.apply(JIUJIANG, DONGGUAN, out)
        assert await world.wait_terminal(DONGGUAN, case_id) == "completed"
        # A broken message (as the administrator, who may publish anything) ends in a DLQ.
        connection = await aio_pika.connect(rabbitmq_vhost.amqp_url)
        async with connection:
            channel = await connection.channel()
            exchange = await channel.get_exchange(EXCHANGE)
            await exchange.publish(aio_pika.Message(b"{not json"), routing_key(JIUJIANG, "junk"))
        monkeypatch.setenv("JIEXU_AMQP_URL", rabbitmq_vhost.endpoint.amqp_url())
        monkeypatch.setenv("JIEXU_MANAGEMENT_URL", rabbitmq_vhost.endpoint.management_url)
        status: dict = {}
        # The management API refreshes queue statistics every few seconds: poll.
        for _ in range(150):
            result = await asyncio.to_thread(
                CliRunner().invoke,
                app,
                ["status", "--vhost", rabbitmq_vhost.name, "--data-dir",
                 str(world.provisioned.data_dir), "--json"],
            )
            assert result.exit_code == 0, result.output
            status = json.loads(result.stdout)
            agencies = status["broker"]["agencies"]
            if agencies[JIUJIANG]["dead_letters"] == 1 and all(
                agencies[code]["inbox"]["consumers"] == 1 for code in (DONGGUAN, JIUJIANG)
            ):
                break
            await asyncio.sleep(0.1)
        queues = status["broker"]["agencies"]
        assert queues[JIUJIANG]["dead_letters"] == 1
        assert queues[DONGGUAN]["dead_letters"] == 0
        assert queues[DONGGUAN]["inbox"]["consumers"] == 1
        assert queues[JIUJIANG]["inbox"]["consumers"] == 1
        assert "000000" in queues
        assert status["broker"]["unroutable"] == 0
        assert status["cases"][JIUJIANG]["by_state"] == {"completed": 1}
        assert status["cases"][DONGGUAN]["by_state"] == {"completed": 1}
        assert status["cases"][JIUJIANG]["overdue"] == 0
        # Human output too.
        human = await asyncio.to_thread(
            CliRunner().invoke,
            app,
            ["status", "--vhost", rabbitmq_vhost.name, "--data-dir", str(world.provisioned.data_dir)],
        )
        assert human.exit_code == 0
        assert JIUJIANG in human.stdout and "unroutable messages: 0" in human.stdout


# -- something to show, built directly in the stores (no broker: the management API is absent) ----

NOWHERE = {"JIEXU_AMQP_URL": "amqp://guest:guest@127.0.0.1:1/", "COLUMNS": "200",
           "JIEXU_MANAGEMENT_URL": "http://127.0.0.1:1"}


async def _overdue_store(
    paths: Paths, code: str, counterpart: str, today: date, database_url: str | None = None
) -> uuid.UUID:
    """Agency ``code`` waits for ``counterpart``'s completion, due three days ago (in its SQLite
    file, or its schema of ``database_url``)."""
    case_id = uuid.uuid4()
    created = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
    store = (
        await open_agency_store(paths, code, database_url=database_url, pool_size=1)
        if database_url
        else await SqliteStore.open(paths.store(code))
    )
    try:
        async with store.transaction() as tx:
            await tx.save_case(
                CaseRecord(
                    case_id=case_id, role="outgoing", state="awaiting_completion", person_key="k",
                    counterpart=counterpart, message_version=2, open=True, created_at=created,
                    updated_at=created, due_date=today - timedelta(days=3), whose_turn=counterpart,
                )
            )
    finally:
        await store.close()
    return case_id


async def test_status_shows_an_overdue_step_and_a_mismatch_with_both_values(tmp_path: Path) -> None:
    paths = Paths(data_dir=tmp_path / "data")
    today = SystemClock().today()
    case_id = await _overdue_store(paths, DONGGUAN, JIUJIANG, today)
    paths.report().parent.mkdir(parents=True)
    world = await open_report_world(paths.report())
    try:
        mismatch = await world.ended_case(DONGGUAN, JIUJIANG, date(2026, 3, 3), 40_000, credited=41_000)
    finally:
        await world.report.close()

    args = ["status", "--data-dir", str(paths.data_dir)]
    result = await asyncio.to_thread(CliRunner().invoke, app, [*args, "--json"], env=NOWHERE)
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    assert status["broker"]["available"] is False
    cases = status["cases"][DONGGUAN]
    assert cases["by_state"] == {"awaiting_completion": 1} and cases["overdue"] == 1
    [step] = cases["overdue_steps"]
    assert step["case_id"] == str(case_id) and step["whose_turn"] == JIUJIANG
    assert step["days_late"] == 3 and step["due_date"] == (today - timedelta(days=3)).isoformat()
    recon = status["reconciliation"]
    assert (recon["matched"], recon["mismatched"], recon["open"]) == (0, 1, 0)
    [m] = recon["latest_mismatches"]
    assert m["case_id"] == str(mismatch) and (m["outgoing"], m["receiving"]) == (DONGGUAN, JIUJIANG)
    assert [(d["field"], d["outgoing_value"], d["receiving_value"]) for d in m["differences"]] == [
        ("amount", 40_000, 41_000)
    ]

    human = await asyncio.to_thread(CliRunner().invoke, app, args, env=NOWHERE)
    assert human.exit_code == 0, human.output
    assert (
        f"overdue at {DONGGUAN}: case {case_id} awaiting_completion, {JIUJIANG}'s turn, due "
        f"{(today - timedelta(days=3)).isoformat()} (3 days late)"
    ) in human.stdout
    assert "reconciliation: 0 matched, 1 mismatched, 0 open, 0 stuck" in human.stdout
    assert f"mismatch {mismatch} ({DONGGUAN} -> {JIUJIANG}): amount: outgoing 40000 vs receiving 41000" in (
        human.stdout
    )


async def test_status_reads_the_stores_and_the_report_in_postgresql(tmp_path: Path) -> None:
    """With JIEXU_DATABASE_URL, the agencies' stores (schema agency_CODE) and the reconciler's
    report (schema reconcile_000000) are read from PostgreSQL; no SQLite file is made."""
    databases = fresh_database("jiexu_status")
    url = await anext(databases)
    try:
        paths = Paths(data_dir=tmp_path / "data")
        today = SystemClock().today()
        case_id = await _overdue_store(paths, DONGGUAN, JIUJIANG, today, database_url=url)
        report = await open_report(paths.report(), database_url=url, pool_size=2)
        world = report_world_on(report, ManualClock(at(date(2026, 3, 2))))
        try:
            matched = await world.ended_case(DONGGUAN, JIUJIANG, date(2026, 3, 3), 40_000, credited=40_000)
            mismatch = await world.ended_case(DONGGUAN, JIUJIANG, date(2026, 3, 3), 40_000, credited=39_000)
        finally:
            await report.close()

        args = ["status", "--data-dir", str(paths.data_dir), "--agency", DONGGUAN, "--json"]
        env = {**NOWHERE, "JIEXU_DATABASE_URL": url}
        result = await asyncio.to_thread(CliRunner().invoke, app, args, env=env)
        assert result.exit_code == 0, result.output
        status = json.loads(result.stdout)
        cases = status["cases"][DONGGUAN]
        assert cases["by_state"] == {"awaiting_completion": 1} and cases["overdue"] == 1
        assert [s["case_id"] for s in cases["overdue_steps"]] == [str(case_id)]
        recon = status["reconciliation"]
        assert (recon["matched"], recon["mismatched"], recon["open"]) == (1, 1, 0)
        assert [m["case_id"] for m in recon["latest_mismatches"]] == [str(mismatch)]
        assert str(matched) not in result.stdout
        assert not paths.data_dir.exists() or not list(paths.data_dir.rglob("*.db"))
    finally:
        await databases.aclose()


async def test_status_from_the_reconciler_reads_the_national_view_over_http(tmp_path: Path) -> None:
    """An operator with no agency's files reads what the reconciler exports on /metrics."""
    world = await open_report_world(tmp_path / "report.db")
    refresher = FiguresRefresher(lambda: take_exchange_figures(world.report, world.clock))
    world.metrics.watch_exchange(refresher.latest)
    try:
        await world.ended_case(DONGGUAN, JIUJIANG, date(2026, 3, 2), 50_000, credited=50_000)
        await world.ended_case(DONGGUAN, JIUJIANG, date(2026, 3, 3), 40_000, credited=40_000,
                               months_in=35)
        await world.money_in_flight(JIUJIANG, DONGGUAN, date(2026, 3, 2), date(2026, 3, 10), 70_000)
        await refresher.refresh()
        async with HealthServer(world.metrics.registry) as server:
            args = ["status", "--data-dir", str(tmp_path / "nothing"), "--from-reconciler", server.url]
            result = await asyncio.to_thread(CliRunner().invoke, app, [*args, "--json"], env=NOWHERE)
            human = await asyncio.to_thread(CliRunner().invoke, app, args, env=NOWHERE)
    finally:
        await world.report.close()
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    recon = status["reconciliation"]
    assert recon["source"] == f"{server.url}/metrics"
    assert (recon["matched"], recon["mismatched"], recon["open"], recon["stuck"]) == (1, 1, 1, 1)
    assert recon["mismatches_by_field"] == {"months": 1}
    assert status["exchange"]["pairs"] == [
        {"outgoing": JIUJIANG, "receiving": DONGGUAN, "cases": {"in_progress": 1},
         "overdue": {DONGGUAN: 1}, "money_in_flight_fen": 70_000},
        {"outgoing": DONGGUAN, "receiving": JIUJIANG, "cases": {"matched": 1, "mismatched": 1},
         "overdue": {}, "money_in_flight_fen": 0},
    ]
    assert status["cases"] == {}  # no local store was read
    assert human.exit_code == 0, human.output
    assert "mismatched by field: months 1" in human.stdout
    assert f"1 at {DONGGUAN}'s turn" in human.stdout and "70000 fen" in human.stdout


async def test_status_says_when_the_reconciler_does_not_answer(tmp_path: Path) -> None:
    args = ["status", "--data-dir", str(tmp_path), "--from-reconciler", "http://127.0.0.1:1", "--json"]
    result = await asyncio.to_thread(CliRunner().invoke, app, args, env=NOWHERE)
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    assert status["reconciliation"]["available"] is False
    assert "ConnectError" in status["exchange"]["error"]
