"""What the contract says once, jiexu holds: sent_at's one text form, integers without fraction,
AMQP properties equal to the envelope."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from broker.properties import PROPERTY_MISMATCH, check_properties
from schemas.errors import ContractError
from schemas.examples import EXAMPLES, example_envelope
from schemas.export import INTEGER_RULE, SENT_AT_RULE
from schemas.registry import decode_envelope, encode_envelope, parse

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def _message(message_type: str = "transfer_completed", version: int = 1) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(
        encode_envelope(example_envelope(EXAMPLES[(message_type, version)]))
    )
    return result


@pytest.mark.parametrize("value", [-1, 0, 1, 1741915800, 1741915800.25, True, None, "1741915800"])
def test_a_sent_at_that_is_not_the_one_text_form_is_refused(value: Any) -> None:
    data = _message()
    data["sent_at"] = value
    with pytest.raises(ContractError) as caught:
        decode_envelope(json.dumps(data).encode())
    assert caught.value.reason == "invalid_envelope"
    assert "sent_at" in caught.value.detail


@pytest.mark.parametrize(
    ("path", "value", "reason"),
    [
        (("version",), 1.0, "invalid_envelope"),
        (("payload", "months_credited"), 140.0, "invalid_payload"),
        (("payload", "amount_credited"), 1.234567e6, "invalid_payload"),
    ],
)
def test_an_integer_written_with_a_fraction_or_exponent_is_refused(
    path: tuple[str, ...], value: float, reason: str
) -> None:
    data = _message()
    target = data
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    with pytest.raises(ContractError) as caught:
        parse(json.dumps(data).encode())
    assert caught.value.reason == reason


def test_the_published_contract_states_the_integer_and_sent_at_rules() -> None:
    envelope = json.loads((SCHEMAS / "json" / "envelope.json").read_text(encoding="utf-8"))
    assert INTEGER_RULE in envelope["description"] and SENT_AT_RULE in envelope["description"]
    assert "2^53-1" in INTEGER_RULE
    for path in (SCHEMAS / "json").glob("*.v*.json"):
        assert INTEGER_RULE in json.loads(path.read_text(encoding="utf-8"))["$comment"], path


def _props(**changes: Any) -> dict[str, Any]:
    envelope = example_envelope(EXAMPLES[("receipt", 1)])
    values: dict[str, Any] = {
        "message_id": str(envelope.message_id),
        "correlation_id": str(envelope.case_id),
        "message_type": envelope.type,
        "headers": {"x-jiexu-type": envelope.type, "x-jiexu-version": 1},
    }
    values.update(changes)
    return values


def test_properties_that_agree_pass() -> None:
    envelope = example_envelope(EXAMPLES[("receipt", 1)])
    check_properties(envelope, **_props())
    check_properties(envelope, **_props(message_id=str(envelope.message_id).encode()))


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"message_id": "x"}, "message_id"),
        ({"message_id": None}, "message_id"),
        ({"correlation_id": "x"}, "correlation_id"),
        ({"message_type": "rejection"}, "type"),
        ({"headers": {"x-jiexu-version": 1}}, "x-jiexu-type"),
        ({"headers": {"x-jiexu-type": "receipt"}}, "x-jiexu-version"),
        ({"headers": {"x-jiexu-type": "receipt", "x-jiexu-version": True}}, "x-jiexu-version"),
        ({"headers": {"x-jiexu-type": "receipt", "x-jiexu-version": 2}}, "x-jiexu-version"),
    ],
)
def test_properties_that_disagree_are_a_property_mismatch(changes: dict[str, Any], named: str) -> None:
    envelope = example_envelope(EXAMPLES[("receipt", 1)])
    with pytest.raises(ContractError) as caught:
        check_properties(envelope, **_props(**changes))
    assert caught.value.reason == PROPERTY_MISMATCH
    assert named in caught.value.detail
