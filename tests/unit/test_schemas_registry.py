"""The registry: decode, validate, upcast, downcast, encode, and the errors each step raises."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID, uuid4

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import (
    ContractError,
    Document,
    Envelope,
    InformationFormV1,
    InformationFormV2,
    decode_envelope,
    downcast,
    encode_envelope,
    envelope_for,
    known_versions,
    model_for,
    negotiate_version,
    newest_version,
    parse,
    signing_input,
    upcast,
    validate_document,
)
from schemas.examples import EXAMPLES, example_envelope
from schemas.registry import MODELS, decode_envelope_with_raw, encode_envelope_data
from tests.unit.schema_strategies import documents

CASE = UUID("5b1e4c1e-0d3a-4f7e-9a51-2f4e8b7c6d01")


def message_dict(document: Document | None = None, **changes: Any) -> dict[str, Any]:
    envelope = example_envelope(document or EXAMPLES[("information_form", 2)])
    data = json.loads(encode_envelope(envelope))
    data.update(changes)
    return data


def body(data: dict[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False).encode()


def contract_error(raw: bytes) -> ContractError:
    with pytest.raises(ContractError) as caught:
        parse(raw)
    return caught.value


@settings(max_examples=300, deadline=None)
@given(
    documents,
    st.uuids(),
    st.datetimes(timezones=st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))),
)
def test_every_document_survives_encode_and_parse_and_arrives_newest(
    document: Document, case_id: UUID, sent_at: datetime
) -> None:
    envelope = envelope_for(document, sender="360400", recipient="440300", case_id=case_id, sent_at=sent_at)
    message = parse(encode_envelope(envelope))
    assert message.envelope == envelope
    assert message.document == upcast(document)
    assert newest_version(document.MESSAGE_TYPE) == message.document.VERSION


@settings(max_examples=100, deadline=None)
@given(documents)
def test_decoding_then_dumping_gives_back_the_object_sent(document: Document) -> None:
    # What makes a signature over the sent object verify against the model's dump.
    raw = encode_envelope(envelope_for(document, sender="360400", recipient="440300", case_id=uuid4()))
    assert signing_input(decode_envelope(raw)) == signing_input(json.loads(raw))


def test_encoding_is_compact_utf8_json() -> None:
    raw = encode_envelope(example_envelope(EXAMPLES[("contact_letter", 1)]))
    assert b"\n" not in raw
    assert b", " not in raw
    assert "买买提·艾力".encode() in raw


def test_signing_input_is_rfc8785_without_the_signature() -> None:
    envelope = example_envelope(EXAMPLES[("receipt", 1)]).model_copy(update={"signature": "A" * 86 + "=="})
    expected = rfc8785.dumps(envelope.model_dump(mode="json", exclude={"signature"}))
    assert signing_input(envelope) == expected
    assert b"signature" not in signing_input(envelope)


def test_every_older_version_parses_and_upcasts_to_the_newest() -> None:
    for (message_type, version), document in EXAMPLES.items():
        message = parse(encode_envelope(example_envelope(document)))
        assert type(message.document) is model_for(message_type, newest_version(message_type))
        assert message.envelope.version == version


def test_an_information_form_v1_message_arrives_as_v2_without_periods() -> None:
    v1 = EXAMPLES[("information_form", 1)]
    message = parse(encode_envelope(example_envelope(v1)))
    assert isinstance(message.document, InformationFormV2)
    assert message.document.contribution_periods is None
    assert downcast(message.document, 1) == v1


@settings(deadline=None)
@given(documents)
def test_downcast_to_every_known_version_round_trips(document: Document) -> None:
    newest = upcast(document)
    for version in known_versions(document.MESSAGE_TYPE):
        if getattr(newest, "payout_requested", False) and version == 1:
            with pytest.raises(ContractError) as caught:
                downcast(newest, version)
            assert caught.value.reason == "no_common_version"
            continue
        older = downcast(newest, version)
        assert version == older.VERSION
        assert downcast(upcast(older), version) == older


def test_downcast_to_an_unknown_version_is_a_contract_error() -> None:
    with pytest.raises(ContractError) as caught:
        downcast(EXAMPLES[("receipt", 1)], 2)
    assert caught.value.reason == "unknown_version"


def test_a_sender_can_address_a_v1_only_recipient() -> None:
    version = negotiate_version("information_form", [1])
    envelope = envelope_for(
        EXAMPLES[("information_form", 2)],
        sender="360400",
        recipient="440300",
        case_id=CASE,
        version=version,
    )
    assert envelope.version == 1
    assert "contribution_periods" not in envelope.payload
    assert isinstance(validate_document(envelope), InformationFormV2)


def test_versions_are_negotiated_to_the_newest_both_know() -> None:
    assert negotiate_version("information_form", [1, 2, 3]) == 2
    assert negotiate_version("information_form", [1]) == 1
    with pytest.raises(ContractError) as caught:
        negotiate_version("information_form", [7])
    assert caught.value.reason == "no_common_version"


def test_the_registry_lists_types_and_versions() -> None:
    assert known_versions("information_form") == (1, 2)
    assert newest_version("information_form") == 2
    assert model_for("information_form", 1) is InformationFormV1
    assert set(MODELS) == {
        "contact_letter",
        "information_form",
        "fund_transfer",
        "receipt",
        "rejection",
        "transfer_completed",
        "reminder",
        "statement_request",
        "ledger_statement",
        "reconciliation_result",
    }


@pytest.mark.parametrize(
    "raw",
    [b"{", b"\xff\xfe", b'{"a": NaN}', b'{"message_id": "a", "message_id": "b"}', b""],
)
def test_bodies_that_are_not_json_are_invalid_json(raw: bytes) -> None:
    assert contract_error(raw).reason == "invalid_json"


@pytest.mark.parametrize("raw", [b"[]", b'"text"', b"1"])
def test_json_that_is_not_an_object_is_an_invalid_envelope(raw: bytes) -> None:
    assert contract_error(raw).reason == "invalid_envelope"


@pytest.mark.parametrize(
    ("changes", "field", "why"),
    [
        ({"sent_at": "2025-03-14T09:30:00"}, "sent_at", "timezone"),
        ({"sent_at": "2025-03-14T09:30:00+00:00"}, "sent_at", "Z for UTC"),
        ({"recipient": "360400"}, "(root)", "recipient must differ from sender"),
        ({"sender": "36040"}, "sender", "6 digits"),
        ({"message_id": "5B1E4C1E-0D3A-4F7E-9A51-2F4E8B7C6D01"}, "message_id", "lowercase"),
        ({"version": "2"}, "version", "integer"),
        ({"version": 0}, "version", "greater than or equal to 1"),
        ({"priority": "high"}, "priority", "Extra inputs are not permitted"),
        ({"signature": "not base64!"}, "signature", "pattern"),
    ],
)
def test_envelope_violations_name_the_field(changes: dict[str, Any], field: str, why: str) -> None:
    error = contract_error(body(message_dict(**changes)))
    assert error.reason == "invalid_envelope"
    assert f"{field}: " in error.detail
    assert why in error.detail


def test_an_envelope_without_causation_id_is_refused() -> None:
    data = message_dict()
    del data["causation_id"]
    error = contract_error(body(data))
    assert (error.reason, error.detail.split(":")[0]) == ("invalid_envelope", "causation_id")


def test_an_unknown_type_is_named() -> None:
    error = contract_error(body(message_dict(type="fax")))
    assert error.reason == "unknown_type"
    assert "'fax'" in error.detail


def test_an_unknown_version_is_named_with_the_known_ones() -> None:
    error = contract_error(body(message_dict(version=3)))
    assert error.reason == "unknown_version"
    assert error.detail == "information_form version 3 is not known; known versions: 1, 2"


def test_payload_errors_name_the_path_and_never_the_personal_data() -> None:
    data = message_dict()
    number = data["payload"]["person"]["id_number"]
    data["payload"]["person"]["id_number"] = number[:17] + ("1" if number[-1] != "1" else "2")
    data["payload"]["account_balance"] = -5
    data["payload"]["contribution_periods"][1]["months"] = 1.5
    data["payload"]["surprise"] = True
    error = contract_error(body(data))
    assert error.reason == "invalid_payload"
    assert "payload.person.id_number: ID number check character is wrong" in error.detail
    assert "payload.account_balance: Input should be greater than or equal to 0" in error.detail
    assert "payload.contribution_periods[1].months: Input should be a valid integer" in error.detail
    assert "payload.surprise: Extra inputs are not permitted" in error.detail
    assert number[:17] not in error.detail
    assert data["payload"]["person"]["name"] not in error.detail


def test_a_payload_of_the_wrong_version_is_invalid() -> None:
    # A v2 payload announced as v1: the extra v2 fields are refused, not silently dropped.
    error = contract_error(body(message_dict(version=1)))
    assert error.reason == "invalid_payload"
    assert "payload.contribution_periods: Extra inputs are not permitted" in error.detail


def test_envelope_for_refuses_a_naive_time_and_a_self_addressed_message() -> None:
    document = EXAMPLES[("receipt", 1)]
    with pytest.raises(ContractError, match="sent_at"):
        envelope_for(
            document, sender="360400", recipient="440300", case_id=CASE, sent_at=datetime(2025, 1, 1)
        )
    with pytest.raises(ContractError, match="recipient must differ"):
        envelope_for(document, sender="360400", recipient="360400", case_id=CASE)


def test_an_offset_of_seconds_is_refused() -> None:
    with pytest.raises(ContractError, match="whole minutes"):
        envelope_for(
            EXAMPLES[("receipt", 1)],
            sender="360400",
            recipient="440300",
            case_id=CASE,
            sent_at=datetime(2025, 1, 1, tzinfo=timezone(timedelta(hours=5, seconds=12))),
        )


def test_envelope_for_fills_ids_and_time_and_leaves_it_unsigned() -> None:
    envelope = envelope_for(EXAMPLES[("receipt", 1)], sender="360400", recipient="440300", case_id=CASE)
    assert isinstance(envelope, Envelope)
    assert envelope.signature is None
    assert envelope.sent_at.tzinfo is not None
    assert envelope.sent_at <= datetime.now(UTC)
    assert (envelope.type, envelope.version) == ("receipt", 1)


def test_decoding_with_the_raw_object_parses_once_and_agrees_with_decode_envelope() -> None:
    body = encode_envelope(example_envelope(EXAMPLES[("information_form", 2)]))
    envelope, received = decode_envelope_with_raw(body)
    assert envelope == decode_envelope(body)
    assert received == json.loads(body)
    assert list(received) == list(json.loads(body))  # the sender's member order, as received


@pytest.mark.parametrize(
    "raw",
    [
        b'{"message_id": "a", "message_id": "b"}',
        b'{"payload": {"x": 1, "y": 2, "x": 3}}',
        b'{"a": [{"k": 1}, {"k": 2, "k": 2}]}',
    ],
)
def test_a_duplicate_key_at_any_depth_is_invalid_json(raw: bytes) -> None:
    with pytest.raises(ContractError) as caught:
        decode_envelope_with_raw(raw)
    assert caught.value.reason == "invalid_json"
    assert "duplicate key" in caught.value.detail


def test_encoding_an_already_dumped_envelope_is_encode_envelope() -> None:
    envelope = example_envelope(EXAMPLES[("information_form", 2)])
    assert encode_envelope_data(envelope.model_dump(mode="json")) == encode_envelope(envelope)
