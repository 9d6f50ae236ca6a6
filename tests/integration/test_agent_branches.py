"""Every branch of a transfer, end to end: real agents on a real broker, real SQLite books.

Each test asserts outcomes only: both ends' case states and reasons, both ledgers (months and
money, to the fen), what each agency committed to send, and what arrived in inboxes nobody runs.
"""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path
from typing import Any

from agents.domain.case import Booked, Case, State
from agents.ledger.base import LedgerStatement, PersonAccount
from agents.tools.provision import AgencyProfile
from broker.names import RECONCILER_CODE
from broker.pytest_plugin import TestVhost
from schemas.common import BankAccount, InsuranceType, Person
from schemas.contact import ContactLetterV2, PayoutReason
from schemas.funds import FundTransferV1, RemittanceMark
from schemas.information import BalanceDisposition, ContributionPeriod, InformationFormV2
from schemas.notices import RejectionReason, RejectionV1, TransferCompletedV1, TransferCompletedV2
from schemas.registry import Message
from tests.integration.agent_world import World, agent_world

DONGGUAN, SHENZHEN, JIUJIANG, ZHENGZHOU = "441900", "440300", "360400", "410100"
EMPLOYEE: dict[str, Any] = {
    "insurance_type": "310",
    "arrears": False,
    "retiree": False,
    "zero_balance": False,
}


def own_account(holder: PersonAccount) -> BankAccount:
    """The person's own bank account, for payouts."""
    return BankAccount(
        bank_name="中国建设银行",
        bank_code="105100000017",
        account_name=holder.name,
        account_number="6217000010001234567",
    )


def periods_of(account: PersonAccount) -> list[tuple[str, str, str, int]]:
    return [(p.from_month, p.to_month, p.region, p.months) for p in account.periods]


async def statements(
    world: World, outgoing: str, receiving: str, case_id: uuid.UUID
) -> tuple[LedgerStatement, LedgerStatement]:
    return (
        await world.ledger(outgoing).statement(case_id),
        await world.ledger(receiving).statement(case_id),
    )


def types_sent(
    world: World, code: str, case_id: uuid.UUID, to: str, *, receipts: bool = False
) -> list[str]:
    """The documents `code` sent `to` for the case, in order (receipts only when asked)."""
    return [
        s.type
        for s in world.sent(code, case_id)
        if s.recipient == to and (receipts or s.type != "receipt")
    ]


async def both_end(world: World, outgoing: str, receiving: str, case_id: uuid.UUID) -> tuple[Case, Case]:
    await world.wait_terminal(receiving, case_id)
    await world.wait_terminal(outgoing, case_id)
    return await world.case(outgoing, case_id), await world.case(receiving, case_id)


# --- 1. normal transfer, and the reconciler's copies ------------------------------------------------


