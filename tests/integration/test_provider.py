"""The provider chain really starts each kind of broker, and says clearly when none works."""

from __future__ import annotations

import os
import shutil
import socket

import aio_pika
import pytest

from broker.provider import BrokerEndpoint, BrokerUnavailable, acquire_broker

OFFLINE_IMAGE = os.environ.get("JIEXU_RABBITMQ_IMAGE", "jiexu/rabbitmq:offline")


def _require(condition: bool, why: str) -> None:
    """In CI every provider must run; on a developer's machine a missing one is a skip."""
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must exercise this provider: {why}")
    pytest.skip(why)


def _docker_ready() -> bool:
    try:
        import docker

        docker.from_env().images.get(OFFLINE_IMAGE)
    except Exception:
        return False
    return True


def _rabbitmq_server_installed() -> bool:
    return (
        os.path.exists("/usr/lib/rabbitmq/bin/rabbitmq-server")
        or shutil.which("rabbitmq-server") is not None
    )


async def _round_trip(endpoint: BrokerEndpoint) -> bytes:
    connection = await aio_pika.connect(endpoint.amqp_url())
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue("", exclusive=True)
        await channel.default_exchange.publish(aio_pika.Message(b"ping"), routing_key=queue.name)
        message = await queue.get(timeout=10, fail=True)
        assert message is not None
        await message.ack()
        return message.body


def _closed(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return False
    except OSError:
        return True


async def test_container_provider_starts_the_offline_image_and_round_trips() -> None:
    _require(_docker_ready(), f"no Docker engine with image {OFFLINE_IMAGE}")
    provided = acquire_broker(
        {"JIEXU_BROKER_PROVIDERS": "container", "JIEXU_RABBITMQ_IMAGE": OFFLINE_IMAGE}
    )
    try:
        assert provided.endpoint.source == f"container {OFFLINE_IMAGE}"
        assert provided.endpoint.host == "127.0.0.1"
        with provided.endpoint.management() as api:
            assert "rabbitmq_version" in api.overview()
        assert await _round_trip(provided.endpoint) == b"ping"
    finally:
        provided.close()
    assert _closed(provided.endpoint.host, provided.endpoint.amqp_port)


async def test_local_node_provider_starts_a_throwaway_rabbitmq_server() -> None:
    _require(_rabbitmq_server_installed(), "rabbitmq-server is not installed")
    provided = acquire_broker({"JIEXU_BROKER_PROVIDERS": "local-node"})
    try:
        assert provided.endpoint.source.startswith("local node ")
        assert provided.endpoint.amqp_port != 5672
        assert await _round_trip(provided.endpoint) == b"ping"
    finally:
        provided.close()
    assert _closed("127.0.0.1", provided.endpoint.amqp_port)


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_when_nothing_is_reachable_the_error_names_every_attempt(tmp_path: object) -> None:
    env = {
        "JIEXU_LOCAL_AMQP_PORT": str(_unused_port()),
        "DOCKER_HOST": "unix:///nonexistent/docker.sock",
        "JIEXU_RABBITMQ_SERVER": "/nonexistent/rabbitmq-server",
    }
    with pytest.raises(BrokerUnavailable) as caught:
        acquire_broker(env)
    message = str(caught.value)
    assert [a[0] for a in caught.value.attempts] == [
        "JIEXU_AMQP_URL",
        "a broker on 127.0.0.1:5672",
        "a throwaway container (testcontainers)",
        "a throwaway local rabbitmq-server node",
    ]
    assert "nothing answers on 127.0.0.1:" in message
    assert "no Docker engine answers" in message
    assert "no rabbitmq-server executable found" in message
    assert message.count("fix:") == 4


def test_an_explicit_url_that_does_not_answer_is_reported_not_replaced() -> None:
    port = _unused_port()
    with pytest.raises(BrokerUnavailable) as caught:
        acquire_broker({"JIEXU_AMQP_URL": f"amqp://guest:guest@127.0.0.1:{port}/"})
    assert caught.value.attempts[0][0] == "JIEXU_AMQP_URL"
    assert f"nothing answers at 127.0.0.1:{port}" in str(caught.value)
    assert len(caught.value.attempts) == 1


def test_a_broker_without_its_management_api_is_skipped_with_a_fix() -> None:
    # Something answers on the AMQP port, but no management API: the hint says how to enable it.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        env = {
            "JIEXU_BROKER_PROVIDERS": "localhost",
            "JIEXU_LOCAL_AMQP_PORT": str(port),
            "JIEXU_LOCAL_MANAGEMENT_PORT": str(_unused_port()),
        }
        with pytest.raises(BrokerUnavailable) as caught:
            acquire_broker(env)
    assert "rabbitmq-plugins enable rabbitmq_management" in str(caught.value)
