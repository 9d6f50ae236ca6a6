"""Chaos on a real broker: agents and the reconciler SIGKILLed at random moments and restarted,
broker connections closed through the management API, during a flow of a few hundred transfers
between two agencies (issue 11's Done-when).

Two ``jiexu agent`` processes and one ``jiexu reconcile`` process run on SQLite files. While the
transfers flow, a chaos task kills one of the three (chosen in a seeded order) every second or
two and starts it again at once, and now and then closes every connection of the test's vhost.
Once every process has been killed a few times and every case has ended at both agencies, the
chaos stops and the test waits (bounded, never asserted as a duration) for the outboxes and the
reconciliation to settle, stops the processes (drain), and checks:

* every case completed at both ends, each balance moved once (or was paid out once), the months
  certified equal the months credited, and the money in both ledgers adds up to the fen;
* every case reconciled and matched, and every envelope the reconciler queued sent;
* every dead-letter queue empty, the reconciler's included: a message re-sent after a kill or a
  lost confirm (agents' outboxes and the reconciler's alike go through `OutboxRelay`, which marks
  it ``x-jiexu-republished``) is acked as a duplicate, never dead-lettered as a replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sys
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

from agents.domain.case import ApplicationSubmitted, State
from agents.faults import CRASH_AT_ENV
from agents.ledger.base import PersonAccount
from agents.ledger.sqlite import SqliteLedger
from agents.reconcile.report import ReconciliationReport
from agents.service.paths import Paths
from agents.service.process import OpenedService, open_service
from agents.service.settings import AgentSettings
from agents.tools.provision import AgencyProfile, Provisioned, provision
from agents.tools.seed import make_mover
from broker.connection import connect
from broker.dlq import list_dead_letters
from broker.names import RECONCILER_CODE, inbox_queue
from broker.pytest_plugin import TestVhost
from broker.topology import delete_agency_users
from schemas.common import BankAccount, InsuranceType, Person
from schemas.contact import PayoutReason
from tests.integration.agent_processes import REPO, AgentRun, start_agent
from tests.integration.transport_support import queue_counts

pytestmark = pytest.mark.integration

JIUJIANG, ZHENGZHOU = "360400", "410100"
AGENCIES = (JIUJIANG, ZHENGZHOU)
RECONCILER = "reconciler"
PER_DIRECTION = 100  # transfers each way: 200 cases
KILLS_EACH = 3  # each of the three processes is killed at least this many times
CLOSES = 3  # broker connections closed at least this many times
WAIT_S = 240.0  # a bound on waiting for an outcome, never asserted as a duration
RETRY_DELAYS_MS = (100, 300)
# Besides the random kills, each process dies once at a crash point (`agents.faults`, armed at
# every start until it has fired) where a re-send is certain: published and confirmed but not
# marked sent, or committed and not yet published; so the run never depends on a random kill
# landing in that window. Early visits: a process that has stopped publishing (its cases done)
# would never reach a late one.
FIRST_CRASH = {
    JIUJIANG: "after_publish_before_mark@1",
    ZHENGZHOU: "after_commit_before_publish@3",
    RECONCILER: "after_publish_before_mark@1",
}
KINDS = ("transferred", "transferred", "payout", "zero")


@dataclass(frozen=True)
class Transfer:
    kind: str  # "transferred" | "payout" | "zero"
    outgoing: str
    receiving: str
    seeded: PersonAccount
    enrolled: PersonAccount
    case_id: uuid.UUID


def _transfers(rng: random.Random, per_direction: int = PER_DIRECTION) -> list[Transfer]:
    """`per_direction` movers each way (the test_replicas and test_reconciler_replicas flows too),
    the kinds in turn."""
    transfers: list[Transfer] = []
    seq = 0
    for outgoing, receiving in ((ZHENGZHOU, JIUJIANG), (JIUJIANG, ZHENGZHOU)):
        for n in range(per_direction):
            seq += 1
            kind = KINDS[n % len(KINDS)]
            out, into = make_mover(
                rng,
                outgoing,
                receiving,
                seq,
                insurance_type=InsuranceType.EMPLOYEE,
                retiree=False,
                arrears=False,
                zero_balance=kind == "zero",
            )
            case_id = uuid.UUID(int=rng.getrandbits(128))
            transfers.append(Transfer(kind, outgoing, receiving, out, into, case_id))
    return transfers


async def _seed(provisioned: Provisioned, transfers: list[Transfer]) -> dict[str, int]:
    accounts: dict[str, list[PersonAccount]] = {code: [] for code in AGENCIES}
    for t in transfers:
        accounts[t.outgoing].append(t.seeded)
        accounts[t.receiving].append(t.enrolled)
    totals: dict[str, int] = {}
    for code, seeded in accounts.items():
        ledger = await SqliteLedger.open(provisioned.settings(code).ledger_path, code)
        try:
            await ledger.put_accounts(seeded)
            totals[code] = await ledger.total_balance_fen()
        finally:
            await ledger.close()
    return totals


def _application(t: Transfer) -> ApplicationSubmitted:
    person = t.seeded
    payout = t.kind == "payout"
    return ApplicationSubmitted(
        case_id=t.case_id,
        person=Person(name=person.name, gender=person.gender, id_number=person.id_number),
        insurance_type=person.insurance_type,
        from_region=t.outgoing,
        letter_number=f"LX-{t.receiving}-{t.case_id.hex[:8]}",
        payout_account=(
            BankAccount(
                bank_name="中国建设银行",
                bank_code="105100000017",
                account_name=person.name,
                account_number="6217000010001234567",
            )
            if payout
            else None
        ),
        payout_reason=PayoutReason.CANNOT_RECEIVE_FUNDS if payout else None,
    )


def _open_log(path: Path) -> IO[bytes]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("wb")


def _exists(path: Path) -> bool:
    return path.exists()


async def _start_reconciler(
    provisioned: Provisioned, log_dir: Path, start: int, crash_at: str | None
) -> AgentRun:
    """``jiexu reconcile`` configured as an operator would, its output in a log file per start."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JIEXU_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["JIEXU_AMQP_URL"] = provisioned.endpoint.amqp_url(vhost=provisioned.vhost)
    if crash_at:
        env[CRASH_AT_ENV] = crash_at
    log_path = log_dir / f"reconciler-{start}.log"
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


