"""Two real agents over a real broker carry a transfer through from application to completion."""

from __future__ import annotations

from pathlib import Path

from agents.tools.provision import AgencyProfile
from broker.pytest_plugin import TestVhost
from tests.integration.agent_world import agent_world

DONGGUAN, JIUJIANG = "441900", "360400"


async def test_a_normal_transfer_moves_months_and_money_exactly_once(
    rabbitmq_vhost: TestVhost, tmp_path: Path
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
        assert await world.wait_terminal(JIUJIANG, case_id) == "completed"
        assert await world.wait_terminal(DONGGUAN, case_id) == "completed"
        out_ledger = world.agents[DONGGUAN].service.ledger
        in_ledger = world.agents[JIUJIANG].service.ledger
        out_statement = await out_ledger.statement(case_id)
        in_statement = await in_ledger.statement(case_id)
        assert out_statement.amount_debited_fen == out.balance_fen > 0
        assert in_statement.amount_credited_fen == out.balance_fen
        assert in_statement.months_credited == out.months_paid
        moved = await in_ledger.lookup(out.id_number)
        assert moved is not None and moved.balance_fen == out.balance_fen