async def test_a_normal_transfer_moves_months_deemed_months_and_money_once_and_copies_the_reconciler(
    rabbitmq_vhost: TestVhost, tmp_path: Path
) -> None:
    async with agent_world(
        rabbitmq_vhost, tmp_path, [AgencyProfile(DONGGUAN), AgencyProfile(JIUJIANG)]
    ) as world:
        await world.start(DONGGUAN)
        await world.start(JIUJIANG)
        out, _ = await world.mover(DONGGUAN, JIUJIANG, outgoing_changes={"deemed_months": 36}, **EMPLOYEE)
        assert out.balance_fen > 0 and out.months_paid > 0
        case_id = await world.apply(JIUJIANG, DONGGUAN, out)

        out_case, in_case = await both_end(world, DONGGUAN, JIUJIANG, case_id)
        assert (out_case.state, in_case.state) == (State.COMPLETED, State.COMPLETED)
        booked = Booked(months=out.months_paid, deemed_months=36, amount_fen=out.balance_fen)
        assert out_case.booked == booked
        assert in_case.booked == booked

        out_books, in_books = await statements(world, DONGGUAN, JIUJIANG, case_id)
        assert (out_books.months_certified, out_books.deemed_certified) == (out.months_paid, 36)
        assert (in_books.months_credited, in_books.deemed_credited) == (out.months_paid, 36)
        assert out_books.amount_debited_fen == in_books.amount_credited_fen == out.balance_fen
        assert (out_books.paid_out_fen, out_books.retained_fen) == (0, 0)

        left = await world.ledger(DONGGUAN).lookup(out.id_number)
        assert left is not None and not left.enrolled
        assert (left.balance_fen, left.months_paid, left.deemed_months) == (0, 0, 0)
        moved = await world.ledger(JIUJIANG).lookup(out.id_number)
        assert moved is not None and moved.enrolled and moved.participation == "active"
        assert (moved.balance_fen, moved.months_paid, moved.deemed_months) == (
            out.balance_fen,
            out.months_paid,
            36,
        )
        assert periods_of(moved) == periods_of(out)

        assert in_case.form is not None
        assert in_case.form.balance_disposition is BalanceDisposition.TRANSFERRED
        assert [f.transfer.amount for f in in_case.funds] == [out.balance_fen]
        assert types_sent(world, DONGGUAN, case_id, JIUJIANG) == ["information_form", "fund_transfer"]
        assert types_sent(world, JIUJIANG, case_id, DONGGUAN) == ["contact_letter", "transfer_completed"]
        # Each document committed was acknowledged by a signed receipt (causation: the document),
        # which its sender keeps in the case: the completion's receipt may still be on its way.
        assert types_sent(world, DONGGUAN, case_id, JIUJIANG, receipts=True) == [
            "receipt", "information_form", "fund_transfer", "receipt",
        ]
        assert types_sent(world, JIUJIANG, case_id, DONGGUAN, receipts=True) == [
            "contact_letter", "receipt", "receipt", "transfer_completed",
        ]
        sent_ids = {
            s.type: s.envelope["message_id"]
            for s in world.sent(JIUJIANG, case_id)
            if s.recipient == DONGGUAN
        }
        receipts_at_dongguan = [
            s for s in world.sent(DONGGUAN, case_id) if s.type == "receipt"
        ]
        assert [r.envelope["causation_id"] for r in receipts_at_dongguan] == [
            sent_ids["contact_letter"], sent_ids["transfer_completed"],
        ]
        await world.wait_case(
            DONGGUAN,
            case_id,
            lambda c: sorted(r.document for r in c.receipts) == ["fund_transfer", "information_form"],
        )
        acknowledged = await world.wait_case(
            JIUJIANG,
            case_id,
            lambda c: [r.document for r in c.receipts] == ["contact_letter", "transfer_completed"],
        )
        assert acknowledged.state is State.COMPLETED  # a receipt changes no state

        # The reconciler (not running) got a signed copy of the form and of the completion notice.
        def copies_arrived(messages: list[Message]) -> bool:
            mine = {m.envelope.type for m in messages if m.envelope.case_id == case_id}
            return {"information_form", "transfer_completed"} <= mine

        copies = [
            m for m in await world.drain(RECONCILER_CODE, copies_arrived) if m.envelope.case_id == case_id
        ]
        by_type = {m.envelope.type: m for m in copies}
        assert sorted(by_type) == ["information_form", "transfer_completed"]
        assert by_type["information_form"].envelope.sender == DONGGUAN
        assert by_type["information_form"].document == in_case.form
        assert by_type["transfer_completed"].envelope.sender == JIUJIANG
        notice = by_type["transfer_completed"].document
        assert isinstance(notice, TransferCompletedV2)
        assert notice.model_dump(exclude={"continuity"}) == TransferCompletedV1(
            months_credited=out.months_paid, deemed_months_credited=36, amount_credited=out.balance_fen
        ).model_dump()
        assert in_case.continuity is not None and notice.continuity is not None
        assert notice.continuity.outcome.value == in_case.continuity.outcome.value
        assert out_case.continuity is not None
        assert out_case.continuity.benefits_from == in_case.continuity.benefits_from
        assert out_case.certificate is not None and out_case.certificate.check_code is not None


# --- 2. zero balance -------------------------------------------------------------------------------


async def test_a_zero_balance_sends_the_form_and_no_fund_transfer(
    rabbitmq_vhost: TestVhost, tmp_path: Path
) -> None:
    async with agent_world(
        rabbitmq_vhost, tmp_path, [AgencyProfile(DONGGUAN), AgencyProfile(JIUJIANG)]
    ) as world:
        await world.start(DONGGUAN)
        await world.start(JIUJIANG)
        out, _ = await world.mover(DONGGUAN, JIUJIANG, **{**EMPLOYEE, "zero_balance": True})
        assert out.balance_fen == 0 and out.months_paid > 0
        case_id = await world.apply(JIUJIANG, DONGGUAN, out)

        out_case, in_case = await both_end(world, DONGGUAN, JIUJIANG, case_id)
        assert (out_case.state, in_case.state) == (State.COMPLETED, State.COMPLETED)
        assert in_case.form is not None
        assert in_case.form.balance_disposition is BalanceDisposition.NO_ACCOUNT
        assert in_case.funds == ()
        assert types_sent(world, DONGGUAN, case_id, JIUJIANG) == ["information_form"]

        out_books, in_books = await statements(world, DONGGUAN, JIUJIANG, case_id)
        assert out_books.months_certified == in_books.months_credited == out.months_paid
        assert (out_books.amount_debited_fen, out_books.paid_out_fen, out_books.retained_fen) == (0, 0, 0)
        assert in_books.amount_credited_fen == 0
        moved = await world.ledger(JIUJIANG).lookup(out.id_number)
        assert moved is not None and (moved.balance_fen, moved.months_paid) == (0, out.months_paid)


