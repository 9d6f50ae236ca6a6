"""The agency directory file: who the agencies are, what they speak, their keys and bank accounts.

Part of the published contract (``schemas/json/directory.schema.json``). One JSON file, shared by
every agency (it holds no secrets)::

    {
      "agencies": [
        {
          "code": "110000",
          "name": "北京市医疗保障事务中心",
          "supported_versions": {"information_form": [1, 2], "fund_transfer": [1]},
          "public_key": "<base64 of the raw 32-byte Ed25519 public key>",
          "bank_account": {"bank_name": "...", "bank_code": "...",
                           "account_name": "...", "account_number": "..."},
          "address": "...", "phone": "..."
        }
      ]
    }

``keys`` (optional, issue 13 item 7) lists further keys of an agency, each with an id, a validity
(``not_before``/``not_after``, either open) and ``revoked``: an envelope verifies if *any* key of
the sender valid now made its signature (the envelope carries no key id: unchanged), so a key is
rotated without downtime and revoked. ``public_key`` stays the agency's key for readers that know
nothing of ``keys``; it is valid unless ``keys`` lists the same key, whose validity and revocation
then govern it. The file is believed only with the operator's signature beside it
(``directory.json.sig``, `broker.directory_trust`)::

    "keys": [
      {"key_id": "2027-01", "public_key": "<base64>", "not_before": "2027-01-01T00:00:00Z"},
      {"key_id": "2026-01", "public_key": "<the old one>", "not_after": "2027-02-01T00:00:00Z"}
    ]

These are the file-format models only; loading, key decoding and lookups are
`broker.directory.AgencyDirectory`'s.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Annotated

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from schemas.common import AgencyCode

__all__ = [
    "PUBLIC_KEY_PATTERN",
    "AgencyEntry",
    "DirectoryBankAccount",
    "DirectoryFile",
    "DirectoryKey",
    "decode_public_key",
]

PUBLIC_KEY_PATTERN = r"^[A-Za-z0-9+/]{43}=$"
"""Standard, padded base64 of 32 bytes: 43 characters and one ``=``."""

_KEY_DESCRIPTION = (
    "The agency's Ed25519 public key (RFC 8032): the standard base64 alphabet, padded, of the "
    "raw 32-byte public key (not PEM, not DER, not hex): 44 characters ending in '='. Signatures "
    "of every envelope this agency sends verify against it. `jiexu keys generate` writes this form "
    "in CODE.ed25519.pub. Surrounding whitespace is ignored."
)

_NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
_MessageType = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z_]*$", max_length=64)]


def decode_public_key(text: str) -> Ed25519PublicKey:
    """The key a directory entry's ``public_key`` names; ValueError if it is not one."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"public key is not base64: {exc}") from exc
    if len(raw) != 32:
        raise ValueError(f"public key must be 32 raw bytes in base64, got {len(raw)} bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


class DirectoryBankAccount(BaseModel):
    """An agency's bank account as the directory file lists it (checked more loosely than the
    contract's `schemas.common.BankAccount`, which a message carries)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bank_name: _NonEmpty
    bank_code: _NonEmpty
    account_name: _NonEmpty
    account_number: Annotated[str, StringConstraints(pattern=r"^[0-9]{6,34}$")]


class DirectoryKey(BaseModel):
    """One more signing key of an agency: an id, the key, when it is valid, whether revoked."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{1,64}$")] = Field(
        description="The key's name within the agency (e.g. 2027-01), unique per agency."
    )
    public_key: str = Field(
        json_schema_extra={"pattern": r"^\s*[A-Za-z0-9+/]{43}=\s*$"},
        description="base64 of the raw 32-byte Ed25519 public key, as `public_key` above.",
    )
    not_before: AwareDatetime | None = Field(None, description="valid from (RFC 3339, with offset)")
    not_after: AwareDatetime | None = Field(None, description="valid until, exclusive")
    revoked: bool = Field(False, description="never valid: a compromised key")

    @field_validator("public_key")
    @classmethod
    def _key_loads(cls, value: str) -> str:
        decode_public_key(value)
        return value.strip()

    @model_validator(mode="after")
    def _window(self) -> DirectoryKey:
        if self.not_before and self.not_after and self.not_after <= self.not_before:
            raise ValueError(f"key {self.key_id}: not_after must be after not_before")
        return self

    def valid_at(self, when: datetime) -> bool:
        if self.revoked:
            return False
        if self.not_before is not None and when < self.not_before:
            return False
        return self.not_after is None or when < self.not_after


