"""Envelope signatures: Ed25519 over the RFC 8785 form; any change or wrong key is rejected."""

from __future__ import annotations

import base64
import json
import stat
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from agents.cli import app
from broker.signing import (
    canonical_bytes,
    ed25519_sign,
    ed25519_verify,
    generate_private_key,
    load_private_key,
    load_public_key,
    private_key_path,
    private_key_to_pem,
    private_key_to_raw_b64,
    public_key_path,
    public_key_to_pem,
    public_key_to_raw_b64,
    save_private_key,
    sign_and_encode,
    sign_envelope,
    signature_check,
    verify_envelope,
    verify_envelope_async,
)
from schemas.envelope import Envelope
from schemas.errors import ContractError
from schemas.registry import encode_envelope


def _envelope(**changes: Any) -> Envelope:
    fields: dict[str, Any] = {
        "message_id": uuid.UUID("6f1c1a52-4a43-4a4e-9d53-0b1f64f0a001"),
        "case_id": uuid.UUID("6f1c1a52-4a43-4a4e-9d53-0b1f64f0a002"),
        "type": "fund_transfer",
        "version": 1,
        "sender": "110000",
        "recipient": "320100",
        "sent_at": datetime(2024, 3, 1, 9, 30, tzinfo=timezone(timedelta(hours=8))),
        "payload": {"amount_fen": 1234567, "periods": [{"from": "2020-01", "months": 12}]},
    }
    fields.update(changes)
    return Envelope(**fields)


def test_a_signed_envelope_verifies_with_the_senders_public_key() -> None:
    key = generate_private_key()
    signed = sign_envelope(_envelope(), key)
    assert signed.signature is not None
    assert len(base64.b64decode(signed.signature)) == 64
    verify_envelope(signed, key.public_key())


def test_the_signature_survives_the_wire_round_trip() -> None:
    key = generate_private_key()
    signed = sign_envelope(_envelope(), key)
    received = Envelope.model_validate_json(signed.model_dump_json())
    verify_envelope(received, key.public_key())


def test_a_tampered_payload_is_rejected() -> None:
    key = generate_private_key()
    signed = sign_envelope(_envelope(), key)
    tampered = signed.model_copy(update={"payload": {**signed.payload, "amount_fen": 9999999}})
    with pytest.raises(ContractError) as caught:
        verify_envelope(tampered, key.public_key())
    assert caught.value.reason == "bad_signature"


@pytest.mark.parametrize(
    "field, value",
    [
        ("recipient", "440100"),
        ("version", 2),
        ("case_id", uuid.UUID("6f1c1a52-4a43-4a4e-9d53-0b1f64f0a003")),
        ("sent_at", datetime(2024, 3, 1, 9, 31, tzinfo=UTC)),
    ],
)
def test_a_tampered_envelope_field_is_rejected(field: str, value: object) -> None:
    key = generate_private_key()
    tampered = sign_envelope(_envelope(), key).model_copy(update={field: value})
    with pytest.raises(ContractError, match="bad_signature"):
        verify_envelope(tampered, key.public_key())


def test_a_signature_by_another_key_is_rejected() -> None:
    signed = sign_envelope(_envelope(), generate_private_key())
    with pytest.raises(ContractError) as caught:
        verify_envelope(signed, generate_private_key().public_key())
    assert caught.value.reason == "bad_signature"


def test_an_unsigned_envelope_is_rejected() -> None:
    with pytest.raises(ContractError) as caught:
        verify_envelope(_envelope(), generate_private_key().public_key())
    assert caught.value.reason == "unsigned"


@pytest.mark.parametrize("garbage", ["not base64!!", base64.b64encode(b"short").decode()])
def test_a_malformed_signature_is_rejected(garbage: str) -> None:
    received = {**_envelope().model_dump(mode="json"), "signature": garbage}
    with pytest.raises(ContractError) as caught:
        verify_envelope(received, generate_private_key().public_key())
    assert caught.value.reason == "bad_signature"


def test_the_raw_json_object_received_verifies_like_the_decoded_envelope() -> None:
    key = generate_private_key()
    signed = sign_envelope(_envelope(), key)
    received = json.loads(signed.model_dump_json())
    verify_envelope(received, key.public_key())
    with pytest.raises(ContractError, match="bad_signature"):
        verify_envelope({**received, "version": 2}, key.public_key())
    with pytest.raises(ContractError, match="unsigned"):
        verify_envelope({**received, "signature": None}, key.public_key())


def test_the_canonical_form_ignores_key_order_and_excludes_the_signature() -> None:
    one = _envelope(payload={"b": 1, "a": {"y": 2, "x": [3, {"q": 1, "p": 0}]}})
    other = _envelope(payload={"a": {"x": [3, {"p": 0, "q": 1}], "y": 2}, "b": 1})
    assert canonical_bytes(one) == canonical_bytes(other)
    assert canonical_bytes(one) == canonical_bytes(one.model_copy(update={"signature": "AAAA"}))
    body = json.loads(canonical_bytes(one))
    assert "signature" not in body
    assert list(body) == sorted(body)
    assert b" " not in canonical_bytes(one)


