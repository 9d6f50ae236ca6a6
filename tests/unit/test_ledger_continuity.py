"""The receiving agency's books record the continuity its case decided (issue 17): the credit
carries it, the account shows it, and books whose ``credit`` predates the keyword still credit.

Through the real service (`tests.unit.case_world`); the outgoing books' periods end 2025-12.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Any
from uuid import UUID, uuid4

import pytest

from agents.domain.case import Credit, State
from agents.domain.continuity import ContinuityOutcome, assess_continuity
from agents.ledger.base import Gender, InsuranceType, LedgerEntry
from agents.service import ledger_credit
from agents.service.ledger_credit import run_credit, takes_continuity
from agents.testing.fakes import InMemoryLedger
from tests.unit.case_books import WorldLedger
from tests.unit.case_world import (
    Agent,
    Books,
    WeekdayCalendar,
    World,
    agency,
    outgoing_account,
    person,
    receiving_account,
)

OUT, IN = "360400", "440300"
APPLIED = date(2026, 6, 1)


class OlderLedger(WorldLedger):
    """Books written to the port before ``credit`` took ``continuity``."""

    async def credit(  # type: ignore[override]
        self,
        case_id: UUID,
        id_number: str,
        months: int,
        deemed_months: int,
        amount_fen: int,
        periods: Any = (),
        insurance_type: InsuranceType = InsuranceType.EMPLOYEE,
        *,
        name: str | None = None,
        gender: Gender | None = None,
    ) -> LedgerEntry:
        return await super().credit(
            case_id, id_number, months, deemed_months, amount_fen, periods, insurance_type,
            name=name, gender=gender,
        )


def transfer(enrolment_start: str | None, *, older: bool = False) -> tuple[Agent, UUID, str]:
    who = person()
    calendar = WeekdayCalendar()
    books = Books(IN)
    if older:
        books.ledger = OlderLedger(IN)
    books.put(replace(receiving_account(who, IN), enrolment_start=enrolment_start))
    receiving = Agent(agency(IN), books, calendar)
    outgoing = Agent(agency(OUT), Books(OUT, {who.id_number: outgoing_account(who, OUT)}), calendar)
    world = World.of(receiving, outgoing, today=APPLIED)
    case_id = receiving.apply_for(who, OUT, APPLIED)
    world.pump(twice=True)
    assert receiving.case(case_id).state is State.COMPLETED, receiving.case(case_id).note
    return receiving, case_id, who.id_number


@pytest.mark.parametrize(
    ("start", "outcome", "back_payment", "benefits_from"),
    [
        ("2026-01", ContinuityOutcome.KEPT, (), "2026-01"),
        ("2026-03", ContinuityOutcome.KEPT_WITH_BACK_PAYMENT, ("2026-01", "2026-02"), "2026-03"),
        ("2026-05", ContinuityOutcome.BROKEN, (), "2026-11"),
    ],
)
def test_the_receiving_books_record_what_the_case_decided(
    start: str, outcome: ContinuityOutcome, back_payment: tuple[str, ...], benefits_from: str
) -> None:
    receiving, case_id, id_number = transfer(start)

    decided = receiving.case(case_id).continuity
    assert decided is not None and decided.outcome is outcome
    credit = receiving.books.ops[(case_id, "credit")]
    assert credit.continuity == decided
    account = receiving.books.lookup(id_number)
    assert account is not None
    assert account.continuity == decided
    assert account.enrolment_start == start
    assert account.continuity.back_payment_months == back_payment
    assert account.continuity.benefits_from == benefits_from


def test_without_an_enrolment_start_the_books_take_the_month_the_case_used() -> None:
    receiving, case_id, id_number = transfer(None)
    account = receiving.books.lookup(id_number)
    assert account is not None and account.continuity is not None
    assert account.enrolment_start == receiving.case(case_id).enrolment_start == "2026-06"


def test_books_whose_credit_takes_no_continuity_still_credit_and_the_agent_says_so() -> None:
    ledger_credit._TOLD.discard("OlderLedger")  # said once per adapter class per process
    receiving, case_id, id_number = transfer("2026-05", older=True)

    assert receiving.case(case_id).continuity is not None  # decided and told all the same
    account = receiving.books.lookup(id_number)
    assert account is not None and account.months_paid > 0
    assert account.continuity is None
    assert receiving.books.ops[(case_id, "credit")].continuity is None
    said = [e for e in receiving.logs if e["event"] == "ledger.continuity_not_recorded"]
    assert [(e["ledger"], e["log_level"]) for e in said] == [("OlderLedger", "warning")]


async def test_run_credit_passes_continuity_only_to_a_credit_that_takes_it() -> None:
    decided = assess_continuity("2025-12", "2026-05")
    command = Credit(
        case_id=uuid4(),
        id_number="11010519491231002X",
        months=12,
        deemed_months=0,
        amount_fen=100,
        periods=(),
        insurance_type=InsuranceType.EMPLOYEE,
        name="张伟",
        gender=Gender.FEMALE,
        continuity=decided,
    )
    current, older = InMemoryLedger(IN), OlderLedger(IN)
    assert (takes_continuity(current), takes_continuity(older)) == (True, False)
    assert (await run_credit(current, command)).continuity == decided
    assert (await run_credit(older, command)).continuity is None
    # A command stored before it carried continuity has none: the same call as ever.
    bare = command.model_copy(update={"continuity": None, "case_id": uuid4()})
    assert (await run_credit(current, bare)).continuity is None
    assert (await run_credit(older, bare)).months == 12


def test_the_credit_command_round_trips_with_and_without_continuity() -> None:
    decided = assess_continuity("2025-12", "2026-03")
    command = Credit(
        case_id=uuid4(),
        id_number="11010519491231002X",
        months=1,
        deemed_months=0,
        amount_fen=0,
        insurance_type=InsuranceType.EMPLOYEE,
        name="张伟",
        gender=Gender.FEMALE,
        continuity=decided,
    )
    assert Credit.model_validate_json(command.model_dump_json()) == command
    stored_before = command.model_dump(mode="json")
    del stored_before["continuity"]
    assert Credit.model_validate(stored_before).continuity is None


def test_an_entry_without_continuity_keeps_its_old_json_form() -> None:
    entry = LedgerEntry(case_id=uuid4(), operation="credit", id_number="x", months=1)
    assert "continuity" not in entry.to_json()
    assert LedgerEntry.from_json(entry.to_json()) == entry
    decided = assess_continuity("2025-12", "2026-05")
    with_it = replace(entry, continuity=decided)
    assert LedgerEntry.from_json(with_it.to_json()) == with_it
    assert with_it.to_json()["continuity"]["outcome"] == "broken"
