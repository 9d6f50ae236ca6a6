"""An agent killed with SIGKILL at any step boundary and restarted still completes every case, and
no account is debited, paid out or credited twice (issue 5).

Both agencies run as real ``jiexu agent`` processes on a real broker with SQLite files. The victim
is started with ``JIEXU_CRASH_AT`` (see `agents.faults`); the test waits until it has killed
itself at that point (so it cannot pass without crashing), restarts it without the variable (or
with the next crash of the scenario), waits until every case is terminal at both ends, stops both
agents, and then checks the books: every
case completed, each balance left one account once and arrived in one other once (or was paid
out once), the months certified equal the months credited, the money in both ledgers adds up to
the fen, and nothing is left in a dead-letter queue (a relay that crashed between the confirm and
``mark_published`` sends its last batch again, marked ``x-jiexu-republished``; the recipient's
inbox of handled ids acks the copy as a duplicate instead of dead-lettering it as a replay).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from agents.domain.case import State
from agents.faults import CRASH_AT_ENV, parse_crash_at
from agents.ledger.sqlite import SqliteLedger
from agents.service.agency import CONSUMER
from agents.service.process import OpenedService, open_service
from agents.service.settings import AgentSettings
from agents.tools.provision import AgencyProfile, provision
from agents.tools.seed import make_mover
from broker.connection import BrokerConnection, connect
from broker.dlq import list_dead_letters
from broker.names import RECONCILER_CODE, inbox_queue, retry_queue
from broker.pytest_plugin import TestVhost
from broker.topology import delete_agency_users
from schemas.common import InsuranceType
from tests.integration.agent_processes import REPO, AgentRun, start_agent
from tests.integration.agent_world import TERMINAL
from tests.integration.log_scan import assert_no_pii
from tests.integration.test_chaos import Transfer, _application, _seed
from tests.integration.transport_support import eventually

JIUJIANG, ZHENGZHOU = "360400", "410100"
VICTIM = JIUJIANG
WAIT_S = 90.0  # a bound on waiting for an outcome, never asserted as a duration
RETRY_DELAYS_MS = (100, 300)

# The victim (Jiujiang) is the receiving agency of three transfers and the outgoing agency of
# three, so it meets every point in both roles; `@N` kills it in the middle of the work. What it
# reaches at least: 6 outbox commits with messages (3 forms, 3 completion notices), 3 relay
# batches (letters, forms, notices), 11 handled messages, 1 payout case with two ledger commands,
# 7 ledger operations, 6 ledger results. Each scenario lists the crash of each start of the
# victim; the start after the last crash runs clean. The last scenario also kills the recovery
# itself: the restarted agent dies while re-running the case its first life left half done.
CRASHES: list[tuple[str, ...]] = [
    ("after_commit_before_publish@3",),
    ("before_publish@2",),
    ("after_publish_before_mark@2",),
    ("mid_ledger_change@1",),
    ("mid_ledger_transaction@3",),
    ("after_ledger_before_commit@2",),
    ("after_handle_before_ack@4",),
    ("mid_ledger_transaction@2", "after_ledger_before_commit@1"),
]
CRASH_IDS = ["+".join(spec.partition("@")[0] for spec in crashes) for crashes in CRASHES]


def _transfers(rng: random.Random) -> list[Transfer]:
    transfers: list[Transfer] = []
    seq = 0
    for outgoing, receiving in ((ZHENGZHOU, JIUJIANG), (JIUJIANG, ZHENGZHOU)):
        for kind in ("transferred", "payout", "zero"):
            seq += 1
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
            transfers.append(Transfer(kind, outgoing, receiving, out, into, uuid.uuid4()))
    return transfers


async def _all_terminal(opened: dict[str, OpenedService], transfers: list[Transfer]) -> bool:
    for t in transfers:
        for code in (t.outgoing, t.receiving):
            record = await opened[code].store.get_case(t.case_id)
            if record is None or record.state not in TERMINAL:
                return False
    return True


async def _outboxes_empty(opened: dict[str, OpenedService]) -> bool:
    for service in opened.values():
        if await service.store.fetch_unpublished(1):
            return False
    return True


async def _peek(admin: BrokerConnection, queue_name: str) -> list[str | None]:
    """The message ids in a queue, left in place (closing the channel returns them)."""
    channel = await admin.channel(confirms=False)
    try:
        queue = await channel.get_queue(queue_name, ensure=True)
        ids: list[str | None] = []
        while (message := await queue.get(no_ack=False, fail=False)) is not None:
            ids.append(message.message_id)
        return ids
    finally:
        admin.forget(channel)
        await channel.close()


async def _leftovers(
    vhost: TestVhost, opened: dict[str, OpenedService]
) -> dict[str, dict[str, list[str | None]]]:
    """Per agency: dead letters by reason, and what is still in its inbox and retry queues.

    Every one must be a copy of a message that agency has handled (its store's inbox has the id).
    """
    found: dict[str, dict[str, list[str | None]]] = {}
    admin = await connect(vhost.amqp_url, name="crash-test-inspect")
    try:
        for code, service in opened.items():
            here: dict[str, list[str | None]] = {}
            for letter in await list_dead_letters(admin, code):
                here.setdefault(f"dlq:{letter.reason}", []).append(letter.message_id)
            for name in (inbox_queue(code), *(retry_queue(code, ms) for ms in RETRY_DELAYS_MS)):
                ids = await _peek(admin, name)
                if ids:
                    here[name] = ids
            for where, ids in here.items():
                for message_id in ids:
                    assert message_id is not None, f"{code} {where}: a message without an id"
                    senders = [*opened, RECONCILER_CODE]  # the inbox is keyed by sender too
                    handled = [
                        await service.store.has_handled(CONSUMER, uuid.UUID(message_id), sender=s)
                        for s in senders
                    ]
                    assert any(handled), f"{code} {where}: message {message_id} was never handled"
            found[code] = here
    finally:
        await admin.close()
    return found


def _ledger_operations(path: Path) -> int:
    """Committed ledger operations (idempotency rows), read straight from the SQLite file."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        (count,) = db.execute("SELECT COUNT(*) FROM ledger_ops").fetchone()
    return int(count)


async def _check_crashed_state(
    crash_at: str,
    settings: AgentSettings,
    ledger: SqliteLedger,
    money_before: int,
    transfers: list[Transfer],
) -> None:
    """The victim's books between the crash and the restart, for the two ledger points."""
    ((point, visit),) = parse_crash_at(crash_at).items()
    if point == "mid_ledger_transaction":
        # The killed operation rolled back whole: its idempotency row is absent (at most the visits
        # before it committed: the ledger groups concurrent operations into one commit, and those
        # sharing the killed one's commit roll back with it) and the balances agree with exactly
        # the committed operations.
        assert _ledger_operations(settings.ledger_path) <= visit - 1
        assert money_before == (
            await ledger.total_balance_fen()
            + await ledger.total_debited_fen()
            + await ledger.total_paid_out_fen()
            - await ledger.total_credited_fen()
        )
    if point == "mid_ledger_change":
        payout = next(t for t in transfers if t.outgoing == VICTIM and t.kind == "payout")
        statement = await ledger.statement(payout.case_id)
        assert statement.role == "outgoing"  # terminate_and_debit applied...
        assert statement.paid_out_fen == 0  # ...pay_out not: the balance is still there
        account = await ledger.lookup(payout.seeded.id_number)
        assert account is not None and account.balance_fen == payout.seeded.balance_fen > 0
        assert not account.enrolled


async def _check_books(
    opened: dict[str, OpenedService], transfers: list[Transfer], money_before: dict[str, int]
) -> None:
    for t in transfers:
        for code in (t.outgoing, t.receiving):
            record = await opened[code].store.get_case(t.case_id)
            assert record is not None and record.state == State.COMPLETED.value, (
                t.kind,
                code,
                record.state if record else None,
            )
        out = await opened[t.outgoing].ledger.statement(t.case_id)
        into = await opened[t.receiving].ledger.statement(t.case_id)
        balance = t.seeded.balance_fen
        moved = balance if t.kind == "transferred" else 0
        paid = balance if t.kind == "payout" else 0
        assert (t.kind == "zero") == (balance == 0)
        assert (out.amount_debited_fen, out.paid_out_fen) == (moved, paid), t.kind
        assert into.amount_credited_fen == moved, t.kind
        assert (out.months_certified, out.deemed_certified) == (
            t.seeded.months_paid,
            t.seeded.deemed_months,
        )
        assert (into.months_credited, into.deemed_credited) == (
            out.months_certified,
            out.deemed_certified,
        )
        left = await opened[t.outgoing].ledger.lookup(t.seeded.id_number)
        arrived = await opened[t.receiving].ledger.lookup(t.seeded.id_number)
        assert left is not None and left.balance_fen == 0
        assert arrived is not None and arrived.balance_fen == moved
        assert arrived.months_paid == t.seeded.months_paid
    debited = {c: await s.ledger.total_debited_fen() for c, s in opened.items()}
    credited = {c: await s.ledger.total_credited_fen() for c, s in opened.items()}
    paid_out = {c: await s.ledger.total_paid_out_fen() for c, s in opened.items()}
    for code, service in opened.items():
        after = await service.ledger.total_balance_fen()
        assert money_before[code] == after + debited[code] + paid_out[code] - credited[code], code
        assert debited[code] == sum(
            t.seeded.balance_fen for t in transfers if t.outgoing == code and t.kind == "transferred"
        )
        assert paid_out[code] == sum(
            t.seeded.balance_fen for t in transfers if t.outgoing == code and t.kind == "payout"
        )
    assert sum(debited.values()) == sum(credited.values())


async def _crashed(run: AgentRun, crash_at: str) -> None:
    """The process ended, and of this crash point: otherwise the test would prove nothing."""
    status = await run.wait(WAIT_S)
    assert status == -signal.SIGKILL, f"exit status {status}:\n{run.output}"
    ((point, visit),) = parse_crash_at(crash_at).items()
    assert f"jiexu crash point {point}@{visit} reached" in run.output, run.output


@pytest.mark.parametrize("crashes", CRASHES, ids=CRASH_IDS)
async def test_an_agent_killed_at_a_step_boundary_and_restarted_completes_every_case_once(
    rabbitmq_vhost: TestVhost, tmp_path: Path, crashes: tuple[str, ...]
) -> None:
    provisioned = provision(
        rabbitmq_vhost.endpoint,
        rabbitmq_vhost.name,
        [AgencyProfile(JIUJIANG), AgencyProfile(ZHENGZHOU)],
        tmp_path / "world",
        user_prefix=f"t{uuid.uuid4().hex[:6]}-",
        retry_delays_ms=RETRY_DELAYS_MS,
    )
    # Deadlines every half second: `recover` re-runs pending ledger commands soon after a start.
    settings = {code: provisioned.settings(code, deadline_interval_s=0.5) for code in (JIUJIANG, ZHENGZHOU)}
    transfers = _transfers(random.Random(5))
    money_before = await _seed(provisioned, transfers)
    logs = tmp_path / "logs"
    runs: list[AgentRun] = []
    opened: dict[str, OpenedService] = {}
    try:
        runs.append(await start_agent(settings[VICTIM], logs, crash_at=crashes[0]))
        runs.append(await start_agent(settings[ZHENGZHOU], logs))
        for code, agency_settings in settings.items():
            opened[code] = await open_service(agency_settings)
        for t in transfers:
            await opened[t.receiving].service.apply(_application(t))

        await _crashed(runs[0], crashes[0])
        await _check_crashed_state(
            crashes[0], settings[VICTIM], opened[VICTIM].ledger, money_before[VICTIM], transfers
        )
        for start, crash_at in enumerate(crashes[1:], start=2):
            run = await start_agent(settings[VICTIM], logs, crash_at=crash_at, start=start)
            runs.append(run)
            await _crashed(run, crash_at)
        runs.append(await start_agent(settings[VICTIM], logs, start=len(crashes) + 1))

        await eventually(lambda: _all_terminal(opened, transfers), "every case terminal", WAIT_S)
        await eventually(lambda: _outboxes_empty(opened), "every outbox published", WAIT_S)
        for run in runs:
            if run.process.returncode is None:
                assert await run.terminate(WAIT_S) == 0, run.output

        await _check_books(opened, transfers, money_before)
        leftovers = await _leftovers(rabbitmq_vhost, opened)
    finally:
        for run in runs:
            if run.process.returncode is None:
                await run.terminate(WAIT_S)
        for service in opened.values():
            await service.close()
        with rabbitmq_vhost.management() as api:
            delete_agency_users(api, provisioned.spec)
    # Every agent's log, every start: no raw ID number, name or account number got through.
    people = [t.seeded for t in transfers]
    assert_no_pii(
        sorted(logs.glob("agent-*.log")),
        names=[p.name for p in people],
        numbers=[p.id_number for p in people] + ["6217000010001234567"],
    )
    # Copies of handled messages only (checked above), at most still in an inbox; none dead-lettered:
    # the relay marks what it may have sent before the kill as republished. Shown with -s.
    for code, here in leftovers.items():
        assert set(here) <= {inbox_queue(code)}, (code, here)
    print(f"\n{' then '.join(crashes)}: left over {leftovers}")


def _python_with(crash_at: str, script: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != CRASH_AT_ENV}
    env[CRASH_AT_ENV] = crash_at
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=False
    )


def test_a_crash_point_kills_the_process_on_the_visit_it_names_and_not_before() -> None:
    done = _python_with(
        "before_publish@3, mid_ledger_change",
        "from agents.faults import crash_point\n"
        "for i in range(1, 6):\n"
        "    crash_point('after_handle_before_ack')\n"
        "    crash_point('before_publish')\n"
        "    print(i, flush=True)\n",
    )
    assert done.returncode == -signal.SIGKILL
    assert done.stdout.split() == ["1", "2"]
    assert "jiexu crash point before_publish@3 reached" in done.stderr


def test_an_unknown_crash_point_stops_the_process_at_import() -> None:
    done = _python_with("before_pubish", "import agents.faults")
    assert done.returncode == 1
    assert "unknown crash point 'before_pubish'" in done.stderr
