"""The AMQP properties an envelope travels with, built without aio-pika's `Message`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from broker.delivery import HEADER_REPUBLISHED
from broker.publisher import body_properties, envelope_message, envelope_properties
from schemas.envelope import Envelope
from schemas.registry import encode_envelope


def _envelope(sent_at: datetime) -> Envelope:
    return Envelope(
        message_id=uuid.uuid4(),
        case_id=uuid.uuid4(),
        type="fund_transfer",
        version=1,
        sender="110000",
        recipient="320100",
        sent_at=sent_at,
        payload={"amount_fen": 1},
    )


@pytest.mark.parametrize(
    "sent_at",
    [
        datetime(2024, 3, 1, 9, 30, tzinfo=UTC),
        datetime(2024, 3, 1, 9, 30, 15, 123456, tzinfo=timezone(timedelta(hours=8))),
    ],
)
def test_the_properties_are_those_aio_pika_would_send(sent_at: datetime) -> None:
    envelope = _envelope(sent_at)
    body = encode_envelope(envelope)
    headers = {HEADER_REPUBLISHED: True}
    expected = envelope_message(envelope, body, "agency-110000", headers).properties
    assert envelope_properties(envelope, "agency-110000", headers) == expected
    assert body_properties(body, "agency-110000", headers) == expected
    assert expected.message_id == str(envelope.message_id)
    assert expected.correlation_id == str(envelope.case_id)
    assert expected.message_type == "fund_transfer"
    assert expected.user_id == "agency-110000"
    assert expected.delivery_mode == 2
    assert expected.headers == {
        "x-jiexu-type": "fund_transfer",
        "x-jiexu-version": 1,
        HEADER_REPUBLISHED: True,
    }
