"""Every file a jiexu deployment keeps on disk, spelled once.

``data_dir/CODE/store.db`` and ``data_dir/CODE/ledger.db`` per agency (SQLite, unless PostgreSQL is
configured), ``data_dir/000000/reconcile.db`` for the reconciler's report; in ``secrets_dir`` the
broker credentials (``CODE.broker.json``, written by ``jiexu topology apply``) and the Ed25519 keys
(``CODE.ed25519.pem`` private, ``CODE.ed25519.pub`` public, written by ``jiexu keys generate``); the
agency directory is one JSON file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from broker.names import RECONCILER_CODE
from broker.signing import private_key_path, public_key_path
from broker.topology import secret_path

__all__ = [
    "CREDENTIALS_PATTERN",
    "DEFAULT_DATA_DIR",
    "DEFAULT_DIRECTORY",
    "DEFAULT_SECRETS_DIR",
    "LEDGER_FILE",
    "REPORT_FILE",
    "STORE_FILE",
    "Paths",
]

DEFAULT_DATA_DIR = Path(".jiexu/data")
DEFAULT_SECRETS_DIR = Path(".jiexu/secrets")
DEFAULT_DIRECTORY = Path(".jiexu/directory.json")

STORE_FILE = "store.db"
LEDGER_FILE = "ledger.db"
REPORT_FILE = "reconcile.db"
CREDENTIALS_PATTERN = "{code}" + secret_path(Path(), RECONCILER_CODE).name.removeprefix(RECONCILER_CODE)
"""How a credentials file is named, for messages: ``{code}.broker.json`` (`broker.topology` names
the files)."""


@dataclass(frozen=True)
class Paths:
    """Where one deployment's files live (the defaults are relative to the working directory)."""

    data_dir: Path = DEFAULT_DATA_DIR
    secrets_dir: Path = DEFAULT_SECRETS_DIR
    directory: Path = DEFAULT_DIRECTORY

    def agency_dir(self, code: str) -> Path:
        return self.data_dir / code

    def store(self, code: str) -> Path:
        """An agency's SQLite store."""
        return self.agency_dir(code) / STORE_FILE

    def ledger(self, code: str) -> Path:
        """An agency's SQLite ledger (the reference books)."""
        return self.agency_dir(code) / LEDGER_FILE

    def report(self, code: str = RECONCILER_CODE) -> Path:
        """The reconciler's SQLite report store."""
        return self.agency_dir(code) / REPORT_FILE

    def credentials(self, code: str) -> Path:
        """An agency's broker credentials (user, password, vhost, URL)."""
        return secret_path(self.secrets_dir, code)

    def private_key(self, code: str) -> Path:
        return private_key_path(self.secrets_dir, code)

    def public_key(self, code: str) -> Path:
        return public_key_path(self.secrets_dir, code)

    def agency_codes(self) -> list[str]:
        """Agencies with a data directory here (six-digit names), sorted."""
        if not self.data_dir.is_dir():
            return []
        return sorted(p.name for p in self.data_dir.iterdir() if p.is_dir() and p.name.isdigit())
