"""A payout above the agency's limit waits in `awaiting_approval` (shown by `case show` and
`status`) until an operator runs `jiexu case approve-payout`; then it completes."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

from typer.testing import CliRunner

from agents.cli import app
from agents.tools.provision import AgencyProfile
from broker.pytest_plugin import TestVhost
from schemas.common import BankAccount
from schemas.contact import PayoutReason
from tests.integration.agent_world import agent_world

DONGGUAN, JIUJIANG = "441900", "360400"


async def test_a_held_payout_is_shown_and_completes_once_an_operator_approves_it(
    rabbitmq_vhost: TestVhost, tmp_path: Path
) -> None:
    async with agent_world(
        rabbitmq_vhost, tmp_path, [AgencyProfile(DONGGUAN), AgencyProfile(JIUJIANG)]
    ) as world:
        # Dongguan pays out; its limit is the safe default (every payout waits for an operator).
        await world.start(DONGGUAN, payout_approval_limit_fen=0)
        await world.start(JIUJIANG)
        out, _ = await world.mover(
            DONGGUAN, JIUJIANG, zero_balance=False, arrears=False, retiree=True, insurance_type="310"
        )
        own = BankAccount(
            bank_name="中国建设银行",
            bank_code="105100000017",
            account_name=out.name,
            account_number="6217000010001234567",
        )
        case_id = await world.apply(JIUJIANG, DONGGUAN, out, payout=(own, PayoutReason.RETIREE_RESETTLED))
        assert await world.wait_state(DONGGUAN, case_id, ["awaiting_approval"]) == "awaiting_approval"
        assert (await world.ledger(DONGGUAN).statement(case_id)).role == "none"  # books untouched

        p = world.provisioned
        shown = await asyncio.to_thread(
            CliRunner().invoke,
            app,
            ["case", "show", str(case_id), "--agency", DONGGUAN, "--json", "--data-dir", str(p.data_dir)],
        )
        assert shown.exit_code == 0, shown.output
        summary = json.loads(shown.stdout)
        assert summary["state"] == "awaiting_approval" and summary["whose_turn"] == DONGGUAN

        status = await asyncio.to_thread(
            CliRunner().invoke,
            app,
            ["status", "--json", "--data-dir", str(p.data_dir), "--agency", DONGGUAN, "--vhost", p.vhost],
        )
        assert status.exit_code == 0, status.output
        cases = json.loads(status.stdout)["cases"][DONGGUAN]
        assert cases["payouts_awaiting_approval"] == [str(case_id)]

        approved = await asyncio.to_thread(
            CliRunner().invoke,
            app,
            ["case", "approve-payout", str(case_id), "--agency", DONGGUAN, "--operator", "op-1", "--json",
             "--data-dir", str(p.data_dir), "--secrets-dir", str(p.secrets_dir),
             "--directory", str(p.directory_path)],
        )
        assert approved.exit_code == 0, approved.output
        assert json.loads(approved.stdout)["approved_by"] == "op-1"
        assert await world.wait_terminal(DONGGUAN, case_id) == "completed"
        assert await world.wait_terminal(JIUJIANG, case_id) == "completed"
        assert (await world.ledger(DONGGUAN).statement(case_id)).paid_out_fen == out.balance_fen

        again = await asyncio.to_thread(
            CliRunner().invoke,
            app,
            ["case", "approve-payout", str(uuid.uuid4()), "--agency", DONGGUAN,
             "--data-dir", str(p.data_dir), "--secrets-dir", str(p.secrets_dir),
             "--directory", str(p.directory_path)],
        )
        assert again.exit_code == 1 and "no such case" in again.output
