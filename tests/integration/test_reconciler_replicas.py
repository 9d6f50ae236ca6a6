"""Two ``jiexu reconcile`` processes on one PostgreSQL report, one SIGKILLed mid-flow (issue 12).

Two agencies run one ``jiexu agent`` each (SQLite), and two reconcilers share the reconciler's
quorum inbox and its report, the schema ``reconcile_000000`` of one PostgreSQL database
(``JIEXU_DATABASE_URL``). While a few dozen transfers flow both ways, the first reconciler is
SIGKILLed once it has handled something and started again; the second dies once at a crash point
after its relay published a batch and before it marked it sent (so another relay re-sends those
rows when the lease ends) and is started again. Once every case has ended and the report has
settled, every process is stopped (drain) and the test checks:

* every case reconciled ``matched`` between the right agencies, the report's counts, control
  totals and national figures agree with the transfers, and every queued envelope was sent;
* each case's final round asked each agency once and published one result to each (no duplicate
  statement request), and both reconcilers handled some of the cases;
* every dead-letter queue empty (the reconciler's included), and the books balanced to the fen.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agents.faults import CRASH_AT_ENV
from agents.reconcile.figures import take_exchange_figures
from agents.reconcile.report_postgres import PostgresReport
from agents.reconcile.stores import report_schema
from agents.service.process import OpenedService, open_service
from agents.tools.provision import AgencyProfile, Provisioned, provision
from broker.connection import connect
from broker.names import RECONCILER_CODE, inbox_queue
from broker.pytest_plugin import TestVhost
from broker.topology import delete_agency_users
from tests.integration.agent_processes import REPO, AgentRun, start_agent
from tests.integration.postgres_support import fresh_database
from tests.integration.test_chaos import (
    AGENCIES,
    RETRY_DELAYS_MS,
    Transfer,
    _application,
    _check_books,
    _dead_letters,
    _ended,
    _open_log,
    _poll,
    _seed,
)
from tests.integration.test_chaos import _transfers as chaos_transfers
from tests.integration.transport_support import queue_counts

pytestmark = pytest.mark.integration

PER_DIRECTION = 20  # transfers each way: 40 cases
WAIT_S = 240.0  # a bound on waiting for an outcome, never asserted as a duration
CRASH_AT = {1: None, 2: "after_publish_before_mark@2"}


@pytest.fixture
async def database_url() -> AsyncIterator[str]:
    async for url in fresh_database("jiexu_reconcilers"):
        yield url


async def _start_reconciler(
    provisioned: Provisioned, database_url: str, log_dir: Path, name: str, crash_at: str | None
) -> AgentRun:
    """``jiexu reconcile`` on the shared PostgreSQL report, configured as an operator would."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JIEXU_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["JIEXU_AMQP_URL"] = provisioned.endpoint.amqp_url(vhost=provisioned.vhost)
    env["JIEXU_DATABASE_URL"] = database_url
    env["JIEXU_OUTBOX_LEASE_S"] = "3"  # what a dead reconciler claimed is free again soon
    if crash_at:
        env[CRASH_AT_ENV] = crash_at
    log_path = log_dir / f"reconciler-{name}.log"
    log = _open_log(log_path)
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "from agents.cli import main; main()",
            "reconcile",
            "--secrets-dir", str(provisioned.secrets_dir),
            "--directory", str(provisioned.directory_path),
            "--data-dir", str(provisioned.data_dir),
            "--user-prefix", provisioned.user_prefix,
            "--retry-delays", ",".join(str(ms) for ms in provisioned.retry_delays_ms),
            "--sweep-interval", "3600",
            cwd=REPO,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
    except BaseException:
        log.close()
        raise
    return AgentRun(RECONCILER_CODE, process, log_path, log)


class Reconcilers:
    """The two reconciler processes: their runs, starts, and what they logged over all starts."""

    def __init__(self, provisioned: Provisioned, database_url: str, log_dir: Path) -> None:
        self.provisioned = provisioned
        self.database_url = database_url
        self.log_dir = log_dir
        self.runs: dict[int, AgentRun] = {}
        self.finished: list[AgentRun] = []
        self.starts: Counter[int] = Counter()
        self.crashed: set[int] = set()

    async def start(self, n: int) -> None:
        self.starts[n] += 1
        crash_at = CRASH_AT[n] if n not in self.crashed else None
        self.runs[n] = await _start_reconciler(
            self.provisioned, self.database_url, self.log_dir, f"{n}-{self.starts[n]}", crash_at
        )

    async def kill(self, n: int) -> None:
        run = self.runs.pop(n)
        run.process.kill()
        status = await run.wait(WAIT_S)
        assert status in (-signal.SIGKILL, 255), f"reconciler {n} ended on its own:\n{run.output}"
        self.finished.append(run)

    async def revive(self) -> None:
        """Start again a reconciler that killed itself at its crash point."""
        for n, run in list(self.runs.items()):
            if run.process.returncode is not None:
                assert "jiexu crash point" in run.output, f"reconciler {n} ended:\n{run.output}"
                self.crashed.add(n)
                self.finished.append(self.runs.pop(n))
                await run.wait(WAIT_S)
                await self.start(n)

    def output(self, n: int) -> str:
        runs = [r for r in self.finished if r.log_path.name.startswith(f"reconciler-{n}-")]
        if n in self.runs:
            runs.append(self.runs[n])
        return "".join(r.output for r in runs)

    async def consuming(self) -> bool:
        await self.revive()
        admin = await connect(self.provisioned.endpoint.amqp_url(vhost=self.provisioned.vhost))
        try:
            _, consumers = await queue_counts(admin, inbox_queue(RECONCILER_CODE))
            return consumers == len(self.runs)
        finally:
            await admin.close()


