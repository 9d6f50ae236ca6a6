"""`jiexu smoke`: find a broker, provision a small topology in a fresh vhost, round-trip a message."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import aio_pika
import typer

from broker.logging import configure_logging
from broker.names import EXCHANGE, inbox_binding, inbox_queue, routing_key
from broker.provider import BrokerEndpoint, BrokerUnavailable, acquire_broker

__all__ = ["run_smoke", "smoke_command"]


async def _round_trip(url: str, recipient: str) -> dict[str, Any]:
    connection = await aio_pika.connect_robust(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(
            EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(
            inbox_queue(recipient), durable=True, arguments={"x-queue-type": "quorum"}
        )
        await queue.bind(exchange, inbox_binding(recipient))
        body = json.dumps({"hello": recipient, "id": str(uuid.uuid4())}).encode()
        started = time.perf_counter()
        await exchange.publish(
            aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=routing_key(recipient, "smoke"),
            mandatory=True,
        )
        incoming = await queue.get(timeout=10, fail=True)
        assert incoming is not None
        await incoming.ack()
        elapsed_ms = (time.perf_counter() - started) * 1000
        if incoming.body != body:
            raise RuntimeError("the message came back changed")
        return {"round_trip_ms": round(elapsed_ms, 2), "queue": queue.name}


def run_smoke(endpoint: BrokerEndpoint) -> dict[str, Any]:
    vhost = f"jiexu-smoke-{uuid.uuid4().hex[:8]}"
    with endpoint.management() as api:
        api.create_vhost(vhost)
        api.set_permissions(vhost, endpoint.username, ".*", ".*", ".*")
        try:
            result = asyncio.run(_round_trip(endpoint.amqp_url(vhost=vhost), "360400"))
        finally:
            api.delete_vhost(vhost)
    return {"broker": endpoint.source, "vhost": vhost, **result, "ok": True}


def smoke_command(
    as_json: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """Find or start a broker, provision a topology, round-trip one message."""
    configure_logging(level="INFO" if as_json else "WARNING", json=as_json)
    try:
        provided = acquire_broker()
    except BrokerUnavailable as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    try:
        result = run_smoke(provided.endpoint)
    finally:
        provided.close()
    if as_json:
        typer.echo(json.dumps(result))
    else:
        typer.echo(
            f"broker: {result['broker']}\n"
            f"round trip through {result['queue']} in {result['round_trip_ms']} ms: ok"
        )