# --- 3. Guangdong within the province ------------------------------------------------------------------


async def test_within_guangdong_the_months_move_and_the_balance_stays_behind(
    rabbitmq_vhost: TestVhost, tmp_path: Path
) -> None:
    async with agent_world(
        rabbitmq_vhost, tmp_path, [AgencyProfile(DONGGUAN), AgencyProfile(SHENZHEN)]
    ) as world:
        await world.start(DONGGUAN)
        await world.start(SHENZHEN)
        out, _ = await world.mover(DONGGUAN, SHENZHEN, **EMPLOYEE)
        assert out.balance_fen > 0
        case_id = await world.apply(SHENZHEN, DONGGUAN, out)

        out_case, in_case = await both_end(world, DONGGUAN, SHENZHEN, case_id)
        assert (out_case.state, in_case.state) == (State.COMPLETED, State.COMPLETED)
        assert in_case.form is not None
        assert in_case.form.balance_disposition is BalanceDisposition.RETAINED_IN_PROVINCE
        assert (in_case.form.account_balance, in_case.form.amount_transferred) == (out.balance_fen, 0)
        assert in_case.funds == ()
        assert types_sent(world, DONGGUAN, case_id, SHENZHEN) == ["information_form"]

        out_books, in_books = await statements(world, DONGGUAN, SHENZHEN, case_id)
        assert out_books.months_certified == in_books.months_credited == out.months_paid
        assert out_books.retained_fen == out.balance_fen
        assert (out_books.amount_debited_fen, out_books.paid_out_fen) == (0, 0)
        assert in_books.amount_credited_fen == 0
        assert await world.ledger(DONGGUAN).total_paid_out_fen() == 0

        stayed = await world.ledger(DONGGUAN).lookup(out.id_number)
        assert stayed is not None and not stayed.enrolled and stayed.months_paid == 0
        assert stayed.balance_fen == out.balance_fen  # retained where it was, to the fen
        moved = await world.ledger(SHENZHEN).lookup(out.id_number)
        assert moved is not None and (moved.balance_fen, moved.months_paid) == (0, out.months_paid)


# --- 4. payouts to the person's own account ------------------------------------------------------------


async def test_a_resettled_retiree_is_paid_out_and_the_receiving_agency_credits_months_only(
    rabbitmq_vhost: TestVhost, tmp_path: Path
) -> None:
    async with agent_world(
        rabbitmq_vhost, tmp_path, [AgencyProfile(DONGGUAN), AgencyProfile(JIUJIANG)]
    ) as world:
        await world.start(DONGGUAN)
        await world.start(JIUJIANG)
        out, _ = await world.mover(DONGGUAN, JIUJIANG, **{**EMPLOYEE, "retiree": True})
        assert out.retiree and out.balance_fen > 0
        case_id = await world.apply(
            JIUJIANG, DONGGUAN, out, payout=(own_account(out), PayoutReason.RETIREE_RESETTLED)
        )

        out_case, in_case = await both_end(world, DONGGUAN, JIUJIANG, case_id)
        assert (out_case.state, in_case.state) == (State.COMPLETED, State.COMPLETED)
        assert out_case.letter is not None
        assert out_case.letter.payout_reason is PayoutReason.RETIREE_RESETTLED
        assert out_case.letter.payout_account == own_account(out)
        assert in_case.form is not None
        assert in_case.form.balance_disposition is BalanceDisposition.PAID_TO_PERSON
        assert in_case.funds == ()
        assert types_sent(world, DONGGUAN, case_id, JIUJIANG) == ["information_form"]

        out_books, in_books = await statements(world, DONGGUAN, JIUJIANG, case_id)
        assert out_books.paid_out_fen == out.balance_fen
        assert await world.ledger(DONGGUAN).total_paid_out_fen() == out.balance_fen
        assert (out_books.amount_debited_fen, out_books.retained_fen) == (0, 0)
        assert out_books.months_certified == in_books.months_credited == out.months_paid
        assert in_books.amount_credited_fen == 0
        left = await world.ledger(DONGGUAN).lookup(out.id_number)
        assert left is not None and left.balance_fen == 0
        moved = await world.ledger(JIUJIANG).lookup(out.id_number)
        assert moved is not None and (moved.balance_fen, moved.months_paid) == (0, out.months_paid)


