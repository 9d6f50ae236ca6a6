"""The fast canonical form is RFC 8785: byte for byte what `rfc8785.dumps` writes, or its error.

`schemas.envelope.canonical_json` writes plain JSON (no floats, integers within 2**53, keys that
sort alike by code point and by UTF-16 code unit) with the C encoder of `json`, and everything else
through `rfc8785`. These tests hold it to `rfc8785.dumps` on generated envelopes of every message
type and on values built to hit the differences: non-ASCII and astral keys, big integers, floats,
control characters, lone surrogates, deep nesting.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
import rfc8785
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import AwareDatetime, TypeAdapter

from schemas.common import Document
from schemas.envelope import Envelope, canonical_json, signing_input, wire_data, wire_datetime
from schemas.registry import encode_envelope, envelope_for
from tests.unit.schema_strategies import documents

LIMIT = 2**53 - 1


def _same_as_rfc8785(value: Any) -> None:
    """canonical_json(value) equals rfc8785.dumps(value), or both refuse it.

    (rfc8785 0.1 refuses a lone surrogate in a key with a bare UnicodeEncodeError; canonical_json
    turns that into its CanonicalizationError, like every other refusal.)
    """
    try:
        expected = rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, UnicodeEncodeError):
        with pytest.raises(rfc8785.CanonicalizationError):
            canonical_json(value)
        return
    assert canonical_json(value) == expected


# Keys and strings from the whole of Unicode, with the characters that tell the two key orders
# apart (U+E000..U+FFFF against astral ones) and the ones escaping treats specially made likely.
_SPECIAL = "\x00\x01\x08\t\n\x0b\x0c\r\x1f\x7f\"\\/\u2028\u2029\ue000\uff61\ufffd\U0001f600\U00020000"
_text = st.one_of(
    st.text(),
    st.text(alphabet=st.sampled_from(list(_SPECIAL + "az09ÿ张")), max_size=6),
)
_ints = st.one_of(
    st.integers(min_value=-LIMIT, max_value=LIMIT),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.sampled_from([LIMIT, -LIMIT, LIMIT + 1, -LIMIT - 1, 0]),
)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    _ints,
    _text,
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 1.0, 1e21, 1e-7, 5e-324, 2.0**53]),
)
json_values = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.lists(children, max_size=5).map(tuple),
        st.dictionaries(_text, children, max_size=6),
    ),
    max_leaves=40,
)
plain_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-LIMIT, LIMIT), st.text()),
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.text(), children, max_size=6),
    ),
    max_leaves=40,
)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_any_json_value_canonicalises_exactly_as_rfc8785(value: Any) -> None:
    _same_as_rfc8785(value)


@settings(max_examples=300)
@given(plain_values)
def test_plain_values_with_any_keys_canonicalise_exactly_as_rfc8785(value: Any) -> None:
    _same_as_rfc8785(value)


def _envelope_of(
    document: Document, case_id: uuid.UUID, causation_id: uuid.UUID | None, sent_at: datetime
) -> Envelope:
    return envelope_for(
        document,
        sender="110000",
        recipient="310000",
        case_id=case_id,
        causation_id=causation_id,
        sent_at=sent_at,
    )


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(documents, st.uuids(), st.none() | st.uuids())
def test_every_generated_envelope_signs_over_the_rfc8785_form(
    document: Document, case_id: uuid.UUID, causation_id: uuid.UUID | None
) -> None:
    envelope = _envelope_of(
        document, case_id, causation_id, datetime(2024, 3, 1, 1, 30, 15, 120000, tzinfo=UTC)
    )
    received = json.loads(encode_envelope(envelope))
    expected = rfc8785.dumps({k: v for k, v in received.items() if k != "signature"})
    assert signing_input(envelope) == expected
    assert signing_input(received) == expected


@pytest.mark.parametrize(
    "value",
    [
        # U+E000 sorts before U+1F600 by code point, after it by UTF-16 code unit (0xD83D).
        {"\ue000": 1, "\U0001f600": 2, "a": 3},
        {"outer": {"\uffff": [1, {"\U00010000": None}], "z": "x"}},
        {"é": 1, "e": 2, "张": 3, "E": 4},
        {"n": LIMIT, "m": -LIMIT},
        {"n": LIMIT + 1},
        {"n": -LIMIT - 1},
        {"big": [1, 2, 2**63]},
        {"f": 1.5, "g": 1e21, "h": 1e-7, "i": -0.0, "j": 100.0},
        {"nan": float("nan")},
        {"inf": float("-inf")},
        {"lone surrogate value": "\ud800"},
        {"\udfff": "lone surrogate key"},
        {"controls": "\x00\x1f\x7f\u2028\"\\/\t\n\r\b\f"},
        {"tuple": (1, "a", (None, True)), "list": []},
        {"empty": {}, "": ""},
        {1: "int key"},
        {"deep": [[[[[[[[[[{"k": [1, {"é": "\U0001f600"}]}]]]]]]]]]]},
        [True, False, None, 0, -1, "x"],
        "just a string",
        LIMIT + 1,
    ],
)
def test_adversarial_values_canonicalise_exactly_as_rfc8785(value: Any) -> None:
    _same_as_rfc8785(value)


def test_types_json_accepts_but_rfc8785_refuses_are_refused() -> None:
    for value in ({"id": uuid.uuid4()}, {"when": datetime.now(UTC)}, {"b": b"bytes"}):
        with pytest.raises(rfc8785.CanonicalizationError):
            canonical_json(value)


def test_a_plain_envelope_never_needs_rfc8785(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(_: object) -> bytes:
        raise AssertionError("rfc8785 used for a plain envelope")

    received = {
        "message_id": str(uuid.uuid4()),
        "case_id": str(uuid.uuid4()),
        "causation_id": None,
        "type": "fund_transfer",
        "version": 1,
        "sender": "110000",
        "recipient": "310000",
        "sent_at": "2024-03-01T01:30:15Z",
        "payload": {"amount_fen": 1234567, "note": "张三 转移", "periods": [{"months": 12}]},
        "signature": "x" * 86 + "==",
    }
    expected = rfc8785.dumps({k: v for k, v in received.items() if k != "signature"})
    monkeypatch.setattr(rfc8785, "dumps", refuse)
    assert signing_input(received) == expected


_WHOLE_MINUTE_ZONES = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)


@settings(max_examples=500)
@given(
    st.datetimes(
        min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999999),
        timezones=st.one_of(_WHOLE_MINUTE_ZONES, st.just(UTC)),
    )
)
def test_wire_datetime_writes_what_pydantic_writes(instant: datetime) -> None:
    assert wire_datetime(instant) == TypeAdapter(AwareDatetime).dump_python(instant, mode="json")


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(documents, st.uuids(), st.none() | st.uuids(), st.datetimes(timezones=_WHOLE_MINUTE_ZONES))
def test_wire_data_is_the_model_dump(
    document: Document, case_id: uuid.UUID, causation_id: uuid.UUID | None, sent_at: datetime
) -> None:
    envelope = _envelope_of(document, case_id, causation_id, sent_at)
    signed = envelope.model_copy(update={"signature": "A" * 86 + "=="})
    for each in (envelope, signed):
        assert wire_data(each) == each.model_dump(mode="json")
        assert orjson.dumps(wire_data(each)) == encode_envelope(each)


@pytest.mark.parametrize(
    "payload",
    [
        {"when": datetime(2024, 3, 1, tzinfo=UTC), "id": uuid.UUID(int=7)},  # dumped to strings
        {"pair": (1, "a"), "nested": {"t": (None, True)}},  # tuples: written as arrays
        {"ratio": 0.5, "big": 2**53},  # plain for JSON, not for the fast canonical path
    ],
)
def test_wire_data_of_any_other_payload_writes_the_same_json(payload: dict[str, Any]) -> None:
    envelope = Envelope(
        message_id=uuid.UUID(int=1),
        case_id=uuid.UUID(int=2),
        type="fund_transfer",
        version=1,
        sender="110000",
        recipient="310000",
        sent_at=datetime(2024, 3, 1, 1, 30, tzinfo=timezone(timedelta(hours=8))),
        payload=payload,
    )
    assert orjson.dumps(wire_data(envelope)) == encode_envelope(envelope)
    if "big" not in payload:
        dumped = envelope.model_dump(mode="json", exclude={"signature"})
        assert signing_input(envelope) == rfc8785.dumps(dumped)
