"""The agencies' broker users: their permissions, passwords and secrets files.

Each agency connects as its own broker user (``{prefix}agency-{code}``, `broker.names.agency_user`),
never as guest. `agency_permissions` is what that user may do on the vhost (publish to the exchange
and its own two exchanges, read its own queues, declare nothing); `broker.topology` provisions the
users with these permissions. Their logins live in a secrets directory, one owner-only
``{code}.broker.json`` per agency (`write_credentials`, `load_agency_secret`, `load_credentials`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from broker.files import private_dir
from broker.names import EXCHANGE, agency_dlx, agency_retry_exchange

__all__ = [
    "AgencyCredential",
    "AgencyCredentials",
    "Permissions",
    "agency_permissions",
    "generate_password",
    "load_agency_secret",
    "load_credentials",
    "rabbit_password_hash",
    "secret_path",
    "verify_rabbit_password_hash",
    "write_credentials",
]

_CODE_RE = re.compile(r"^[0-9]{6}$")


def _check_code(code: str) -> str:
    if not _CODE_RE.fullmatch(code):
        raise ValueError(f"agency code must be 6 digits, got {code!r}")
    return code


# -- users and permissions ------------------------------------------------------------------


@dataclass(frozen=True)
class Permissions:
    """A user's permission regexes on one vhost (RabbitMQ matches them unanchored: anchor them)."""

    configure: str
    write: str
    read: str


def agency_permissions(code: str) -> Permissions:
    """An agency may publish to EXCHANGE and its own two exchanges, read only its own queues;
    declare nothing.

    ``write`` covers EXCHANGE (send), ``agency_dlx(code)`` (dead-letter with a reason) and
    ``agency_retry_exchange(code)`` (retry after a delay, replay): never the broker's shared DLX and
    RETRY_EXCHANGE, nor another agency's, so no agency can write into another's dead-letter or retry
    queues; the default exchange is not writable either, so no agency can address another's queue
    directly. ``read`` names this code exactly, so 110000 never reads 1100001 or 110000x.
    """
    _check_code(code)
    own = (EXCHANGE, agency_dlx(code), agency_retry_exchange(code))
    write = "^(" + "|".join(re.escape(x) for x in own) + ")$"
    read = r"^jiexu\.(inbox|dlq|retry)\." + re.escape(code) + r"(\..*)?$"
    return Permissions(configure="^$", write=write, read=read)


@dataclass(frozen=True)
class AgencyCredential:
    """The broker login of one agency (its agent connects with it, never as guest)."""

    code: str
    username: str
    password: str = field(repr=False)


AgencyCredentials = dict[str, AgencyCredential]
"""Agency code -> its broker login."""


def generate_password() -> str:
    return secrets.token_urlsafe(24)


def rabbit_password_hash(password: str, salt: bytes | None = None) -> str:
    """RabbitMQ's ``rabbit_password_hashing_sha256``: base64(salt4 + sha256(salt4 + password))."""
    salt = secrets.token_bytes(4) if salt is None else salt
    if len(salt) != 4:
        raise ValueError("RabbitMQ password salts are 4 bytes")
    digest = hashlib.sha256(salt + password.encode("utf-8")).digest()
    return base64.b64encode(salt + digest).decode("ascii")


def verify_rabbit_password_hash(password: str, password_hash: str) -> bool:
    raw = base64.b64decode(password_hash)
    return secrets.compare_digest(rabbit_password_hash(password, raw[:4]), password_hash)


# -- the secrets directory ------------------------------------------------------------------


def secret_path(directory: Path, code: str) -> Path:
    return directory / f"{_check_code(code)}.broker.json"


def write_credentials(
    directory: Path,
    credentials: Mapping[str, AgencyCredential],
    vhost: str,
    amqp_urls: Mapping[str, str] | None = None,
) -> list[Path]:
    """Write one ``{code}.broker.json`` per agency, readable by its owner only (0600)."""
    private_dir(directory)
    written: list[Path] = []
    for code, cred in sorted(credentials.items()):
        body: dict[str, str] = {
            "agency": code,
            "username": cred.username,
            "password": cred.password,
            "vhost": vhost,
        }
        if amqp_urls and code in amqp_urls:
            body["amqp_url"] = amqp_urls[code]
        path = secret_path(directory, code)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o600)
            json.dump(body, handle, ensure_ascii=False, indent=2)
            handle.write("\n")
        written.append(path)
    return written


def load_agency_secret(path: Path) -> dict[str, str]:
    """One secrets file as written by `write_credentials` (keys: agency, username, password, vhost,
    and amqp_url when known)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read broker secret {path}: {exc}") from exc
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), str) for k in ("agency", "username", "password")
    ):
        raise ValueError(f"{path}: expected an object with agency, username and password")
    return {str(k): str(v) for k, v in data.items()}


def load_credentials(directory: Path, codes: Iterable[str] | None = None) -> AgencyCredentials:
    """The credentials already in ``directory`` (only ``codes`` when given; missing files skipped)."""
    result: AgencyCredentials = {}
    paths = (
        [secret_path(directory, c) for c in codes]
        if codes is not None
        else sorted(directory.glob("*.broker.json"))
    )
    for path in paths:
        if not path.exists():
            continue
        data = load_agency_secret(path)
        result[data["agency"]] = AgencyCredential(data["agency"], data["username"], data["password"])
    return result
