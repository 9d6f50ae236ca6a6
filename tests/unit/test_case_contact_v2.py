"""Contact letter v2: the payout request, its versions, and its published schema."""

from __future__ import annotations

import json
from pathlib import Path
from uuid import uuid4

import pytest
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from schemas import ContactLetter, ContactLetterV1, ContactLetterV2, ContractError, PayoutReason
from schemas.contact import downcast_contact_v2_to_v1, upcast_contact_v1_to_v2
from schemas.examples import EXAMPLES, example_envelope
from schemas.registry import downcast, encode_envelope, envelope_for, known_versions, parse

V1 = EXAMPLES[("contact_letter", 1)]
V2 = EXAMPLES[("contact_letter", 2)]
SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "json" / "contact_letter.v2.json"


def test_v2_is_the_newest_contact_letter() -> None:
    assert known_versions("contact_letter") == (1, 2)
    assert ContactLetter is ContactLetterV2


def test_a_v1_letter_upcasts_to_v2_without_a_payout_request() -> None:
    assert isinstance(V1, ContactLetterV1)
    letter = upcast_contact_v1_to_v2(V1)
    assert letter.payout_account is None and letter.payout_reason is None
    assert not letter.payout_requested
    assert downcast_contact_v2_to_v1(letter) == V1


def test_a_v1_message_is_received_as_v2() -> None:
    message = parse(encode_envelope(example_envelope(V1)))
    assert isinstance(message.document, ContactLetterV2)
    assert message.envelope.version == 1


def test_a_payout_request_cannot_be_sent_as_v1() -> None:
    assert isinstance(V2, ContactLetterV2) and V2.payout_requested
    with pytest.raises(ContractError) as caught:
        downcast(V2, 1)
    assert caught.value.reason == "no_common_version"
    with pytest.raises(ContractError):
        envelope_for(V2, sender="440300", recipient="360400", case_id=uuid4(), version=1)


@pytest.mark.parametrize("missing", ["payout_account", "payout_reason"])
def test_payout_account_and_reason_come_together(missing: str) -> None:
    data = V2.model_dump(mode="json")
    data[missing] = None
    with pytest.raises(ValidationError, match="payout_incomplete"):
        ContactLetterV2.model_validate(data)


def test_the_published_schema_requires_both_or_neither() -> None:
    validator = Draft202012Validator(json.loads(SCHEMA.read_text(encoding="utf-8")))
    message = json.loads(encode_envelope(example_envelope(V2)))
    validator.validate(message)
    message["payload"]["payout_reason"] = None
    assert not validator.is_valid(message)
    message["payload"]["payout_account"] = None
    validator.validate(message)
    message["payload"]["payout_reason"] = "holiday"
    assert not validator.is_valid(message)


def test_every_payout_reason_round_trips() -> None:
    for reason in PayoutReason:
        letter = V2.model_copy(update={"payout_reason": reason})
        assert ContactLetterV2.model_validate_json(letter.model_dump_json()) == letter
