"""The envelope every message travels in. Field names here are the wire contract.

Signature: base64 (standard alphabet, padded) of an Ed25519 signature over the RFC 8785 (JCS)
canonical JSON of the envelope object *without* its ``signature`` member.

The envelope admits one text form per value: ids are lowercase 8-4-4-4-12 UUIDs, ``sent_at`` is
``YYYY-MM-DDTHH:MM:SS[.ffffff](Z|+HH:MM)`` (a 6-digit fraction or none, ``Z`` for UTC) and every
member is present (``causation_id`` is ``null`` when the message answers none). So decoding an
envelope and dumping it again gives back the very object that was sent, and a signature computed
by any client over what it sent verifies against our model's dump, and vice versa.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Annotated, Any, Self
from uuid import UUID

import orjson
import rfc8785
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    WrapValidator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from schemas.common import AgencyCode

__all__ = [
    "SENT_AT_PATTERN",
    "SIGNATURE_PATTERN",
    "UUID_PATTERN",
    "AgencyCodeStr",
    "Envelope",
    "WireDatetime",
    "WireUuid",
    "canonical_json",
    "sign_wire_data",
    "signing_input",
    "wire_data",
    "wire_datetime",
]

AgencyCodeStr = AgencyCode
"""Kept for code written against the first envelope module; the same type as `AgencyCode`."""

SIGNATURE_PATTERN = r"^[A-Za-z0-9+/]{86}==$"
"""An Ed25519 signature is 64 bytes: 88 characters of padded standard base64."""


UUID_PATTERN = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
SENT_AT_PATTERN = (
    "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}([.][0-9]{6})?(Z|[+-][0-9]{2}:[0-9]{2})$"
)
_UUID_TEXT = re.compile(UUID_PATTERN)


def wire_datetime(value: datetime) -> str:
    """The text the envelope model writes for an aware instant with a whole-minute UTC offset.

    pydantic's JSON form: ``isoformat()`` (a 6-digit fraction only when there is one) with ``Z``
    for UTC; `tests/unit/test_canonical_json.py` proves it equal to pydantic's own dump.
    """
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _canonical_uuid(value: Any) -> Any:
    if isinstance(value, str) and not _UUID_TEXT.match(value):
        raise PydanticCustomError("uuid_form", "must be a UUID written lowercase as 8-4-4-4-12")
    return value


def _canonical_datetime(value: Any, handler: ValidatorFunctionWrapHandler) -> datetime:
    if not isinstance(value, str | datetime):
        # pydantic would read a number as Unix time; the contract has one text form only.
        raise PydanticCustomError(
            "datetime_type",
            "must be a string YYYY-MM-DDTHH:MM:SS[.ffffff] then Z or +HH:MM, not a number",
        )
    result: datetime = handler(value)
    offset = result.utcoffset()
    if offset is not None and offset.total_seconds() % 60:
        # RFC 3339 offsets are whole minutes; a historical zone's LMT offset is not.
        raise PydanticCustomError("datetime_offset", "UTC offset must be whole minutes")
    if isinstance(value, str) and wire_datetime(result) != value:
        raise PydanticCustomError(
            "datetime_form",
            "must be written YYYY-MM-DDTHH:MM:SS[.ffffff] then Z or +HH:MM: a 6-digit fraction "
            "or none (not .000000), and Z for UTC",
        )
    return result


WireUuid = Annotated[
    UUID,
    BeforeValidator(_canonical_uuid),
    WithJsonSchema({"type": "string", "format": "uuid", "pattern": UUID_PATTERN}),
]
"""A UUID whose text form is the canonical lowercase one."""

WireDatetime = Annotated[
    AwareDatetime,
    WrapValidator(_canonical_datetime),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": SENT_AT_PATTERN}),
]
"""A timezone-aware instant whose text form is the one the model writes back."""


class Envelope(BaseModel):
    """A signed, versioned message between two agencies."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        title="Envelope",
    )

    message_id: WireUuid = Field(description="Unique per message; also the AMQP message_id.")
    case_id: WireUuid = Field(description="The transfer case; also the AMQP correlation_id.")
    causation_id: WireUuid | None = Field(
        default=None,
        description="The message_id of the message this one answers; null if none. Always "
        "present on the wire.",
    )
    type: Annotated[str, Strict()] = Field(
        pattern=r"^[a-z][a-z_]*$",
        max_length=64,
        description="Message type, e.g. information_form; also the AMQP type property.",
    )
    version: Annotated[int, Strict()] = Field(
        ge=1,
        description="Version of the payload's document model for this type: an integer written "
        "without fraction or exponent (2, never 2.0).",
    )
    sender: AgencyCode = Field(description="Code of the agency that sent the message.")
    recipient: AgencyCode = Field(description="Code of the agency the message is for.")
    sent_at: WireDatetime = Field(
        description="When the sender created the message: a string (never a number) in the "
        "one RFC 3339 form YYYY-MM-DDTHH:MM:SS[.ffffff](Z|+HH:MM), Z for UTC."
    )
    payload: dict[str, Any] = Field(
        description="The document, validated against the model for (type, version)."
    )
    signature: Annotated[str, Strict()] | None = Field(
        default=None,
        pattern=SIGNATURE_PATTERN,
        description="Base64 Ed25519 signature over the RFC 8785 canonical JSON of this envelope "
        "without the signature member.",
    )

    @model_validator(mode="after")
    def _sender_is_not_recipient(self) -> Self:
        if self.sender == self.recipient:
            raise PydanticCustomError(
                "sender_is_recipient",
                "recipient must differ from sender: an agency never sends a message to itself",
            )
        return self


