"""The agency directory: who the agencies are, what they speak, their keys and bank accounts.

A JSON file, shared by every agency (it holds no secrets)::

    {
      "agencies": [
        {
          "code": "110000",
          "name": "北京市医疗保障事务中心",
          "supported_versions": {"information_form": [1, 2], "fund_transfer": [1]},
          "public_key": "<base64 of the raw 32-byte Ed25519 public key>",
          "bank_account": {"bank_name": "...", "bank_code": "...",
                           "account_name": "...", "account_number": "..."},
          "address": "...", "phone": "...",
          "keys": [
            {"key_id": "2027-01", "public_key": "<base64>", "not_before": "2027-01-01T00:00:00Z"},
            {"key_id": "2026-01", "public_key": "<the old one>", "not_after": "2027-02-01T00:00:00Z"}
          ]
        }
      ]
    }

``keys`` (optional, issue 13 item 7) lists further keys of the agency with an id and a validity
(``not_before``/``not_after``, either open) or ``revoked``: a message verifies if *any* key of the
sender valid now made its signature, so a key is rotated without downtime (the new key is listed
before the agency signs with it, the old one kept until what it signed has been consumed) and
revoked by ``revoked: true``. ``public_key`` stays the agency's key for readers that know nothing of
``keys``; it is valid unless ``keys`` lists the same key, whose validity and revocation then
govern it. The envelope is unchanged (no key id on the wire). The file is trusted only with the
operator's signature beside it (`broker.directory_trust`).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from broker.signing import Ed25519PublicKey, load_public_key
from schemas.envelope import AgencyCodeStr
from schemas.errors import JiexuError

__all__ = [
    "AgencyDirectory",
    "AgencyEntry",
    "DirectoryBankAccount",
    "DirectoryError",
    "DirectoryKey",
    "UnknownAgency",
]

_NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
_MessageType = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z_]*$", max_length=64)]


class DirectoryError(JiexuError):
    """The directory file is missing, not JSON, or does not match the model."""


class UnknownAgency(JiexuError, KeyError):
    """The directory lists no agency with this code."""

    def __str__(self) -> str:
        return f"agency {self.args[0]!r} is not in the agency directory"


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

    key_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{1,64}$")]
    public_key: str = Field(description="base64 of the raw 32-byte Ed25519 public key")
    not_before: AwareDatetime | None = None
    not_after: AwareDatetime | None = None
    revoked: bool = False

    @field_validator("public_key")
    @classmethod
    def _key_loads(cls, value: str) -> str:
        load_public_key(value)
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
    model_config = ConfigDict(frozen=True, extra="forbid")

    code: AgencyCodeStr
    name: _NonEmpty
    supported_versions: dict[_MessageType, tuple[Annotated[int, Field(ge=1)], ...]]
    public_key: str = Field(description="base64 of the raw 32-byte Ed25519 public key")
    bank_account: DirectoryBankAccount
    address: str | None = None
    phone: str | None = None
    keys: tuple[DirectoryKey, ...] = Field(
        (), description="further keys with ids and validity (rotation, revocation); optional"
    )

    @field_validator("keys")
    @classmethod
    def _key_ids_unique(cls, value: tuple[DirectoryKey, ...]) -> tuple[DirectoryKey, ...]:
        ids = [k.key_id for k in value]
        if len(set(ids)) != len(ids):
            raise ValueError(f"key ids repeat: {ids}")
        return value

    def valid_public_keys(self, when: datetime | None = None) -> tuple[str, ...]:
        """The base64 keys that verify this agency's signatures at ``when`` (now): ``public_key``
        unless ``keys`` governs it, and every key of ``keys`` valid then (`unrevoked_public_keys`
        for documents that outlive a key's validity)."""
        when = when or datetime.now(UTC)
        listed = {k.public_key for k in self.keys}
        valid = [] if self.public_key in listed else [self.public_key]
        valid += [k.public_key for k in self.keys if k.valid_at(when)]
        return tuple(dict.fromkeys(valid))

    def unrevoked_public_keys(self) -> tuple[str, ...]:
        """Every key of the agency not revoked, whatever its validity: what a long-lived document
        (a participation certificate) is verified against, so a rotation does not void the
        certificates signed before it, and a revocation (a compromised key) does."""
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
        load_public_key(value)  # ValueError -> a validation error naming the field
        return value.strip()

    def key(self) -> Ed25519PublicKey:
        return load_public_key(self.public_key)


class _DirectoryFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

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


class AgencyDirectory:
    """Lookups over the directory; immutable once loaded."""

    def __init__(self, agencies: list[AgencyEntry] | tuple[AgencyEntry, ...]) -> None:
        checked = _DirectoryFile(agencies=list(agencies))
        self._by_code: dict[str, AgencyEntry] = {a.code: a for a in checked.agencies}
        self._keys: dict[str, Ed25519PublicKey] = {}

    @classmethod
    def load(cls, path: Path | str) -> AgencyDirectory:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise DirectoryError(f"cannot read agency directory {path}: {exc}") from exc
        return cls.parse(text, source=str(path))

    @classmethod
    def parse(cls, text: str | bytes, source: str = "<directory>") -> AgencyDirectory:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise DirectoryError(f"{source} is not valid JSON: {exc}") from exc
        try:
            parsed = _DirectoryFile.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
                for err in exc.errors()
            )
            raise DirectoryError(f"{source} is not a valid agency directory: {problems}") from exc
        return cls(parsed.agencies)

    def to_json(self) -> str:
        body = _DirectoryFile(agencies=list(self._by_code.values()))
        return body.model_dump_json(indent=2, exclude_none=True) + "\n"

    def save(self, path: Path | str) -> None:
        """Write atomically (a reader never sees half a directory)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(self.to_json())
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    # -- lookups --------------------------------------------------------------------------
    def __contains__(self, code: object) -> bool:
        return code in self._by_code

    def __iter__(self) -> Iterator[AgencyEntry]:
        return iter(self._by_code.values())

    def __len__(self) -> int:
        return len(self._by_code)

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(sorted(self._by_code))

    def get(self, code: str) -> AgencyEntry:
        try:
            return self._by_code[code]
        except KeyError:
            raise UnknownAgency(code) from None

    def public_key(self, code: str) -> Ed25519PublicKey:
        """The agency's ``public_key`` (its main key, whatever ``keys`` says of it)."""
        if code not in self._keys:
            self._keys[code] = self.get(code).key()
        return self._keys[code]

    def valid_keys(self, code: str, when: datetime | None = None) -> tuple[Ed25519PublicKey, ...]:
        """Every key of the agency valid at ``when`` (now): what a signature is verified against.
        Empty when all are expired or revoked (nothing it signs is believed)."""
        return tuple(self._decoded(k) for k in self.get(code).valid_public_keys(when))

    def unrevoked_keys(self, code: str) -> tuple[Ed25519PublicKey, ...]:
        """`AgencyEntry.unrevoked_public_keys`, decoded (certificates are checked against these)."""
        return tuple(self._decoded(k) for k in self.get(code).unrevoked_public_keys())

    def _decoded(self, b64: str) -> Ed25519PublicKey:
        if b64 not in self._keys:
            self._keys[b64] = load_public_key(b64)
        return self._keys[b64]

    def supported_versions(self, code: str, message_type: str) -> tuple[int, ...]:
        """Versions of ``message_type`` the agency accepts, ascending; () when it declares none."""
        return self.get(code).supported_versions.get(message_type, ())

    def best_version(self, code: str, message_type: str, known: tuple[int, ...]) -> int | None:
        """The newest version both we (``known``) and the agency speak, or None if none is common."""
        common = set(self.supported_versions(code, message_type)) & set(known)
        return max(common) if common else None

    def with_agency(self, entry: AgencyEntry) -> AgencyDirectory:
        """A copy with ``entry`` added or replacing the one with its code."""
        return AgencyDirectory([*(a for a in self if a.code != entry.code), entry])
