"""The ledger contract on `PostgresLedger` (a real PostgreSQL, a schema per ledger per test), and
what only several replicas sharing one ledger can show: the same ``(case_id, operation)`` applied
at once from two connection pools is applied once; two cases enrolling one new person at once are
both applied; three processes running the same operations apply each exactly once.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from uuid import uuid4

import asyncpg
import pytest
from structlog.testing import capture_logs

from agents.ledger import SeedableLedger
from agents.ledger.postgres import PostgresLedger
from agents.testing.ledger_contract import BANK, BROKEN, LedgerContract, person
from agents.tools.seed import generate_people
from schemas.common import Gender, InsuranceType, make_citizen_id
from tests.integration.postgres_support import PostgresSchema

ID = "11010519491231002X"


@pytest.fixture
async def ledger_schemas(postgres_schema: PostgresSchema) -> AsyncIterator[list[str]]:
    """Schemas made by a test beyond the fixture's own; dropped afterwards."""
    made: list[str] = []
    yield made
    conn = await asyncpg.connect(postgres_schema.url)
    try:
        for name in made:
            await conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
    finally:
        await conn.close()


async def open_replica(schema: PostgresSchema, region: str = "110000") -> PostgresLedger:
    return await PostgresLedger.open(schema.url, region, schema=schema.name, max_size=4)


class TestPostgresLedger(LedgerContract):
    @pytest.fixture(autouse=True)
    def _database(self, postgres_schema: PostgresSchema, ledger_schemas: list[str]) -> None:
        self.database = postgres_schema
        self.schemas = ledger_schemas

    async def create_ledger(self, region: str) -> SeedableLedger:
        name = f"{self.database.name}_{region}"
        self.schemas.append(name)
        return await PostgresLedger.open(self.database.url, region, schema=name, max_size=4)

    async def test_idempotency_survives_a_restart(self, postgres_schema: PostgresSchema) -> None:
        ledger = await open_replica(postgres_schema)
        await ledger.put_account(person())
        case_id = uuid4()
        first = await ledger.terminate_and_debit(case_id, ID, 1_000)
        await ledger.close()
        reopened = await open_replica(postgres_schema)
        try:
            again = await reopened.terminate_and_debit(case_id, ID, 1_000)
            assert again == first and again.replayed
            assert await reopened.total_balance_fen() == 1_233_567
        finally:
            await reopened.close()

    async def test_a_version_1_schema_gains_the_new_columns_and_keeps_its_books(
        self, postgres_schema: PostgresSchema
    ) -> None:
        ledger = await open_replica(postgres_schema, "440300")
        old = person(region="440300", participation="active")
        await ledger.put_account(old)
        await ledger.close()
        # Back to what version 1 left: no enrolment_start, no continuity, version row 1 only.
        conn = await asyncpg.connect(postgres_schema.url)
        try:
            await conn.execute(
                f"ALTER TABLE {postgres_schema.name}.accounts "
                "DROP COLUMN enrolment_start, DROP COLUMN continuity"
            )
            await conn.execute(f"DELETE FROM {postgres_schema.name}.ledger_schema_version")
            await conn.execute(
                f"INSERT INTO {postgres_schema.name}.ledger_schema_version (version) VALUES (1)"
            )
        finally:
            await conn.close()
        for _ in range(2):  # opening again finds the columns there and changes nothing
            ledger = await open_replica(postgres_schema, "440300")
            try:
                assert await ledger.lookup(ID) == old
            finally:
                await ledger.close()
        conn = await asyncpg.connect(postgres_schema.url)
        try:
            versions = await conn.fetch(
                f"SELECT version FROM {postgres_schema.name}.ledger_schema_version ORDER BY 1"
            )
        finally:
            await conn.close()
        assert [row["version"] for row in versions] == [1, 2]
        ledger = await open_replica(postgres_schema, "440300")
        try:
            entry = await ledger.credit(uuid4(), ID, 1, 0, 100, continuity=BROKEN)
            assert entry.continuity == BROKEN
            account = await ledger.lookup(ID)
            assert account is not None
            assert (account.enrolment_start, account.continuity) == ("2026-05", BROKEN)
            seeded = person(region="440300", enrolment_start="2024-02", continuity=BROKEN)
            await ledger.put_accounts([seeded])  # the bulk upsert writes both columns too
            assert await ledger.lookup(ID) == seeded
        finally:
            await ledger.close()

    async def test_the_default_schema_is_named_after_the_agency(
        self, postgres_schema: PostgresSchema, ledger_schemas: list[str]
    ) -> None:
        region = f"{random.randrange(10**6):06d}"  # a schema no other test uses
        ledger_schemas.append(f"ledger_{region}")
        ledger = await PostgresLedger.open(postgres_schema.url, region)
        try:
            assert ledger.schema == f"ledger_{region}"
        finally:
            await ledger.close()


