"""The raw aio-pika ceiling: what the broker and aio-pika do alone, on jiexu's own bodies."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import aio_pika

from agents.tools.bench.context import (
    RAW_PUBLISH_QUEUE,
    RAW_SINK_QUEUE,
    RAW_SOURCE_QUEUE,
    BenchContext,
    WallCpuClock,
    fill_source,
    per_msg_us,
    rate,
    timed_consume,
)

__all__ = ["raw_hop", "raw_publish"]


async def raw_publish(ctx: BenchContext) -> dict[str, Any]:
    """aio-pika alone: persistent publishes with confirms, ``in_flight`` at a time."""
    bodies = ctx.bodies
    connection = await aio_pika.connect(ctx.admin_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = channel.default_exchange
        limit = asyncio.Semaphore(ctx.config.in_flight)

        async def one(body: bytes) -> None:
            async with limit:
                await exchange.publish(
                    aio_pika.Message(
                        body,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        content_type="application/json",
                        message_id=str(uuid.uuid4()),
                    ),
                    routing_key=RAW_PUBLISH_QUEUE,
                    mandatory=True,
                )

        clock = WallCpuClock()
        await asyncio.gather(*(one(body) for body in bodies))
        elapsed, cpu = clock.stop()
    return {
        "raw_publish_msgs_per_s": rate(len(bodies), elapsed),
        "raw_publish_cpu_us_per_msg": per_msg_us(cpu, len(bodies)),
    }


async def raw_hop(ctx: BenchContext) -> dict[str, Any]:
    """aio-pika alone: consume, ``json.loads``, publish with confirm to the next queue, ack."""
    bodies = ctx.bodies
    connection = await aio_pika.connect(ctx.admin_url)
    async with connection:
        await fill_source(await connection.channel(publisher_confirms=True), bodies)
        consume_channel = await connection.channel(publisher_confirms=False)
        await consume_channel.set_qos(prefetch_count=ctx.config.prefetch)
        publish_channel = await connection.channel(publisher_confirms=True)
        out = publish_channel.default_exchange
        source = await consume_channel.get_queue(RAW_SOURCE_QUEUE)
        acked = 0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal acked
            data = json.loads(message.body)
            await out.publish(
                aio_pika.Message(
                    json.dumps(data).encode(),
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    message_id=message.message_id,
                ),
                routing_key=RAW_SINK_QUEUE,
                mandatory=True,
            )
            await message.ack()
            acked += 1

        elapsed, cpu = await timed_consume(
            ctx, source, on_message, lambda: acked, len(bodies), "raw hop"
        )
    return {
        "raw_hop_msgs_per_s": rate(len(bodies), elapsed),
        "raw_hop_cpu_us_per_msg": per_msg_us(cpu, len(bodies)),
    }
