"""`jiexu reconcile --once` and `jiexu reconcile --report` through the command line, real broker."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import pytest
import structlog
from typer.testing import CliRunner, Result

from agents.cli import app
from agents.cli.reconcile_cmd import store_path
from agents.domain.clock import ManualClock
from agents.reconcile.report_postgres import PostgresReport
from agents.reconcile.stores import report_schema
from broker.connection import connect
from broker.directory import AgencyDirectory
from broker.directory_trust import install_operator_key, sign_directory
from broker.names import RECONCILER_CODE, inbox_queue
from broker.publisher import Publisher
from broker.pytest_plugin import TestVhost
from broker.signing import Ed25519PrivateKey, generate_private_key, private_key_path, save_private_key
from broker.topology import AgencyCredentials, TopologySpec, write_credentials
from schemas.common import Gender, InsuranceType, Person, make_citizen_id
from schemas.information import BalanceDisposition, InformationFormV2
from schemas.notices import TransferCompletedV1
from schemas.registry import envelope_for
from tests.integration.postgres_support import fresh_database
from tests.integration.transport_support import A, B, directory_entry
from tests.unit.report_world import at, open_report_world, report_world_on


async def _send_copies(
    vhost: TestVhost, credentials: AgencyCredentials, keys: dict[str, Ed25519PrivateKey]
) -> None:
    case_id = uuid.uuid4()
    form = InformationFormV2(
        person=Person(
            name="张伟", gender=Gender.MALE, id_number=make_citizen_id("110105", date(1988, 7, 21), 135)
        ),
        insurance_type=InsuranceType.EMPLOYEE,
        participation_start="2012-07",
        participation_end="2024-12",
        months_paid=12,
        deemed_months=0,
        account_balance=500,
        amount_transferred=500,
        balance_disposition=BalanceDisposition.TRANSFERRED,
        contribution_periods=None,
        seal_reference=None,
    )
    done = TransferCompletedV1(months_credited=12, deemed_months_credited=0, amount_credited=500)
    for code, document in ((A, form), (B, done)):
        cred = credentials[code]
        connection = await connect(vhost.url_for(cred.username, cred.password), name=f"test-{code}")
        async with connection:
            publisher = await Publisher(connection, agency=code, private_key=keys[code]).start()
            await publisher.publish(
                envelope_for(document, sender=code, recipient=RECONCILER_CODE, case_id=case_id)
            )


async def _depth(url: str, queue: str) -> int:
    connection = await connect(url, name="test-depth")
    async with connection:
        channel = await connection.channel(confirms=False)
        declared = await channel.declare_queue(queue, passive=True, robust=False)
        return declared.declaration_result.message_count or 0


def _run(*args: str, env: dict[str, str] | None = None) -> Result:
    # The command configures logging onto the runner's stderr, which closes after the run.
    saved = structlog.get_config()
    try:
        return CliRunner().invoke(app, list(args), env=env)
    finally:
        structlog.configure(**saved)


def test_once_handles_the_inbox_asks_both_ends_and_the_report_lists_the_open_case(
    agencies_sync: tuple[TestVhost, TopologySpec, AgencyCredentials], tmp_path: Path
) -> None:
    vhost, spec, credentials = agencies_sync
    keys = {code: generate_private_key() for code in spec.codes}
    secrets = tmp_path / "secrets"
    write_credentials(secrets, {RECONCILER_CODE: credentials[RECONCILER_CODE]}, vhost.name)
    save_private_key(keys[RECONCILER_CODE], private_key_path(secrets, RECONCILER_CODE))
    directory = tmp_path / "directory.json"
    AgencyDirectory([directory_entry(code, keys[code]) for code in (A, B)]).save(directory)
    operator = generate_private_key()  # the reconciler checks the operator's signature
    sign_directory(directory, operator)
    install_operator_key(secrets, operator)
    asyncio.run(_send_copies(vhost, credentials, keys))

    common = ["--data-dir", str(tmp_path / "data"), "--json"]
    result = _run(
        "reconcile",
        "--once",
        "--secrets-dir",
        str(secrets),
        "--directory",
        str(directory),
        "--user-prefix",
        spec.user_prefix,
        "--retry-delays",
        ",".join(str(ms) for ms in spec.retry_delays_ms),
        *common,
        env={"JIEXU_AMQP_URL": vhost.amqp_url},
    )
    assert result.exit_code == 0, result.output
    once = json.loads(result.stdout)
    assert once["counts"]["open"] == 1
    # Both ends were asked for their statements (nobody answers in this test).
    assert asyncio.run(_depth(vhost.amqp_url, inbox_queue(A))) == 1
    assert asyncio.run(_depth(vhost.amqp_url, inbox_queue(B))) == 1

    report = _run("reconcile", "--report", *common)
    assert report.exit_code == 0, report.output
    summary = json.loads(report.stdout)
    assert summary["counts"] == {"open": 1, "matched": 0, "mismatched": 0, "stuck": 0}
    assert summary["control_totals"] == [] and summary["mismatches"] == []

    human = _run("reconcile", "--report", "--data-dir", str(tmp_path / "data"))
    assert human.exit_code == 0 and "0 matched, 0 mismatched, 1 open" in human.stdout


def test_the_report_shows_control_totals_per_pair_and_day_a_mismatch_and_a_stuck_case(
    tmp_path: Path,
) -> None:
    """A report built directly (the real service, a manual clock): two pairs over two days, a
    mismatch with its field and both values, money in flight past its due date."""
    data = tmp_path / "data"
    path = store_path(data)
    path.parent.mkdir(parents=True)
    out, into, other = "441900", "360400", "110000"

    async def build() -> dict[str, uuid.UUID]:
        world = await open_report_world(path)
        try:
            return {
                "clean": await world.ended_case(out, into, date(2026, 3, 2), 50_000, credited=50_000),
                "short": await world.ended_case(out, into, date(2026, 3, 3), 40_000, credited=39_000),
                "other": await world.ended_case(other, into, date(2026, 3, 3), 10_000, credited=10_000),
                "stuck": await world.money_in_flight(
                    out, other, date(2026, 3, 2), date(2026, 3, 10), 70_000
                ),
            }
        finally:
            await world.report.close()

    cases = asyncio.run(build())
    result = _run("reconcile", "--report", "--data-dir", str(data), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["counts"] == {"open": 1, "matched": 2, "mismatched": 1, "stuck": 1}
    totals = {(t["day"], t["outgoing"], t["receiving"]): t for t in summary["control_totals"]}
    assert set(totals) == {
        ("2026-03-02", out, into), ("2026-03-03", out, into), ("2026-03-03", other, into)
    }
    first, second = totals[("2026-03-02", out, into)], totals[("2026-03-03", out, into)]
    assert (first["cases"], first["matched"], first["amount_out_fen"], first["amount_in_fen"]) == (
        1, 1, 50_000, 50_000
    )
    assert first["balanced"] is True
    assert (second["mismatched"], second["amount_out_fen"], second["amount_in_fen"]) == (
        1, 40_000, 39_000
    )
    assert second["balanced"] is False
    assert (second["months_out"], second["months_in"]) == (36, 36)
    [mismatch] = summary["mismatches"]
    assert mismatch["case_id"] == str(cases["short"]) and mismatch["day"] == "2026-03-03"
    assert [(d["field"], d["outgoing_value"], d["receiving_value"]) for d in mismatch["differences"]] == [
        ("amount", 40_000, 39_000)
    ]
    [stuck] = summary["stuck"]
    assert stuck["case_id"] == str(cases["stuck"]) and stuck["overdue_since"] == "2026-03-10"
    assert (stuck["outgoing"], stuck["receiving"], stuck["amount_in_flight_fen"]) == (out, other, 70_000)

    human = _run("reconcile", "--report", "--data-dir", str(data))
    assert human.exit_code == 0, human.output
    lines = human.stdout.splitlines()
    assert lines[0] == "cases: 2 matched, 1 mismatched, 1 open (1 stuck)"
    rows = [line.split() for line in lines if line.startswith("2026-03-0")]
    assert rows == [
        ["2026-03-02", out, into, "1", "50000", "50000", "36", "36", "ok"],
        ["2026-03-03", other, into, "1", "10000", "10000", "36", "36", "ok"],
        ["2026-03-03", out, into, "1", "40000", "39000", "36", "36", "UNBALANCED"],
    ]
    assert f"  {cases['short']} {out}->{into}: amount 40000 vs 39000" in lines
    assert (
        f"  {cases['stuck']} {out}->{other} overdue since 2026-03-10, in flight 70000 fen" in lines
    )


@pytest.fixture
async def report_database() -> AsyncIterator[str]:
    async for url in fresh_database("jiexu_report_cli"):
        yield url


def test_the_report_on_postgresql_is_read_with_the_agents_database_setting(
    report_database: str, tmp_path: Path
) -> None:
    """``JIEXU_DATABASE_URL`` (or ``--database-url``) points ``--report`` at the PostgreSQL report
    (schema ``reconcile_000000``); a database without one is an ``error:`` line, nothing created."""
    empty = _run("reconcile", "--report", "--data-dir", str(tmp_path), "--database-url", report_database)
    assert empty.exit_code == 2 and "--database-url" in empty.output

    async def build() -> uuid.UUID:
        clock = ManualClock(at(date(2026, 3, 2)))
        report = await PostgresReport.open(report_database, schema=report_schema(), clock=clock)
        try:
            world = report_world_on(report, clock)
            await world.ended_case("441900", "360400", date(2026, 3, 2), 50_000, credited=50_000)
            return await world.ended_case("441900", "360400", date(2026, 3, 3), 40_000, credited=39_000)
        finally:
            await report.close()

    short = asyncio.run(build())
    result = _run(
        "reconcile", "--report", "--data-dir", str(tmp_path), "--json",
        env={"JIEXU_DATABASE_URL": report_database},
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["counts"] == {"open": 0, "matched": 1, "mismatched": 1, "stuck": 0}
    assert [m["case_id"] for m in summary["mismatches"]] == [str(short)]
    assert not store_path(tmp_path).exists()  # SQLite untouched