async def test_an_agency_that_cannot_receive_funds_asks_for_a_payout_and_needs_the_persons_account(
    rabbitmq_vhost: TestVhost, tmp_path: Path
) -> None:
    """`payout_for_application` asks for a payout (cannot_receive_funds) whenever this agency does
    not accept balances; without the person's bank account the application is refused here."""
    async with agent_world(
        rabbitmq_vhost,
        tmp_path,
        [AgencyProfile(DONGGUAN), AgencyProfile(JIUJIANG, accepts_funds=False)],
    ) as world:
        await world.start(DONGGUAN)
        await world.start(JIUJIANG)

        no_account, _ = await world.mover(DONGGUAN, JIUJIANG, **EMPLOYEE)
        refused = await world.apply(JIUJIANG, DONGGUAN, no_account)
        refused_case = await world.case(JIUJIANG, refused)
        assert refused_case.state is State.REJECTED
        assert refused_case.rejection_reason is RejectionReason.OTHER
        assert "cannot_receive_funds" in (refused_case.rejection_text or "")
        assert world.sent(JIUJIANG, refused) == []

        out, _ = await world.mover(DONGGUAN, JIUJIANG, **EMPLOYEE)
        case_id = await world.apply(JIUJIANG, DONGGUAN, out, payout=(own_account(out), None))
        out_case, in_case = await both_end(world, DONGGUAN, JIUJIANG, case_id)
        assert (out_case.state, in_case.state) == (State.COMPLETED, State.COMPLETED)
        assert in_case.letter is not None
        assert in_case.letter.payout_reason is PayoutReason.CANNOT_RECEIVE_FUNDS
        assert in_case.form is not None
        assert in_case.form.balance_disposition is BalanceDisposition.PAID_TO_PERSON
        assert types_sent(world, DONGGUAN, case_id, JIUJIANG) == ["information_form"]

        out_books, in_books = await statements(world, DONGGUAN, JIUJIANG, case_id)
        assert out_books.paid_out_fen == out.balance_fen > 0
        assert out_books.amount_debited_fen == 0
        assert in_books.amount_credited_fen == 0
        assert in_books.months_credited == out.months_paid
        assert await world.ledger(JIUJIANG).total_credited_fen() == 0
        # The refused application left both books untouched.
        assert (await world.ledger(DONGGUAN).statement(refused)).role == "none"
        assert await world.ledger(DONGGUAN).lookup(no_account.id_number) == no_account


# --- 5. resident insurance and scheme switches ----------------------------------------------------------


