"""The ledger contract: what every ledger adapter must do, as a pytest suite an agency runs.

Every operation is idempotent per (case, operation); money is conserved across a transfer; the
statements of both ends agree. Subclass `LedgerContract` in a test module and supply
`create_ledger`, as eventsourcing's `AggregateRecorderTestCase` subclasses supply
`create_recorder`::

    from agents.testing import LedgerContract

    class TestOurLedger(LedgerContract):
        async def create_ledger(self, region: str) -> SeedableLedger:
            return await OurLedger.connect(TEST_URL, region)

`create_ledger` returns an empty ledger of the agency with that region code; the suite seeds the
people it needs with `put_account` and closes every ledger it opened after each test. A factory
that needs a fixture (``tmp_path``, a database) takes it in an autouse fixture of the subclass and
keeps it on ``self``: pytest makes one instance per test. The suite runs under pytest with
pytest-asyncio, in its ``auto`` or ``strict`` mode.
"""

from __future__ import annotations

import abc
import inspect
import random
from collections.abc import AsyncIterator
from datetime import date
from uuid import UUID, uuid4

import pytest
import pytest_asyncio
from structlog.testing import capture_logs

from agents.domain.continuity import assess_continuity
from agents.ledger import (
    Continuity,
    InsufficientBalance,
    LedgerEntry,
    LedgerPeriod,
    LedgerStatement,
    PersonAccount,
    PersonNotFound,
    RelationshipEnded,
    SeedableLedger,
)
from schemas.common import Gender, InsuranceType, make_citizen_id

__all__ = ["LedgerContract", "person"]

# Ended 2025-12 at the old place: enrolled here 2026-05 breaks continuity (4 months, 6 waiting,
# benefits from 2026-11); enrolled 2026-03 keeps it once 2026-01 and 2026-02 are paid back.
BROKEN = assess_continuity("2025-12", "2026-05", waiting_months=6)
BACK_PAYMENT = assess_continuity("2025-12", "2026-03")

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


