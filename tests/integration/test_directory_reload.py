"""A running agent follows the agency directory file (issue 13): an agency added after the agent
started is dealt with, a changed bank account is paid, a bad replacement is refused with one
warning while the directory in force stays, all without a restart; on a change of the file and on
SIGHUP."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from structlog.testing import capture_logs

from agents.reconcile.process import ReconcilerProcess, reconciler_amqp_url
from agents.reconcile.settings import ReconcilerSettings
from agents.service.directory_watch import DirectoryWatch
from agents.service.process import AgentProcess
from agents.tools.provision import AgencyProfile, Provisioned
from broker.connection import connect
from broker.directory import AgencyDirectory, AgencyEntry, DirectoryKey
from broker.directory_trust import OPERATOR, sign_directory
from broker.dlq import list_dead_letters
from broker.names import RECONCILER_CODE
from broker.pytest_plugin import TestVhost
from broker.signing import load_private_key
from schemas.notices import OverdueStep, ReminderV1
from tests.integration.agent_world import World, agent_world

A, B = "360400", "441900"  # Jiujiang receives from Dongguan
MOVER = {"zero_balance": False, "arrears": False, "retiree": False, "insurance_type": "310"}


def _write_directory(provisioned: Provisioned, entries: list[AgencyEntry], *, sign: bool = True) -> None:
    AgencyDirectory(entries).save(provisioned.directory_path)
    if sign:
        operator = load_private_key(provisioned.secrets_dir / f"{OPERATOR}.ed25519.pem")
        sign_directory(provisioned.directory_path, operator)


async def _until(condition: Callable[[], bool], what: str, within_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.02)


def _watch(agent: AgentProcess) -> DirectoryWatch:
    assert agent.parts is not None
    return agent.parts.directory_watch


async def _transfer(world: World, outgoing: str, receiving: str) -> None:
    out, _ = await world.mover(outgoing, receiving, **MOVER)
    case_id = await world.apply(receiving, outgoing, out)
    assert await world.wait_terminal(receiving, case_id) == "completed"
    assert await world.wait_terminal(outgoing, case_id) == "completed"


async def test_an_agency_added_after_the_start_is_dealt_with_without_a_restart(
    rabbitmq_vhost: TestVhost, tmp_path: Path
) -> None:
    async with agent_world(rabbitmq_vhost, tmp_path, [AgencyProfile(A), AgencyProfile(B)]) as world:
        provisioned = world.provisioned
        everyone = list(world.directory)
        _write_directory(provisioned, [e for e in everyone if e.code != B])
        jiujiang = await world.start(A, directory_check_s=0.05)
        assert B not in jiujiang.service.directory

        with capture_logs() as logs:
            _write_directory(provisioned, everyone)  # the operator adds Dongguan, signed
            await _until(lambda: B in jiujiang.service.directory, "Dongguan in Jiujiang's directory")
        assert jiujiang.consumer is not None and jiujiang.consumer.directory is jiujiang.service.directory
        (reloaded,) = [e for e in logs if e["event"] == "directory_reloaded"]
        assert reloaded["added"] == [B] and reloaded["version"] == _watch(jiujiang).current.version

        await world.start(B)  # reads the new file at its start
        await _transfer(world, B, A)  # Dongguan's form and money are accepted by Jiujiang
        assert world.agents[A] is jiujiang


async def test_a_bad_replacement_is_refused_and_the_directory_in_force_stays(
    rabbitmq_vhost: TestVhost, tmp_path: Path
) -> None:
    async with agent_world(rabbitmq_vhost, tmp_path, [AgencyProfile(A), AgencyProfile(B)]) as world:
        provisioned = world.provisioned
        everyone = list(world.directory)
        jiujiang = await world.start(A, directory_check_s=0.05)
        await world.start(B, directory_check_s=0.05)
        in_force = _watch(jiujiang).current

        with capture_logs() as logs:
            # Dongguan removed without the operator's signature (the .sig is the old file's).
            _write_directory(provisioned, [e for e in everyone if e.code != B], sign=False)
            await _until(lambda: _watch(jiujiang).refusals > 0, "Jiujiang refusing the file")
            await asyncio.sleep(0.3)  # several more checks of the same bad file
        refused = [
            e for e in logs
            if e["event"] == "directory_reload_refused" and e["version_in_force"] == in_force.version
        ]
        assert len(refused) == 2  # one per agent, once each
        assert all("does not verify" in e["error"] for e in refused)
        assert _watch(jiujiang).current is in_force and B in jiujiang.service.directory

        await _transfer(world, B, A)  # the old directory, with Dongguan, still in force


async def test_sighup_puts_a_changed_account_in_force_for_the_next_transfer(
    rabbitmq_vhost: TestVhost, tmp_path: Path
) -> None:
    async with agent_world(rabbitmq_vhost, tmp_path, [AgencyProfile(A), AgencyProfile(B)]) as world:
        provisioned = world.provisioned
        dongguan = await world.start(B, directory_check_s=0)  # SIGHUP only
        await world.start(A)
        entries = list(world.directory)
        jiujiang_entry = next(e for e in entries if e.code == A)
        moved = jiujiang_entry.bank_account.model_copy(update={"account_number": "36050199990000000002"})
        entries = [e if e.code != A else e.model_copy(update={"bank_account": moved}) for e in entries]
        _write_directory(provisioned, entries)  # Jiujiang's new account, signed

        stop_reloading = _watch(dongguan).on_sighup()
        try:
            os.kill(os.getpid(), signal.SIGHUP)
            await _until(lambda: _watch(dongguan).reloads == 1, "Dongguan reloading on SIGHUP")
        finally:
            stop_reloading()
        assert dongguan.service.directory.get(A).bank_account.account_number == "36050199990000000002"

        out, _ = await world.mover(B, A, **MOVER)
        case_id = await world.apply(A, B, out)
        assert await world.wait_terminal(A, case_id) == "completed"
        (transfer,) = [s for s in world.sent(B, case_id) if s.type == "fund_transfer"]
        assert transfer.envelope["payload"]["payee_account"]["account_number"] == "36050199990000000002"


async def test_a_key_revoked_while_the_agent_runs_is_refused_from_then_on(
    rabbitmq_vhost: TestVhost, tmp_path: Path
) -> None:
    async with agent_world(rabbitmq_vhost, tmp_path, [AgencyProfile(A), AgencyProfile(B)]) as world:
        provisioned = world.provisioned
        jiujiang = await world.start(A, directory_check_s=0.05)
        entries = list(world.directory)
        revoked = [
            e if e.code != B
            else e.model_copy(
                update={"keys": (DirectoryKey(key_id="2026-01", public_key=e.public_key, revoked=True),)}
            )
            for e in entries
        ]
        _write_directory(provisioned, revoked)
        await _until(lambda: _watch(jiujiang).reloads == 1, "Jiujiang reloading the directory")
        assert jiujiang.service.directory.valid_keys(B) == ()

        today = jiujiang.clock.today()
        message_id = uuid.uuid4()
        async with world.impersonate(B) as dongguan:  # still signing with the revoked key
            await dongguan.send(
                ReminderV1(
                    overdue_step=OverdueStep.FUND_TRANSFER,
                    waiting_since=today,
                    due_on=today + timedelta(days=1),
                ),
                recipient=A,
                case_id=uuid.uuid4(),
                message_id=message_id,
            )
        admin = await connect(rabbitmq_vhost.amqp_url, name="test-admin")
        try:
            deadline = asyncio.get_running_loop().time() + 30
            while not (letters := await list_dead_letters(admin, A)):
                assert asyncio.get_running_loop().time() < deadline, "nothing dead-lettered"
                await asyncio.sleep(0.1)
        finally:
            await admin.close()
        (letter,) = letters
        assert letter.reason == "bad_signature" and letter.message_id == str(message_id)


async def test_the_reconciler_follows_the_directory_file_too(
    rabbitmq_vhost: TestVhost, tmp_path: Path
) -> None:
    async with agent_world(rabbitmq_vhost, tmp_path, [AgencyProfile(A), AgencyProfile(B)]) as world:
        provisioned = world.provisioned
        everyone = list(world.directory)
        _write_directory(provisioned, [e for e in everyone if e.code != B])
        settings = ReconcilerSettings(
            data_dir=provisioned.data_dir,
            secrets_dir=provisioned.secrets_dir,
            directory=provisioned.directory_path,
            amqp_url=provisioned.endpoint.amqp_url(vhost=provisioned.vhost),
            user_prefix=provisioned.user_prefix,
            directory_check_s=0.05,
        )
        watch = DirectoryWatch.open(settings.directory, settings.secrets_dir)
        process = ReconcilerProcess(
            amqp_url=reconciler_amqp_url(settings),
            directory=watch.directory,
            directory_watch=watch,
            private_key=load_private_key(provisioned.paths.private_key(RECONCILER_CODE)),
            store_path=settings.report_path,
            settings=settings,
        )
        await process.start()
        try:
            assert B not in watch.directory
            _write_directory(provisioned, everyone)
            await _until(lambda: watch.reloads == 1, "the reconciler reloading the directory")
            assert process.directory is watch.directory and B in watch.directory
        finally:
            await process.stop()