async def test_resident_insurance_and_scheme_switches_move_the_months_and_never_transfer_money(
    rabbitmq_vhost: TestVhost, tmp_path: Path
) -> None:
    async with agent_world(
        rabbitmq_vhost, tmp_path, [AgencyProfile(DONGGUAN), AgencyProfile(JIUJIANG)]
    ) as world:
        await world.start(DONGGUAN)
        await world.start(JIUJIANG)
        resident = {**EMPLOYEE, "insurance_type": "390"}

        # Resident to resident: no personal account anywhere.
        r2r, _ = await world.mover(DONGGUAN, JIUJIANG, **resident)
        # Employee to resident: the receiving books have the person as 390 (that is how the agent
        # knows), so the balance must be paid out and the application must carry the account.
        e2r, _ = await world.mover(
            DONGGUAN, JIUJIANG, receiving_changes={"insurance_type": InsuranceType.RESIDENT}, **EMPLOYEE
        )
        e2r_without, _ = await world.mover(
            DONGGUAN, JIUJIANG, receiving_changes={"insurance_type": InsuranceType.RESIDENT}, **EMPLOYEE
        )
        # Resident to employee: nothing to move but months.
        r2e, _ = await world.mover(
            DONGGUAN, JIUJIANG, receiving_changes={"insurance_type": InsuranceType.EMPLOYEE}, **resident
        )
        assert r2r.balance_fen == r2e.balance_fen == 0 and e2r.balance_fen > 0

        r2r_id = await world.apply(JIUJIANG, DONGGUAN, r2r)
        e2r_id = await world.apply(JIUJIANG, DONGGUAN, e2r, payout=(own_account(e2r), None))
        e2r_refused = await world.apply(JIUJIANG, DONGGUAN, e2r_without)
        r2e_id = await world.apply(JIUJIANG, DONGGUAN, r2e)

        refused = await world.case(JIUJIANG, e2r_refused)
        assert refused.state is State.REJECTED and refused.rejection_reason is RejectionReason.OTHER
        assert "scheme_switch" in (refused.rejection_text or "")
        assert world.sent(JIUJIANG, e2r_refused) == []

        for person, case_id, to_type in (
            (r2r, r2r_id, InsuranceType.RESIDENT),
            (e2r, e2r_id, InsuranceType.RESIDENT),
            (r2e, r2e_id, InsuranceType.EMPLOYEE),
        ):
            out_case, in_case = await both_end(world, DONGGUAN, JIUJIANG, case_id)
            states = (out_case.state, in_case.state)
            assert states == (State.COMPLETED, State.COMPLETED), person.insurance_type
            assert in_case.insurance_type_to is to_type
            assert in_case.funds == ()
            assert types_sent(world, DONGGUAN, case_id, JIUJIANG) == ["information_form"]
            out_books, in_books = await statements(world, DONGGUAN, JIUJIANG, case_id)
            assert out_books.months_certified == in_books.months_credited == person.months_paid
            assert out_books.amount_debited_fen == in_books.amount_credited_fen == 0
            assert out_books.paid_out_fen == person.balance_fen
            moved = await world.ledger(JIUJIANG).lookup(person.id_number)
            assert moved is not None
            assert (moved.insurance_type, moved.months_paid, moved.balance_fen) == (
                to_type,
                person.months_paid,
                0,
            )

        e2r_case = await world.case(JIUJIANG, e2r_id)
        assert e2r_case.letter is not None and e2r_case.letter.payout_reason is PayoutReason.SCHEME_SWITCH
        assert e2r_case.form is not None
        assert e2r_case.form.balance_disposition is BalanceDisposition.PAID_TO_PERSON
        for resident_case in (r2r_id, r2e_id):
            form = (await world.case(JIUJIANG, resident_case)).form
            assert form is not None and form.insurance_type is InsuranceType.RESIDENT
            assert form.balance_disposition is BalanceDisposition.NO_ACCOUNT
        assert await world.ledger(JIUJIANG).total_credited_fen() == 0
        assert await world.ledger(DONGGUAN).total_paid_out_fen() == e2r.balance_fen


# --- 6. duplicates ------------------------------------------------------------------------------------------


async def test_a_second_application_for_a_person_with_an_open_case_is_refused_at_receiving(
    rabbitmq_vhost: TestVhost, tmp_path: Path
) -> None:
    async with agent_world(
        rabbitmq_vhost, tmp_path, [AgencyProfile(DONGGUAN), AgencyProfile(JIUJIANG)]
    ) as world:
        await world.start(JIUJIANG)  # the outgoing agent is down: the first case stays open
        out, _ = await world.mover(DONGGUAN, JIUJIANG, **EMPLOYEE)
        first = await world.apply(JIUJIANG, DONGGUAN, out)
        second = await world.apply(JIUJIANG, DONGGUAN, out)
        assert await world.state(JIUJIANG, first) == State.AWAITING_FORM
        duplicate = await world.case(JIUJIANG, second)
        assert duplicate.state is State.REJECTED
        assert duplicate.rejection_reason is RejectionReason.DUPLICATE_CASE
        assert world.sent(JIUJIANG, second) == []

        await world.start(DONGGUAN)
        out_case, in_case = await both_end(world, DONGGUAN, JIUJIANG, first)
        assert (out_case.state, in_case.state) == (State.COMPLETED, State.COMPLETED)
        assert await world.agents[DONGGUAN].service.store.get_case(second) is None
        assert await world.ledger(DONGGUAN).total_debited_fen() == out.balance_fen
        assert await world.ledger(JIUJIANG).total_credited_fen() == out.balance_fen
        assert (await world.ledger(JIUJIANG).statement(second)).role == "none"


