"""Envelope authenticity: Ed25519 over the RFC 8785 canonical JSON of the envelope.

The signed bytes are `schemas.envelope.signing_input`: RFC 8785 JSON of the envelope exactly as it
travels (field names of the wire contract, payload as received, before any upcasting), minus the
signature itself. Verify before upcasting or re-parsing the payload. `verify_envelope` takes the
decoded `Envelope` or the raw JSON object received (the envelope's canonical text forms make both
give the same bytes).
Keys travel as base64 of the raw 32 bytes (the agency directory) or PEM (files).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.bindings
import nacl.exceptions
import rfc8785
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from broker.files import private_dir
from schemas.envelope import Envelope, sign_wire_data, signing_input
from schemas.errors import ContractError
from schemas.registry import encode_envelope_data

__all__ = [
    "Ed25519PrivateKey",
    "Ed25519PublicKey",
    "SignatureCheck",
    "canonical_bytes",
    "ed25519_sign",
    "ed25519_verify",
    "generate_private_key",
    "load_private_key",
    "load_public_key",
    "private_key_path",
    "private_key_to_pem",
    "private_key_to_raw_b64",
    "public_key_path",
    "public_key_to_pem",
    "public_key_to_raw_b64",
    "save_private_key",
    "save_public_key",
    "sign_and_encode",
    "sign_envelope",
    "signature_check",
    "verify_envelope",
    "verify_envelope_async",
]


def canonical_bytes(envelope: Envelope | Mapping[str, Any]) -> bytes:
    """The bytes that are signed: RFC 8785 JSON of the envelope without ``signature``."""
    try:
        return signing_input(envelope)
    except rfc8785.CanonicalizationError as exc:
        raise _not_canonical(exc) from exc


def _not_canonical(error: rfc8785.CanonicalizationError) -> ContractError:
    # e.g. an integer beyond 2**53 or a NaN in the payload: not representable in I-JSON.
    return ContractError("invalid_payload", f"payload cannot be canonicalised: {error}")


# -- Ed25519 through libsodium --------------------------------------------------------------
#
# Keys are `cryptography` objects everywhere (loading, PEM, the directory); the Ed25519 operations
# themselves run in libsodium (PyNaCl), about twice as fast here as OpenSSL's, and the same
# RFC 8032 algorithm: a signature from either verifies with the other. libsodium is the stricter
# verifier (it also refuses small-order keys and points), which only ever refuses more forgeries.
# The raw key bytes libsodium needs are derived once per key object and remembered by identity.

_RAW_KEYS: dict[int, tuple[object, bytes]] = {}
_RAW_KEYS_LIMIT = 4096


def _remembered(key: object, derive: Callable[[], bytes]) -> bytes:
    entry = _RAW_KEYS.get(id(key))
    if entry is not None and entry[0] is key:
        return entry[1]
    raw = derive()
    if len(_RAW_KEYS) >= _RAW_KEYS_LIMIT:
        _RAW_KEYS.clear()
    _RAW_KEYS[id(key)] = (key, raw)  # holding the key keeps its id from being reused
    return raw


def _sodium_secret(private_key: Ed25519PrivateKey) -> bytes:
    """libsodium's 64-byte secret key (seed and public key) for ``private_key``."""

    def derive() -> bytes:
        seed = private_key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return bytes(nacl.bindings.crypto_sign_seed_keypair(seed)[1])

    return _remembered(private_key, derive)


def _sodium_public(public_key: Ed25519PublicKey) -> bytes:
    return _remembered(
        public_key,
        lambda: public_key.public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        ),
    )


def ed25519_sign(private_key: Ed25519PrivateKey, data: bytes) -> bytes:
    """The 64-byte Ed25519 signature of ``data`` (the GIL is released while it computes)."""
    return bytes(nacl.bindings.crypto_sign(data, _sodium_secret(private_key))[:64])


