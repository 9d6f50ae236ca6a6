"""Agencies on different message versions exchange cases in both directions, on a real broker.

Zhengzhou is provisioned as a v1-only agency (its directory entry declares version 1 of every
type), so every other agency must send it version 1. What it sends is chosen from what its
counterpart declares, like any agency.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agents.domain.case import State
from agents.tools.provision import AgencyProfile
from broker.names import RECONCILER_CODE
from broker.pytest_plugin import TestVhost
from schemas.common import BankAccount
from schemas.contact import PayoutReason
from schemas.notices import RejectionReason
from tests.integration.agent_world import agent_world

DONGGUAN, JIUJIANG, ZHENGZHOU = "441900", "360400", "410100"
EMPLOYEE: dict[str, Any] = {
    "insurance_type": "310",
    "arrears": False,
    "retiree": False,
    "zero_balance": False,
}


async def test_a_v1_only_agency_exchanges_with_v2_agencies_in_both_directions(
    rabbitmq_vhost: TestVhost, tmp_path: Path
) -> None:
    async with agent_world(
        rabbitmq_vhost,
        tmp_path,
        [AgencyProfile(DONGGUAN), AgencyProfile(JIUJIANG), AgencyProfile.v1_only(ZHENGZHOU)],
    ) as world:
        for code in (DONGGUAN, JIUJIANG, ZHENGZHOU):
            await world.start(code)

        # v2 outgoing (Dongguan) -> v1-only receiving (Zhengzhou): the form goes as v1.
        into_v1, _ = await world.mover(DONGGUAN, ZHENGZHOU, **EMPLOYEE)
        assert into_v1.periods
        to_v1 = await world.apply(ZHENGZHOU, DONGGUAN, into_v1)
        # v1-only outgoing (Zhengzhou) -> v2 receiving (Jiujiang): the letter goes as v1.
        out_of_v1, _ = await world.mover(ZHENGZHOU, JIUJIANG, **EMPLOYEE)
        from_v1 = await world.apply(JIUJIANG, ZHENGZHOU, out_of_v1)

        for outgoing, receiving, case_id, person in (
            (DONGGUAN, ZHENGZHOU, to_v1, into_v1),
            (ZHENGZHOU, JIUJIANG, from_v1, out_of_v1),
        ):
            assert await world.wait_terminal(receiving, case_id) == State.COMPLETED
            assert await world.wait_terminal(outgoing, case_id) == State.COMPLETED
            out_books = await world.ledger(outgoing).statement(case_id)
            in_books = await world.ledger(receiving).statement(case_id)
            assert out_books.amount_debited_fen == in_books.amount_credited_fen == person.balance_fen > 0
            assert out_books.months_certified == in_books.months_credited == person.months_paid

        # Wire versions, as committed to each sender's outbox.
        to_zhengzhou = [(s.type, s.version) for s in world.sent(DONGGUAN, to_v1) if s.recipient == ZHENGZHOU]
        # receipt v1 for the letter (and for the completion, once it arrived), around the documents
        documents = [m for m in to_zhengzhou if m[0] != "receipt"]
        assert documents == [("information_form", 1), ("fund_transfer", 1)]
        assert to_zhengzhou[0] == ("receipt", 1)
        form_v1 = next(s for s in world.sent(DONGGUAN, to_v1) if s.type == "information_form")
        assert "contribution_periods" not in form_v1.envelope["payload"]
        letter_out = [(s.type, s.version) for s in world.sent(JIUJIANG, from_v1) if s.recipient == ZHENGZHOU]
        documents = [m for m in letter_out if m[0] != "receipt"]
        assert documents == [("contact_letter", 1), ("transfer_completed", 1)]
        # Zhengzhou has not upgraded: even to a v2 agency (Dongguan) it sends its letter as v1.
        assert next((s.type, s.version) for s in world.sent(ZHENGZHOU, to_v1)) == ("contact_letter", 1)

        # Each end recorded the version it chose and the version it received.
        assert (await world.case(DONGGUAN, to_v1)).versions["information_form"] == 1
        at_v1_receiving = await world.case(ZHENGZHOU, to_v1)
        assert at_v1_receiving.received_versions["information_form"] == 1
        assert at_v1_receiving.form is not None and at_v1_receiving.form.contribution_periods is None
        assert (await world.case(JIUJIANG, from_v1)).versions["contact_letter"] == 1
        assert (await world.case(ZHENGZHOU, from_v1)).received_versions["contact_letter"] == 1

        # A v1 form itemises no periods: the months arrive, the periods are not invented.
        moved = await world.ledger(ZHENGZHOU).lookup(into_v1.id_number)
        assert moved is not None
        assert (moved.months_paid, moved.balance_fen, moved.periods) == (
            into_v1.months_paid,
            into_v1.balance_fen,
            (),
        )

        # The reconciler's copies carry the newest version both ends declare, whatever went to
        # the counterpart: v2 from Dongguan, v1 from the agency that has not upgraded.
        copy = next(s for s in world.sent(DONGGUAN, to_v1) if s.recipient == RECONCILER_CODE)
        assert (copy.type, copy.version) == ("information_form", 2)
        copy_v1 = next(s for s in world.sent(ZHENGZHOU, from_v1) if s.recipient == RECONCILER_CODE)
        assert (copy_v1.type, copy_v1.version) == ("information_form", 1)


async def test_a_payout_letter_to_a_v1_only_outgoing_agency_is_refused_before_it_is_sent(
    rabbitmq_vhost: TestVhost, tmp_path: Path
) -> None:
    """Only contact_letter v2 carries a payout request: the receiving agency refuses the application
    itself (reason ``other``, saying why) instead of sending a letter that would drop the payout."""
    async with agent_world(
        rabbitmq_vhost, tmp_path, [AgencyProfile(JIUJIANG), AgencyProfile.v1_only(ZHENGZHOU)]
    ) as world:
        await world.start(JIUJIANG)
        await world.start(ZHENGZHOU)
        retiree, _ = await world.mover(ZHENGZHOU, JIUJIANG, **{**EMPLOYEE, "retiree": True})
        account = BankAccount(
            bank_name="中国建设银行",
            bank_code="105100000017",
            account_name=retiree.name,
            account_number="6217000010001234567",
        )
        case_id = await world.apply(
            JIUJIANG, ZHENGZHOU, retiree, payout=(account, PayoutReason.RETIREE_RESETTLED)
        )
        refused = await world.case(JIUJIANG, case_id)
        assert refused.state is State.REJECTED
        assert refused.rejection_reason is RejectionReason.OTHER
        assert "contact_letter v2" in (refused.rejection_text or "")
        assert world.sent(JIUJIANG, case_id) == []

        # The same person without a payout request reaches Zhengzhou and is refused there as a
        # retiree: proof that the first application never arrived (no duplicate_case).
        second = await world.apply(JIUJIANG, ZHENGZHOU, retiree)
        assert await world.wait_terminal(ZHENGZHOU, second) == State.REJECTED
        assert (await world.case(ZHENGZHOU, second)).rejection_reason is RejectionReason.RETIREE
        assert await world.agents[ZHENGZHOU].service.store.get_case(case_id) is None
        assert await world.ledger(ZHENGZHOU).lookup(retiree.id_number) == retiree
