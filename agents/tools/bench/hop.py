"""jiexu's transport measured against the raw hop: the signed hop, the transport hop, its steps in
place, and the codec on an idle core."""

from __future__ import annotations

import base64
import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import aio_pika
import orjson

import broker.consumer
import broker.publisher
from agents.tools.bench.context import (
    HOP,
    RAW_SINK_QUEUE,
    RAW_SOURCE_QUEUE,
    SENDER,
    SINK,
    BenchContext,
    WallCpuClock,
    fill_source,
    per_msg_us,
    rate,
    timed_consume,
    wait_until,
)
from broker.connection import BrokerConnection, connect
from broker.consumer import Consumer, ConsumerSettings, DeliveryInfo
from broker.publisher import Publisher, body_properties
from broker.signing import (
    canonical_bytes,
    ed25519_sign,
    ed25519_verify,
    sign_and_encode,
    signature_check,
    verify_envelope,
)
from schemas.envelope import canonical_json
from schemas.registry import (
    Message,
    decode_envelope_with_raw,
    encode_envelope,
    encode_envelope_data,
    envelope_for,
    validate_document,
)

__all__ = ["codec", "signed_hop", "transport", "transport_steps"]


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
        await fill_source(await connection.channel(confirms=True), bodies)
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

        elapsed, cpu = await timed_consume(
            ctx, source, on_message, lambda: acked, len(bodies), "signed hop"
        )
    finally:
        await connection.close()
    return {
        "signed_hop_msgs_per_s": rate(len(bodies), elapsed),
        "signed_hop_cpu_us_per_msg": per_msg_us(cpu, len(bodies)),
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
        clock = WallCpuClock()
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
            clock = WallCpuClock()
            await consumer.start()
            await wait_until(
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
        "transport_publish_msgs_per_s": rate(total, publish_elapsed),
        "transport_publish_cpu_us_per_msg": per_msg_us(publish_cpu, total),
        "transport_hop_msgs_per_s": rate(total, hop_elapsed),
        "transport_hop_cpu_us_per_msg": per_msg_us(hop_cpu, total),
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