async def test_a_second_letter_for_a_person_with_an_open_case_is_refused_at_outgoing(
    rabbitmq_vhost: TestVhost, tmp_path: Path
) -> None:
    """Two receiving agencies ask the same outgoing agency for the same person: the first letter
    (sent as Jiujiang, whose agent is not running, so that case stays open) is served, the second
    (Zhengzhou's real agent) is refused with duplicate_case at both ends."""
    async with agent_world(
        rabbitmq_vhost,
        tmp_path,
        [AgencyProfile(DONGGUAN), AgencyProfile(JIUJIANG), AgencyProfile(ZHENGZHOU)],
    ) as world:
        await world.start(DONGGUAN)
        await world.start(ZHENGZHOU)
        out, into = await world.mover(DONGGUAN, JIUJIANG, **EMPLOYEE)
        await world.put_account(ZHENGZHOU, dataclasses.replace(into, region=ZHENGZHOU))
        person = Person(name=out.name, gender=out.gender, id_number=out.id_number)

        first = uuid.uuid4()
        async with world.impersonate(JIUJIANG) as jiujiang:
            await jiujiang.send(
                ContactLetterV2(
                    letter_number="LX-360400-0001",
                    person=person,
                    insurance_type=out.insurance_type,
                    from_region=DONGGUAN,
                    to_region=JIUJIANG,
                    receiving_agency=world.details(JIUJIANG),
                    payout_account=None,
                    payout_reason=None,
                ),
                recipient=DONGGUAN,
                case_id=first,
            )
        await world.wait_state(DONGGUAN, first, [State.AWAITING_COMPLETION])

        second = await world.apply(ZHENGZHOU, DONGGUAN, out)
        assert await world.wait_terminal(ZHENGZHOU, second) == State.REJECTED
        assert await world.wait_terminal(DONGGUAN, second) == State.REJECTED
        for code in (DONGGUAN, ZHENGZHOU):
            assert (await world.case(code, second)).rejection_reason is RejectionReason.DUPLICATE_CASE
        assert types_sent(world, DONGGUAN, second, ZHENGZHOU) == ["rejection"]
        assert await world.state(DONGGUAN, first) == State.AWAITING_COMPLETION

        # Only the first case touched the outgoing books; the second touched nothing anywhere.
        assert (await world.ledger(DONGGUAN).statement(second)).role == "none"
        assert (await world.ledger(ZHENGZHOU).statement(second)).role == "none"
        assert await world.ledger(DONGGUAN).total_debited_fen() == out.balance_fen
        sent_to_jiujiang = await world.drain(
            JIUJIANG, lambda ms: {m.envelope.type for m in ms} >= {"information_form", "fund_transfer"}
        )
        funds = [m.document for m in sent_to_jiujiang if isinstance(m.document, FundTransferV1)]
        assert [f.amount for f in funds] == [out.balance_fen]


# --- 7. refusals ------------------------------------------------------------------------------------------


async def test_each_refusal_reaches_both_ends_with_its_reason_and_leaves_the_books_untouched(
    rabbitmq_vhost: TestVhost, tmp_path: Path
) -> None:
    async with agent_world(
        rabbitmq_vhost, tmp_path, [AgencyProfile(DONGGUAN), AgencyProfile(JIUJIANG)]
    ) as world:
        await world.start(DONGGUAN)
        await world.start(JIUJIANG)
        people = {
            RejectionReason.ARREARS: await world.mover(DONGGUAN, JIUJIANG, **{**EMPLOYEE, "arrears": True}),
            RejectionReason.PARTICIPATION_NOT_STOPPED: await world.mover(
                DONGGUAN, JIUJIANG, participation="active", **EMPLOYEE
            ),
            RejectionReason.UNKNOWN_PERSON: await world.mover(
                DONGGUAN, JIUJIANG, seed_outgoing=False, **EMPLOYEE
            ),
            RejectionReason.RETIREE: await world.mover(DONGGUAN, JIUJIANG, **{**EMPLOYEE, "retiree": True}),
            RejectionReason.NOT_ENROLLED_AT_RECEIVING_PLACE: await world.mover(
                DONGGUAN, JIUJIANG, receiving_changes={"enrolled": False}, **EMPLOYEE
            ),
        }
        cases = {reason: await world.apply(JIUJIANG, DONGGUAN, out) for reason, (out, _) in people.items()}

        for reason, case_id in cases.items():
            out, into = people[reason]
            assert await world.wait_terminal(JIUJIANG, case_id) == State.REJECTED, reason
            at_receiving = await world.case(JIUJIANG, case_id)
            assert at_receiving.rejection_reason is reason
            if reason is RejectionReason.NOT_ENROLLED_AT_RECEIVING_PLACE:
                # Refused at the counter: no letter ever left.
                assert world.sent(JIUJIANG, case_id) == []
            else:
                assert await world.wait_terminal(DONGGUAN, case_id) == State.REJECTED, reason
                assert (await world.case(DONGGUAN, case_id)).rejection_reason is reason
                assert types_sent(world, DONGGUAN, case_id, JIUJIANG) == ["rejection"]
            assert (await world.ledger(JIUJIANG).statement(case_id)).role == "none", reason
            assert (await world.ledger(DONGGUAN).statement(case_id)).role == "none", reason
            expected_out = None if reason is RejectionReason.UNKNOWN_PERSON else out
            assert await world.ledger(DONGGUAN).lookup(out.id_number) == expected_out, reason
            assert await world.ledger(JIUJIANG).lookup(out.id_number) == into, reason

        # Every letter that was sent has been answered, so a letter never sent never arrived.
        not_enrolled = cases[RejectionReason.NOT_ENROLLED_AT_RECEIVING_PLACE]
        assert await world.agents[DONGGUAN].service.store.get_case(not_enrolled) is None
        assert await world.ledger(DONGGUAN).total_debited_fen() == 0
        assert await world.ledger(JIUJIANG).total_credited_fen() == 0


