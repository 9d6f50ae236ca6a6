"""The dead-letter queue on a real broker: listing leaves it intact; replay after a fix, once."""

from __future__ import annotations

import pytest

from broker.connection import BrokerConnection
from broker.directory import AgencyDirectory
from broker.dlq import list_dead_letters, replay_dead_letters, summarize
from broker.names import dlq_queue, inbox_queue
from schemas.errors import TransientError
from schemas.registry import Message
from tests.integration.transport_support import (
    A,
    Agencies,
    B,
    C,
    Recorder,
    encoded,
    eventually,
    publish_raw,
    queue_counts,
    receipt,
)


async def _dlq_depth(admin: BrokerConnection, expected: int) -> bool:
    return (await queue_counts(admin, dlq_queue(A)))[0] == expected


async def test_listing_shows_each_dead_letter_with_its_reason_and_leaves_it_in_place(
    agencies: Agencies,
) -> None:
    await agencies.consumer(A, Recorder())
    from_b = await agencies.publisher(B)
    bad_json = await publish_raw(from_b, b"[[[")
    unsigned = receipt(B, A)
    await publish_raw(from_b, encoded(unsigned), envelope=unsigned)
    admin = await agencies.admin()
    await eventually(lambda: _dlq_depth(admin, 2), "two dead letters")

    own = await agencies.connect(A, name="test-dlq-tool")
    letters = await list_dead_letters(own, A)
    by_id = {letter.message_id: letter for letter in letters}
    assert by_id[bad_json].reason == "invalid_json"
    assert by_id[str(unsigned.message_id)].reason == "unsigned"
    assert by_id[str(unsigned.message_id)].case_id == str(unsigned.case_id)
    assert by_id[str(unsigned.message_id)].type == "receipt"
    assert by_id[str(unsigned.message_id)].publisher_user == agencies.user(B)
    assert all((letter.age_s() or -1) >= 0 for letter in letters)
    assert summarize(letters) == {"invalid_json": 1, "unsigned": 1}
    # Listing twice sees the same letters: nothing was consumed.
    assert {x.message_id for x in await list_dead_letters(own, A)} == set(by_id)
    await eventually(lambda: _dlq_depth(admin, 2), "both still in the DLQ")


async def test_a_message_dead_lettered_for_a_missing_precondition_is_handled_once_after_replay(
    agencies: Agencies,
) -> None:
    ready = {"precondition": False}

    def missing_precondition(message: Message, _: object) -> Exception | None:
        return None if ready["precondition"] else TransientError("the case is not opened yet")

    recorder = Recorder(fail=missing_precondition)
    await agencies.consumer(A, recorder, max_attempts=2)
    from_b = await agencies.publisher(B)
    stuck = await from_b.publish(receipt(B, A))
    other = await publish_raw(from_b, b"not json")
    admin = await agencies.admin()
    await eventually(lambda: _dlq_depth(admin, 2), "both dead-lettered")
    assert recorder.handled == []

    ready["precondition"] = True  # the operator fixes the cause
    own = await agencies.connect(A, name="test-dlq-tool")
    report = await replay_dead_letters(own, A, message_ids=[str(stuck.message_id)])
    assert [r.message_id for r in report.replayed] == [str(stuck.message_id)]
    assert report.kept == 1 and report.failed == []

    await eventually(lambda: recorder.handled == [stuck.message_id], "handled after replay")
    await eventually(lambda: _dlq_depth(admin, 1), "only the other letter left")
    (left,) = await list_dead_letters(own, A)
    assert left.message_id == other
    # The replayed copy started again at attempt 1 and kept B as its publisher.
    last = recorder.deliveries[-1][1]
    assert last.attempt == 1 and last.publisher_user == agencies.user(B)

    # Replaying the same message again (say the operator re-runs the command on an old copy)
    # does not handle it twice: the replay check dead-letters it as replayed.
    # B re-publishes the identical envelope, as a relay retrying after a lost confirm would.
    await publish_raw(from_b, encoded(stuck), envelope=stuck)
    await eventually(lambda: _dlq_depth(admin, 2), "the duplicate dead-lettered")
    assert recorder.handled == [stuck.message_id]
    reasons = {x.message_id: x.reason for x in await list_dead_letters(own, A)}
    assert reasons[str(stuck.message_id)] == "replayed"


