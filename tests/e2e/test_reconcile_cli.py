"""`jiexu reconcile --once` and `jiexu reconcile --report` through the command line, real broker."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import date
from pathlib import Path

import structlog
from typer.testing import CliRunner, Result

from agents.cli import app
from broker.connection import connect
from broker.directory import AgencyDirectory
from broker.names import RECONCILER_CODE, inbox_queue
from broker.publisher import Publisher
from broker.pytest_plugin import TestVhost
from broker.signing import Ed25519PrivateKey, generate_private_key, private_key_path, save_private_key
from broker.topology import AgencyCredentials, TopologySpec, write_credentials
from schemas.common import Gender, InsuranceType, Person, make_citizen_id
from schemas.information import BalanceDisposition, InformationFormV2
from schemas.notices import TransferCompletedV1
from schemas.registry import envelope_for
from tests.integration.transport_support import A, B, directory_entry


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
