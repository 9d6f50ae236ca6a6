"""The agency directory signed by the exchange's operator, and verified by every process at load.

The directory is the trust root (public keys, bank accounts: money follows it), so a process
believes a directory file only with a detached signature beside it, ``directory.json.sig``::

    {"algorithm": "Ed25519", "key_id": "<first 16 hex of SHA-256 of the operator's raw key>",
     "signature": "<base64 of Ed25519 over the exact bytes of directory.json>"}

made with the operator's private key (``jiexu keys sign-directory``), and checked against the operator's
public key, which each agency installs out of band: ``JIEXU_OPERATOR_KEY`` (a file holding the
base64 raw key, as ``jiexu keys generate --agency operator`` writes it), by default
``SECRETS_DIR/operator.ed25519.pub``. The bytes verified are the bytes parsed (read once).

An unsigned directory, or one without an operator key to check it, is refused unless
``JIEXU_ALLOW_UNSIGNED_DIRECTORY=true`` (tests and demos of one's own; the demo and the test
worlds sign theirs). A signature that does not verify is refused whatever that setting says.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import structlog

from broker.directory import AgencyDirectory, DirectoryError
from broker.files import private_dir
from broker.signing import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
    ed25519_sign,
    ed25519_verify,
    load_public_key,
    public_key_to_raw_b64,
)

__all__ = [
    "OPERATOR",
    "TrustedDirectory",
    "install_operator_key",
    "key_fingerprint",
    "load_directory",
    "open_directory",
    "operator_key_path",
    "sign_directory",
    "signature_path",
    "verify_directory_bytes",
]

log = structlog.get_logger("jiexu.broker.directory")

OPERATOR = "operator"
"""The name of the operator's key files: ``operator.ed25519.pem`` / ``operator.ed25519.pub``."""
_TRUE = {"1", "true", "yes", "on"}


def signature_path(directory: Path) -> Path:
    """``directory.json`` -> ``directory.json.sig``."""
    return directory.with_name(directory.name + ".sig")


def operator_key_path(secrets_dir: Path) -> Path:
    """Where an agency keeps the operator's public key by default."""
    return secrets_dir / f"{OPERATOR}.ed25519.pub"


def key_fingerprint(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    raw = base64.b64decode(public_key_to_raw_b64(key))
    return hashlib.sha256(raw).hexdigest()[:16]


def sign_directory(directory: Path, operator: Ed25519PrivateKey) -> Path:
    """Sign the file as it is on disk; write (replace) its ``.sig`` beside it."""
    data = directory.read_bytes()
    body = {
        "algorithm": "Ed25519",
        "key_id": key_fingerprint(operator),
        "signature": base64.b64encode(ed25519_sign(operator, data)).decode("ascii"),
    }
    path = signature_path(directory)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(body) + "\n", encoding="ascii")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return path


def verify_directory_bytes(data: bytes, signature_text: str, operator: Ed25519PublicKey, source: str) -> None:
    """`DirectoryError` unless ``signature_text`` (a ``.sig`` file's content) is the operator's
    signature of ``data``."""
    try:
        body = json.loads(signature_text)
        if body.get("algorithm") != "Ed25519":
            raise ValueError(f"algorithm {body.get('algorithm')!r} is not Ed25519")
        signature = base64.b64decode(str(body["signature"]), validate=True)
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
        raise DirectoryError(f"{source}: the signature file is not readable: {exc}") from exc
    if len(signature) != 64 or not ed25519_verify(operator, signature, data):
        raise DirectoryError(
            f"{source}: the operator's signature does not verify (the file was changed after it "
            f"was signed, or signed by another key than {key_fingerprint(operator)})"
        )


def _allow_unsigned(env: Mapping[str, str]) -> bool:
    return env.get("JIEXU_ALLOW_UNSIGNED_DIRECTORY", "").strip().lower() in _TRUE