def ed25519_verify(public_key: Ed25519PublicKey, signature: bytes, data: bytes) -> bool:
    """Whether ``signature`` is ``public_key``'s over ``data`` (the GIL is released meanwhile)."""
    try:
        nacl.bindings.crypto_sign_open(signature + data, _sodium_public(public_key))
    except nacl.exceptions.BadSignatureError:
        return False
    return True


def _signature(data: Envelope | Mapping[str, Any], private_key: Ed25519PrivateKey) -> str:
    return _b64_signature(private_key, canonical_bytes(data))


def _b64_signature(private_key: Ed25519PrivateKey, signed: bytes) -> str:
    """The envelope's ``signature`` member: base64 of the Ed25519 signature of ``signed``."""
    return base64.b64encode(ed25519_sign(private_key, signed)).decode("ascii")


def sign_envelope(envelope: Envelope, private_key: Ed25519PrivateKey) -> Envelope:
    """A copy of ``envelope`` carrying a base64 Ed25519 signature (an old signature is replaced)."""
    return envelope.model_copy(update={"signature": _signature(envelope, private_key)})


def sign_and_encode(envelope: Envelope, private_key: Ed25519PrivateKey) -> tuple[Envelope, bytes]:
    """`sign_envelope` and `schemas.registry.encode_envelope` of the result, dumping the model once.

    The JSON object that is signed (less its signature) is the one that is encoded, so the body
    is byte for byte ``encode_envelope(sign_envelope(envelope, private_key))``.
    """
    try:
        data, signature = sign_wire_data(
            envelope, lambda signed: _b64_signature(private_key, signed)
        )
    except rfc8785.CanonicalizationError as exc:
        raise _not_canonical(exc) from exc
    return envelope.model_copy(update={"signature": signature}), encode_envelope_data(data)


@dataclass(frozen=True, slots=True)
class SignatureCheck:
    """An envelope's signature, decoded, and the bytes it must cover: all but the Ed25519 step.

    `run` is that step alone: no Python objects are touched while it computes, and
    libsodium (through cffi) releases the GIL for it, so it may run on a worker thread
    (`verify_envelope_async`) while the event loop carries on with other deliveries.
    """

    signature: bytes
    signed: bytes
    message_id: object
    sender: object

    def run(self, public_key: Ed25519PublicKey | Sequence[Ed25519PublicKey]) -> None:
        """Good if ``public_key`` (or any of several: a sender's currently valid keys while one
        is rotated) made the signature."""
        keys = (public_key,) if isinstance(public_key, Ed25519PublicKey) else tuple(public_key)
        if not any(ed25519_verify(key, self.signature, self.signed) for key in keys):
            raise ContractError(
                "bad_signature",
                f"signature of message {self.message_id} does not match sender "
                f"{self.sender}'s key (altered in transit, or signed with another key)",
            )


def signature_check(envelope: Envelope | Mapping[str, Any]) -> SignatureCheck:
    """Check the signature's form and compute the signed bytes; `ContractError` if malformed."""
    encoded: object
    message_id: object
    sender: object
    if isinstance(envelope, Envelope):
        encoded, message_id, sender = envelope.signature, envelope.message_id, envelope.sender
    else:
        encoded, message_id, sender = (
            envelope.get("signature"), envelope.get("message_id"), envelope.get("sender")
        )
    if not encoded:
        raise ContractError("unsigned", f"message {message_id} carries no signature")
    if not isinstance(encoded, str):
        raise ContractError("bad_signature", "signature is not a string")
    try:
        signature = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ContractError("bad_signature", "signature is not valid base64") from exc
    if len(signature) != 64:
        raise ContractError(
            "bad_signature", f"an Ed25519 signature is 64 bytes, this one is {len(signature)}"
        )
    return SignatureCheck(signature, canonical_bytes(envelope), message_id, sender)


