"""Three replicas per agency on one PostgreSQL store and ledger, SIGKILLed at random (issue 12).

Two agencies each run three ``jiexu agent`` processes sharing the agency's PostgreSQL store schema
(``agency_<code>``), its PostgreSQL ledger (``ledger_<code>``) and its quorum inbox, and one
``jiexu reconcile`` process checks every case from both ends' statements. While a few hundred
transfers of every branch (transferred, paid out, zero balance) flow both ways, a chaos task kills
one replica (in a seeded order) every second or two and starts it again; each replica also dies
once at a crash point of its own (`agents.faults`: the relay's, the handler's and the ledger's).
Once every replica has been killed and every case has ended at both agencies, the chaos stops and
the test waits (bounded, never asserted as a duration) for the outboxes and the reconciliation to
settle, stops every process (drain), and checks:

* every case completed at both ends; in the PostgreSQL ledgers' operations table each case has
  each of its operations exactly once, the same operations as every other case of its branch;
  each balance moved once (or was paid out once), months certified = credited, money conserved
  to the fen (`tests.integration.test_chaos._check_books`);
* every case reconciled and matched (the three replicas kept one set of books);
* every dead-letter queue empty: three relays on one outbox publish each row once (rows claimed
  with a lease), and a row re-sent after a kill goes out marked ``x-jiexu-republished``;
* no reminder twice for one overdue step (with real dates none is due in a run this short).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import sys
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from yarl import URL

from agents.faults import CRASH_AT_ENV
from agents.ledger.postgres import PostgresLedger
from agents.service.paths import Paths
from agents.service.process import OpenedService, open_service
from agents.service.settings import AgentSettings
from agents.tools.bench.processes import settings_env
from agents.tools.provision import AgencyProfile, Provisioned, provision
from broker.connection import connect
from broker.names import RECONCILER_CODE, inbox_queue
from broker.pytest_plugin import TestVhost
from broker.topology import delete_agency_users
from schemas.registry import parse
from tests.integration.agent_processes import REPO, AgentRun
from tests.integration.postgres_support import postgres_url
from tests.integration.test_chaos import (
    AGENCIES,
    RETRY_DELAYS_MS,
    Transfer,
    _application,
    _check_books,
    _check_reconciled,
    _dead_letters,
    _ended,
    _open_log,
    _poll,
    _start_reconciler,
)
from tests.integration.test_chaos import _settled as settled_report
from tests.integration.test_chaos import _transfers as chaos_transfers
from tests.integration.transport_support import queue_counts

pytestmark = pytest.mark.integration

REPLICAS = 3
PER_DIRECTION = 150  # transfers each way: 300 cases, a third of each branch
WAIT_S = 240.0  # a bound on waiting for an outcome, never asserted as a duration
KILLS_EACH = 1  # each replica is killed at random at least this many times
# Each replica dies once at its own crash point, armed at every start until it has fired. Early
# visits: work is shared by three replicas, and one that has stopped working would never reach
# a late one.
CRASH_POINTS = {
    (AGENCIES[0], 0): "after_publish_before_mark@1",
    (AGENCIES[0], 1): "after_commit_before_publish@2",
    (AGENCIES[0], 2): "mid_ledger_transaction@2",
    (AGENCIES[1], 0): "before_publish@1",
    (AGENCIES[1], 1): "after_ledger_before_commit@1",
    (AGENCIES[1], 2): "after_handle_before_ack@2",
}
Replica = tuple[str, int]


@pytest.fixture
async def database_url() -> AsyncIterator[str]:
    """A fresh database (store and ledger schemas have fixed names per agency), dropped after."""
    server = postgres_url()
    try:
        admin = await asyncpg.connect(server, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        pytest.skip(f"PostgreSQL at {server} is unreachable ({exc!r})")
    name = f"jiexu_replicas_{uuid.uuid4().hex[:12]}"
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        yield str(URL(server).with_path(f"/{name}"))
    finally:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
        )
        await admin.execute(f"DROP DATABASE IF EXISTS {name}")
        await admin.close()


async def _seed(database_url: str, transfers: list[Transfer]) -> dict[str, int]:
    accounts: dict[str, list[object]] = {code: [] for code in AGENCIES}
    for t in transfers:
        accounts[t.outgoing].append(t.seeded)
        accounts[t.receiving].append(t.enrolled)
    totals: dict[str, int] = {}
    for code, seeded in accounts.items():
        ledger = await PostgresLedger.open(database_url, code)
        try:
            await ledger.put_accounts(seeded)  # type: ignore[arg-type]
            totals[code] = await ledger.total_balance_fen()
        finally:
            await ledger.close()
    return totals


async def _start_replica(
    settings: AgentSettings, replica: Replica, log_dir: Path, start: int, crash_at: str | None
) -> AgentRun:
    env = settings_env(settings)
    if crash_at:
        env[CRASH_AT_ENV] = crash_at
    code, n = replica
    log_path = log_dir / f"agent-{code}-r{n}-{start}.log"
    log = _open_log(log_path)
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "from agents.cli import main; main()",
            "agent",
            "--agency",
            code,
            cwd=REPO,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
    except BaseException:
        log.close()
        raise
    return AgentRun(code, process, log_path, log)


class Replicas:
    """The running replicas, and the kills done to them."""

    def __init__(
        self, settings: dict[str, AgentSettings], vhost: TestVhost, log_dir: Path
    ) -> None:
        self.settings = settings
        self.vhost = vhost
        self.log_dir = log_dir
        self.names: list[Replica] = [(code, n) for code in AGENCIES for n in range(REPLICAS)]
        self.runs: dict[Replica, AgentRun] = {}
        self.finished: list[AgentRun] = []
        self.starts: Counter[Replica] = Counter()
        self.kills: Counter[Replica] = Counter()
        self.crashes: Counter[Replica] = Counter()

    async def start(self, name: Replica) -> None:
        self.starts[name] += 1
        crash_at = CRASH_POINTS[name] if self.crashes[name] == 0 else None
        self.runs[name] = await _start_replica(
            self.settings[name[0]], name, self.log_dir, self.starts[name], crash_at
        )

    async def kill(self, name: Replica, *, counted: bool = True) -> None:
        run = self.runs.pop(name)
        if run.process.returncode is None:
            run.process.kill()
        status = await run.wait(WAIT_S)
        assert status in (-signal.SIGKILL, 255), f"{name} ended on its own ({status}):\n{run.output}"
        self.finished.append(run)
        self.kills[name] += counted

    async def revive(self) -> None:
        """Start again any replica that killed itself at its crash point."""
        for name, run in list(self.runs.items()):
            if run.process.returncode is not None:
                assert "jiexu crash point" in run.output, f"{name} ended on its own:\n{run.output}"
                self.crashes[name] += 1
                await self.kill(name, counted=False)
                await self.start(name)

    def enough(self) -> bool:
        return all(
            self.kills[name] >= KILLS_EACH and self.crashes[name] == 1 for name in self.names
        )

    def up(self, name: Replica) -> bool:
        """Started and consuming (its log says so): a replica still importing on a busy machine
        is not killed again, or a loaded machine would only ever be starting agents."""
        run = self.runs.get(name)
        return (
            run is not None
            and run.process.returncode is None
            and '"agent_started"' in run.output
        )

    async def run(self, rng: random.Random, stop: asyncio.Event) -> None:
        order: list[Replica] = []
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), rng.uniform(0.8, 2.0))
            if stop.is_set():
                return
            await self.revive()
            if not order:
                order = rng.sample(self.names, len(self.names))
            if not self.up(order[-1]):
                continue  # its turn comes when it is up
            victim = order.pop()
            await self.kill(victim)
            await self.start(victim)

    async def consuming(self) -> bool:
        admin = await connect(self.vhost.amqp_url, name="replicas-test-consumers")
        try:
            for code in AGENCIES:
                _, consumers = await queue_counts(admin, inbox_queue(code))
                if consumers < REPLICAS:
                    return False
            return True
        finally:
            await admin.close()

    async def stop_all(self) -> None:
        await _poll(self.consuming, "every replica consuming")
        for name, run in list(self.runs.items()):
            status = await run.terminate(WAIT_S)
            del self.runs[name]
            self.finished.append(run)
            assert status == 0, f"{name} did not drain cleanly ({status}):\n{run.output}"


async def _settled(
    opened: dict[str, OpenedService], reconciler: Path, cases: int, database_url: str
) -> bool:
    conn = await asyncpg.connect(database_url)
    try:
        for code in AGENCIES:
            unpublished = await conn.fetchval(
                f"SELECT count(*) FROM agency_{code}.outbox WHERE published_at IS NULL"
            )
            if unpublished:
                return False
    finally:
        await conn.close()
    return await settled_report({}, reconciler, cases)


async def _ledger_ops(database_url: str) -> dict[str, dict[uuid.UUID, Counter[str]]]:
    """Per agency, per case: how many rows of each operation its ledger holds."""
    conn = await asyncpg.connect(database_url)
    try:
        ops: dict[str, dict[uuid.UUID, Counter[str]]] = {}
        for code in AGENCIES:
            per_case: dict[uuid.UUID, Counter[str]] = defaultdict(Counter)
            for row in await conn.fetch(f"SELECT case_id, op FROM ledger_{code}.ledger_ops"):
                per_case[row["case_id"]][row["op"]] += 1
            ops[code] = dict(per_case)
        return ops
    finally:
        await conn.close()


async def _reminders(database_url: str) -> Counter[tuple[str, str]]:
    """How many reminders each agency queued per (case, overdue step)."""
    conn = await asyncpg.connect(database_url)
    try:
        counted: Counter[tuple[str, str]] = Counter()
        for code in AGENCIES:
            rows = await conn.fetch(
                f"SELECT body FROM agency_{code}.outbox WHERE message_type = 'reminder'"
            )
            for row in rows:
                message = parse(bytes(row["body"]))
                step = message.document.overdue_step.value  # type: ignore[attr-defined]
                counted[(f"{code}:{message.envelope.case_id}", step)] += 1
        return counted
    finally:
        await conn.close()


def _check_ops(
    ops: dict[str, dict[uuid.UUID, Counter[str]]], transfers: list[Transfer]
) -> dict[str, set[tuple[str, tuple[str, ...]]]]:
    """Each operation once per case, and one set of operations per branch and role."""
    shapes: dict[str, set[tuple[str, tuple[str, ...]]]] = defaultdict(set)
    for t in transfers:
        for code, role in ((t.outgoing, "outgoing"), (t.receiving, "receiving")):
            applied = ops[code].get(t.case_id, Counter())
            assert all(n == 1 for n in applied.values()), (t.kind, role, applied)
            shapes[t.kind].add((role, tuple(sorted(applied))))
    for kind, seen in shapes.items():
        roles = Counter(role for role, _ in seen)
        assert roles == {"outgoing": 1, "receiving": 1}, (kind, seen)
        assert ("outgoing", ()) not in seen, kind  # every case left the outgoing books
    return dict(shapes)


async def test_three_replicas_per_agency_killed_at_random_apply_each_operation_once(
    rabbitmq_vhost: TestVhost, tmp_path: Path, database_url: str
) -> None:
    rng = random.Random(12)
    provisioned: Provisioned = provision(
        rabbitmq_vhost.endpoint,
        rabbitmq_vhost.name,
        [AgencyProfile(code) for code in AGENCIES],
        tmp_path / "world",
        user_prefix=f"r{uuid.uuid4().hex[:6]}-",
        retry_delays_ms=RETRY_DELAYS_MS,
    )
    settings = {
        code: provisioned.settings(
            code,
            database_url=database_url,
            ledger="postgres",
            deadline_interval_s=1.0,
            outbox_lease_s=3.0,
            recover_grace_s=2.0,
            prefetch=4,  # 6 replicas' pools stay well inside PostgreSQL's max_connections
        )
        for code in AGENCIES
    }
    report_path = Paths(data_dir=provisioned.data_dir).report()
    transfers = chaos_transfers(rng, PER_DIRECTION)
    money_before = await _seed(database_url, transfers)
    replicas = Replicas(settings, rabbitmq_vhost, tmp_path / "logs")
    reconciler: AgentRun | None = None
    opened: dict[str, OpenedService] = {}
    stop = asyncio.Event()
    chaos_task: asyncio.Task[None] | None = None
    try:
        reconciler = await _start_reconciler(provisioned, tmp_path / "logs", 1, None)
        for name in replicas.names:
            await replicas.start(name)
        for code, agency_settings in settings.items():
            opened[code] = await open_service(agency_settings)
        chaos_task = asyncio.create_task(replicas.run(rng, stop), name="chaos")
        for t in transfers:
            await opened[t.receiving].service.apply(_application(t))
            await asyncio.sleep(0.01)

        async def ended_and_enough() -> bool:
            if chaos_task.done():
                chaos_task.result()
            return replicas.enough() and await _ended(opened, transfers)

        await _poll(ended_and_enough, "every case ended, every replica killed")
        stop.set()
        await chaos_task
        await _poll(
            lambda: _settled(opened, report_path, len(transfers), database_url),
            "outboxes published, cases reconciled",
        )
        await replicas.revive()
        await replicas.stop_all()
        assert reconciler is not None
        assert await reconciler.terminate(WAIT_S) == 0, reconciler.output

        await _check_books(opened, transfers, money_before)
        shapes = _check_ops(await _ledger_ops(database_url), transfers)
        await _check_reconciled(report_path, transfers)
        reminders = await _reminders(database_url)
        dead = await _dead_letters(rabbitmq_vhost)
    finally:
        stop.set()
        if chaos_task is not None and not chaos_task.done():
            chaos_task.cancel()
            with contextlib.suppress(BaseException):
                await chaos_task
        for run in replicas.runs.values():
            if run.process.returncode is None:
                await run.terminate(WAIT_S)
        if reconciler is not None and reconciler.process.returncode is None:
            await reconciler.terminate(WAIT_S)
        for service in opened.values():
            await service.close()
        with rabbitmq_vhost.management() as api:
            delete_agency_users(api, provisioned.spec)
    assert dead == {code: [] for code in (*AGENCIES, RECONCILER_CODE)}
    assert all(n == 1 for n in reminders.values()), reminders
    print(
        f"\nkills {dict(replicas.kills)}, crash points {dict(replicas.crashes)}, "
        f"reminders {len(reminders)}, operations per branch {shapes}"
    )
