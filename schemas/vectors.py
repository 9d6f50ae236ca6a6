"""Test vectors: what an implementation must write, sign and refuse, byte for byte.

``jiexu schemas vectors DIR`` writes them; the checked-in copy is ``schemas/vectors/``, and
``tests/unit/test_vectors.py`` proves that jiexu agrees with every one and that the files equal a
fresh generation. Deterministic: fixed ids, a fixed time and a fixed key (Ed25519 signatures are
deterministic, RFC 8032), so the same code writes the same bytes.

* ``test-key.json``: the **test-only** Ed25519 key every vector is signed with (its seed is
  public: never use it for anything real).
* ``directory.json``: an agency directory listing the vectors' agencies, all with that key.
* ``valid/<type>.v<N>.json``: one per (type, version) of the registry: the signed envelope, the
  exact body jiexu writes, the RFC 8785 canonical bytes of the envelope without ``signature``
  (what is signed), the signature, and the document after upcasting to the newest version.
  ``valid/foreign-form.json``: the same message written by another client (other member order,
  spacing, escapes): the body differs, the canonical bytes and the signature do not.
* ``invalid/<name>.json``: a body (and, where it matters, the AMQP properties it travels with)
  and the reason jiexu dead-letters it with.

A receiver's checks, in jiexu's order (`broker.consumer`): body size (1 MiB) → JSON and envelope
(``invalid_json``, ``invalid_envelope``) → recipient → sender = broker user → AMQP properties
(``property_mismatch``) → signature (``unsigned``, ``bad_signature``; a payload RFC 8785 cannot
write: ``invalid_payload``) → replay → type, version and payload (``unknown_type``,
``unknown_version``, ``invalid_payload``).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from schemas.envelope import canonical_json
from schemas.examples import EXAMPLES, example_envelope
from schemas.registry import MODELS, encode_envelope, upcast

__all__ = [
    "TEST_KEY_SEED",
    "InvalidVector",
    "ValidVector",
    "invalid_vectors",
    "render_vectors",
    "sign",
    "test_private_key",
    "test_public_key_b64",
    "valid_vectors",
    "write_vectors",
]

TEST_KEY_SEED = hashlib.sha256(b"jiexu test vectors - TEST ONLY - never use this key").digest()
"""The published test key's 32-byte Ed25519 seed. TEST ONLY: anyone can sign with it."""

_TEST_ONLY = (
    "TEST ONLY. This key is published: anyone can sign with it. It signs the test vectors and "
    "nothing else; never list it for a real agency."
)


def test_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(TEST_KEY_SEED)


def test_public_key_b64() -> str:
    raw = test_private_key().public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return base64.b64encode(raw).decode("ascii")


def sign(data: dict[str, Any], key: Ed25519PrivateKey | None = None) -> dict[str, Any]:
    """``data`` with ``signature`` set: base64 Ed25519 over RFC 8785 of it without ``signature``."""
    unsigned = {k: v for k, v in data.items() if k != "signature"}
    signature = (key or test_private_key()).sign(canonical_json(unsigned))
    return {**unsigned, "signature": base64.b64encode(signature).decode("ascii")}


