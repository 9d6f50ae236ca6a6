"""`jiexu ledger import` and `jiexu ledger show` (the `ledger_app` typer app, before it is added
to the main command line), on the configured ledger: SQLite in the data directory, PostgreSQL by
``--ledger postgres``, or whatever an opener hands them."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest
from typer.testing import CliRunner

from agents.cli.ledger_cmd import LedgerTarget, ledger_app, make_ledger_app
from agents.domain.continuity import assess_continuity
from agents.ledger import LedgerPort
from agents.ledger.importer import format_people
from agents.ledger.sqlite import SqliteLedger
from agents.testing.fakes import InMemoryLedger
from agents.testing.ledger_contract import person as account_of
from agents.tools.seed import generate_people
from schemas.pii import mask_value
from tests.integration.postgres_support import PostgresSchema

AGENCY = "360400"


@pytest.fixture
def people_file(tmp_path: Path) -> tuple[Path, list[str]]:
    people = generate_people(AGENCY, 12, random.Random(3), zero_balance=False)
    path = tmp_path / "people.csv"
    path.write_text(format_people(people, "csv"), encoding="utf-8")
    return path, [p.id_number for p in people]


def test_import_then_show_on_the_default_sqlite_ledger(
    tmp_path: Path, people_file: tuple[Path, list[str]]
) -> None:
    path, ids = people_file
    env = {"JIEXU_DATA_DIR": str(tmp_path / "data"), "JIEXU_LEDGER": ""}
    result = CliRunner().invoke(ledger_app, ["import", str(path), "--agency", AGENCY], env=env)
    assert result.exit_code == 0, result.output
    assert "12 people read: 12 added, 0 already in the books of 360400" in result.stdout
    assert (tmp_path / "data" / AGENCY / "ledger.db").exists()

    again = CliRunner().invoke(
        ledger_app, ["import", str(path), "--agency", AGENCY, "--json"], env=env
    )
    assert json.loads(again.stdout) == {"imported": True, "rows": 12, "added": 0, "unchanged": 12}

    shown = CliRunner().invoke(
        ledger_app, ["show", "--id-number", ids[4], "--agency", AGENCY, "--json"], env=env
    )
    assert shown.exit_code == 0, shown.output
    person = json.loads(shown.stdout)["person"]
    assert person["id_number"] == mask_value(ids[4]) != ids[4]
    assert person["name"].endswith("*")
    assert person["months_paid"] == sum(p["months"] for p in person["periods"])
    assert ids[4] not in shown.stdout

    human = CliRunner().invoke(
        ledger_app, ["show", "--id-number", ids[4], "--agency", AGENCY], env=env
    )
    assert human.exit_code == 0 and ids[4] not in human.output
    assert "yuan" in human.stdout


def test_a_bad_file_is_refused_with_its_lines_and_nothing_imported(
    tmp_path: Path, people_file: tuple[Path, list[str]]
) -> None:
    path, ids = people_file
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[5] = lines[5].replace(",310,", ",311,", 1)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    env = {"JIEXU_DATA_DIR": str(tmp_path / "data")}
    result = CliRunner().invoke(ledger_app, ["import", str(path), "--agency", AGENCY], env=env)
    assert result.exit_code == 1
    assert "line 6: insurance_type: " in result.stderr
    assert "nothing imported: 1 problem(s)" in result.stderr
    assert all(pid not in result.output for pid in ids)
    as_json = CliRunner().invoke(
        ledger_app, ["import", str(path), "--agency", AGENCY, "--json"], env=env
    )
    assert json.loads(as_json.stdout)["problems"][0]["line"] == 6
    missing = CliRunner().invoke(
        ledger_app, ["show", "--id-number", ids[5], "--agency", AGENCY], env=env
    )
    assert missing.exit_code == 1 and "is not in the books of 360400" in missing.stderr


def test_show_refuses_an_id_number_with_a_wrong_check_character(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        ledger_app,
        ["show", "--id-number", "110105194912310021", "--agency", AGENCY],
        env={"JIEXU_DATA_DIR": str(tmp_path)},
    )
    assert result.exit_code == 2
    assert "not a valid ID number: ID number check character is wrong" in result.stderr


def test_a_wrong_ledger_setting_is_one_line_and_exit_2(
    people_file: tuple[Path, list[str]],
) -> None:
    path, _ = people_file
    result = CliRunner().invoke(
        ledger_app,
        ["import", str(path), "--agency", AGENCY],
        env={"JIEXU_LEDGER": "nosuch_module:make", "JIEXU_DATA_DIR": str(path.parent)},
    )
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "cannot import 'nosuch_module'" in result.stderr


async def test_import_into_postgres_chosen_on_the_command_line(
    postgres_schema: PostgresSchema, people_file: tuple[Path, list[str]]
) -> None:
    path, _ = people_file
    agency = f"{random.randrange(10**6):06d}"  # its schema ledger_<agency> is dropped below
    try:
        result = await asyncio.to_thread(
            CliRunner().invoke,
            ledger_app,
            ["import", str(path), "--agency", agency, "--ledger", "postgres", "--json"],
            env={"JIEXU_LEDGER_URL": postgres_schema.url, "JIEXU_DATA_DIR": str(path.parent)},
        )
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["added"] == 12
        conn = await asyncpg.connect(postgres_schema.url)
        try:
            count = await conn.fetchval(f"SELECT count(*) FROM ledger_{agency}.accounts")
        finally:
            await conn.close()
        assert count == 12
    finally:
        conn = await asyncpg.connect(postgres_schema.url)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS ledger_{agency} CASCADE")
        finally:
            await conn.close()


def test_a_composition_root_can_hand_the_commands_its_own_ledger(
    people_file: tuple[Path, list[str]],
) -> None:
    path, ids = people_file
    books = InMemoryLedger(AGENCY)
    seen: list[LedgerTarget] = []

    @asynccontextmanager
    async def opener(target: LedgerTarget) -> AsyncIterator[LedgerPort]:
        seen.append(target)
        yield books

    app = make_ledger_app(opener)
    result = CliRunner().invoke(app, ["import", str(path), "--agency", AGENCY, "--ledger", "x"])
    assert result.exit_code == 0, result.output
    assert seen == [LedgerTarget(AGENCY, ledger="x")]
    assert sorted(books._accounts) == sorted(ids)

    class AgentOnly:
        """An agency adapter with only the agent's port: jiexu cannot fill it."""

        def __getattr__(self, name: str) -> object:
            if name == "put_account":
                raise AttributeError(name)
            return getattr(books, name)

    @asynccontextmanager
    async def core_system(target: LedgerTarget) -> AsyncIterator[LedgerPort]:
        yield AgentOnly()  # type: ignore[misc]

    refused = CliRunner().invoke(
        make_ledger_app(core_system), ["import", str(path), "--agency", AGENCY]
    )
    assert refused.exit_code == 2
    assert "cannot be filled by jiexu" in refused.stderr