async def _settled(
    opened: dict[str, OpenedService], report: PostgresReport, reconcilers: Reconcilers, cases: int
) -> bool:
    await reconcilers.revive()
    for service in opened.values():
        if await service.store.fetch_unpublished(1):
            return False
    counts = await report.counts()
    return counts["matched"] + counts["mismatched"] >= cases and not await report.queued(1)


async def _check_report(report: PostgresReport, transfers: list[Transfer]) -> None:
    n = len(transfers)
    for t in transfers:
        record = await report.case(t.case_id)
        assert record is not None and record.status == "matched", (t.kind, record)
        assert (record.outgoing, record.receiving) == (t.outgoing, t.receiving)
        sent = await report.outbox(t.case_id)
        assert all(was_sent for _, was_sent in sent)
        requests = sorted(e.recipient for e, _ in sent if e.type == "statement_request")
        assert requests == sorted([t.outgoing, t.receiving]), requests
        results = sorted(e.recipient for e, _ in sent if e.type == "reconciliation_result")
        assert results == sorted([t.outgoing, t.receiving]), results
    assert await report.counts() == {"open": 0, "matched": n, "mismatched": 0, "stuck": 0}
    totals = await report.control_totals()
    assert all(t.balanced for t in totals), totals
    assert sum(t.cases for t in totals) == sum(t.matched for t in totals) == n
    moved = sum(t.seeded.balance_fen for t in transfers if t.kind == "transferred")
    assert sum(t.amount_out for t in totals) == sum(t.amount_in for t in totals) == moved
    paid = sum(t.seeded.balance_fen for t in transfers if t.kind == "payout")
    assert sum(t.paid_out for t in totals) == paid
    figures = await take_exchange_figures(report)
    assert figures.outcomes == {"matched": n, "mismatched": 0, "pending": 0, "stuck": 0}
    assert figures.pair_money_in_flight_fen == {} and figures.pair_overdue == {}
    per_pair = Counter((t.outgoing, t.receiving) for t in transfers)
    assert figures.pair_cases == {(o, r, "matched"): k for (o, r), k in per_pair.items()}


async def test_two_reconcilers_on_one_postgresql_report_one_killed_mid_flow_reconcile_every_case_once(
    rabbitmq_vhost: TestVhost, tmp_path: Path, database_url: str
) -> None:
    rng = random.Random(1212)
    provisioned = provision(
        rabbitmq_vhost.endpoint,
        rabbitmq_vhost.name,
        [AgencyProfile(code) for code in AGENCIES],
        tmp_path / "world",
        user_prefix=f"rr{uuid.uuid4().hex[:6]}-",
        retry_delays_ms=RETRY_DELAYS_MS,
    )
    settings = {code: provisioned.settings(code) for code in AGENCIES}
    transfers = chaos_transfers(rng, PER_DIRECTION)
    money_before = await _seed(provisioned, transfers)
    log_dir = tmp_path / "logs"
    reconcilers = Reconcilers(provisioned, database_url, log_dir)
    agents: list[AgentRun] = []
    opened: dict[str, OpenedService] = {}
    report: PostgresReport | None = None
    try:
        for n in (1, 2):
            await reconcilers.start(n)
        for code, agency_settings in settings.items():
            agents.append(await start_agent(agency_settings, log_dir))
            opened[code] = await open_service(agency_settings)
        await _poll(reconcilers.consuming, "both reconcilers consuming")
        report = await PostgresReport.open(database_url, schema=report_schema(), max_size=2)

        half = len(transfers) // 2
        order = rng.sample(transfers, len(transfers))  # both directions interleaved
        for t in order[:half]:
            await opened[t.receiving].service.apply(_application(t))
            await asyncio.sleep(0.02)

        async def first_has_handled() -> bool:
            await reconcilers.revive()
            return '"reconcile.case_ended"' in reconcilers.runs[1].output

        await _poll(first_has_handled, "the first reconciler handling messages")
        await reconcilers.kill(1)  # mid-flow: cases of the first half still being reconciled
        await reconcilers.start(1)
        for t in order[half:]:
            await opened[t.receiving].service.apply(_application(t))
            await asyncio.sleep(0.02)

        await _poll(lambda: _ended(opened, transfers), "every case ended at both agencies")
        await _poll(
            lambda: _settled(opened, report, reconcilers, len(transfers)),  # type: ignore[arg-type]
            "outboxes published, every case reconciled",
        )
        await _poll(reconcilers.consuming, "both reconcilers up before the drain")
        for n, run in list(reconcilers.runs.items()):
            assert await run.terminate(WAIT_S) == 0, f"reconciler {n} did not drain:\n{run.output}"
            reconcilers.finished.append(reconcilers.runs.pop(n))
        for run in agents:
            assert await run.terminate(WAIT_S) == 0, run.output

        await _check_books(opened, transfers, money_before)
        await _check_report(report, transfers)
        dead = await _dead_letters(rabbitmq_vhost)
        # Both did work: the first was seen ending cases before it was killed; the second
        # reached its crash point, which lies after publishing what it had queued (only a
        # reconciler that handled messages queues anything). Which of them ends which case is
        # the broker's choice, so no more is asserted.
        assert reconcilers.crashed == {2}, "the second reconciler never reached its crash point"
    finally:
        for run in [*reconcilers.runs.values(), *agents]:
            if run.process.returncode is None:
                await run.terminate(WAIT_S)
        if report is not None:
            await report.close()
        for service in opened.values():
            await service.close()
        with rabbitmq_vhost.management() as api:
            delete_agency_users(api, provisioned.spec)
    assert dead == {code: [] for code in (*AGENCIES, RECONCILER_CODE)}