class Chaos:
    """The running processes, and the kills and connection closes done to them."""

    def __init__(
        self, provisioned: Provisioned, settings: dict[str, AgentSettings], vhost: TestVhost, log_dir: Path
    ) -> None:
        self.provisioned = provisioned
        self.settings = settings
        self.vhost = vhost
        self.log_dir = log_dir
        self.runs: dict[str, AgentRun] = {}
        self.finished: list[AgentRun] = []
        self.starts: Counter[str] = Counter()
        self.kills: Counter[str] = Counter()
        self.crashes: Counter[str] = Counter()
        self.closes = 0

    async def start(self, name: str) -> None:
        self.starts[name] += 1
        start = self.starts[name]
        crash_at = FIRST_CRASH[name] if self.crashes[name] == 0 else None
        if name == RECONCILER:
            run = await _start_reconciler(self.provisioned, self.log_dir, start, crash_at)
        else:
            run = await start_agent(self.settings[name], self.log_dir, crash_at=crash_at, start=start)
        self.runs[name] = run

    async def kill(self, name: str, *, counted: bool = True) -> None:
        run = self.runs.pop(name)
        if run.process.returncode is None:
            run.process.kill()
        status = await run.wait(WAIT_S)
        # 255: asyncio could not reap the child itself ("Unknown child process" warning), so it
        # does not know how the process ended; SIGKILLed or crashed, the output says which.
        assert status in (-signal.SIGKILL, 255), f"{name} ended on its own ({status}):\n{run.output}"
        self.finished.append(run)
        self.kills[name] += counted

    async def revive(self) -> None:
        """Start again any process that killed itself at its crash point."""
        for name, run in list(self.runs.items()):
            if run.process.returncode is not None:
                assert "jiexu crash point" in run.output, f"{name} ended on its own:\n{run.output}"
                self.crashes[name] += 1
                await self.kill(name, counted=False)
                await self.start(name)

    def close_connections(self) -> int:
        with self.vhost.management() as api:
            names = [c["name"] for c in api.list_connections() if c.get("vhost") == self.vhost.name]
            for name in names:
                api.close_connection(name, "chaos test")
        self.closes += 1
        return len(names)

    def enough(self) -> bool:
        names = (*AGENCIES, RECONCILER)
        return (
            all(self.kills[name] >= KILLS_EACH and self.crashes[name] == 1 for name in names)
            and self.closes >= CLOSES
        )

    async def run(self, rng: random.Random, stop: asyncio.Event) -> None:
        names = [*AGENCIES, RECONCILER]
        order: list[str] = []
        round_ = 0
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), rng.uniform(0.8, 2.0))
            if stop.is_set():
                return
            round_ += 1
            await self.revive()
            if round_ % 3 == 0:
                await asyncio.to_thread(self.close_connections)
                continue
            if not order:
                order = rng.sample(names, len(names))
            victim = order.pop()
            await self.kill(victim)
            await self.start(victim)

    async def consuming(self) -> bool:
        """Every process (the last start of each) is up: each inbox has its consumer."""
        admin = await connect(self.vhost.amqp_url, name="chaos-test-consumers")
        try:
            for code in (*AGENCIES, RECONCILER_CODE):
                _, consumers = await queue_counts(admin, inbox_queue(code))
                if consumers < 1:
                    return False
            return True
        finally:
            await admin.close()

    async def stop_all(self) -> None:
        """SIGTERM each process once it is up; each must drain and exit 0."""
        await _poll(self.consuming, "every process consuming")
        for name, run in list(self.runs.items()):
            status = await run.terminate(WAIT_S)
            del self.runs[name]
            self.finished.append(run)
            assert status == 0, f"{name} did not drain cleanly ({status}):\n{run.output}"


