"""The agency directory: loading the file, decoding keys, lookups.

The file's format is part of the published contract: its models are `schemas.directory`
(``schemas/json/directory.schema.json``), re-exported here so ``from broker.directory import
AgencyEntry`` keeps working.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from pydantic import ValidationError

from broker.signing import Ed25519PublicKey, load_public_key
from schemas.directory import AgencyEntry, DirectoryBankAccount, DirectoryFile, DirectoryKey
from schemas.errors import JiexuError

__all__ = [
    "AgencyDirectory",
    "AgencyEntry",
    "DirectoryBankAccount",
    "DirectoryError",
    "DirectoryKey",
    "UnknownAgency",
]

_DirectoryFile = DirectoryFile


class DirectoryError(JiexuError):
    """The directory file is missing, not JSON, or does not match the model."""


class UnknownAgency(JiexuError, KeyError):
    """The directory lists no agency with this code."""

    def __str__(self) -> str:
        return f"agency {self.args[0]!r} is not in the agency directory"


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
        # Defaults left out: a directory without keys is written as older readers expect it.
        return body.model_dump_json(indent=2, exclude_defaults=True) + "\n"

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
        if code not in self._keys:
            self._keys[code] = self.get(code).key()
        return self._keys[code]

    def valid_keys(self, code: str, when: datetime | None = None) -> tuple[Ed25519PublicKey, ...]:
        """Every key of the agency valid at ``when`` (now): what an envelope's signature is verified
        against (`schemas.directory.AgencyEntry.valid_public_keys`). Empty when all are expired
        or revoked: nothing it signs is believed."""
        return tuple(self._decoded(k) for k in self.get(code).valid_public_keys(when))

    def unrevoked_keys(self, code: str) -> tuple[Ed25519PublicKey, ...]:
        """Every key of the agency not revoked, whatever its validity: what a certificate is
        verified against (a rotation does not void earlier certificates, a revocation does)."""
        return tuple(self._decoded(k) for k in self.get(code).unrevoked_public_keys())

    def _decoded(self, b64: str) -> Ed25519PublicKey:
        if b64 not in self._keys:  # (codes are 6 digits, keys 44 characters: no clash)
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