# --- 8. funds before the form -----------------------------------------------------------------------------


def _form_for(out: PersonAccount, amount_fen: int) -> InformationFormV2:
    return InformationFormV2(
        person=Person(name=out.name, gender=out.gender, id_number=out.id_number),
        insurance_type=out.insurance_type,
        participation_start=out.periods[0].from_month,
        participation_end=max(p.to_month for p in out.periods),
        months_paid=out.months_paid,
        deemed_months=out.deemed_months,
        account_balance=amount_fen,
        amount_transferred=amount_fen,
        balance_disposition=BalanceDisposition.TRANSFERRED,
        contribution_periods=tuple(
            ContributionPeriod(
                from_month=p.from_month,
                to_month=p.to_month,
                region=p.region,
                insurance_type=p.insurance_type,
                months=p.months,
            )
            for p in out.periods
        ),
        seal_reference=f"seal:{DONGGUAN}",
    )


def _funds_for(world: World, out: PersonAccount, amount_fen: int, form_id: uuid.UUID) -> FundTransferV1:
    return FundTransferV1(
        amount=amount_fen,
        payer_account=world.details(DONGGUAN).bank_account,
        payee_account=world.details(JIUJIANG).bank_account,
        information_form_id=form_id,
        remittance_mark=RemittanceMark(name=out.name, id_number=out.id_number),
    )


async def test_funds_arriving_before_the_form_are_held_then_credited_once(
    rabbitmq_vhost: TestVhost, tmp_path: Path
) -> None:
    async with agent_world(
        rabbitmq_vhost, tmp_path, [AgencyProfile(DONGGUAN), AgencyProfile(JIUJIANG)]
    ) as world:
        await world.start(JIUJIANG)
        out, _ = await world.mover(DONGGUAN, JIUJIANG, **EMPLOYEE)
        case_id = await world.apply(JIUJIANG, DONGGUAN, out)
        letters = await world.drain(DONGGUAN, lambda ms: any(m.envelope.case_id == case_id for m in ms))
        letter_id = next(m.envelope.message_id for m in letters if m.envelope.type == "contact_letter")
        amount, form_id = out.balance_fen, uuid.uuid4()

        async with world.impersonate(DONGGUAN) as dongguan:
            await dongguan.send(
                _funds_for(world, out, amount, form_id),
                recipient=JIUJIANG,
                case_id=case_id,
                causation_id=letter_id,
            )
            held = await world.wait_case(JIUJIANG, case_id, lambda c: len(c.held_funds) == 1)
            assert held.state is State.AWAITING_FORM
            assert (await world.ledger(JIUJIANG).statement(case_id)).role == "none"
            await dongguan.send(
                _form_for(out, amount),
                recipient=JIUJIANG,
                case_id=case_id,
                causation_id=letter_id,
                message_id=form_id,
            )

        assert await world.wait_terminal(JIUJIANG, case_id) == State.COMPLETED
        done = await world.case(JIUJIANG, case_id)
        assert done.held_funds == () and [f.transfer.amount for f in done.funds] == [amount]
        assert await world.agents[JIUJIANG].service.store.held_messages() == []
        books = await world.ledger(JIUJIANG).statement(case_id)
        assert (books.amount_credited_fen, books.months_credited) == (amount, out.months_paid)
        assert await world.ledger(JIUJIANG).total_credited_fen() == amount
        moved = await world.ledger(JIUJIANG).lookup(out.id_number)
        assert moved is not None and moved.balance_fen == amount

        completions = await world.drain(
            DONGGUAN, lambda ms: any(isinstance(m.document, TransferCompletedV1) for m in ms)
        )
        notice = next(m.document for m in completions if isinstance(m.document, TransferCompletedV1))
        assert (notice.amount_credited, notice.months_credited) == (amount, out.months_paid)


