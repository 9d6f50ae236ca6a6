"""The performance harness: the raw aio-pika ceiling and jiexu's figures, in one run, one broker.

Every section runs against the same broker, in a vhost made for the run, on the same bodies (the
encoded, signed envelopes jiexu itself sends), so the ratios compare like with like:

* ``raw_publish``   aio-pika publishing with confirms, many in flight, into a quorum queue;
* ``raw_hop``       aio-pika consume (prefetch 200) -> ``json.loads`` -> publish with confirm -> ack;
* ``signed_hop``    the raw hop on jiexu's connection and publisher with only the signature work
                    added (verify what came in, sign the answer): the floor under ``transport``;
* ``transport``     jiexu's `Publisher` (sign, confirm) filling an inbox, then jiexu's `Consumer` hop:
                    decode, check, verify, validate, handler builds and signs a new envelope,
                    publish with confirm, ack;
* ``transport_steps`` the same hop again with each step timed where it runs (CPU per message);
* ``codec``         the same steps on an idle core, no broker.

A section is an async function taking the `BenchContext` and returning figures; `SECTIONS` lists
them in order, and `run_bench` merges their figures and derives the ratios. The full-flow section
(whole transfers through the agents) is meant to be appended there.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import platform
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import orjson
import structlog

import broker.consumer
import broker.publisher
from broker.connection import BrokerConnection, connect
from broker.consumer import Consumer, ConsumerSettings, DeliveryInfo
from broker.directory import AgencyDirectory, AgencyEntry, DirectoryBankAccount
from broker.provider import BrokerEndpoint
from broker.publisher import Publisher, body_properties
from broker.signing import (
    Ed25519PrivateKey,
    canonical_bytes,
    ed25519_sign,
    ed25519_verify,
    generate_private_key,
    public_key_to_raw_b64,
    sign_and_encode,
    sign_envelope,
    signature_check,
    verify_envelope,
)
from broker.topology import AgencyCredentials, TopologySpec, apply_topology, delete_agency_users
from schemas.common import Document
from schemas.envelope import Envelope, canonical_json
from schemas.examples import EXAMPLES
from schemas.registry import (
    Message,
    decode_envelope_with_raw,
    encode_envelope,
    encode_envelope_data,
    envelope_for,
    validate_document,
)

__all__ = [
    "SECTIONS",
    "BenchConfig",
    "BenchContext",
    "codec",
    "raw_hop",
    "raw_publish",
    "run_bench",
    "sample_document",
    "signed_hop",
    "transport",
    "transport_steps",
]

log = structlog.get_logger("jiexu.bench")

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


class _Clock:
    """Wall time and this process's CPU time (the client's cost; the broker's is not in it)."""

    def __init__(self) -> None:
        self._wall = time.perf_counter()
        self._cpu = time.process_time()

    def stop(self) -> tuple[float, float]:
        return time.perf_counter() - self._wall, time.process_time() - self._cpu


def _per_msg_us(cpu_s: float, count: int) -> float:
    return round(cpu_s / count * 1e6, 1) if count else 0.0


def _rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0


