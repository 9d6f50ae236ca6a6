"""Files with personal data or secrets are 0600 in 0700 directories (issue 13, finding "files"):
stores, ledgers, the reconciliation report (SQLite, with their -wal and -shm), keys made by
``jiexu keys generate`` and the broker credentials, whatever the umask (022 here, the usual one)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest
from typer.testing import CliRunner

from agents.cli import app
from agents.ledger.sqlite import SqliteLedger
from agents.reconcile.report import ReconciliationReport
from agents.store.sqlite import SqliteStore
from broker.topology import AgencyCredential, write_credentials


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def _usual_umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


async def test_store_ledger_and_report_are_owner_only_with_their_wal_and_shm(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = await SqliteStore.open(data / "360400" / "store.db")
    ledger = await SqliteLedger.open(data / "360400" / "ledger.db", "360400")
    report = await ReconciliationReport.open(data / "reconciler" / "report.db")
    try:
        async with store.transaction() as tx:
            await tx.record_inbox("agent", uuid4(), sender="441900")
        for directory in (data, data / "360400", data / "reconciler"):
            assert mode(directory) == 0o700, directory
        files = [p for p in data.rglob("*") if p.is_file()]
        assert {p.name for p in files} >= {"store.db", "store.db-wal", "store.db-shm", "ledger.db"}
        for path in files:
            assert mode(path) == 0o600, path
    finally:
        await store.close()
        await ledger.close()
        await report.close()


async def test_an_existing_world_readable_store_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = await SqliteStore.open(path)
    await store.close()
    os.chmod(path, 0o644)  # as versions before this one left it
    store = await SqliteStore.open(path)
    try:
        assert mode(path) == 0o600
    finally:
        await store.close()


def test_keys_generate_makes_an_owner_only_secrets_directory(tmp_path: Path) -> None:
    secrets = tmp_path / "jiexu" / "secrets"
    result = CliRunner().invoke(app, ["keys", "generate", "--agency", "360400", "--out", str(secrets)])
    assert result.exit_code == 0, result.output
    assert mode(secrets) == 0o700 and mode(secrets.parent) == 0o700
    assert mode(secrets / "360400.ed25519.pem") == 0o600


def test_broker_credentials_are_owner_only(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    (written,) = write_credentials(
        secrets, {"360400": AgencyCredential(code="360400", username="agency-360400", password="x" * 32)}, "/"
    )
    assert mode(secrets) == 0o700 and mode(written) == 0o600
