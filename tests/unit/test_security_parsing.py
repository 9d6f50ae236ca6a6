"""Deeply nested JSON is a contract error (dead-lettered at once), not a `RecursionError` that the
consumer would treat as transient and retry (issue 13)."""

from __future__ import annotations

import json

import pytest

from broker.consumer import DeadLetter, dispose
from schemas.errors import ContractError
from schemas.examples import EXAMPLES, example_envelope
from schemas.registry import MAX_JSON_DEPTH, decode_envelope, encode_envelope


def _nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


def _body(extra_depth: int, *, spaced: bool) -> bytes:
    envelope = json.loads(encode_envelope(example_envelope(next(iter(EXAMPLES.values())))))
    envelope["payload"]["deep"] = _nested(extra_depth)  # the envelope itself is 2 levels deep
    separators = (", ", ": ") if spaced else (",", ":")
    return json.dumps(envelope, separators=separators, ensure_ascii=False).encode()


@pytest.mark.parametrize("spaced", [False, True], ids=["fast path", "strict parser"])
def test_nesting_beyond_the_limit_is_invalid_json(spaced: bool) -> None:
    with pytest.raises(ContractError) as refused:
        decode_envelope(_body(MAX_JSON_DEPTH, spaced=spaced))
    assert refused.value.reason == "invalid_json"
    assert str(MAX_JSON_DEPTH) in refused.value.detail


@pytest.mark.parametrize("spaced", [False, True], ids=["fast path", "strict parser"])
def test_nesting_within_the_limit_parses(spaced: bool) -> None:
    envelope = decode_envelope(_body(MAX_JSON_DEPTH - 2, spaced=spaced))
    assert envelope.payload["deep"] == _nested(MAX_JSON_DEPTH - 2)


def test_a_hundred_thousand_levels_are_dead_lettered_not_retried() -> None:
    body = b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(ContractError) as refused:
        decode_envelope(body)
    disposition = dispose(refused.value, attempt=1, retry_delays_ms=(1000,), max_attempts=3)
    assert isinstance(disposition, DeadLetter) and disposition.reason == "invalid_json"