def verify_envelope(
    envelope: Envelope | Mapping[str, Any],
    public_key: Ed25519PublicKey | Sequence[Ed25519PublicKey],
) -> None:
    """Raise `ContractError` ``unsigned`` or ``bad_signature`` unless ``public_key`` signed it.

    ``public_key`` is the directory's key for the envelope's *sender*; checking that the sender is
    the broker user that published it (AMQP ``user_id``) is the consumer's job.
    """
    signature_check(envelope).run(public_key)


async def verify_envelope_async(
    envelope: Envelope | Mapping[str, Any],
    public_key: Ed25519PublicKey | Sequence[Ed25519PublicKey],
    executor: Executor | None = None,
) -> None:
    """`verify_envelope`, with the Ed25519 step on ``executor``'s thread (the default: one
    shared worker thread); returns only once the signature is proved good."""
    check = signature_check(envelope)
    await asyncio.get_running_loop().run_in_executor(
        executor or _verifier(), check.run, public_key
    )


_VERIFIER: list[ThreadPoolExecutor] = []


def _verifier() -> ThreadPoolExecutor:
    if not _VERIFIER:
        _VERIFIER.append(ThreadPoolExecutor(max_workers=1, thread_name_prefix="jiexu-ed25519"))
    return _VERIFIER[0]


# -- keys -----------------------------------------------------------------------------------


def generate_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def public_key_to_raw_b64(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """Base64 of the raw 32-byte public key: the form the agency directory lists."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def private_key_to_raw_b64(key: Ed25519PrivateKey) -> str:
    raw = key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    return base64.b64encode(raw).decode("ascii")


def private_key_to_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_key_to_pem(key: Ed25519PublicKey | Ed25519PrivateKey) -> bytes:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _raw_b64(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"{what} is neither PEM nor base64: {exc}") from exc
    if len(raw) != 32:
        raise ValueError(f"{what} must be 32 raw bytes in base64, got {len(raw)} bytes")
    return raw


def load_public_key(data: str | bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM or from base64 of its 32 raw bytes."""
    text = data.decode("ascii") if isinstance(data, bytes) else data
    if "-----BEGIN" in text:
        key = serialization.load_pem_public_key(text.encode("ascii"))
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError(f"not an Ed25519 public key: {type(key).__name__}")
        return key
    return Ed25519PublicKey.from_public_bytes(_raw_b64(text, "public key"))


def load_private_key(data: str | bytes | Path) -> Ed25519PrivateKey:
    """An Ed25519 private key from a file path, PEM (unencrypted PKCS#8) or base64 raw bytes."""
    if isinstance(data, Path):
        data = data.read_bytes()
    text = data.decode("ascii") if isinstance(data, bytes) else data
    if "-----BEGIN" in text:
        key = serialization.load_pem_private_key(text.encode("ascii"), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"not an Ed25519 private key: {type(key).__name__}")
        return key
    return Ed25519PrivateKey.from_private_bytes(_raw_b64(text, "private key"))


def private_key_path(directory: Path, code: str) -> Path:
    """Where `jiexu keys generate` puts an agency's private key (PEM, 0600)."""
    return directory / f"{code}.ed25519.pem"


def public_key_path(directory: Path, code: str) -> Path:
    """Where `jiexu keys generate` puts an agency's public key (base64 raw, one line)."""
    return directory / f"{code}.ed25519.pub"


def _write_private(path: Path, content: bytes) -> None:
    private_dir(path.parent)  # 0700 where we create it (the secrets directory)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(content)


def save_private_key(key: Ed25519PrivateKey, path: Path) -> None:
    """Write the private key as PEM, readable by its owner only (0600)."""
    _write_private(path, private_key_to_pem(key))


def save_public_key(key: Ed25519PublicKey | Ed25519PrivateKey, path: Path) -> None:
    """Write the public key as base64 of its raw bytes, one line (what the directory lists)."""
    private_dir(path.parent)
    path.write_text(public_key_to_raw_b64(key) + "\n", encoding="ascii")
