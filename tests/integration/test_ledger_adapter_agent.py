"""``jiexu agent`` with an agency's own ledger adapter, named by ``JIEXU_LEDGER=module:factory``.

The adapter is a module written to a temporary directory, outside the package, and found on
``PYTHONPATH`` as an integration team's would be. It keeps the receiving agency's books in a file
of its own (``mybooks.db`` beside the default ledger's place) and notes every process that opens
it. A transfer into that agency completes through it: the credit is in the adapter's books, and the
default ledger file is never made.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import uuid
from pathlib import Path

import pytest

from agents.domain.case import ApplicationSubmitted, State
from agents.ledger.sqlite import SqliteLedger
from agents.service.process import open_service
from agents.tools.bench.processes import settings_env
from agents.tools.provision import AgencyProfile, provision
from agents.tools.seed import make_mover
from broker.pytest_plugin import TestVhost
from broker.topology import delete_agency_users
from schemas.common import InsuranceType, Person
from tests.integration.agent_processes import REPO, AgentRun
from tests.integration.test_chaos import _open_log

pytestmark = pytest.mark.integration

OUTGOING, RECEIVING = "360400", "410100"
WAIT_S = 90.0  # a bound on waiting, never asserted as a duration

ADAPTER = '''\
"""An agency's own ledger adapter (here: the reference rules in a file of its choosing)."""
import os

from agents.ledger.sqlite import SqliteLedger


async def open_books(context):
    with open(context.data_dir / "mybooks.opened", "a", encoding="utf-8") as notes:
        notes.write(f"{os.getpid()} {context.agency}\\n")
    return await SqliteLedger.open(context.data_dir / "mybooks.db", context.agency, clock=context.clock)
'''


async def _agent(env: dict[str, str], code: str, log_dir: Path) -> AgentRun:
    log_path = log_dir / f"agent-{code}.log"
    log = _open_log(log_path)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from agents.cli import main; main()", "agent", "--agency", code,
        cwd=REPO, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=log,
        stderr=asyncio.subprocess.STDOUT,
    )
    return AgentRun(code, process, log_path, log)


async def test_an_agent_runs_a_transfer_through_an_adapter_named_by_jiexu_ledger(
    rabbitmq_vhost: TestVhost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    adapters = tmp_path / "adapters"
    adapters.mkdir()
    (adapters / "mybooks_jiexu.py").write_text(ADAPTER, encoding="utf-8")
    monkeypatch.syspath_prepend(str(adapters))  # this process's front office opens it too
    provisioned = provision(
        rabbitmq_vhost.endpoint,
        rabbitmq_vhost.name,
        [AgencyProfile(OUTGOING), AgencyProfile(RECEIVING)],
        tmp_path / "world",
        user_prefix=f"l{uuid.uuid4().hex[:6]}-",
        retry_delays_ms=(100, 300),
    )
    settings = {
        OUTGOING: provisioned.settings(OUTGOING),
        RECEIVING: provisioned.settings(RECEIVING, ledger="mybooks_jiexu:open_books"),
    }
    out, into = make_mover(
        random.Random(12), OUTGOING, RECEIVING, 1, insurance_type=InsuranceType.EMPLOYEE,
        retiree=False, arrears=False, zero_balance=False,
    )
    outgoing_books = await SqliteLedger.open(settings[OUTGOING].ledger_path, OUTGOING)
    await outgoing_books.put_accounts([out])
    await outgoing_books.close()
    data_dir = settings[RECEIVING].agency_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    receiving_books = await SqliteLedger.open(data_dir / "mybooks.db", RECEIVING)
    await receiving_books.put_accounts([into])
    await receiving_books.close()

    base = dict(os.environ)
    base["PYTHONPATH"] = os.pathsep.join(filter(None, [str(adapters), base.get("PYTHONPATH")]))
    runs: list[AgentRun] = []
    try:
        for code, agency_settings in settings.items():
            runs.append(await _agent(settings_env(agency_settings, base), code, tmp_path / "logs"))
        opened = {code: await open_service(s) for code, s in settings.items()}
        try:
            case_id = uuid.uuid4()
            await opened[RECEIVING].service.apply(
                ApplicationSubmitted(
                    case_id=case_id,
                    person=Person(name=out.name, gender=out.gender, id_number=out.id_number),
                    insurance_type=out.insurance_type,
                    from_region=OUTGOING,
                    letter_number=f"LX-{case_id.hex[:8]}",
                )
            )
            loop = asyncio.get_running_loop()
            deadline = loop.time() + WAIT_S
            while True:
                states = [
                    (await opened[code].store.get_case(case_id)) for code in (OUTGOING, RECEIVING)
                ]
                if all(r is not None and r.state == State.COMPLETED.value for r in states):
                    break
                assert loop.time() < deadline, [r.state if r else None for r in states] + [
                    run.output for run in runs
                ]
                await asyncio.sleep(0.5)
            statement = await opened[RECEIVING].ledger.statement(case_id)
            assert statement.amount_credited_fen == out.balance_fen > 0
            assert statement.months_credited == out.months_paid
        finally:
            for service in opened.values():
                await service.close()
        for run in runs:
            assert await run.terminate(WAIT_S) == 0, run.output
    finally:
        for run in runs:
            if run.process.returncode is None:
                await run.terminate(WAIT_S)
        with rabbitmq_vhost.management() as api:
            delete_agency_users(api, provisioned.spec)
    opened_by = (data_dir / "mybooks.opened").read_text(encoding="utf-8").split()
    agent_pid = str(runs[1].process.pid)
    assert agent_pid in opened_by  # the agent process loaded the adapter
    assert not settings[RECEIVING].ledger_path.exists()  # the default ledger was never opened
    books = await SqliteLedger.open(data_dir / "mybooks.db", RECEIVING)
    try:
        arrived = await books.lookup(out.id_number)
        assert arrived is not None and arrived.balance_fen == out.balance_fen
    finally:
        await books.close()


def test_agent_refuses_an_unknown_ledger_in_one_line(tmp_path: Path) -> None:
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("JIEXU_")}
    env["PYTHONPATH"] = str(REPO)
    env["JIEXU_LEDGER"] = "no_such_module_xyz:open_books"
    result = subprocess.run(
        [sys.executable, "-c", "from agents.cli import main; main()", "agent", "--agency", "360400",
         "--data-dir", str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no_such_module_xyz" in lines[0], result.stderr
