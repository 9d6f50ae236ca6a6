"""The ledger contract, proven against `SqliteLedger` (a real file) and the `InMemoryLedger` fake.

Every operation is idempotent per (case, operation); money is conserved across a transfer; the
statements of both ends agree.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from structlog.testing import capture_logs

from agents.ledger import (
    InsufficientBalance,
    LedgerPeriod,
    LedgerStatement,
    PersonAccount,
    PersonNotFound,
    RelationshipEnded,
    SeedableLedger,
)
from agents.ledger.sqlite import SqliteLedger
from agents.testing.fakes import InMemoryLedger
from agents.tools.seed import generate_people, make_mover, seed_ledger
from schemas.common import Gender, InsuranceType

LedgerFactory = Callable[[str], Awaitable[SeedableLedger]]

BANK = {"bank_name": "中国工商银行", "account_name": "张伟", "account_number": "6222020200112233445"}


def person(**overrides: object) -> PersonAccount:
    values: dict[str, object] = {
        "id_number": "11010519491231002X",
        "name": "张伟",
        "gender": Gender.FEMALE,
        "insurance_type": InsuranceType.EMPLOYEE,
        "enrolled": True,
        "participation": "stopped",
        "region": "110000",
        "months_paid": 24,
        "deemed_months": 36,
        "balance_fen": 1_234_567,
        "periods": (
            LedgerPeriod(
                from_month="2024-01",
                to_month="2025-12",
                region="110000",
                insurance_type=InsuranceType.EMPLOYEE,
                months=24,
            ),
        ),
    }
    values.update(overrides)
    return PersonAccount(**values)  # type: ignore[arg-type]


class LedgerContract:
    """Every `LedgerPort` adapter must pass these."""

    @pytest.fixture
    def make_ledger(self, tmp_path: Path) -> LedgerFactory:
        raise NotImplementedError

    @pytest.fixture
    async def open_ledger(self, make_ledger: LedgerFactory) -> AsyncIterator[LedgerFactory]:
        """Opens ledgers for the test and closes them all afterwards."""
        opened: list[SeedableLedger] = []

        async def track(region: str) -> SeedableLedger:
            ledger = await make_ledger(region)
            opened.append(ledger)
            return ledger

        yield track
        for ledger in opened:
            await ledger.close()

    @pytest.fixture
    async def ledger(self, open_ledger: LedgerFactory) -> SeedableLedger:
        ledger = await open_ledger("110000")
        await ledger.put_account(person())
        return ledger

    # --- lookup --------------------------------------------------------------------------------

    async def test_lookup_finds_a_seeded_person(self, ledger: SeedableLedger) -> None:
        assert await ledger.lookup("11010519491231002X") == person()
        assert await ledger.lookup("440300199208100027") is None

    # --- outgoing ------------------------------------------------------------------------------

    async def test_terminate_and_debit_applies_once(self, ledger: SeedableLedger) -> None:
        case_id = uuid4()
        first = await ledger.terminate_and_debit(case_id, "11010519491231002X", 1_234_567)
        again = await ledger.terminate_and_debit(case_id, "11010519491231002X", 1_234_567)
        assert (first.replayed, again.replayed) == (False, True)
        assert again == first
        assert (first.months, first.deemed_months, first.amount_fen) == (24, 36, 1_234_567)
        assert first.periods == person().periods
        after = await ledger.lookup("11010519491231002X")
        assert after is not None
        assert (after.balance_fen, after.enrolled, after.participation) == (0, False, "stopped")
        assert (after.months_paid, after.deemed_months, after.periods) == (0, 0, ())
        assert await ledger.total_balance_fen() == 0
        assert await ledger.total_debited_fen() == 1_234_567
        assert await ledger.statement(case_id) == LedgerStatement(
            case_id=case_id,
            role="outgoing",
            months_certified=24,
            deemed_certified=36,
            amount_debited_fen=1_234_567,
        )

    async def test_a_second_case_cannot_transfer_the_same_months_again(
        self, ledger: SeedableLedger
    ) -> None:
        await ledger.terminate_and_debit(uuid4(), "11010519491231002X", 0)
        with pytest.raises(RelationshipEnded):
            await ledger.terminate_and_debit(uuid4(), "11010519491231002X", 0)

    async def test_guangdong_retain_keeps_the_balance_and_moves_the_months(
        self, ledger: SeedableLedger
    ) -> None:
        case_id = uuid4()
        with pytest.raises(ValueError, match="retain"):
            await ledger.terminate_and_debit(case_id, "11010519491231002X", 100, retain=True)
        entry = await ledger.terminate_and_debit(case_id, "11010519491231002X", 0, retain=True)
        assert (entry.amount_fen, entry.retained_fen, entry.months) == (0, 1_234_567, 24)
        assert await ledger.total_balance_fen() == 1_234_567
        statement = await ledger.statement(case_id)
        assert (statement.retained_fen, statement.amount_debited_fen) == (1_234_567, 0)

    async def test_a_refused_operation_changes_nothing_and_records_nothing(
        self, ledger: SeedableLedger
    ) -> None:
        case_id = uuid4()
        with pytest.raises(InsufficientBalance) as raised:
            await ledger.terminate_and_debit(case_id, "11010519491231002X", 1_234_568)
        assert raised.value.reason_code == "insufficient_balance"
        with pytest.raises(ValueError):
            await ledger.terminate_and_debit(case_id, "11010519491231002X", -1)
        with pytest.raises(PersonNotFound):
            await ledger.terminate_and_debit(case_id, "440300199208100027", 0)
        assert await ledger.lookup("11010519491231002X") == person()
        assert (await ledger.statement(case_id)).role == "none"
        entry = await ledger.terminate_and_debit(case_id, "11010519491231002X", 1_000_000)
        assert entry.balance_after_fen == 234_567

    async def test_pay_out_applies_once(self, ledger: SeedableLedger) -> None:
        case_id = uuid4()
        first = await ledger.pay_out(case_id, "11010519491231002X", 1_234_567, BANK)
        again = await ledger.pay_out(case_id, "11010519491231002X", 1_234_567, BANK)
        assert again == first and again.replayed
        assert await ledger.total_balance_fen() == 0
        assert await ledger.total_paid_out_fen() == 1_234_567
        statement = await ledger.statement(case_id)
        assert (statement.role, statement.paid_out_fen) == ("outgoing", 1_234_567)
        with pytest.raises(InsufficientBalance):
            await ledger.pay_out(uuid4(), "11010519491231002X", 1, BANK)

    async def test_a_replay_with_other_arguments_keeps_the_first_result_and_warns(
        self, ledger: SeedableLedger
    ) -> None:
        case_id = uuid4()
        first = await ledger.pay_out(case_id, "11010519491231002X", 100, BANK)
        with capture_logs() as logs:
            again = await ledger.pay_out(case_id, "11010519491231002X", 999, BANK)
        assert again == first
        assert await ledger.total_paid_out_fen() == 100
        assert [e["event"] for e in logs] == ["ledger.replay_with_different_arguments"]
        assert logs[0]["log_level"] == "warning"

    # --- receiving -----------------------------------------------------------------------------

    async def test_credit_applies_once_and_enrols(self, open_ledger: LedgerFactory) -> None:
        receiving = await open_ledger("440300")
        case_id = uuid4()
        periods = person().periods
        with pytest.raises(PersonNotFound):
            await receiving.credit(case_id, "11010519491231002X", 24, 36, 1_234_567, periods)
        first = await receiving.credit(
            case_id,
            "11010519491231002X",
            24,
            36,
            1_234_567,
            periods,
            InsuranceType.EMPLOYEE,
            name="张伟",
            gender=Gender.FEMALE,
        )
        again = await receiving.credit(
            case_id, "11010519491231002X", 24, 36, 1_234_567, periods, name="张伟",
            gender=Gender.FEMALE,
        )
        assert again == first and again.replayed and not first.replayed
        account = await receiving.lookup("11010519491231002X")
        assert account is not None
        assert (account.months_paid, account.deemed_months, account.balance_fen) == (
            24,
            36,
            1_234_567,
        )
        assert (account.enrolled, account.participation, account.region) == (
            True,
            "active",
            "440300",
        )
        assert account.periods == periods
        assert await receiving.total_credited_fen() == 1_234_567
        assert await receiving.statement(case_id) == LedgerStatement(
            case_id=case_id,
            role="receiving",
            months_credited=24,
            deemed_credited=36,
            amount_credited_fen=1_234_567,
        )

    async def test_credit_adds_to_an_existing_account(self, open_ledger: LedgerFactory) -> None:
        receiving = await open_ledger("440300")
        await receiving.put_account(person(region="440300", participation="active"))
        await receiving.credit(uuid4(), "11010519491231002X", 12, 0, 1000)
        account = await receiving.lookup("11010519491231002X")
        assert account is not None
        assert (account.months_paid, account.balance_fen) == (36, 1_235_567)

    # --- both ends -----------------------------------------------------------------------------

    async def test_money_and_months_are_conserved_across_many_transfers(
        self, open_ledger: LedgerFactory
    ) -> None:
        rng = random.Random(20260213)
        outgoing = await open_ledger("360400")
        receiving = await open_ledger("440300")
        movers = [make_mover(rng, "360400", "440300", seq) for seq in range(40)]
        await seed_ledger(outgoing, [o for o, _ in movers])
        await seed_ledger(receiving, [r for _, r in movers])
        before = await outgoing.total_balance_fen() + await receiving.total_balance_fen()
        assert before > 0

        case_ids: list[UUID] = []
        for index, (account, _) in enumerate(movers):
            case_id = uuid4()
            case_ids.append(case_id)
            for _attempt in range(2):  # every step delivered twice
                if index % 10 == 0:  # paid to the person's own account instead
                    await outgoing.terminate_and_debit(case_id, account.id_number, 0)
                    await outgoing.pay_out(case_id, account.id_number, account.balance_fen, BANK)
                    continue
                sent = await outgoing.terminate_and_debit(
                    case_id, account.id_number, account.balance_fen
                )
                await receiving.credit(
                    case_id,
                    account.id_number,
                    sent.months,
                    sent.deemed_months,
                    sent.amount_fen,
                    sent.periods,
                    account.insurance_type,
                )

        after = await outgoing.total_balance_fen() + await receiving.total_balance_fen()
        paid = await outgoing.total_paid_out_fen() + await receiving.total_paid_out_fen()
        assert after + paid == before
        assert await outgoing.total_debited_fen() == await receiving.total_credited_fen()
        for index, case_id in enumerate(case_ids):
            sent_statement = await outgoing.statement(case_id)
            got = await receiving.statement(case_id)
            if index % 10 == 0:
                assert got.role == "none"
                assert sent_statement.paid_out_fen == movers[index][0].balance_fen
                continue
            assert (sent_statement.months_certified, sent_statement.deemed_certified) == (
                got.months_credited,
                got.deemed_credited,
            )
            assert sent_statement.amount_debited_fen == got.amount_credited_fen
        assert [s.case_id for s in await outgoing.statements()] == sorted(case_ids, key=str)
        for account, _ in (m for i, m in enumerate(movers) if i % 10):
            moved = await receiving.lookup(account.id_number)
            assert moved is not None
            assert moved.months_paid == account.months_paid
            assert sum(p.months for p in moved.periods) == moved.months_paid


class TestInMemoryLedger(LedgerContract):
    @pytest.fixture
    def make_ledger(self, tmp_path: Path) -> LedgerFactory:
        async def make(region: str) -> SeedableLedger:
            return InMemoryLedger(region)

        return make


class TestSqliteLedger(LedgerContract):
    @pytest.fixture
    def make_ledger(self, tmp_path: Path) -> LedgerFactory:
        async def make(region: str) -> SeedableLedger:
            return await SqliteLedger.open(tmp_path / f"ledger-{region}.sqlite3", region)

        return make

    async def test_idempotency_survives_a_restart(self, tmp_path: Path) -> None:
        path = tmp_path / "restart.sqlite3"
        ledger = await SqliteLedger.open(path, "110000")
        await ledger.put_account(person())
        case_id = uuid4()
        first = await ledger.terminate_and_debit(case_id, "11010519491231002X", 1_000)
        await ledger.close()
        reopened = await SqliteLedger.open(path, "110000")
        try:
            again = await reopened.terminate_and_debit(case_id, "11010519491231002X", 1_000)
            assert again == first and again.replayed
            assert await reopened.total_balance_fen() == 1_233_567
        finally:
            await reopened.close()

    async def test_bulk_seeding(self, tmp_path: Path) -> None:
        ledger = await SqliteLedger.open(tmp_path / "bulk.sqlite3", "320100")
        try:
            people = generate_people("320100", 300, random.Random(7))
            await ledger.put_accounts(people)
            assert await ledger.total_balance_fen() == sum(p.balance_fen for p in people)
            assert await ledger.lookup(people[123].id_number) == people[123]
        finally:
            await ledger.close()