async def _poll(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    """Every second until ``condition`` holds; fail naming ``what`` after `WAIT_S`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while not await condition():
        assert loop.time() < deadline, f"gave up waiting for {what}"
        await asyncio.sleep(1.0)


async def _ended(opened: dict[str, OpenedService], transfers: list[Transfer]) -> bool:
    for t in transfers:
        for code in (t.outgoing, t.receiving):
            record = await opened[code].store.get_case(t.case_id)
            if record is None or record.state != State.COMPLETED.value:
                return False
    return True


async def _settled(opened: dict[str, OpenedService], report_path: Path, cases: int) -> bool:
    for service in opened.values():
        if await service.store.fetch_unpublished(1):
            return False
    if not _exists(report_path):
        return False
    report = await ReconciliationReport.open(report_path)
    try:
        counts = await report.counts()
        unsent = [e for e, sent in await report.outbox() if not sent]
    finally:
        await report.close()
    return counts["matched"] + counts["mismatched"] >= cases and not unsent


async def _check_books(
    opened: dict[str, OpenedService], transfers: list[Transfer], money_before: dict[str, int]
) -> None:
    for t in transfers:
        out = await opened[t.outgoing].ledger.statement(t.case_id)
        into = await opened[t.receiving].ledger.statement(t.case_id)
        balance = t.seeded.balance_fen
        moved = balance if t.kind == "transferred" else 0
        paid = balance if t.kind == "payout" else 0
        assert (out.amount_debited_fen, out.paid_out_fen, into.amount_credited_fen) == (moved, paid, moved)
        assert (into.months_credited, into.deemed_credited) == (
            out.months_certified,
            out.deemed_certified,
        ) == (t.seeded.months_paid, t.seeded.deemed_months)
        left = await opened[t.outgoing].ledger.lookup(t.seeded.id_number)
        arrived = await opened[t.receiving].ledger.lookup(t.seeded.id_number)
        assert left is not None and left.balance_fen == 0
        assert arrived is not None and arrived.balance_fen == moved
    debited = {c: await s.ledger.total_debited_fen() for c, s in opened.items()}
    credited = {c: await s.ledger.total_credited_fen() for c, s in opened.items()}
    for code, service in opened.items():
        after = await service.ledger.total_balance_fen()
        paid_out = await service.ledger.total_paid_out_fen()
        assert money_before[code] == after + debited[code] + paid_out - credited[code], code
    assert sum(debited.values()) == sum(credited.values())


async def _check_reconciled(report_path: Path, transfers: list[Transfer]) -> None:
    report = await ReconciliationReport.open(report_path)
    try:
        for t in transfers:
            record = await report.case(t.case_id)
            assert record is not None and record.status == "matched", (t.kind, record)
            assert (record.outgoing, record.receiving) == (t.outgoing, t.receiving)
        assert (await report.counts()) == {
            "open": 0,
            "matched": len(transfers),
            "mismatched": 0,
            "stuck": 0,
        }
        assert all(sent for _, sent in await report.outbox())
        for totals in await report.control_totals():
            assert totals.balanced, totals
    finally:
        await report.close()


async def _dead_letters(vhost: TestVhost) -> dict[str, list[tuple[str, str | None]]]:
    admin = await connect(vhost.amqp_url, name="chaos-test-inspect")
    try:
        return {
            code: [(letter.reason, letter.message_id) for letter in await list_dead_letters(admin, code)]
            for code in (*AGENCIES, RECONCILER_CODE)
        }
    finally:
        await admin.close()


async def test_agents_and_the_reconciler_killed_at_random_leave_every_dead_letter_queue_empty(
    rabbitmq_vhost: TestVhost, tmp_path: Path
) -> None:
    rng = random.Random(11)
    provisioned = provision(
        rabbitmq_vhost.endpoint,
        rabbitmq_vhost.name,
        [AgencyProfile(code) for code in AGENCIES],
        tmp_path / "world",
        user_prefix=f"c{uuid.uuid4().hex[:6]}-",
        retry_delays_ms=RETRY_DELAYS_MS,
    )
    settings = {code: provisioned.settings(code, deadline_interval_s=1.0) for code in AGENCIES}
    report_path = Paths(data_dir=provisioned.data_dir).report()
    transfers = _transfers(rng)
    money_before = await _seed(provisioned, transfers)
    chaos = Chaos(provisioned, settings, rabbitmq_vhost, tmp_path / "logs")
    opened: dict[str, OpenedService] = {}
    stop = asyncio.Event()
    chaos_task: asyncio.Task[None] | None = None
    try:
        for name in (*AGENCIES, RECONCILER):
            await chaos.start(name)
        for code, agency_settings in settings.items():
            opened[code] = await open_service(agency_settings)
        chaos_task = asyncio.create_task(chaos.run(rng, stop), name="chaos")
        for t in transfers:
            await opened[t.receiving].service.apply(_application(t))
            await asyncio.sleep(0.01)  # the applications arrive over a while, not in one batch

        async def ended_and_enough() -> bool:
            if chaos_task.done():
                chaos_task.result()  # a failed kill or restart fails the test here
            return chaos.enough() and await _ended(opened, transfers)

        await _poll(ended_and_enough, "every case ended, under enough chaos")
        stop.set()
        await chaos_task
        await _poll(
            lambda: _settled(opened, report_path, len(transfers)), "outboxes sent, cases reconciled"
        )
        await chaos.revive()
        await chaos.stop_all()

        await _check_books(opened, transfers, money_before)
        await _check_reconciled(report_path, transfers)
        dead = await _dead_letters(rabbitmq_vhost)
    finally:
        stop.set()
        if chaos_task is not None and not chaos_task.done():
            chaos_task.cancel()
            with contextlib.suppress(BaseException):
                await chaos_task
        for run in chaos.runs.values():
            if run.process.returncode is None:
                await run.terminate(WAIT_S)
        for service in opened.values():
            await service.close()
        with rabbitmq_vhost.management() as api:
            delete_agency_users(api, provisioned.spec)
    assert dead == {code: [] for code in (*AGENCIES, RECONCILER_CODE)}
    print(f"\nkills {dict(chaos.kills)} (crash points {dict(chaos.crashes)}), closes {chaos.closes}")
