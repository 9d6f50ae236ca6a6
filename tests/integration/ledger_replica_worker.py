"""A ledger replica for the multi-process test: applies a plan of ledger operations to a shared
`PostgresLedger` and reports, per operation, whether it applied it or replayed it.

Usage: python -m tests.integration.ledger_replica_worker DSN SCHEMA REGION PLAN_JSON SEED

PLAN_JSON is a list of ``[case_id, operation, id_number, amount_fen]``; the worker shuffles it
with SEED, prints ``ready``, waits for a line on stdin (so that replicas start together), runs
it with a few operations in flight, and prints one JSON object: ``{"case/op": replayed}``.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from uuid import UUID

from agents.ledger.postgres import PostgresLedger

BANK = {"bank_name": "中国工商银行", "account_name": "张伟", "account_number": "6222020200112233445"}


async def main(dsn: str, schema: str, region: str, plan_path: str, seed: str) -> None:
    with open(plan_path, encoding="utf-8") as plan_file:  # noqa: ASYNC230 - before any work
        plan = json.load(plan_file)
    random.Random(int(seed)).shuffle(plan)
    ledger = await PostgresLedger.open(dsn, region, schema=schema, max_size=4)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await asyncio.to_thread(sys.stdin.readline)
    outcome: dict[str, bool] = {}
    limit = asyncio.Semaphore(4)

    async def run(case: str, op: str, id_number: str, amount: int) -> None:
        async with limit:
            if op == "terminate_and_debit":
                entry = await ledger.terminate_and_debit(UUID(case), id_number, amount)
            else:
                entry = await ledger.pay_out(UUID(case), id_number, amount, BANK)
            outcome[f"{case}/{op}"] = entry.replayed

    await asyncio.gather(*(run(*step) for step in plan))
    await ledger.close()
    sys.stdout.write(json.dumps(outcome) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
