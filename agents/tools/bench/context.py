"""What every bench section gets (`BenchContext`), the agencies and queues it uses, and the timing
helpers the sections share."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aio_pika

from broker.directory import AgencyDirectory
from broker.provider import BrokerEndpoint
from broker.signing import Ed25519PrivateKey
from broker.topology import AgencyCredentials, TopologySpec
from schemas.common import Document
from schemas.envelope import Envelope
from schemas.examples import EXAMPLES
from schemas.registry import encode_envelope

__all__ = [
    "HOP",
    "QUORUM",
    "RAW_PUBLISH_QUEUE",
    "RAW_SINK_QUEUE",
    "RAW_SOURCE_QUEUE",
    "SENDER",
    "SINK",
    "BenchConfig",
    "BenchContext",
    "Section",
    "WallCpuClock",
    "fill_source",
    "per_msg_us",
    "rate",
    "sample_document",
    "timed_consume",
    "wait_until",
]

SENDER, HOP, SINK = "110000", "310000", "440300"
RAW_PUBLISH_QUEUE = "bench.raw.publish"
RAW_SOURCE_QUEUE = "bench.raw.source"
RAW_SINK_QUEUE = "bench.raw.sink"
QUORUM = {"x-queue-type": "quorum"}


@dataclass(frozen=True)
class BenchConfig:
    messages: int = 2000
    in_flight: int = 500
    prefetch: int = 200
    timeout_s: float = 600.0


@dataclass
class BenchContext:
    """What every section gets: the broker, a vhost provisioned for the run, agencies and bodies."""

    config: BenchConfig
    endpoint: BrokerEndpoint
    vhost: str
    spec: TopologySpec
    credentials: AgencyCredentials
    keys: dict[str, Ed25519PrivateKey]
    directory: AgencyDirectory
    envelopes: list[Envelope] = field(default_factory=list)
    """Signed envelopes SENDER -> HOP, the bodies every section moves."""

    @property
    def admin_url(self) -> str:
        return self.endpoint.amqp_url(vhost=self.vhost)

    def agency_url(self, code: str) -> str:
        cred = self.credentials[code]
        return self.endpoint.amqp_url(
            vhost=self.vhost, username=cred.username, password=cred.password
        )

    @property
    def bodies(self) -> list[bytes]:
        return [encode_envelope(e) for e in self.envelopes]


Section = Callable[[BenchContext], Awaitable[dict[str, Any]]]


def sample_document() -> Document:
    """A realistic information form v2 (the largest document of a transfer)."""
    return EXAMPLES[("information_form", 2)]


class WallCpuClock:
    """Wall time and this process's CPU time (the client's cost; the broker's is not in it)."""

    def __init__(self) -> None:
        self._wall = time.perf_counter()
        self._cpu = time.process_time()

    def stop(self) -> tuple[float, float]:
        return time.perf_counter() - self._wall, time.process_time() - self._cpu


def per_msg_us(cpu_s: float, count: int) -> float:
    return round(cpu_s / count * 1e6, 1) if count else 0.0


def rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0


async def wait_until(
    done: Callable[[], bool], timeout_s: float, what: str, progress: Callable[[], int]
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not done():
        if loop.time() > deadline:
            raise TimeoutError(f"bench: {what} did not finish ({progress()} done)")
        await asyncio.sleep(0.005)


async def fill_source(channel: aio_pika.abc.AbstractChannel, bodies: Sequence[bytes]) -> None:
    """Put ``bodies`` into the raw source queue (persistent, confirmed) for a hop section."""
    await asyncio.gather(
        *(
            channel.default_exchange.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=RAW_SOURCE_QUEUE,
            )
            for body in bodies
        )
    )


async def timed_consume(
    ctx: BenchContext,
    source: aio_pika.abc.AbstractQueue,
    on_message: Callable[[aio_pika.abc.AbstractIncomingMessage], Awaitable[None]],
    done: Callable[[], int],
    total: int,
    what: str,
) -> tuple[float, float]:
    """Consume ``source`` with ``on_message`` until ``done()`` reaches ``total``: (wall s, CPU s)."""
    clock = WallCpuClock()
    tag = await source.consume(on_message)
    await wait_until(lambda: done() >= total, ctx.config.timeout_s, what, done)
    elapsed_cpu = clock.stop()
    await source.cancel(tag)
    return elapsed_cpu