class AgencyEntry(BaseModel):
    """One agency: its code, name, the versions it accepts, its signing key, its bank account."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: AgencyCode
    name: _NonEmpty
    supported_versions: Annotated[
        dict[_MessageType, tuple[Annotated[int, Field(ge=1)], ...]],
        WithJsonSchema(
            {
                "type": "object",
                "propertyNames": {"pattern": "^[a-z][a-z_]*$", "maxLength": 64},
                "additionalProperties": {
                    "type": "array",
                    "items": {"type": "integer", "minimum": 1},
                    "minItems": 1,
                    "uniqueItems": True,
                },
            }
        ),
    ] = Field(
        description="Message type -> the versions of it this agency accepts (each at least once, "
        "none repeated, any order). A sender sends the newest version both it and the recipient "
        "declare; a type the agency does not list is treated as version 1 only."
    )
    public_key: str = Field(
        json_schema_extra={"pattern": r"^\s*[A-Za-z0-9+/]{43}=\s*$"},
        description=_KEY_DESCRIPTION,
    )
    bank_account: DirectoryBankAccount
    address: str | None = None
    phone: str | None = None
    keys: tuple[DirectoryKey, ...] = Field(
        (),
        description="Optional: further keys with ids and validity, for rotation and revocation. A "
        "signature is good if any key valid now made it; `public_key` counts unless listed here.",
    )

    @field_validator("keys")
    @classmethod
    def _key_ids_unique(cls, value: tuple[DirectoryKey, ...]) -> tuple[DirectoryKey, ...]:
        ids = [k.key_id for k in value]
        if len(set(ids)) != len(ids):
            raise ValueError(f"key ids repeat: {ids}")
        return value

    def valid_public_keys(self, when: datetime | None = None) -> tuple[str, ...]:
        """The base64 keys that verify this agency's envelopes at ``when`` (now): ``public_key``
        unless ``keys`` governs it, and every key of ``keys`` valid then."""
        when = when or datetime.now(UTC)
        listed = {k.public_key for k in self.keys}
        valid = [] if self.public_key in listed else [self.public_key]
        valid += [k.public_key for k in self.keys if k.valid_at(when)]
        return tuple(dict.fromkeys(valid))

    def unrevoked_public_keys(self) -> tuple[str, ...]:
        """Every key not revoked, whatever its validity: for long-lived documents (certificates)."""
        revoked = {k.public_key for k in self.keys if k.revoked}
        every = [self.public_key, *(k.public_key for k in self.keys)]
        return tuple(dict.fromkeys(k for k in every if k not in revoked))

    @field_validator("supported_versions")
    @classmethod
    def _versions_sorted_unique(
        cls, value: dict[str, tuple[int, ...]]
    ) -> dict[str, tuple[int, ...]]:
        for message_type, versions in value.items():
            if not versions:
                raise ValueError(f"{message_type}: at least one version")
            if len(set(versions)) != len(versions):
                raise ValueError(f"{message_type}: versions repeat: {list(versions)}")
        return {t: tuple(sorted(v)) for t, v in value.items()}

    @field_validator("public_key")
    @classmethod
    def _key_loads(cls, value: str) -> str:
        decode_public_key(value)  # ValueError -> a validation error naming the field
        return value.strip()

    def key(self) -> Ed25519PublicKey:
        return decode_public_key(self.public_key)


class DirectoryFile(BaseModel):
    """The agency directory file: every agency on the exchange, each code once."""

    model_config = ConfigDict(extra="forbid", title="AgencyDirectory")

    agencies: list[AgencyEntry]

    @field_validator("agencies")
    @classmethod
    def _codes_unique(cls, value: list[AgencyEntry]) -> list[AgencyEntry]:
        seen: set[str] = set()
        for entry in value:
            if entry.code in seen:
                raise ValueError(f"agency {entry.code} is listed twice")
            seen.add(entry.code)
        return value
