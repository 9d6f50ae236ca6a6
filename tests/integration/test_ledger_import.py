"""Importing people into real ledgers (SQLite, PostgreSQL) and the in-memory fake: a good file
imports; one bad row imports nothing and names its line and field; importing the same file again
changes nothing; a person who differs from the books is refused."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import uuid4

import pytest

from agents.ledger import SeedableLedger
from agents.ledger.importer import (
    LedgerImportRejected,
    format_people,
    import_people,
    read_people,
)
from agents.ledger.postgres import PostgresLedger
from agents.ledger.sqlite import SqliteLedger
from agents.testing.fakes import InMemoryLedger
from agents.tools.seed import generate_people
from tests.integration.postgres_support import PostgresSchema

REGION = "360400"


async def everyone(ledger: SeedableLedger, ids: list[str]) -> list[object]:
    return [await ledger.lookup(pid) for pid in ids]


class ImportIntoALedger:
    """Run against each adapter by a subclass that supplies the `ledger` fixture."""

    @pytest.fixture
    def ledger(self) -> SeedableLedger:
        raise NotImplementedError

    @pytest.mark.parametrize("file_format", ["csv", "jsonl"])
    async def test_a_good_file_imports_and_importing_it_again_changes_nothing(
        self, ledger: SeedableLedger, tmp_path: Path, file_format: str
    ) -> None:
        people = generate_people(REGION, 60, random.Random(5))
        path = tmp_path / f"people.{file_format}"
        path.write_text(format_people(people, file_format), encoding="utf-8")  # type: ignore[arg-type]

        report = await import_people(ledger, read_people(path, REGION))
        assert (report.rows, report.added, report.unchanged) == (60, 60, 0)
        ids = [p.id_number for p in people]
        assert await everyone(ledger, ids) == people
        total = await ledger.total_balance_fen()
        assert total == sum(p.balance_fen for p in people)

        again = await import_people(ledger, read_people(path, REGION))
        assert (again.added, again.unchanged) == (0, 60)
        assert await everyone(ledger, ids) == people
        assert await ledger.total_balance_fen() == total


    async def test_one_bad_row_imports_nothing_and_names_its_line_and_field(
        self, ledger: SeedableLedger, tmp_path: Path
    ) -> None:
        people = generate_people(REGION, 20, random.Random(6))
        lines = format_people(people, "csv").splitlines()
        lines[8] = lines[8].replace(str(people[7].balance_fen), f"{people[7].balance_fen}.5", 1)
        path = tmp_path / "people.csv"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")

        with pytest.raises(LedgerImportRejected) as raised:
            await import_people(ledger, read_people(path, REGION))
        assert [(p.line, p.field) for p in raised.value.problems] == [(9, "balance_fen")]
        assert "line 9: balance_fen: must be a whole number of fen" in str(raised.value)
        assert people[7].id_number not in str(raised.value)
        assert await everyone(ledger, [p.id_number for p in people]) == [None] * 20


    async def test_a_person_who_differs_from_the_books_is_refused_and_nothing_is_imported(
        self, ledger: SeedableLedger, tmp_path: Path
    ) -> None:
        people = generate_people(REGION, 10, random.Random(7), zero_balance=False)
        first, rest = people[0], people[1:]
        # The books moved on since the file was made: a transfer took the first person's balance.
        await ledger.put_account(first)
        await ledger.terminate_and_debit(uuid4(), first.id_number, first.balance_fen)
        path = tmp_path / "people.jsonl"
        path.write_text(format_people(people, "jsonl"), encoding="utf-8")

        with pytest.raises(LedgerImportRejected) as raised:
            await import_people(ledger, read_people(path, REGION))
        [problem] = raised.value.problems
        assert (problem.line, problem.field) == (1, "id_number")
        assert "(enrolled, months_paid, balance_fen, periods)" in problem.message
        assert await everyone(ledger, [p.id_number for p in rest]) == [None] * 9
        moved = await ledger.lookup(first.id_number)
        assert moved == dataclasses.replace(
            first,
            enrolled=False,
            participation="stopped",
            months_paid=0,
            deemed_months=0,
            balance_fen=0,
            periods=(),
        )

    @pytest.mark.parametrize("file_format", ["csv", "jsonl"])
    async def test_the_enrolment_start_is_imported_and_kept(
        self, ledger: SeedableLedger, tmp_path: Path, file_format: str
    ) -> None:
        people = [
            dataclasses.replace(p, enrolment_start=f"20{10 + i % 15}-{1 + i % 12:02d}")
            if p.enrolled and i % 3
            else p
            for i, p in enumerate(generate_people(REGION, 30, random.Random(8)))
        ]
        assert {p.enrolment_start is None for p in people} == {True, False}
        path = tmp_path / f"people.{file_format}"
        path.write_text(format_people(people, file_format), encoding="utf-8")  # type: ignore[arg-type]
        report = await import_people(ledger, read_people(path, REGION))
        assert report.added == 30
        assert await everyone(ledger, [p.id_number for p in people]) == people
        again = await import_people(ledger, read_people(path, REGION))
        assert (again.added, again.unchanged) == (0, 30)


class TestImportIntoSqlite(ImportIntoALedger):
    @pytest.fixture
    async def ledger(self, tmp_path: Path) -> AsyncIterator[SeedableLedger]:
        opened = await SqliteLedger.open(tmp_path / "ledger.db", REGION)
        yield opened
        await opened.close()


class TestImportIntoPostgres(ImportIntoALedger):
    @pytest.fixture
    async def ledger(
        self, postgres_schema: PostgresSchema
    ) -> AsyncIterator[SeedableLedger]:
        opened = await PostgresLedger.open(
            postgres_schema.url, REGION, schema=postgres_schema.name, max_size=2
        )
        yield opened
        await opened.close()


class TestImportIntoMemory(ImportIntoALedger):
    @pytest.fixture
    async def ledger(self, tmp_path: Path) -> AsyncIterator[SeedableLedger]:
        yield InMemoryLedger(REGION)