def _month(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def _mover(
    rng: random.Random, outgoing: str, receiving: str, seq: int
) -> tuple[PersonAccount, PersonAccount]:
    """A person moving: (stopped at the outgoing agency with months and money in one to three
    periods; newly enrolled, empty, at the receiving agency)."""
    insurance_type = rng.choice([InsuranceType.EMPLOYEE] * 3 + [InsuranceType.RESIDENT])
    periods: list[LedgerPeriod] = []
    end = 2025 * 12 + 11
    for _ in range(rng.randint(1, 3)):
        months = rng.randint(1, 60)
        periods.insert(
            0,
            LedgerPeriod(
                from_month=_month(end - months + 1),
                to_month=_month(end),
                region=outgoing,
                insurance_type=insurance_type,
                months=months,
            ),
        )
        end -= months + rng.randint(0, 12)
    id_number = make_citizen_id(outgoing, date(1960 + seq % 40, 1 + seq % 12, 1 + seq % 28), seq)
    leaving = PersonAccount(
        id_number=id_number,
        name="张伟",
        gender=Gender.MALE if seq % 2 else Gender.FEMALE,
        insurance_type=insurance_type,
        enrolled=True,
        participation="stopped",
        region=outgoing,
        months_paid=sum(p.months for p in periods),
        deemed_months=rng.randint(0, 24),
        balance_fen=rng.randint(0, 10**8) if insurance_type is InsuranceType.EMPLOYEE else 0,
        periods=tuple(periods),
    )
    arriving = PersonAccount(
        id_number=id_number,
        name=leaving.name,
        gender=leaving.gender,
        insurance_type=insurance_type,
        enrolled=True,
        participation="active",
        region=receiving,
    )
    return leaving, arriving


@pytest.mark.asyncio
class LedgerContract(abc.ABC):
    """Every `LedgerPort` adapter must pass these."""

    @abc.abstractmethod
    async def create_ledger(self, region: str) -> SeedableLedger:
        """A new, empty ledger of the agency with this region code."""

    @pytest_asyncio.fixture(autouse=True)
    async def _close_ledgers(self) -> AsyncIterator[None]:
        self._opened: list[SeedableLedger] = []
        yield
        for ledger in self._opened:
            await ledger.close()

    async def open_ledger(self, region: str) -> SeedableLedger:
        """`create_ledger`, closed after the test."""
        ledger = await self.create_ledger(region)
        self._opened.append(ledger)
        return ledger

    @pytest_asyncio.fixture
    async def ledger(self) -> SeedableLedger:
        ledger = await self.open_ledger("110000")
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

    async def test_credit_applies_once_and_enrols(self) -> None:
        receiving = await self.open_ledger("440300")
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

    async def test_credit_adds_to_an_existing_account(self) -> None:
        receiving = await self.open_ledger("440300")
        await receiving.put_account(person(region="440300", participation="active"))
        await receiving.credit(uuid4(), "11010519491231002X", 12, 0, 1000)
        account = await receiving.lookup("11010519491231002X")
        assert account is not None
        assert (account.months_paid, account.balance_fen) == (36, 1_235_567)

    # --- continuity (the credit's optional keyword) and the enrolment start ------------------

    @staticmethod
    def _require_continuity(ledger: SeedableLedger) -> None:
        """An adapter written to the port before ``credit`` took ``continuity`` still serves the
        agent (which then records no continuity); these tests are skipped for it, saying so."""
        parameters = inspect.signature(ledger.credit).parameters
        if "continuity" not in parameters and not any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
        ):
            pytest.skip("this adapter's credit takes no continuity (the port before issue 17)")

    async def _credit(
        self, ledger: SeedableLedger, case_id: UUID, continuity: Continuity | None
    ) -> LedgerEntry:
        return await ledger.credit(
            case_id,
            "11010519491231002X",
            24,
            36,
            1_234_567,
            person().periods,
            InsuranceType.EMPLOYEE,
            name="张伟",
            gender=Gender.FEMALE,
            continuity=continuity,
        )

    async def test_an_account_keeps_its_enrolment_start_and_continuity(self) -> None:
        ledger = await self.open_ledger("440300")
        self._require_continuity(ledger)
        seeded = person(region="440300", enrolment_start="2026-05", continuity=BROKEN)
        await ledger.put_account(seeded)
        assert await ledger.lookup("11010519491231002X") == seeded
        await ledger.put_account(person(region="440300"))  # replaced: both gone again
        assert await ledger.lookup("11010519491231002X") == person(region="440300")

    async def test_a_credit_with_continuity_is_recorded_once(self) -> None:
        receiving = await self.open_ledger("440300")
        self._require_continuity(receiving)
        case_id = uuid4()
        first = await self._credit(receiving, case_id, BROKEN)
        again = await self._credit(receiving, case_id, BROKEN)
        assert again == first and again.replayed
        assert first.continuity == BROKEN
        account = await receiving.lookup("11010519491231002X")
        assert account is not None
        assert account.continuity == BROKEN
        # A new person enrolled by the credit starts where the decision said.
        assert account.enrolment_start == "2026-05"
        assert account.continuity.waiting_period == ("2026-05", "2026-10")
        assert account.continuity.benefits_from == "2026-11"
        assert (account.months_paid, account.balance_fen) == (24, 1_234_567)
        # A replay with another decision keeps the first, changes nothing, and warns.
        with capture_logs() as logs:
            other = await self._credit(receiving, case_id, BACK_PAYMENT)
        assert other == first and other.continuity == BROKEN
        assert [e["event"] for e in logs] == ["ledger.replay_with_different_arguments"]
        assert await receiving.lookup("11010519491231002X") == account
        assert await receiving.total_credited_fen() == 1_234_567
        # The statement (the reconciler's document) has no field for it: unchanged.
        assert await receiving.statement(case_id) == LedgerStatement(
            case_id=case_id,
            role="receiving",
            months_credited=24,
            deemed_credited=36,
            amount_credited_fen=1_234_567,
        )

    async def test_a_credit_keeps_the_books_enrolment_start_and_the_latest_decision(
        self,
    ) -> None:
        receiving = await self.open_ledger("440300")
        self._require_continuity(receiving)
        await receiving.put_account(
            person(
                region="440300", participation="active", enrolment_start="2026-03",
                continuity=BROKEN,
            )
        )
        entry = await self._credit(receiving, uuid4(), BACK_PAYMENT)
        assert entry.continuity == BACK_PAYMENT
        account = await receiving.lookup("11010519491231002X")
        assert account is not None
        assert (account.enrolment_start, account.continuity) == ("2026-03", BACK_PAYMENT)
        assert account.continuity is not None
        assert account.continuity.back_payment_months == ("2026-01", "2026-02")

    async def test_a_credit_without_continuity_records_none(self) -> None:
        receiving = await self.open_ledger("440300")
        await receiving.put_account(
            person(region="440300", participation="active", enrolment_start="2026-03")
        )
        entry = await receiving.credit(uuid4(), "11010519491231002X", 12, 0, 1000)
        assert entry.continuity is None
        account = await receiving.lookup("11010519491231002X")
        assert account is not None
        assert (account.enrolment_start, account.continuity) == ("2026-03", None)

    async def test_transferring_out_ends_the_enrolment_start_and_continuity(self) -> None:
        ledger = await self.open_ledger("110000")
        self._require_continuity(ledger)
        await ledger.put_account(person(enrolment_start="2024-01", continuity=BACK_PAYMENT))
        await ledger.terminate_and_debit(uuid4(), "11010519491231002X", 0)
        account = await ledger.lookup("11010519491231002X")
        assert account is not None
        assert (account.enrolled, account.enrolment_start, account.continuity) == (
            False,
            None,
            None,
        )

    # --- both ends -----------------------------------------------------------------------------

    async def test_money_and_months_are_conserved_across_many_transfers(
        self) -> None:
        rng = random.Random(20260213)
        outgoing = await self.open_ledger("360400")
        receiving = await self.open_ledger("440300")
        movers = [_mover(rng, "360400", "440300", seq) for seq in range(40)]
        for leaving, arriving in movers:
            await outgoing.put_account(leaving)
            await receiving.put_account(arriving)
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