class TestPostgresLedgerReplicas:
    """Two replicas of one agency: two `PostgresLedger`s (two pools) on one schema."""

    @pytest.fixture
    async def replicas(
        self, postgres_schema: PostgresSchema
    ) -> AsyncIterator[tuple[PostgresLedger, PostgresLedger]]:
        first = await open_replica(postgres_schema)
        second = await open_replica(postgres_schema)
        await first.put_account(person())
        yield first, second
        await first.close()
        await second.close()

    async def test_the_same_operation_from_two_replicas_at_once_is_applied_once(
        self,
        replicas: tuple[PostgresLedger, PostgresLedger],
        postgres_schema: PostgresSchema,
    ) -> None:
        first, second = replicas
        case_id = uuid4()
        # Hold the person's row so both replicas are inside their transactions at the same time:
        # one has claimed the key and waits for the row, the other waits on that claim.
        blocker = await asyncpg.connect(postgres_schema.url)
        try:
            holding = blocker.transaction()
            await holding.start()
            await blocker.execute(
                f"SELECT 1 FROM {postgres_schema.name}.accounts WHERE id_number = $1 FOR UPDATE",
                ID,
            )
            calls = [
                asyncio.create_task(ledger.terminate_and_debit(case_id, ID, 1_000_000))
                for ledger in (first, second)
            ]
            done, _ = await asyncio.wait(calls, timeout=0.5)
            assert not done, "both replicas must be waiting while the row is held"
            await holding.rollback()
        finally:
            await blocker.close()
        entries = await asyncio.gather(*calls)
        assert sorted(entry.replayed for entry in entries) == [False, True]
        assert entries[0] == entries[1]
        assert await first.total_balance_fen() == 234_567
        assert await second.total_debited_fen() == 1_000_000
        assert (await second.statement(case_id)).amount_debited_fen == 1_000_000

    async def test_many_operations_raced_from_two_replicas_each_apply_once(
        self, replicas: tuple[PostgresLedger, PostgresLedger]
    ) -> None:
        first, second = replicas
        people = [
            person(id_number=pid, balance_fen=10_000 + n)
            for n, pid in enumerate(
                make_citizen_id("110105", date(1949, 12, 31), seq) for seq in (4, 6, 8)
            )
        ]
        await first.put_accounts(people)
        cases = [uuid4() for _ in people]
        calls = []
        for case_id, account in zip(cases, people, strict=True):
            for ledger in (first, second, first, second):
                calls.append(ledger.terminate_and_debit(case_id, account.id_number, 0))
                calls.append(ledger.pay_out(case_id, account.id_number, 5_000, BANK))
        entries = await asyncio.gather(*calls)
        assert sum(not entry.replayed for entry in entries) == 2 * len(people)
        assert await second.total_paid_out_fen() == 5_000 * len(people)
        for account in people:
            after = await first.lookup(account.id_number)
            assert after is not None
            assert (after.balance_fen, after.enrolled) == (account.balance_fen - 5_000, False)

    async def test_two_cases_enrolling_one_new_person_at_once_are_both_applied(
        self,
        replicas: tuple[PostgresLedger, PostgresLedger],
        postgres_schema: PostgresSchema,
    ) -> None:
        first, second = replicas
        newcomer = "440300199208100027"
        # An uncommitted insert of the same person makes both replicas' inserts wait, then
        # collide with each other when it is rolled back: the loser must run again and add.
        blocker = await asyncpg.connect(postgres_schema.url)
        try:
            holding = blocker.transaction()
            await holding.start()
            await blocker.execute(
                f"INSERT INTO {postgres_schema.name}.accounts (id_number, name, gender, "
                "insurance_type, enrolled, participation, region, arrears_fen, retiree, "
                "months_paid, deemed_months, balance_fen, periods) VALUES "
                "($1, '占位', 'female', '310', true, 'active', '110000', 0, false, 0, 0, 0, "
                "'{\"periods\": []}')",
                newcomer,
            )
            calls = [
                asyncio.create_task(
                    ledger.credit(
                        uuid4(),
                        newcomer,
                        12,
                        0,
                        100,
                        (),
                        InsuranceType.EMPLOYEE,
                        name="李娜",
                        gender=Gender.FEMALE,
                    )
                )
                for ledger in (first, second)
            ]
            done, _ = await asyncio.wait(calls, timeout=0.5)
            assert not done
            with capture_logs() as logs:
                await holding.rollback()
                entries = await asyncio.gather(*calls)
        finally:
            await blocker.close()
        assert [entry.replayed for entry in entries] == [False, False]
        assert [e["event"] for e in logs] == ["ledger.enrol_race"]
        account = await second.lookup(newcomer)
        assert account is not None
        assert (account.months_paid, account.balance_fen, account.name) == (24, 200, "李娜")
        assert await first.total_credited_fen() == 200


