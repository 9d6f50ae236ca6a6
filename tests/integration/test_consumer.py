"""Consuming on a real broker: hostile input is dead-lettered with its reason, failures retried."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import structlog
from structlog.testing import LogCapture

from agents.store.sqlite import SqliteStore
from broker.consumer import Consumer
from broker.delivery import (
    HEADER_ATTEMPT,
    HEADER_DEAD_AT,
    HEADER_DEAD_DETAIL,
    HEADER_DEAD_REASON,
    HEADER_ORIGINAL_ROUTING_KEY,
    HEADER_ORIGINAL_USER,
    HEADER_REPUBLISHED,
    DeliveryInfo,
    header_str,
)
from broker.names import (
    EXCHANGE,
    agency_retry_exchange,
    dlq_queue,
    inbox_queue,
    retry_inbox_key,
    routing_key,
)
from broker.publisher import envelope_message
from broker.signing import generate_private_key, sign_envelope
from schemas.errors import DomainRuleViolation, TransientError
from schemas.registry import Message
from tests.integration.transport_support import (
    A,
    Agencies,
    B,
    C,
    Recorder,
    drain_queue,
    encoded,
    eventually,
    publish_raw,
    queue_counts,
    receipt,
)


@pytest.fixture
def captured_logs() -> Iterator[LogCapture]:
    """structlog events with the context variables merged in, as production binds them."""
    capture = LogCapture()
    old = structlog.get_config()
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, capture],
        cache_logger_on_first_use=False,
    )
    try:
        yield capture
    finally:
        structlog.configure(**old)


async def _dlq(agencies: Agencies) -> dict[str, Any]:
    admin = await agencies.admin()
    return {m.message_id: m for m in await drain_queue(admin, dlq_queue(A))}


async def test_every_hostile_input_is_dead_lettered_with_its_reason_and_valid_ones_handled(
    agencies: Agencies, captured_logs: LogCapture
) -> None:
    recorder = Recorder()
    await agencies.consumer(A, recorder)
    from_b = await agencies.publisher(B)
    from_c = await agencies.publisher(C)
    expected: dict[str, str] = {}
    valid: list[UUID] = []

    async def send_valid() -> None:
        valid.append((await from_b.publish(receipt(B, A))).message_id)

    await send_valid()
    # Forged: claims to be from B, signed with a key that is not B's.
    forged = sign_envelope(receipt(B, A), generate_private_key())
    expected[await publish_raw(from_b, encoded(forged), envelope=forged)] = "bad_signature"
    await send_valid()
    unsigned = receipt(B, A)
    expected[await publish_raw(from_b, encoded(unsigned), envelope=unsigned)] = "unsigned"
    # Tampered: signed by B, then the payload changed in transit.
    signed = agencies.signed(receipt(B, A))
    tampered = signed.model_copy(
        update={"payload": {"acknowledged_message_id": str(uuid.uuid4())}}
    )
    expected[await publish_raw(from_b, encoded(tampered), envelope=tampered)] = "bad_signature"
    # Wrong recipient: a genuine message for C, routed into A's inbox.
    for_c = agencies.signed(receipt(B, C))
    expected[
        await publish_raw(from_b, encoded(for_c), envelope=for_c, key=routing_key(A, "receipt"))
    ] = "wrong_recipient"
    # Sender != user_id: B's genuine, signed envelope published with C's login.
    stolen = agencies.signed(receipt(B, A))
    expected[await publish_raw(from_c, encoded(stolen), envelope=stolen)] = "sender_mismatch"
    await send_valid()
    expected[await publish_raw(from_b, b"{not json")] = "invalid_json"
    expected[await publish_raw(from_b, b'{"hello": "world"}')] = "invalid_envelope"
    schema = agencies.signed(
        receipt(B, A).model_copy(update={"payload": {"acknowledged_message_id": "nope"}})
    )
    expected[await publish_raw(from_b, encoded(schema), envelope=schema)] = "invalid_payload"
    future = agencies.signed(receipt(B, A).model_copy(update={"version": 9}))
    expected[await publish_raw(from_b, encoded(future), envelope=future)] = "unknown_version"
    unknown_type = agencies.signed(receipt(B, A).model_copy(update={"type": "love_letter"}))
    expected[
        await publish_raw(from_b, encoded(unknown_type), envelope=unknown_type)
    ] = "unknown_type"
    huge = b'{"padding": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    expected[await publish_raw(from_b, huge)] = "too_large"
    await send_valid()

    # Replayed: the same message id again, after the first was handled.
    original = await from_b.publish(receipt(B, A))
    valid.append(original.message_id)
    await eventually(lambda: original.message_id in recorder.handled, "the original handled")
    expected[await publish_raw(from_b, encoded(original), envelope=original)] = "replayed"
    await send_valid()

    admin = await agencies.admin()

    async def all_dead() -> bool:
        ready, _ = await queue_counts(admin, dlq_queue(A))
        return ready >= len(expected)

    await eventually(all_dead, f"{len(expected)} dead letters")
    await eventually(lambda: len(recorder.handled) == len(valid), "every valid message handled")
    assert sorted(recorder.handled) == sorted(valid)

    dead = await _dlq(agencies)
    assert {mid: header_str(m.headers, HEADER_DEAD_REASON) for mid, m in dead.items()} == expected
    for message_id, message in dead.items():
        headers = message.headers or {}
        assert message.user_id == agencies.user(A), "re-published with A's own login"
        assert header_str(headers, HEADER_DEAD_DETAIL)
        assert header_str(headers, HEADER_DEAD_AT)
        assert header_str(headers, HEADER_ORIGINAL_ROUTING_KEY) == routing_key(A, "receipt")
        publisher = C if expected[message_id] == "sender_mismatch" else B
        assert header_str(headers, HEADER_ORIGINAL_USER) == agencies.user(publisher)
    assert len(dead[next(k for k, v in expected.items() if v == "too_large")].body) > 10**7
    _, inbox_consumers = await queue_counts(admin, inbox_queue(A))
    assert inbox_consumers == 1, "the consumer survived every poison message"

    # Every hostile input is logged, with the agency and the ids bound from the context.
    dead_events = [e for e in captured_logs.entries if e["event"] == "message_dead_lettered"]
    assert {e["message_id"] for e in dead_events} >= set(expected)
    assert all(e["agency"] == A for e in dead_events)
    signature_event = next(e for e in dead_events if e["message_id"] == str(forged.message_id))
    assert signature_event["case_id"] == str(forged.case_id)
    assert signature_event["reason"] == "bad_signature"


async def test_verifying_on_the_worker_thread_keeps_every_signature_check(
    agencies: Agencies,
) -> None:
    recorder = Recorder()
    await agencies.consumer(A, recorder, verify_in_thread=True)
    from_b = await agencies.publisher(B)
    expected: dict[str, str] = {}
    valid = [(await from_b.publish(receipt(B, A))).message_id for _ in range(5)]
    forged = sign_envelope(receipt(B, A), generate_private_key())
    expected[await publish_raw(from_b, encoded(forged), envelope=forged)] = "bad_signature"
    unsigned = receipt(B, A)
    expected[await publish_raw(from_b, encoded(unsigned), envelope=unsigned)] = "unsigned"
    signed = agencies.signed(receipt(B, A))
    tampered = signed.model_copy(
        update={"payload": {"acknowledged_message_id": str(uuid.uuid4())}}
    )
    expected[await publish_raw(from_b, encoded(tampered), envelope=tampered)] = "bad_signature"
    valid.append((await from_b.publish(receipt(B, A))).message_id)
    admin = await agencies.admin()

    async def all_dead() -> bool:
        ready, _ = await queue_counts(admin, dlq_queue(A))
        return ready >= len(expected)

    await eventually(all_dead, f"{len(expected)} dead letters")
    await eventually(lambda: len(recorder.handled) == len(valid), "every valid message handled")
    assert sorted(recorder.handled) == sorted(valid)
    dead = await _dlq(agencies)
    assert {mid: header_str(m.headers, HEADER_DEAD_REASON) for mid, m in dead.items()} == expected


async def test_a_handler_that_keeps_failing_is_retried_with_backoff_then_dead_lettered(
    agencies: Agencies,
) -> None:
    recorder = Recorder(fail=lambda m, d: TransientError("ledger unavailable"))
    await agencies.consumer(A, recorder, max_attempts=3)
    from_b = await agencies.publisher(B)
    sent = await from_b.publish(receipt(B, A))
    admin = await agencies.admin()

    async def dead() -> bool:
        return (await queue_counts(admin, dlq_queue(A)))[0] == 1

    await eventually(dead, "the failing message in the DLQ")
    attempts = [d.attempt for _, d in recorder.deliveries]
    assert attempts == [1, 2, 3]
    # The retries came back through the delay queues, which route them into the inbox.
    keys = [d.routing_key for _, d in recorder.deliveries]
    assert keys == [routing_key(A, "receipt"), f"inbox.{A}", f"inbox.{A}"]
    assert recorder.handled == []
    (letter,) = (await _dlq(agencies)).values()
    assert letter.message_id == str(sent.message_id)
    assert header_str(letter.headers, HEADER_DEAD_REASON) == "handler_failed"
    assert "ledger unavailable" in (header_str(letter.headers, HEADER_DEAD_DETAIL) or "")
    assert header_str(letter.headers, HEADER_ATTEMPT) == "3"
    assert header_str(letter.headers, HEADER_ORIGINAL_USER) == agencies.user(B)
    assert (await queue_counts(admin, inbox_queue(A)))[0] == 0


async def test_a_handler_that_fails_once_is_retried_and_its_message_handled_once(
    agencies: Agencies,
) -> None:
    def fail_first(message: Message, delivery: DeliveryInfo) -> Exception | None:
        return RuntimeError("database is locked") if delivery.attempt == 1 else None

    recorder = Recorder(fail=fail_first)
    consumer = await agencies.consumer(A, recorder)
    from_b = await agencies.publisher(B)
    sent = await from_b.publish(receipt(B, A))
    await eventually(lambda: recorder.handled == [sent.message_id], "handled after a retry")
    assert [d.attempt for _, d in recorder.deliveries] == [1, 2]
    assert recorder.deliveries[1][1].publisher_user == agencies.user(B)
    assert consumer.stats.retried == 1 and consumer.stats.dead_lettered == 0
    admin = await agencies.admin()
    assert await queue_counts(admin, dlq_queue(A)) == (0, 0)


async def test_a_copy_the_senders_relay_marks_republished_is_acked_as_a_duplicate(
    agencies: Agencies,
) -> None:
    """After a crash a relay may publish again what the broker had confirmed; it says so, and the
    recipient acks the copy of a handled message instead of dead-lettering it as a replay."""
    recorder = Recorder()
    consumer = await agencies.consumer(A, recorder)
    from_b = await agencies.publisher(B)
    original = await from_b.publish(receipt(B, A))
    await eventually(lambda: recorder.handled == [original.message_id], "the original handled")
    copy = envelope_message(
        original, encoded(original), from_b.user_id, {HEADER_REPUBLISHED: True}
    )
    await from_b.publish_message(EXCHANGE, routing_key(A, "receipt"), copy)
    await eventually(lambda: consumer.stats.duplicates == 1, "the copy acked as a duplicate")
    assert recorder.handled == [original.message_id]
    admin = await agencies.admin()
    assert await queue_counts(admin, dlq_queue(A)) == (0, 0)


async def test_a_late_original_of_a_handled_republished_copy_is_acked_as_stale_not_replayed(
    agencies: Agencies,
) -> None:
    # A relay republished after a lost confirm (a frozen node); the copy was handled first and the
    # original, held by that node, arrives afterwards without either flag.
    recorder = Recorder()
    consumer = await agencies.consumer(A, recorder)
    from_b = await agencies.publisher(B)
    envelope = sign_envelope(receipt(B, A), agencies.keys[B])
    copy = envelope_message(envelope, encoded(envelope), from_b.user_id, {HEADER_REPUBLISHED: True})
    await from_b.publish_message(EXCHANGE, routing_key(A, "receipt"), copy)
    await eventually(lambda: recorder.handled == [envelope.message_id], "the copy handled")
    await from_b.publish(envelope)
    await eventually(lambda: consumer.stats.duplicates == 1, "the late original acked")
    assert recorder.handled == [envelope.message_id]
    admin = await agencies.admin()
    assert await queue_counts(admin, dlq_queue(A)) == (0, 0)


async def test_a_late_original_reaching_a_restarted_consumer_is_acked_as_stale_from_the_store(
    agencies: Agencies, tmp_path: Path
) -> None:
    """The marked copy was handled by one process (an agent since restarted, or another replica);
    the late original reaches a consumer with nothing in memory: the store's inbox, where the
    handler recorded the copy as republished, tells it the original is stale."""
    store = await SqliteStore.open(tmp_path / "store.db")
    recorder = Recorder()

    async def handler(message: Message, delivery: DeliveryInfo) -> None:
        await recorder(message, delivery)
        async with store.transaction() as tx:
            await tx.record_inbox(
                "agent",
                message.envelope.message_id,
                sender=message.envelope.sender,
                republished=delivery.republished,
            )

    async def seen(sender: str, message_id: UUID) -> bool:
        return await store.has_handled("agent", message_id, sender=sender)

    async def republished(sender: str, message_id: UUID) -> bool:
        return await store.handled_republished("agent", message_id, sender=sender)

    async def start(name: str) -> Consumer:
        consumer = Consumer(
            await agencies.connect(A, name=name),
            agency=A,
            handler=handler,
            directory=agencies.directory,
            settings=agencies.settings(),
            seen_from=seen,
            republished_from=republished,
        )
        return await consumer.start()

    try:
        first = await start("first-process")
        from_b = await agencies.publisher(B)
        envelope = sign_envelope(receipt(B, A), agencies.keys[B])
        copy = envelope_message(envelope, encoded(envelope), from_b.user_id, {HEADER_REPUBLISHED: True})
        await from_b.publish_message(EXCHANGE, routing_key(A, "receipt"), copy)
        await eventually(lambda: recorder.handled == [envelope.message_id], "the copy handled")
        assert recorder.deliveries[0][1].republished
        await first.stop()

        restarted = await start("restarted-process")
        await from_b.publish(envelope)  # the original, unmarked
        await eventually(lambda: restarted.stats.duplicates == 1, "the late original acked")
        assert recorder.handled == [envelope.message_id]
        assert restarted.stats.dead_lettered == 0
        admin = await agencies.admin()
        assert await queue_counts(admin, dlq_queue(A)) == (0, 0)
        await restarted.stop()
    finally:
        await store.close()


async def test_our_own_copy_of_a_message_handled_meanwhile_is_acked_not_replayed(
    agencies: Agencies,
) -> None:
    # A retry copy confirmed before the ack of its original was lost: the original came back
    # redelivered and was handled, then the retry copy (published by A itself) arrives.
    recorder = Recorder()
    consumer = await agencies.consumer(A, recorder)
    from_b = await agencies.publisher(B)
    original = await from_b.publish(receipt(B, A))
    await eventually(lambda: recorder.handled == [original.message_id], "the original handled")
    from_a = await agencies.publisher(A)
    own_copy = envelope_message(
        original, encoded(original), from_a.user_id, {HEADER_ORIGINAL_USER: from_b.user_id}
    )
    await from_a.publish_message(agency_retry_exchange(A), retry_inbox_key(A), own_copy)
    await eventually(lambda: consumer.stats.duplicates == 1, "our own copy acked")
    assert recorder.handled == [original.message_id]
    admin = await agencies.admin()
    assert await queue_counts(admin, dlq_queue(A)) == (0, 0)


async def test_a_domain_rule_violation_escaping_the_handler_is_dead_lettered_not_retried(
    agencies: Agencies,
) -> None:
    recorder = Recorder(fail=lambda m, d: DomainRuleViolation("arrears", "欠费未缴清"))
    await agencies.consumer(A, recorder)
    from_b = await agencies.publisher(B)
    await from_b.publish(receipt(B, A))
    admin = await agencies.admin()

    async def dead() -> bool:
        return (await queue_counts(admin, dlq_queue(A)))[0] == 1

    await eventually(dead, "the message in the DLQ")
    assert len(recorder.deliveries) == 1
    (letter,) = (await _dlq(agencies)).values()
    assert header_str(letter.headers, HEADER_DEAD_REASON) == "handler_failed"
    assert "arrears" in (header_str(letter.headers, HEADER_DEAD_DETAIL) or "")


async def test_a_forged_retry_header_from_another_agency_is_ignored(agencies: Agencies) -> None:
    # Only A's own copies may carry the attempt count and the original publisher: B setting them
    # must neither skip the retries nor claim to be someone else.
    recorder = Recorder(fail=lambda m, d: TransientError("busy"))
    await agencies.consumer(A, recorder, max_attempts=2)
    from_b = await agencies.publisher(B)
    envelope = agencies.signed(receipt(B, A))
    message = envelope_message(
        envelope,
        encoded(envelope),
        from_b.user_id,
        headers={HEADER_ATTEMPT: 99, "x-jiexu-original-user-id": agencies.user(C)},
    )
    await from_b.publish_message(EXCHANGE, routing_key(A, "receipt"), message)
    admin = await agencies.admin()

    async def dead() -> bool:
        return (await queue_counts(admin, dlq_queue(A)))[0] == 1

    await eventually(dead, "the message in the DLQ")
    assert [d.attempt for _, d in recorder.deliveries] == [1, 2]
    assert recorder.deliveries[0][1].publisher_user == agencies.user(B)



async def test_exception_text_is_masked_before_it_goes_into_the_dead_letter_header(
    agencies: Agencies,
) -> None:
    """A handler's exception may quote personal data; the x-jiexu-dead-detail header does not."""
    leaked = "ledger said: no account for 11010519491231002X, card 6222021234567890123, name='张三丰'"
    recorder = Recorder(fail=lambda m, d: RuntimeError(leaked))
    await agencies.consumer(A, recorder, max_attempts=1)
    from_b = await agencies.publisher(B)
    await from_b.publish(receipt(B, A))
    admin = await agencies.admin()

    async def dead() -> bool:
        return (await queue_counts(admin, dlq_queue(A)))[0] == 1

    await eventually(dead, "the failing message in the DLQ")
    (letter,) = (await _dlq(agencies)).values()
    detail = header_str(letter.headers, HEADER_DEAD_DETAIL) or ""
    assert "ledger said" in detail
    for secret in ("11010519491231002X", "6222021234567890123", "三丰"):
        assert secret not in detail
