"""A real Prometheus (Debian's `prometheus`, on 127.0.0.1, started and stopped here) scrapes an
agent's metrics endpoint with deploy/monitoring's rules loaded: the store gauges arrive with their
values, and the overdue-step alert goes pending for them."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from agents.service.health import HealthServer, Readiness
from agents.service.metrics import AgentMetrics, StoreFigures
from tests.integration.transport_support import eventually

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "monitoring" / "rules" / "jiexu.rules.yml"
PROMETHEUS = shutil.which("prometheus")
A, B = "110000", "320100"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
async def agent_endpoint() -> AsyncIterator[HealthServer]:
    metrics = AgentMetrics(A)
    metrics.transport.message_handled("information_form", 0.05)
    metrics.transport.dead_lettered("fund_transfer", "bad_signature")
    metrics.watch_store(lambda: StoreFigures(
        taken_at=datetime.now(UTC).timestamp(),
        cases={"awaiting_form": 3},
        open_cases={("receiving", "awaiting_form"): 3},
        overdue={("receiving", B): 2},
        money_in_flight_fen={"outgoing": 0, "receiving": 12_345},
    ))
    readiness = Readiness()
    readiness.add("always", lambda: True)
    async with HealthServer(metrics.registry, readiness, host="127.0.0.1") as server:
        yield server


@pytest.fixture
def prometheus(tmp_path: Path, agent_endpoint: HealthServer) -> Iterator[str]:
    if PROMETHEUS is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have prometheus: .ci/run installs Debian's prometheus package")
        pytest.skip("prometheus not found: `apt-get install prometheus` (Debian's package)")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{
            "job_name": "jiexu-agent",
            "static_configs": [{"targets": [f"127.0.0.1:{agent_endpoint.port}"]}],
        }],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    port = _free_port()
    process = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.console.templates=/nonexistent",
            "--web.console.libraries=/nonexistent",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "prometheus.log").open("w"),
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _query(client: httpx.AsyncClient, expr: str) -> list[dict[str, Any]]:
    response = await client.get("/api/v1/query", params={"query": expr})
    result: list[dict[str, Any]] = response.json()["data"]["result"]
    return result


async def test_prometheus_scrapes_the_agent_and_the_overdue_alert_goes_pending(
    prometheus: str,
) -> None:
    async with httpx.AsyncClient(base_url=prometheus, timeout=5) as client:

        async def ready() -> bool:
            try:
                return (await client.get("/-/ready")).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(ready, "prometheus ready", timeout_s=60)

        async def scraped() -> bool:
            return bool(await _query(client, 'up{job="jiexu-agent"} == 1'))

        await eventually(scraped, "the agent scraped", timeout_s=30)
        overdue = await _query(client, "jiexu_overdue_steps")
        assert [(r["metric"]["agency"], r["metric"]["whose_turn"], r["value"][1]) for r in overdue] == [
            (A, B, "2")
        ]
        money = await _query(client, 'jiexu_money_in_flight_fen{role="receiving"}')
        assert money[0]["value"][1] == "12345"
        dead = await _query(client, "jiexu_messages_dead_lettered_total")
        assert dead[0]["metric"]["reason"] == "bad_signature"
        build = await _query(client, "jiexu_build_info")
        assert "information_form=1,2" in build[0]["metric"]["contracts"]

        async def pending() -> bool:
            alerts = (await client.get("/api/v1/alerts")).json()["data"]["alerts"]
            return any(
                a["labels"]["alertname"] == "JiexuStepOverdue"
                and a["labels"]["agency"] == A
                and a["labels"]["whose_turn"] == B
                and a["state"] == "pending"
                for a in alerts
            )

        await eventually(pending, "JiexuStepOverdue pending", timeout_s=30)