# --- 9. the form and the money disagree --------------------------------------------------------------------


async def test_funds_differing_from_the_form_stop_the_case_and_credit_nothing(
    rabbitmq_vhost: TestVhost, tmp_path: Path
) -> None:
    async with agent_world(
        rabbitmq_vhost, tmp_path, [AgencyProfile(DONGGUAN), AgencyProfile(JIUJIANG)]
    ) as world:
        await world.start(JIUJIANG)
        out, into = await world.mover(DONGGUAN, JIUJIANG, **EMPLOYEE)
        case_id = await world.apply(JIUJIANG, DONGGUAN, out)
        letters = await world.drain(DONGGUAN, lambda ms: any(m.envelope.case_id == case_id for m in ms))
        letter_id = next(m.envelope.message_id for m in letters if m.envelope.type == "contact_letter")
        stated, paid, form_id = out.balance_fen, out.balance_fen - 1, uuid.uuid4()

        async with world.impersonate(DONGGUAN) as dongguan:
            await dongguan.send(
                _form_for(out, stated),
                recipient=JIUJIANG,
                case_id=case_id,
                causation_id=letter_id,
                message_id=form_id,
            )
            await world.wait_state(JIUJIANG, case_id, [State.AWAITING_FUNDS])
            await dongguan.send(
                _funds_for(world, out, paid, form_id),
                recipient=JIUJIANG,
                case_id=case_id,
                causation_id=letter_id,
            )

        assert await world.wait_terminal(JIUJIANG, case_id) == State.DISCREPANCY
        stopped = await world.case(JIUJIANG, case_id)
        found = stopped.discrepancy
        assert found is not None
        assert (found.kind, found.expected_fen, found.received_fen) == ("amount_mismatch", stated, paid)
        assert (await world.ledger(JIUJIANG).statement(case_id)).role == "none"
        assert await world.ledger(JIUJIANG).lookup(out.id_number) == into

        answers = await world.drain(DONGGUAN, lambda ms: any(isinstance(m.document, RejectionV1) for m in ms))
        rejection = next(m.document for m in answers if isinstance(m.document, RejectionV1))
        assert rejection.reason_code is RejectionReason.AMOUNT_MISMATCH
        assert not any(isinstance(m.document, TransferCompletedV1) for m in answers)


async def test_extra_money_before_a_real_outgoing_agents_form_leaves_both_ends_in_discrepancy(
    rabbitmq_vhost: TestVhost, tmp_path: Path
) -> None:
    """A stray fund transfer (sent as Dongguan) is held before the real agent's form arrives: the
    form's amount then disagrees with the money received, and both ends stop for an operator."""
    async with agent_world(
        rabbitmq_vhost, tmp_path, [AgencyProfile(DONGGUAN), AgencyProfile(JIUJIANG)]
    ) as world:
        await world.start(JIUJIANG)
        out, into = await world.mover(DONGGUAN, JIUJIANG, **EMPLOYEE)
        case_id = await world.apply(JIUJIANG, DONGGUAN, out)
        stray = 12_345
        async with world.impersonate(DONGGUAN) as dongguan:
            await dongguan.send(
                _funds_for(world, out, stray, uuid.uuid4()), recipient=JIUJIANG, case_id=case_id
            )
        await world.wait_case(JIUJIANG, case_id, lambda c: len(c.held_funds) == 1)

        await world.start(DONGGUAN)  # now the real agent reads the letter and sends form + funds
        out_case, in_case = await both_end(world, DONGGUAN, JIUJIANG, case_id)
        assert (out_case.state, in_case.state) == (State.DISCREPANCY, State.DISCREPANCY)
        assert in_case.discrepancy is not None and in_case.discrepancy.kind == "amount_mismatch"
        assert in_case.discrepancy.expected_fen == out.balance_fen
        assert out_case.rejection_reason is RejectionReason.AMOUNT_MISMATCH
        assert out_case.discrepancy is not None and out_case.discrepancy.expected_fen == out.balance_fen

        # The real money arrives too and is recorded for the operator, never credited.
        settled = await world.wait_case(JIUJIANG, case_id, lambda c: len(c.funds) == 2)
        assert sorted(f.transfer.amount for f in settled.funds) == sorted([stray, out.balance_fen])
        out_books = await world.ledger(DONGGUAN).statement(case_id)
        assert out_books.amount_debited_fen == out.balance_fen
        assert (await world.ledger(JIUJIANG).statement(case_id)).role == "none"
        assert await world.ledger(JIUJIANG).lookup(out.id_number) == into