async def test_replica_processes_running_the_same_operations_apply_each_once(
    postgres_schema: PostgresSchema, tmp_path: Path
) -> None:
    """Three OS processes, one schema, the same 120 operations in three different orders."""
    people = generate_people("110000", 40, random.Random(11), zero_balance=False)
    books = await open_replica(postgres_schema)
    try:
        await books.put_accounts(people)
        plan: list[list[object]] = []
        for index, account in enumerate(people):
            case = str(uuid4())
            if index % 2:  # the balance goes with the person
                plan.append([case, "terminate_and_debit", account.id_number, account.balance_fen])
            else:  # it is paid to the person's own account first
                plan.append([case, "terminate_and_debit", account.id_number, 0])
                plan.append([case, "pay_out", account.id_number, account.balance_fen])
        plan_path = tmp_path / "plan.json"
        plan_path.write_text(json.dumps(plan), encoding="utf-8")
        workers = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.integration.ledger_replica_worker",
                postgres_schema.url,
                postgres_schema.name,
                "110000",
                str(plan_path),
                str(seed),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            for seed in (1, 2, 3)
        ]
        for worker in workers:
            assert worker.stdout is not None
            assert (await asyncio.wait_for(worker.stdout.readline(), 60)) == b"ready\n"
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write(b"go\n")
            await worker.stdin.drain()
        outcomes = []
        for worker in workers:
            out, _ = await asyncio.wait_for(worker.communicate(), 120)
            assert worker.returncode == 0
            outcomes.append(json.loads(out.decode().splitlines()[-1]))

        keys = {f"{case}/{op}" for case, op, _, _ in plan}
        for key in keys:
            applied = [not outcome[key] for outcome in outcomes]
            assert applied.count(True) == 1, key
        seeded = sum(p.balance_fen for p in people)
        assert await books.total_balance_fen() == 0
        assert await books.total_debited_fen() + await books.total_paid_out_fen() == seeded
        assert len(await books.statements()) == len(people)
    finally:
        await books.close()