async def _wait_until(
    done: Callable[[], bool], timeout_s: float, what: str, progress: Callable[[], int]
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not done():
        if loop.time() > deadline:
            raise TimeoutError(f"bench: {what} did not finish ({progress()} done)")
        await asyncio.sleep(0.005)


async def _fill_source(channel: aio_pika.abc.AbstractChannel, bodies: Sequence[bytes]) -> None:
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


async def _timed_consume(
    ctx: BenchContext,
    source: aio_pika.abc.AbstractQueue,
    on_message: Callable[[aio_pika.abc.AbstractIncomingMessage], Awaitable[None]],
    done: Callable[[], int],
    total: int,
    what: str,
) -> tuple[float, float]:
    """Consume ``source`` with ``on_message`` until ``done()`` reaches ``total``: (wall s, CPU s)."""
    clock = _Clock()
    tag = await source.consume(on_message)
    await _wait_until(lambda: done() >= total, ctx.config.timeout_s, what, done)
    elapsed_cpu = clock.stop()
    await source.cancel(tag)
    return elapsed_cpu


# -- sections ----------------------------------------------------------------------------------


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

        clock = _Clock()
        await asyncio.gather(*(one(body) for body in bodies))
        elapsed, cpu = clock.stop()
    return {
        "raw_publish_msgs_per_s": _rate(len(bodies), elapsed),
        "raw_publish_cpu_us_per_msg": _per_msg_us(cpu, len(bodies)),
    }


async def raw_hop(ctx: BenchContext) -> dict[str, Any]:
    """aio-pika alone: consume, ``json.loads``, publish with confirm to the next queue, ack."""
    bodies = ctx.bodies
    connection = await aio_pika.connect(ctx.admin_url)
    async with connection:
        await _fill_source(await connection.channel(publisher_confirms=True), bodies)
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

        elapsed, cpu = await _timed_consume(
            ctx, source, on_message, lambda: acked, len(bodies), "raw hop"
        )
    return {
        "raw_hop_msgs_per_s": _rate(len(bodies), elapsed),
        "raw_hop_cpu_us_per_msg": _per_msg_us(cpu, len(bodies)),
    }


async def signed_hop(ctx: BenchContext) -> dict[str, Any]:
    """The raw hop on jiexu's plumbing with only the signature work added: a floor for `transport`.

    jiexu's connection and `Publisher.publish_body`, aio-pika's consumer; per message the canonical
    form of what came in, Ed25519 verify, the answer's canonical form, Ed25519 sign, encode. No
    envelope or document model, no consumer checks: what separates `transport` from this is
    validation and the consumer's bookkeeping, what separates this from `raw_hop` is signatures.
    """
    bodies = ctx.bodies
    sender_key = ctx.directory.public_key(SENDER)
    hop_key = ctx.keys[HOP]
    connection = await connect(ctx.admin_url, name="bench-signed-hop")
    try:
        await _fill_source(await connection.channel(confirms=True), bodies)
        consume_channel = await connection.channel(prefetch=ctx.config.prefetch, confirms=False)
        publisher = await Publisher(
            connection, agency=HOP, max_in_flight=ctx.config.in_flight
        ).start()
        source = await consume_channel.get_queue(RAW_SOURCE_QUEUE)
        acked = 0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal acked
            data = orjson.loads(message.body)
            signature = base64.b64decode(data.pop("signature"))
            if not ed25519_verify(sender_key, signature, canonical_json(data)):
                raise RuntimeError("bench: a signature did not verify")
            data["sender"], data["recipient"] = HOP, SINK
            data["signature"] = base64.b64encode(
                ed25519_sign(hop_key, canonical_json(data))
            ).decode("ascii")
            body = encode_envelope_data(data)
            await publisher.publish_body(
                "", RAW_SINK_QUEUE, body, body_properties(body, publisher.user_id)
            )
            await message.ack()
            acked += 1

        elapsed, cpu = await _timed_consume(
            ctx, source, on_message, lambda: acked, len(bodies), "signed hop"
        )
    finally:
        await connection.close()
    return {
        "signed_hop_msgs_per_s": _rate(len(bodies), elapsed),
        "signed_hop_cpu_us_per_msg": _per_msg_us(cpu, len(bodies)),
    }


async def transport(ctx: BenchContext) -> dict[str, Any]:
    """jiexu: `Publisher` fills HOP's inbox; `Consumer` hops every message on to SINK."""
    return await _transport(ctx, contextlib.nullcontext)


async def _transport(
    ctx: BenchContext, around_hop: Callable[[], contextlib.AbstractContextManager[object]]
) -> dict[str, Any]:
    """`transport`, with the hop (not the filling of the inbox) run inside ``around_hop()``."""
    connections: list[BrokerConnection] = []
    try:
        sender_conn = await connect(ctx.agency_url(SENDER), name="bench-sender")
        connections.append(sender_conn)
        sender = await Publisher(
            sender_conn, agency=SENDER, private_key=ctx.keys[SENDER],
            max_in_flight=ctx.config.in_flight,
        ).start()
        unsigned = [e.model_copy(update={"signature": None}) for e in ctx.envelopes]
        clock = _Clock()
        outcomes = await sender.publish_many(unsigned)
        publish_elapsed, publish_cpu = clock.stop()
        failed = [o for o in outcomes if not o.ok]
        if failed:
            raise RuntimeError(f"bench: {len(failed)} envelopes not confirmed: {failed[0].error}")

        hop_conn = await connect(ctx.agency_url(HOP), name="bench-hop")
        connections.append(hop_conn)
        forward = await Publisher(
            hop_conn, agency=HOP, private_key=ctx.keys[HOP], max_in_flight=ctx.config.in_flight
        ).start()

        async def handle(message: Message, delivery: DeliveryInfo) -> None:
            envelope = message.envelope
            await forward.publish(
                envelope_for(
                    message.document,
                    sender=HOP,
                    recipient=SINK,
                    case_id=envelope.case_id,
                    causation_id=envelope.message_id,
                )
            )

        consumer = Consumer(
            hop_conn,
            agency=HOP,
            handler=handle,
            directory=ctx.directory,
            settings=ConsumerSettings(
                prefetch=ctx.config.prefetch, user_prefix=ctx.spec.user_prefix
            ),
            publisher=forward,
        )
        total = len(unsigned)
        with around_hop():
            clock = _Clock()
            await consumer.start()
            await _wait_until(
                lambda: consumer.stats.handled >= total or consumer.stats.dead_lettered > 0,
                ctx.config.timeout_s,
                "transport hop",
                lambda: consumer.stats.handled,
            )
            hop_elapsed, hop_cpu = clock.stop()
        await consumer.stop()
        if consumer.stats.dead_lettered or consumer.stats.retried:
            raise RuntimeError(f"bench: the transport hop did not run clean: {consumer.stats}")
    finally:
        for connection in reversed(connections):
            await connection.close()
    return {
        "transport_publish_msgs_per_s": _rate(total, publish_elapsed),
        "transport_publish_cpu_us_per_msg": _per_msg_us(publish_cpu, total),
        "transport_hop_msgs_per_s": _rate(total, hop_elapsed),
        "transport_hop_cpu_us_per_msg": _per_msg_us(hop_cpu, total),
    }


_HOP_STEPS: tuple[tuple[str, object, str], ...] = (
    ("decode", broker.consumer, "decode_envelope_with_raw"),
    ("verify", broker.consumer, "verify_envelope"),
    ("validate", broker.consumer, "validate_document"),
    ("build_answer", sys.modules[__name__], "envelope_for"),
    ("sign_and_encode", broker.publisher, "sign_and_encode"),
    ("properties", broker.publisher, "envelope_properties"),
)
"""(step, module, function): the transport hop's steps, each looked up in its module at call time."""


async def transport_steps(ctx: BenchContext) -> dict[str, Any]:
    """The `transport` hop again, each step timed where it runs: what the steps cost in place.

    Every step of `_HOP_STEPS` is wrapped, for the hop only, in a timer of this thread's CPU time
    (garbage collections the step sets off included); the hop's own CPU per message is reported
    beside them, and ``other`` is what is left: the consumer's checks and bookkeeping, the
    publishing, the acks, aiormq and the event loop. On an idle core the same steps cost what
    `codec` reports; in place they cost more.
    """
    spent: dict[str, int] = dict.fromkeys((name for name, _, _ in _HOP_STEPS), 0)
    calls: dict[str, int] = dict.fromkeys(spent, 0)

    def timed(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            started = time.thread_time_ns()
            try:
                return function(*args, **kwargs)
            finally:
                spent[name] += time.thread_time_ns() - started
                calls[name] += 1

        return run

    @contextlib.contextmanager
    def steps_timed() -> Iterator[None]:
        originals = [
            (module, attribute, getattr(module, attribute)) for _, module, attribute in _HOP_STEPS
        ]
        try:
            for name, module, attribute in _HOP_STEPS:
                setattr(module, attribute, timed(name, getattr(module, attribute)))
            yield
        finally:
            for module, attribute, original in originals:
                setattr(module, attribute, original)

    figures = await _transport(ctx, steps_timed)
    total = ctx.config.messages
    steps = {name: round(spent[name] / 1000 / total, 1) for name in spent}
    hop = figures["transport_hop_cpu_us_per_msg"]
    steps["other"] = round(hop - sum(steps.values()), 1)
    if min(calls.values()) < total:
        raise RuntimeError(f"bench: a transport step was not timed on every message: {calls}")
    return {"transport_steps_us_per_msg": steps, "transport_steps_hop_cpu_us_per_msg": hop}


async def codec(ctx: BenchContext) -> dict[str, Any]:
    """CPU per message of each step of the transport hop, without a broker: where the time goes.

    The steps are the consumer's and the publisher's own: ``decode`` parses the body once
    (envelope and received object), ``canonical_json`` is the signed form of what was received,
    ``ed25519_verify``/``ed25519_sign`` the bare signature operations, ``sign_and_encode`` the
    publisher's whole signing (one model dump, canonical form, Ed25519, body).
    """
    bodies = ctx.bodies[: min(len(ctx.bodies), 500)]
    public_key = ctx.directory.public_key(SENDER)
    hop_key = ctx.keys[HOP]
    steps: dict[str, float] = {}

    def timed(name: str, run: Callable[[], object]) -> None:
        started = time.process_time()
        for _ in bodies:
            run()
        steps[name] = round((time.process_time() - started) / len(bodies) * 1e6, 1)

    body = bodies[0]
    envelope, received = decode_envelope_with_raw(body)
    check = signature_check(received)
    document = validate_document(envelope)
    outgoing = envelope_for(document, sender=HOP, recipient=SINK, case_id=envelope.case_id)
    signed, _ = sign_and_encode(outgoing, hop_key)
    signed_bytes = canonical_bytes(outgoing)
    timed("decode", lambda: decode_envelope_with_raw(body))
    timed("verify", lambda: verify_envelope(received, public_key))
    timed("canonical_json", lambda: canonical_bytes(received))
    timed("ed25519_verify", lambda: check.run(public_key))
    timed("validate", lambda: validate_document(envelope))
    timed("envelope_for", lambda: envelope_for(document, sender=HOP, recipient=SINK,
                                               case_id=envelope.case_id))
    timed("sign_and_encode", lambda: sign_and_encode(outgoing, hop_key))
    timed("ed25519_sign", lambda: ed25519_sign(hop_key, signed_bytes))
    timed("encode", lambda: encode_envelope(signed))
    timed("json_loads_dumps", lambda: json.dumps(json.loads(body)).encode())
    return {"codec_cpu_us_per_msg": steps}


SECTIONS: list[Section] = [raw_publish, raw_hop, signed_hop, transport, transport_steps, codec]


# -- running --------------------------------------------------------------------------------------


def _directory_entry(code: str, key: Ed25519PrivateKey) -> AgencyEntry:
    return AgencyEntry(
        code=code,
        name=f"bench agency {code}",
        supported_versions={"information_form": (1, 2)},
        public_key=public_key_to_raw_b64(key),
        bank_account=DirectoryBankAccount(
            bank_name="bench bank",
            bank_code="102100099996",
            account_name=f"bench {code}",
            account_number=f"6222{code}000001",
        ),
    )


def _envelopes(count: int, key: Ed25519PrivateKey) -> list[Envelope]:
    document = sample_document()
    return [
        sign_envelope(
            envelope_for(document, sender=SENDER, recipient=HOP, case_id=uuid.uuid4()), key
        )
        for _ in range(count)
    ]


async def _run_sections(ctx: BenchContext, sections: Sequence[Section]) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for section in sections:
        log.info("bench_section_started", section=section.__name__)
        figures.update(await section(ctx))
    return figures


_RATIOS = (
    ("ratio_transport_vs_raw", "transport_hop_msgs_per_s", "raw_hop_msgs_per_s"),
    ("ratio_signed_hop_vs_raw", "signed_hop_msgs_per_s", "raw_hop_msgs_per_s"),
    ("ratio_publish_vs_raw", "transport_publish_msgs_per_s", "raw_publish_msgs_per_s"),
)
"""(ratio, jiexu's figure, the raw figure it is compared with)"""


def run_bench(
    endpoint: BrokerEndpoint,
    config: BenchConfig | None = None,
    sections: Sequence[Section] | None = None,
) -> dict[str, Any]:
    """Run every section on ``endpoint`` in a throwaway vhost; return the figures and ratios."""
    config = config or BenchConfig()
    run_id = uuid.uuid4().hex[:8]
    vhost = f"jiexu-bench-{run_id}"
    spec = TopologySpec(agency_codes=(SENDER, HOP, SINK), user_prefix=f"bench{run_id}-")
    keys = {code: generate_private_key() for code in (SENDER, HOP, SINK)}
    directory = AgencyDirectory([_directory_entry(code, keys[code]) for code in keys])
    with endpoint.management() as api:
        api.create_vhost(vhost)
        api.set_permissions(vhost, endpoint.username, ".*", ".*", ".*")
        try:
            credentials = apply_topology(api, vhost, spec)
            for queue in (RAW_PUBLISH_QUEUE, RAW_SOURCE_QUEUE, RAW_SINK_QUEUE):
                api.declare_queue(vhost, queue, QUORUM)
            ctx = BenchContext(
                config=config,
                endpoint=endpoint,
                vhost=vhost,
                spec=spec,
                credentials=credentials,
                keys=keys,
                directory=directory,
                envelopes=_envelopes(config.messages, keys[SENDER]),
            )
            figures = asyncio.run(_run_sections(ctx, sections or SECTIONS))
        finally:
            api.delete_vhost(vhost)
            delete_agency_users(api, spec)
    body_sizes = [len(b) for b in ctx.bodies[:100]]
    result: dict[str, Any] = {
        "broker": endpoint.source,
        "messages": config.messages,
        "body_bytes": round(sum(body_sizes) / max(len(body_sizes), 1)),
        "in_flight": config.in_flight,
        "prefetch": config.prefetch,
        "python": platform.python_version(),
        "aio_pika": aio_pika.__version__,
        **figures,
    }
    for ratio, ours, raw in _RATIOS:
        if figures.get(raw) and ours in figures:
            result[ratio] = round(figures[ours] / figures[raw], 3)
    return result