def test_the_sqlite_file_is_where_the_agent_keeps_it(
    tmp_path: Path, people_file: tuple[Path, list[str]]
) -> None:
    path, ids = people_file
    CliRunner().invoke(
        ledger_app, ["import", str(path), "--agency", AGENCY, "--data-dir", str(tmp_path / "d")]
    )

    async def count() -> int:
        ledger = await SqliteLedger.open(tmp_path / "d" / AGENCY / "ledger.db", AGENCY)
        try:
            return sum([await ledger.lookup(pid) is not None for pid in ids])
        finally:
            await ledger.close()

    assert asyncio.run(count()) == 12


def test_show_says_the_enrolment_start_and_the_continuity_recorded(tmp_path: Path) -> None:
    decided = assess_continuity("2025-12", "2026-03")
    seeded = account_of(region=AGENCY, enrolment_start="2026-03", continuity=decided)

    async def seed() -> None:
        books = await SqliteLedger.open(tmp_path / AGENCY / "ledger.db", AGENCY)
        try:
            await books.put_account(seeded)
        finally:
            await books.close()

    (tmp_path / AGENCY).mkdir()
    asyncio.run(seed())
    env = {"JIEXU_DATA_DIR": str(tmp_path), "JIEXU_LEDGER": ""}
    args = ["show", "--id-number", seeded.id_number, "--agency", AGENCY]
    human = CliRunner().invoke(ledger_app, args, env=env)
    assert human.exit_code == 0, human.output
    assert "enrolled here since 2026-03" in human.stdout
    assert (
        "continuity kept_with_back_payment: gap 2 months, back-payment 2026-01, 2026-02, "
        "waiting 0 months, benefits from 2026-03"
    ) in human.stdout
    shown = json.loads(CliRunner().invoke(ledger_app, [*args, "--json"], env=env).stdout)
    assert shown["person"]["enrolment_start"] == "2026-03"
    assert shown["person"]["continuity"] == decided.model_dump(mode="json")
