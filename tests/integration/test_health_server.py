"""The metrics and health endpoints on 127.0.0.1: /metrics, /healthz, /readyz as checks flip, and
the broker check and connection gauges following a real connection the broker closes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from agents.service.health import (
    HealthServer,
    MetricsSettings,
    Readiness,
    broker_check,
    start_health_server,
)
from agents.service.metrics import AgentMetrics
from broker.connection import connect
from broker.metrics import watch_connection
from broker.pytest_plugin import TestVhost
from tests.integration.transport_support import eventually

pytestmark = pytest.mark.integration

A = "110000"

Served = tuple[HealthServer, AgentMetrics, dict[str, bool]]


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    metrics = AgentMetrics(A)
    flags = {"broker": True, "store": True}
    readiness = Readiness(check_timeout_s=0.5)
    readiness.add("broker", lambda: flags["broker"])

    async def store() -> int:
        if not flags["store"]:
            raise ConnectionError("store down")
        return 1

    readiness.add("store", store)
    async with HealthServer(metrics.registry, readiness, host="127.0.0.1", port=0) as server:
        yield server, metrics, flags


async def test_metrics_serves_the_process_registry(served: Served) -> None:
    server, metrics, _ = served
    metrics.transport.message_handled("receipt", 0.01)
    async with httpx.AsyncClient(base_url=server.url) as client:
        response = await client.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        assert 'jiexu_messages_handled_total{agency="110000",type="receipt"} 1.0' in response.text
        assert "jiexu_build_info{" in response.text
        open_metrics = await client.get(
            "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
        assert open_metrics.headers["content-type"].startswith("application/openmetrics-text")
        assert open_metrics.text.endswith("# EOF\n")
        head = await client.head("/metrics")
        assert head.status_code == 200 and head.content == b""


async def test_healthz_and_unknown_paths(served: Served) -> None:
    server, _, _ = served
    async with httpx.AsyncClient(base_url=server.url) as client:
        health = await client.get("/healthz?probe=1")
        assert (health.status_code, health.json()) == (200, {"status": "ok"})
        assert (await client.get("/nope")).status_code == 404
        assert (await client.post("/readyz")).status_code == 405


async def test_readyz_follows_its_checks(served: Served) -> None:
    server, _, flags = served
    async with httpx.AsyncClient(base_url=server.url) as client:
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"ready": True, "checks": {"broker": {"ok": True}, "store": {"ok": True}}}

        flags["broker"] = False
        flags["store"] = False
        unready = await client.get("/readyz")
        assert unready.status_code == 503
        assert unready.json() == {
            "ready": False,
            "checks": {
                "broker": {"ok": False, "error": "not ready"},
                "store": {"ok": False, "error": "ConnectionError: store down"},
            },
        }

        flags["broker"] = True
        flags["store"] = True
        assert (await client.get("/readyz")).status_code == 200


async def test_a_check_that_hangs_makes_the_process_unready_within_the_timeout() -> None:
    readiness = Readiness(check_timeout_s=0.2)

    async def hangs() -> bool:
        await asyncio.sleep(30)
        return True

    readiness.add("ledger", hangs)
    server = HealthServer(AgentMetrics(A).registry, readiness, host="127.0.0.1")
    async with server, httpx.AsyncClient(base_url=server.url, timeout=5) as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["ledger"] == {"ok": False, "error": "no answer within 0.2 s"}


async def test_no_checks_yet_is_not_ready_and_the_server_is_off_without_a_port() -> None:
    assert await start_health_server(AgentMetrics(A).registry, Readiness(), MetricsSettings()) is None
    server = await start_health_server(
        AgentMetrics(A).registry, Readiness(), MetricsSettings(port=0, host="127.0.0.1")
    )
    assert server is not None
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            response = await client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["checks"] == {
            "started": {"ok": False, "error": "no readiness check registered yet"}
        }
    finally:
        await server.stop()


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert MetricsSettings().port is None
    monkeypatch.setenv("JIEXU_METRICS_PORT", "9470")
    monkeypatch.setenv("JIEXU_METRICS_HOST", "127.0.0.1")
    assert (MetricsSettings().port, MetricsSettings().host) == (9470, "127.0.0.1")


async def test_readyz_turns_unready_when_the_broker_closes_the_connection_and_ready_again(
    rabbitmq_vhost: TestVhost,
) -> None:
    # aio-pika reconnects at once after a close: to see the process unready, the broker refuses
    # the reconnection (the user's password changed) until the password is put back.
    user, password = f"jiexu-health-{rabbitmq_vhost.name}", "first-password"
    with rabbitmq_vhost.management() as api:
        api.put_user(user, password)
        api.set_permissions(rabbitmq_vhost.name, user, ".*", ".*", ".*")
    metrics = AgentMetrics(A)
    r = metrics.registry
    name = f"jiexu-health-test-{rabbitmq_vhost.name}"
    connection = await connect(
        rabbitmq_vhost.url_for(user, password), name=name, reconnect_floor_s=0.2,
        reconnect_ceiling_s=0.5,
    )

    def up() -> float | None:
        return r.get_sample_value("jiexu_broker_connection_up", {"agency": A})

    def listed() -> list[str]:
        with rabbitmq_vhost.management() as api:
            return [c["name"] for c in api.list_connections() if c.get("user") == user]

    try:
        watch_connection(connection.raw, metrics.transport)
        readiness = Readiness()
        readiness.add("broker", broker_check(connection))
        async with HealthServer(r, readiness, host="127.0.0.1") as server, httpx.AsyncClient(
            base_url=server.url
        ) as client:

            async def status(expected: int) -> bool:
                return (await client.get("/readyz")).status_code == expected

            assert await status(200)
            assert up() == 1
            await eventually(lambda: bool(listed()), "the connection listed by the management API")
            with rabbitmq_vhost.management() as api:
                api.put_user(user, "another-password")
                for connection_name in listed():
                    api.close_connection(connection_name, reason="test: readiness")

            await eventually(lambda: status(503), "unready while the broker refuses the connection")
            assert up() == 0
            body = (await client.get("/readyz")).json()
            assert body == {"ready": False, "checks": {"broker": {"ok": False, "error": "not ready"}}}

            with rabbitmq_vhost.management() as api:
                api.put_user(user, password)
            await eventually(lambda: status(200), "ready again after the reconnection")
            assert up() == 1
            assert r.get_sample_value("jiexu_broker_reconnections_total", {"agency": A}) == 1
    finally:
        await connection.close()
        with rabbitmq_vhost.management() as api:
            api.delete_user(user)
    assert up() == 0