async def test_a_message_from_a_sender_missing_in_the_directory_is_handled_after_the_fix(
    agencies: Agencies,
) -> None:
    complete = agencies.directory.current
    agencies.directory.current = AgencyDirectory([complete.get(A), complete.get(C)])
    recorder = Recorder()
    await agencies.consumer(A, recorder, max_attempts=2)
    from_b = await agencies.publisher(B)
    sent = await from_b.publish(receipt(B, A))
    admin = await agencies.admin()
    await eventually(lambda: _dlq_depth(admin, 1), "dead-lettered after the retries")
    own = await agencies.connect(A, name="test-dlq-tool")
    (letter,) = await list_dead_letters(own, A)
    assert letter.reason == "handler_failed"
    assert "not in the agency directory" in letter.detail

    agencies.directory.current = complete  # B's entry arrives
    report = await replay_dead_letters(own, A, reasons=["handler_failed"])
    assert len(report.replayed) == 1
    await eventually(lambda: recorder.handled == [sent.message_id], "handled after the fix")
    await eventually(lambda: _dlq_depth(admin, 0), "the DLQ empty")
    assert (await queue_counts(admin, inbox_queue(A)))[0] == 0


async def test_replay_needs_a_choice(agencies: Agencies) -> None:
    own = await agencies.connect(A)
    with pytest.raises(ValueError, match="choose"):
        await replay_dead_letters(own, A)


async def test_a_message_the_broker_dead_lettered_at_its_delivery_limit_is_listed_and_replayed(
    agencies: Agencies,
) -> None:
    # A consumer that crashes on a message (never acks) makes the quorum inbox give up on it after
    # x-delivery-limit deliveries; the broker dead-letters it without jiexu's headers and with the
    # sender's user_id, which the replay must turn into A's own with the original kept.
    from_b = await agencies.publisher(B)
    sent = await from_b.publish(receipt(B, A))
    own = await agencies.connect(A, name="test-crashing-consumer")
    channel = await own.channel(confirms=False)
    inbox = await channel.get_queue(inbox_queue(A))
    admin = await agencies.admin()
    for _ in range(agencies.spec.delivery_limit + 1):
        message = await inbox.get(no_ack=False, fail=False)
        if message is None:
            break
        await message.nack(requeue=True)
    await eventually(lambda: _dlq_depth(admin, 1), "dead-lettered by the broker")

    (letter,) = await list_dead_letters(own, A)
    assert letter.reason == "broker_delivery_limit"
    assert letter.message_id == str(sent.message_id)
    assert letter.publisher_user == agencies.user(B)

    recorder = Recorder()
    await agencies.consumer(A, recorder)
    report = await replay_dead_letters(own, A, replay_all=True)
    assert len(report.replayed) == 1
    await eventually(lambda: recorder.handled == [sent.message_id], "handled after replay")
    assert recorder.deliveries[0][1].publisher_user == agencies.user(B)


async def test_dead_letter_headers_another_agency_wrote_are_not_believed_nor_printed_raw(
    agencies: Agencies,
) -> None:
    # B writes its own "reason" into a message for A; the broker dead-letters it at the delivery
    # limit. The listing shows the broker's reason, never B's words, and no control characters.
    import aio_pika

    from broker.delivery import HEADER_DEAD_DETAIL, HEADER_DEAD_REASON
    from broker.names import EXCHANGE, routing_key

    from_b = await agencies.publisher(B)
    forged = aio_pika.Message(
        b"{}",
        message_id="\x1b[2Jforged",
        type="receipt\x1b[31m",
        user_id=from_b.user_id,
        headers={
            HEADER_DEAD_REASON: "replayed_ok\x1b[8m",
            HEADER_DEAD_DETAIL: "nothing to see\x1b]0;pwned\x07",
            "x-first-death-reason": "operator_approved",
        },
    )
    await from_b.publish_message(EXCHANGE, routing_key(A, "receipt"), forged)
    own = await agencies.connect(A, name="test-crashing-consumer")
    channel = await own.channel(confirms=False)
    inbox = await channel.get_queue(inbox_queue(A))
    admin = await agencies.admin()
    for _ in range(agencies.spec.delivery_limit + 1):
        message = await inbox.get(no_ack=False, fail=False)
        if message is None:
            break
        await message.nack(requeue=True)
    await eventually(lambda: _dlq_depth(admin, 1), "dead-lettered by the broker")

    (letter,) = await list_dead_letters(own, A)
    assert letter.reason == "broker_delivery_limit"
    assert "nothing to see" not in letter.detail
    assert letter.publisher_user == agencies.user(B)
    shown = repr(letter.as_dict())
    assert "\x1b" not in str(letter.as_dict()) and "\x07" not in str(letter.as_dict()), shown
    assert letter.message_id == "\\x1b[2Jforged"
    assert letter.type == "receipt\\x1b[31m"