_INT_LIMIT = 2**53 - 1
"""RFC 8785 numbers are IEEE 754 doubles: integers beyond this are not exactly representable."""
_ASTRAL = "\U00010000"


def _plain_json(value: object) -> bool:
    """True when ``orjson.dumps(OPT_SORT_KEYS)`` writes ``value`` exactly as RFC 8785 does.

    Strings are escaped alike by both (the two-character escapes, ``\\u00xx`` in lowercase hex
    for the other control characters, everything else literally). What differs is numbers
    (floats use ECMAScript's shortest form; integers beyond 2**53 are refused), keys that sort
    differently by code point than by UTF-16 code unit (only characters beyond U+FFFF do), and
    types `json` accepts and `rfc8785` refuses (or the reverse). Those, and every type not
    exactly ``dict``, ``list``, ``tuple``, ``str``, ``int``, ``bool`` or ``None``, say False.
    """
    # An explicit stack instead of recursion: this runs twice per message hop.
    pending: list[Any] = [value]
    pop, extend = pending.pop, pending.extend
    while pending:
        item: Any = pop()
        kind = type(item)
        if kind is str or kind is bool or item is None:
            continue
        if kind is int:
            if not -_INT_LIMIT <= item <= _INT_LIMIT:
                return False
        elif kind is dict:
            for key in item:
                if type(key) is not str or not (key.isascii() or max(key) < _ASTRAL):
                    return False
            extend(item.values())
        elif kind is list or kind is tuple:
            extend(item)
        else:
            return False
    return True


def canonical_json(data: object) -> bytes:
    """RFC 8785 (JCS) bytes of a JSON value.

    The common case (no floats, integers within 2**53, keys without characters beyond U+FFFF)
    goes through orjson with sorted keys, which writes the very same bytes; anything else, and
    anything the fast path cannot encode (a lone surrogate), through `rfc8785`. What JCS cannot
    represent (NaN, infinities, integers beyond 2**53, lone surrogates, keys that are not
    strings, types other than JSON's) raises `rfc8785.CanonicalizationError`.
    """
    return _canonical_json(data, _plain_json(data))


def _canonical_json(data: object, plain: bool) -> bytes:
    """`canonical_json`, told whether ``data`` passed `_plain_json` (so as not to walk it twice)."""
    if plain:
        try:
            return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
        except TypeError:
            pass  # a lone surrogate: rfc8785 refuses it with its own error
    try:
        return bytes(rfc8785.dumps(data))  # type: ignore[arg-type]
    except UnicodeError as error:
        # rfc8785 0.1 lets this escape for a lone surrogate in a *key*: the same refusal.
        raise rfc8785.CanonicalizationError("input contains non-UTF-8 codepoints") from error


def wire_data(envelope: Envelope) -> dict[str, Any]:
    """The envelope's JSON object, as ``envelope.model_dump(mode="json")`` gives it.

    Built field by field when the payload is already plain JSON (always so for an envelope that
    was decoded, or made by `schemas.registry.envelope_for`): no walk of pydantic's serializer
    over the payload and no copy of it (the payload is the envelope's own dict: do not change
    it). Any other payload goes through ``model_dump``. Either way the JSON written from it is
    the same bytes (a tuple stays a tuple here, written as the same array).
    """
    return _wire_data(envelope)[0]


def _wire_data(envelope: Envelope) -> tuple[dict[str, Any], bool]:
    """`wire_data`, and whether it is known to be plain JSON (then `canonical_json` of it may
    skip its own walk)."""
    payload = envelope.payload
    if not _plain_json(payload):
        data = envelope.model_dump(mode="json")
        return data, _plain_json(data)
    causation_id = envelope.causation_id
    return {
        "message_id": str(envelope.message_id),
        "case_id": str(envelope.case_id),
        "causation_id": None if causation_id is None else str(causation_id),
        "type": envelope.type,
        "version": envelope.version,
        "sender": envelope.sender,
        "recipient": envelope.recipient,
        "sent_at": wire_datetime(envelope.sent_at),
        "payload": payload,
        "signature": envelope.signature,
    }, True


def signing_input(envelope: Envelope | Mapping[str, Any]) -> bytes:
    """The bytes an envelope's signature covers: RFC 8785 JSON of it without ``signature``.

    Sign the `Envelope` you are about to encode (its JSON form is exactly what
    `schemas.registry.encode_envelope` writes), or that very JSON object; verify with the JSON
    object you received.
    """
    if isinstance(envelope, Envelope):
        return _unsigned_wire_data(envelope)[1]
    return canonical_json({key: value for key, value in envelope.items() if key != "signature"})


def _unsigned_wire_data(envelope: Envelope) -> tuple[dict[str, Any], bytes]:
    """`wire_data` without ``signature``, and its RFC 8785 bytes (`signing_input`)."""
    data, plain = _wire_data(envelope)
    del data["signature"]  # a dict of our own: wire_data's is new, the payload is not touched
    return data, _canonical_json(data, plain)


def sign_wire_data(
    envelope: Envelope, sign: Callable[[bytes], str]
) -> tuple[dict[str, Any], str]:
    """The envelope's JSON object carrying ``sign(signing_input(envelope))`` as its signature,
    and that signature: one `wire_data` serves both the signed bytes and the body."""
    data, signed = _unsigned_wire_data(envelope)
    signature = sign(signed)
    data["signature"] = signature
    return data, signature
