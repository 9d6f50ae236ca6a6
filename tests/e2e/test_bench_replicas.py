"""`jiexu bench --replicas`: the flow once per number of replicas per agency, on PostgreSQL.

A tiny run (3 agencies, 12 transfers, 1 and 2 replicas) proves the wiring: each run finishes, every
outcome is the expected one, money is conserved, the figures are there. They are printed, never
asserted. Arguments that cannot work are refused before anything starts."""

from __future__ import annotations

import asyncio

import pytest
from typer.testing import CliRunner

from agents.cli import app
from agents.tools.bench import FlowConfig, run_replica_flows
from broker.provider import acquire_broker
from tests.integration.postgres_support import postgres_url


@pytest.mark.parametrize("replicas", ["2", "1,x", "0"])
def test_replicas_need_numbers_and_postgresql(replicas: str) -> None:
    result = CliRunner().invoke(app, ["bench", "--replicas", replicas])
    assert result.exit_code == 2
    assert "--replicas" in result.output


def test_the_flow_runs_with_one_and_two_replicas_per_agency_on_postgresql() -> None:
    provided = acquire_broker()
    try:
        config = FlowConfig(
            transfers=12,
            agencies=3,
            backlog=0,
            window=12,
            prefetch=10,
            database_url=postgres_url(),
            agent_settings={"database_pool_size": 2, "verify_in_thread": False},
            timeout_s=240,
        )
        result = asyncio.run(run_replica_flows(provided.endpoint, config, [1, 2]))
    finally:
        provided.close()
    runs = result["replica_runs"]
    assert [r["replicas"] for r in runs] == [1, 2]
    for run in runs:
        assert run["finished"] and run["money_conserved"], run
        assert run["unexpected_outcomes"] == 0, run
        assert set(run["exit_codes"].values()) == {0}, run
        assert run["latency_ms"]["p99"] >= run["latency_ms"]["p50"] > 0
        # The reconciler's report is in the same database (schema reconcile_000000), read there.
        assert sum(run["reconciled"].values()) > 0 and "open" not in run["reconciled"], run
    print({r["replicas"]: (r["flow_transfers_per_s"], r["latency_ms"]["p99"]) for r in runs})