def _envelope_data(message_type: str, version: int) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        encode_envelope(example_envelope(EXAMPLES[(message_type, version)]))
    )
    return data


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _body(data: dict[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _properties(data: dict[str, Any]) -> dict[str, Any]:
    """The AMQP properties and headers a message with envelope ``data`` travels with."""
    return {
        "message_id": data.get("message_id"),
        "correlation_id": data.get("case_id"),
        "type": data.get("type"),
        "user_id": f"agency-{data.get('sender')}",
        "content_type": "application/json",
        "delivery_mode": 2,
        "headers": {"x-jiexu-type": data.get("type"), "x-jiexu-version": data.get("version")},
    }


@dataclass(frozen=True)
class ValidVector:
    name: str
    description: str
    envelope: dict[str, Any]
    body: bytes

    def as_json(self) -> dict[str, Any]:
        unsigned = {k: v for k, v in self.envelope.items() if k != "signature"}
        canonical = canonical_json(unsigned)
        model = MODELS[self.envelope["type"]][self.envelope["version"] - 1]
        newest = upcast(model.model_validate(self.envelope["payload"]))
        return {
            "name": self.name,
            "description": self.description,
            "public_key": test_public_key_b64(),
            "envelope": self.envelope,
            "body_utf8": self.body.decode("utf-8"),
            "body_base64": _b64(self.body),
            "canonical_utf8": canonical.decode("utf-8"),
            "canonical_base64": _b64(canonical),
            "canonical_sha256": hashlib.sha256(canonical).hexdigest(),
            "signature": self.envelope["signature"],
            "properties": _properties(self.envelope),
            "upcast_to": {"version": newest.VERSION, "payload": newest.model_dump(mode="json")},
        }


@dataclass(frozen=True)
class InvalidVector:
    name: str
    description: str
    reason: str
    body: bytes
    properties: dict[str, Any] = field(default_factory=dict)
    inbox: str | None = None
    """The agency whose inbox receives it; None: the envelope's recipient."""

    def as_json(self) -> dict[str, Any]:
        try:
            text: str | None = self.body.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        return {
            "name": self.name,
            "description": self.description,
            "reason": self.reason,
            "public_key": test_public_key_b64(),
            "body_utf8": text,
            "body_base64": _b64(self.body),
            "properties": self.properties,
            "inbox": self.inbox,
        }


def valid_vectors() -> list[ValidVector]:
    vectors = []
    for message_type, models in MODELS.items():
        for version in range(1, len(models) + 1):
            data = sign(_envelope_data(message_type, version))
            name = f"{message_type}.v{version}"
            vectors.append(
                ValidVector(
                    name=name,
                    description=f"A valid {name} as jiexu writes it, signed with the test key.",
                    envelope=data,
                    body=_body(data),
                )
            )
    # Another client's spelling of the newest information form: members in reverse order,
    # spaces, non-ASCII escaped. The body differs; what is signed does not.
    data = sign(_envelope_data("information_form", 2))
    foreign = json.dumps(dict(reversed(list(data.items()))), ensure_ascii=True, indent=1)
    vectors.append(
        ValidVector(
            name="foreign-form",
            description="A valid information_form v2 as another client may write it (member "
            "order, whitespace and \\u escapes differ from jiexu's): the canonical bytes, and so "
            "the signature, are those of information_form.v2.",
            envelope=data,
            body=foreign.encode("ascii"),
        )
    )
    return vectors


def _signed_variant(
    change: Callable[[dict[str, Any]], None], *, base: tuple[str, int] = ("transfer_completed", 1)
) -> tuple[bytes, dict[str, Any]]:
    """The example of ``base`` changed by ``change``, then signed with the test key."""
    data = _envelope_data(*base)
    change(data)
    signed = sign(data)
    return _body(signed), _properties(signed)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        target = data
        *parents, last = path.split(".")
        for part in parents:
            target = target[part]
        target[last] = value

    return change


def _delete(name: str) -> Callable[[dict[str, Any]], None]:
    return lambda data: data.pop(name)


def invalid_vectors() -> list[InvalidVector]:
    vectors: list[InvalidVector] = []

    def add(name: str, reason: str, description: str, body: bytes, properties: dict[str, Any]) -> None:
        vectors.append(InvalidVector(name, description, reason, body, properties))

    def signed(name: str, reason: str, description: str, change: Callable[[dict[str, Any]], None],
               base: tuple[str, int] = ("transfer_completed", 1)) -> None:
        body, properties = _signed_variant(change, base=base)
        add(name, reason, description, body, properties)

    good = sign(_envelope_data("transfer_completed", 1))

    # -- signature ---------------------------------------------------------------------------
    altered = copy.deepcopy(good)
    altered["payload"]["amount_credited"] += 1
    add("bad-signature-altered", "bad_signature",
        "Signed, then one fen added to the payload: the signature no longer covers it.",
        _body(altered), _properties(altered))
    other_key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"not the directory key").digest())
    forged = sign(_envelope_data("transfer_completed", 1), other_key)
    add("bad-signature-other-key", "bad_signature",
        "Signed with a key that is not the sender's (the directory lists the test key).",
        _body(forged), _properties(forged))
    unsigned = {**good, "signature": None}
    add("unsigned", "unsigned", "signature is null.", _body(unsigned), _properties(unsigned))
    over_b64 = {**good, "signature": "A" * 86 + "=="}
    add("bad-signature-zero", "bad_signature", "A well-formed signature of the wrong bytes.",
        _body(over_b64), _properties(over_b64))

    # -- versions and types --------------------------------------------------------------------
    signed("unknown-version", "unknown_version",
           "information_form version 9: no such version (dead-lettered, never retried).",
           _set("version", 9), base=("information_form", 2))
    signed("unknown-type", "unknown_type", "type love_letter: no such message type.",
           _set("type", "love_letter"))

    # -- envelope text forms -------------------------------------------------------------------
    for value in (-1, 1, 1741915800):
        signed(f"sent-at-number-{value}".replace("-1", "minus-1", value < 0), "invalid_envelope",
               f"sent_at is the number {value}: sent_at is a string, never a Unix time.",
               _set("sent_at", value))
    signed("sent-at-zero-fraction", "invalid_envelope",
           "sent_at with a .000000 fraction: the one text form has a 6-digit fraction or none.",
           _set("sent_at", "2025-03-14T09:30:00.000000+08:00"))
    signed("sent-at-utc-offset", "invalid_envelope",
           "sent_at in UTC written +00:00: UTC is written Z.",
           _set("sent_at", "2025-03-14T01:30:00+00:00"))
    signed("sent-at-naive", "invalid_envelope", "sent_at without a UTC offset.",
           _set("sent_at", "2025-03-14T09:30:00"))
    signed("uuid-uppercase", "invalid_envelope",
           "message_id in uppercase: ids are lowercase 8-4-4-4-12.",
           lambda d: d.update(message_id=d["message_id"].upper()))
    signed("causation-absent", "invalid_envelope",
           "causation_id missing: every member is present (null when the message answers none).",
           _delete("causation_id"))
    signed("extra-member", "invalid_envelope", "An envelope member the contract does not know.",
           _set("priority", "high"))
    signed("sender-is-recipient", "invalid_envelope", "sender equals recipient.",
           lambda d: d.update(recipient=d["sender"]))
    signed("version-as-float", "invalid_envelope",
           "version 1.0: integers are written without fraction or exponent.",
           _set("version", 1.0))

    # -- JSON ----------------------------------------------------------------------------------
    text = _body(good).decode("utf-8")
    duplicate = text.replace('"version":1,', '"version":1,"version":2,', 1)
    add("duplicate-key", "invalid_json",
        "A member repeated (version twice): parsers disagree on which wins, so it is refused.",
        duplicate.encode("utf-8"), _properties(good))
    add("nan", "invalid_json", "NaN is not JSON.",
        text.replace('"months_credited":140', '"months_credited":NaN', 1).encode("utf-8"),
        _properties(good))
    form = sign(_envelope_data("information_form", 2))
    add("not-utf8", "invalid_json", "The body is not UTF-8 (a form's names in GB 18030 bytes).",
        _body(form).decode("utf-8").encode("gb18030"), _properties(form))
    deep: Any = 0
    for _ in range(70):
        deep = [deep]
    nested = copy.deepcopy(good)
    nested["payload"]["nested"] = deep
    add("nested-too-deep", "invalid_json",
        "A member nested 70 arrays deep: bodies are nested at most 64 objects or arrays deep.",
        _body(nested), _properties(nested))
    add("not-an-object", "invalid_envelope", "The body is a JSON array, not an object.",
        b"[]", {})
    add("not-json", "invalid_json", "Not JSON at all.", b"{not json", {})

    # -- payload ---------------------------------------------------------------------------------
    signed("payload-wrong-type", "invalid_payload",
           "months_credited is the string \"140\": numbers are numbers.",
           _set("payload.months_credited", "140"))
    signed("payload-integer-as-float", "invalid_payload",
           "amount_credited 1234567.0: integers are written without fraction or exponent.",
           _set("payload.amount_credited", 1234567.0))
    signed("payload-negative-amount", "invalid_payload", "amount_credited -1: amounts are never negative.",
           _set("payload.amount_credited", -1))
    signed("payload-missing-member", "invalid_payload", "months_credited missing.",
           lambda d: d["payload"].pop("months_credited"))
    signed("payload-bad-id-number", "invalid_payload",
           "The person's ID number has a wrong GB 11643 check character.",
           lambda d: d["payload"]["person"].update(
               id_number=d["payload"]["person"]["id_number"][:17]
               + ("0" if d["payload"]["person"]["id_number"][17] != "0" else "1")
           ),
           base=("information_form", 2))
    beyond = copy.deepcopy(good)
    beyond["payload"]["amount_credited"] = 2**53
    beyond["signature"] = good["signature"]
    add("integer-beyond-2-53", "invalid_payload",
        "amount_credited 2^53: beyond the integers RFC 8785 writes exactly; it cannot be "
        "canonicalised, so it cannot be signed or verified.",
        _body(beyond), _properties(beyond))

    # -- who sent it, who receives it ----------------------------------------------------------
    stolen = _properties(good)
    stolen["user_id"] = f"agency-{good['recipient']}"
    add("sender-mismatch", "sender_mismatch",
        "A genuine, signed envelope of 440300 published by another broker user (user_id "
        "agency-360400): the sender must be the broker user that publishes.",
        _body(good), stolen)
    vectors.append(
        InvalidVector(
            "wrong-recipient",
            "A genuine message for 360400 that reached the reconciler's (000000) inbox.",
            "wrong_recipient",
            _body(good),
            _properties(good),
            inbox="000000",
        )
    )

    # -- AMQP properties -----------------------------------------------------------------------
    for prop, wrong in (
        ("message_id", "00000000-0000-4000-8000-000000000000"),
        ("correlation_id", "00000000-0000-4000-8000-000000000000"),
        ("type", "rejection"),
    ):
        properties = _properties(good)
        properties[prop] = wrong
        add(f"property-{prop.replace('_', '-')}", "property_mismatch",
            f"The AMQP {prop} property disagrees with the envelope.", _body(good), properties)
    for header, header_value in (("x-jiexu-type", "rejection"), ("x-jiexu-version", 2)):
        properties = _properties(good)
        properties["headers"] = {**properties["headers"], header: header_value}
        add(f"header-{header}", "property_mismatch",
            f"The {header} header disagrees with the envelope.", _body(good), properties)
    return vectors


