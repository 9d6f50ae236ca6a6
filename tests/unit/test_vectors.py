"""The test vectors: jiexu agrees with every one, and the checked-in files are a fresh generation.

Each vector is run through the checks jiexu's consumer makes, in its order (`broker.consumer`):
size, decode, recipient, sender = broker user, properties, signature, type/version/payload.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from broker.consumer import DEFAULT_MAX_BODY_BYTES
from broker.directory import AgencyDirectory
from broker.properties import check_properties
from broker.signing import canonical_bytes, load_private_key, sign_and_encode, verify_envelope
from schemas.envelope import Envelope
from schemas.errors import ContractError
from schemas.registry import MODELS, decode_envelope_with_raw, validate_document
from schemas.vectors import render_vectors, write_vectors

VECTORS = Path(__file__).resolve().parents[2] / "schemas" / "vectors"
SCHEMAS = VECTORS.parent / "json"


def _load(path: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return result


DIRECTORY = AgencyDirectory.load(VECTORS / "directory.json")
VALID = sorted((VECTORS / "valid").glob("*.json"))
INVALID = sorted((VECTORS / "invalid").glob("*.json"))


def verdict(body: bytes, properties: dict[str, Any], inbox: str | None = None) -> Envelope:
    """What jiexu's consumer does with a delivery, up to the handler; `ContractError` if refused."""
    if len(body) > DEFAULT_MAX_BODY_BYTES:
        raise ContractError("too_large", f"{len(body)} bytes")
    envelope, received = decode_envelope_with_raw(body)
    if envelope.recipient != (inbox or envelope.recipient):
        raise ContractError("wrong_recipient", envelope.recipient)
    if properties.get("user_id") != f"agency-{envelope.sender}":
        raise ContractError("sender_mismatch", str(properties.get("user_id")))
    check_properties(
        envelope,
        message_id=properties.get("message_id"),
        correlation_id=properties.get("correlation_id"),
        message_type=properties.get("type"),
        headers=properties.get("headers"),
    )
    verify_envelope(received, DIRECTORY.public_key(envelope.sender))
    validate_document(envelope)
    return envelope


def test_the_checked_in_vectors_are_a_fresh_generation(tmp_path: Path) -> None:
    write_vectors(tmp_path)
    generated = {p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file()}
    checked_in = {p.relative_to(VECTORS) for p in VECTORS.rglob("*") if p.is_file()}
    assert generated == checked_in, "run `jiexu schemas vectors schemas/vectors` and commit"
    for relative in sorted(generated):
        assert (tmp_path / relative).read_bytes() == (VECTORS / relative).read_bytes(), relative


def test_rendering_is_deterministic() -> None:
    assert render_vectors() == render_vectors()


def test_every_type_and_version_has_a_valid_vector() -> None:
    names = {path.stem for path in VALID}
    assert {f"{t}.v{v}" for t, m in MODELS.items() for v in range(1, len(m) + 1)} <= names


def test_the_test_key_is_labelled_and_is_the_directorys() -> None:
    key = _load(VECTORS / "test-key.json")
    assert "TEST ONLY" in key["warning"]
    private = load_private_key(key["private_key_pem"])
    assert base64.b64decode(key["seed_base64"]) == bytes.fromhex(key["seed_hex"])
    for entry in DIRECTORY:
        assert entry.public_key == key["public_key"]
    assert private.public_key() == DIRECTORY.public_key(next(iter(DIRECTORY)).code)


def test_the_vectors_directory_satisfies_the_directory_schema() -> None:
    schema = _load(SCHEMAS / "directory.schema.json")
    Draft202012Validator(schema).validate(_load(VECTORS / "directory.json"))


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_jiexu_accepts_each_valid_vector_and_writes_the_same_bytes(path: Path) -> None:
    vector = _load(path)
    body = base64.b64decode(vector["body_base64"])
    assert body == vector["body_utf8"].encode("utf-8")
    envelope = verdict(body, vector["properties"])

    canonical = base64.b64decode(vector["canonical_base64"])
    assert canonical == vector["canonical_utf8"].encode("utf-8")
    received = json.loads(body)
    assert canonical_bytes(received) == canonical  # what was received, canonicalised
    assert canonical_bytes(envelope) == canonical  # what jiexu read, canonicalised
    assert received == vector["envelope"]
    assert envelope.signature == vector["signature"] == received["signature"]

    # Signing the same envelope with the test key gives the same signature and, for jiexu's own
    # form, the very body.
    key = load_private_key(_load(VECTORS / "test-key.json")["private_key_pem"])
    resigned, encoded = sign_and_encode(envelope.model_copy(update={"signature": None}), key)
    assert resigned.signature == vector["signature"]
    if path.stem != "foreign-form":
        assert encoded == body

    document = validate_document(envelope)
    assert vector["upcast_to"]["version"] == document.VERSION
    assert document.model_dump(mode="json") == vector["upcast_to"]["payload"]

    message_schema = _load(SCHEMAS / f"{envelope.type}.v{envelope.version}.json")
    Draft202012Validator(message_schema).validate(received)


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_jiexu_refuses_each_invalid_vector_with_its_reason(path: Path) -> None:
    vector = _load(path)
    body = base64.b64decode(vector["body_base64"])
    if vector["body_utf8"] is not None:
        assert body == vector["body_utf8"].encode("utf-8")
    with pytest.raises(ContractError) as caught:
        verdict(body, vector["properties"], vector["inbox"])
    assert caught.value.reason == vector["reason"], caught.value.detail


def test_the_cli_writes_the_vectors(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from agents.cli import app

    result = CliRunner().invoke(app, ["schemas", "vectors", str(tmp_path / "v")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "v" / "valid" / "information_form.v2.json").is_file()
    assert (tmp_path / "v" / "test-key.json").is_file()