def test_a_signature_made_over_one_key_order_verifies_over_another() -> None:
    key = generate_private_key()
    signed = sign_envelope(_envelope(payload={"b": 1, "a": 2}), key)
    reordered = Envelope.model_validate_json(
        json.dumps({**json.loads(signed.model_dump_json()), "payload": {"a": 2, "b": 1}})
    )
    verify_envelope(reordered, key.public_key())


def test_keys_round_trip_through_pem_and_raw_base64(tmp_path: Path) -> None:
    key = generate_private_key()
    public_b64 = public_key_to_raw_b64(key)
    assert len(base64.b64decode(public_b64)) == 32
    for loaded in (load_private_key(private_key_to_pem(key)), load_private_key(private_key_to_raw_b64(key))):
        assert public_key_to_raw_b64(loaded) == public_b64
    for public in (load_public_key(public_b64), load_public_key(public_key_to_pem(key))):
        assert public_key_to_raw_b64(public) == public_b64
    path = tmp_path / "k.pem"
    save_private_key(key, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert public_key_to_raw_b64(load_private_key(path)) == public_b64
    with pytest.raises(ValueError, match="32 raw bytes"):
        load_public_key(base64.b64encode(b"x" * 31).decode())


def test_jiexu_keys_generate_writes_a_private_key_only_its_owner_can_read(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["keys", "generate", "--agency", "110000", "--out", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    private = private_key_path(tmp_path, "110000")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert public_key_path(tmp_path, "110000").read_text().strip() == out["public_key"]
    assert public_key_to_raw_b64(load_private_key(private)) == out["public_key"]
    again = runner.invoke(app, ["keys", "generate", "--agency", "110000", "--out", str(tmp_path)])
    assert again.exit_code == 1  # never silently replaces a key the directory already lists


def test_sign_and_encode_is_sign_envelope_then_encode_envelope() -> None:
    key = generate_private_key()
    unsigned = _envelope(payload={"b": 1, "a": {"名": "张三", "n": [1, 2]}})
    signed, body = sign_and_encode(unsigned, key)
    expected = sign_envelope(unsigned, key)  # Ed25519 signatures are deterministic
    assert signed == expected
    assert body == encode_envelope(expected)
    verify_envelope(json.loads(body), key.public_key())


def test_a_float_or_big_integer_payload_still_signs_over_rfc8785() -> None:
    key = generate_private_key()
    signed = sign_envelope(_envelope(payload={"ratio": 0.1, "n": 2**53 - 1, "s": 1e21}), key)
    received = json.loads(encode_envelope(signed))
    verify_envelope(received, key.public_key())
    with pytest.raises(ContractError) as caught:
        sign_envelope(_envelope(payload={"n": 2**53}), key)
    assert caught.value.reason == "invalid_payload"


async def test_verification_on_the_worker_thread_accepts_and_refuses_like_verify_envelope() -> None:
    key = generate_private_key()
    received = json.loads(encode_envelope(sign_envelope(_envelope(), key)))
    await verify_envelope_async(received, key.public_key())
    cases: list[tuple[dict[str, Any], str]] = [
        ({**received, "version": 2}, "bad_signature"),
        ({**received, "signature": None}, "unsigned"),
        ({**received, "signature": "AAAA"}, "bad_signature"),
    ]
    for tampered, reason in cases:
        with pytest.raises(ContractError) as caught:
            await verify_envelope_async(tampered, key.public_key())
        assert caught.value.reason == reason
    with pytest.raises(ContractError, match="bad_signature"):
        await verify_envelope_async(received, generate_private_key().public_key())


def test_the_signature_check_carries_the_bytes_that_are_signed() -> None:
    key = generate_private_key()
    signed = sign_envelope(_envelope(), key)
    check = signature_check(signed)
    assert check.signed == canonical_bytes(signed)
    assert check.signature == base64.b64decode(signed.signature or "")
    check.run(key.public_key())


def test_libsodium_and_openssl_agree_on_every_signature() -> None:
    """The Ed25519 steps run in libsodium; keys are `cryptography` objects. A signature made by
    either library verifies with the other, and both refuse a changed byte."""
    key = generate_private_key()
    data = canonical_bytes(_envelope())
    ours = ed25519_sign(key, data)
    key.public_key().verify(ours, data)  # OpenSSL accepts libsodium's signature
    theirs = key.sign(data)
    assert ours == theirs  # Ed25519 is deterministic: the very same bytes
    assert ed25519_verify(key.public_key(), theirs, data)
    assert not ed25519_verify(key.public_key(), theirs, data + b" ")
    assert not ed25519_verify(generate_private_key().public_key(), theirs, data)


def test_a_key_object_is_never_confused_with_another_after_it_is_gone() -> None:
    """The raw bytes libsodium needs are remembered per key object; many short-lived keys (whose
    ids may be reused) still each sign with their own key."""
    data = b"jiexu"
    for _ in range(50):
        key = generate_private_key()
        signature = ed25519_sign(key, data)
        key.public_key().verify(signature, data)
        del key