def _json_text(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


_README = """\
# jiexu test vectors

Generated by `jiexu schemas vectors schemas/vectors` from `schemas/vectors.py`; do not edit.
`tests/unit/test_vectors.py` proves jiexu agrees with every file here.

- `test-key.json`: the Ed25519 key every vector is signed with. **TEST ONLY**: its seed is
  published; never list it for a real agency.
- `directory.json`: an agency directory (`json/directory.schema.json`) naming the vectors'
  agencies, all with the test key.
- `valid/*.json`: one message per (type, version). `envelope` is the signed envelope;
  `canonical_utf8` / `canonical_base64` the RFC 8785 bytes of it without `signature` (what is
  signed); `signature` the standard padded base64 of the Ed25519 signature; `body_*` the body as
  jiexu writes it; `properties` the AMQP properties and headers it travels with; `upcast_to` the
  document after upcasting to the newest version. `foreign-form.json` is written as another
  client might (order, spacing, escapes): same canonical bytes, same signature.
- `invalid/*.json`: a body (`body_base64`; `body_utf8` when it is UTF-8) with its `properties`,
  and the `reason` jiexu dead-letters it with (the `x-jiexu-dead-reason` header).

To check an implementation: sign each valid envelope (without `signature`) with the test seed and
compare the canonical bytes and the signature; verify each with the public key; refuse each
invalid one. The vectors' `sent_at` is fixed in the past, so a live agent's freshness window
would also refuse them as `stale`: feed them to the parser and verifier, not to a live inbox.
"""


def render_vectors() -> dict[str, str]:
    """Relative path → content of every vector file."""
    key = test_private_key()
    files: dict[str, str] = {"README.md": _README}
    files["test-key.json"] = _json_text(
        {
            "warning": _TEST_ONLY,
            "algorithm": "Ed25519 (RFC 8032)",
            "seed_base64": _b64(TEST_KEY_SEED),
            "seed_hex": TEST_KEY_SEED.hex(),
            "public_key": test_public_key_b64(),
            "private_key_pem": key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode("ascii"),
        }
    )
    codes = sorted(
        {code for v in valid_vectors() for code in (v.envelope["sender"], v.envelope["recipient"])}
    )
    files["directory.json"] = _json_text(
        {
            "agencies": [
                {
                    "code": code,
                    "name": f"测试机构 {code} (test only)",
                    "supported_versions": {t: list(range(1, len(m) + 1)) for t, m in MODELS.items()},
                    "public_key": test_public_key_b64(),
                    "bank_account": {
                        "bank_name": "测试银行",
                        "bank_code": "102100099996",
                        "account_name": f"测试机构 {code}",
                        "account_number": f"6222{code}000001",
                    },
                }
                for code in codes
            ]
        }
    )
    for valid in valid_vectors():
        files[f"valid/{valid.name}.json"] = _json_text(valid.as_json())
    for invalid in invalid_vectors():
        files[f"invalid/{invalid.name}.json"] = _json_text(invalid.as_json())
    return files


def write_vectors(directory: Path) -> list[Path]:
    """Write every vector file under ``directory``; files of an older generation are removed."""
    files = render_vectors()
    for stale in ("valid", "invalid"):
        for path in (directory / stale).glob("*.json"):
            if f"{stale}/{path.name}" not in files:
                path.unlink()
    written = []
    for relative, content in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        written.append(path)
    return written