@dataclass(frozen=True)
class TrustedDirectory:
    """A directory as `load_directory` believed it: the lookups, the SHA-256 of the exact bytes
    parsed (its version: ``digest[:16]`` in logs), and whether the operator's signature was
    verified (False only where unsigned directories are allowed)."""

    directory: AgencyDirectory
    digest: str
    verified: bool
    key_id: str | None = None

    @property
    def version(self) -> str:
        return self.digest[:16]


def open_directory(
    path: Path,
    secrets_dir: Path | None = None,
    *,
    operator_key: Path | None = None,
    allow_unsigned: bool | None = None,
    env: Mapping[str, str] | None = None,
) -> AgencyDirectory:
    """The directory at ``path``, verified against the operator's key; `DirectoryError` if not.

    The key: ``operator_key``, else ``JIEXU_OPERATOR_KEY``, else ``operator.ed25519.pub`` in
    ``secrets_dir``. ``allow_unsigned`` defaults to ``JIEXU_ALLOW_UNSIGNED_DIRECTORY``.
    """
    return load_directory(
        path, secrets_dir, operator_key=operator_key, allow_unsigned=allow_unsigned, env=env
    ).directory


def load_directory(
    path: Path,
    secrets_dir: Path | None = None,
    *,
    operator_key: Path | None = None,
    allow_unsigned: bool | None = None,
    env: Mapping[str, str] | None = None,
) -> TrustedDirectory:
    """`open_directory`, saying what was loaded: its digest and whether its signature verified."""
    env = os.environ if env is None else env
    path = Path(path)
    allowed = _allow_unsigned(env) if allow_unsigned is None else allow_unsigned
    if operator_key is None and env.get("JIEXU_OPERATOR_KEY"):
        operator_key = Path(env["JIEXU_OPERATOR_KEY"])
    if operator_key is None and secrets_dir is not None:
        operator_key = operator_key_path(Path(secrets_dir))
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DirectoryError(f"cannot read agency directory {path}: {exc}") from exc
    sig_path = signature_path(path)
    key: Ed25519PublicKey | None = None
    if operator_key is not None and operator_key.exists():
        try:
            key = load_public_key(operator_key.read_text(encoding="ascii"))
        except (OSError, ValueError) as exc:
            raise DirectoryError(f"operator key {operator_key}: {exc}") from exc
    verified = False
    if key is not None and sig_path.exists():
        try:
            signature_text = sig_path.read_text(encoding="ascii")
        except (OSError, ValueError) as exc:
            raise DirectoryError(f"{path}: cannot read {sig_path.name}: {exc}") from exc
        verify_directory_bytes(data, signature_text, key, str(path))
        verified = True
    elif not allowed:
        missing = (
            f"no signature {sig_path.name} beside it"
            if key is not None
            else f"no operator key to check it ({operator_key or 'JIEXU_OPERATOR_KEY unset'})"
        )
        raise DirectoryError(
            f"agency directory {path} is not trusted: {missing}. Sign it with `jiexu keys "
            "sign-directory` and install the operator's public key (JIEXU_OPERATOR_KEY), or set "
            "JIEXU_ALLOW_UNSIGNED_DIRECTORY=true for a test"
        )
    elif sig_path.exists() and key is None:
        log.warning("directory_signature_unchecked", directory=str(path), operator_key=str(operator_key))
    else:
        log.warning("directory_unsigned_allowed", directory=str(path))
    return TrustedDirectory(
        AgencyDirectory.parse(data, source=str(path)),
        hashlib.sha256(data).hexdigest(),
        verified,
        key_fingerprint(key) if verified and key is not None else None,
    )


def install_operator_key(secrets_dir: Path, operator: Ed25519PrivateKey | Ed25519PublicKey) -> Path:
    """Write the operator's public key where `open_directory` looks by default (a 0700 dir)."""
    private_dir(secrets_dir)
    path = operator_key_path(secrets_dir)
    public = operator.public_key() if isinstance(operator, Ed25519PrivateKey) else operator
    path.write_text(public_key_to_raw_b64(public) + "\n", encoding="ascii")
    return path
