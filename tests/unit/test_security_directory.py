"""A directory that can change safely (issue 13 item 7): several keys per agency with ids and
validity, revocation, and the operator's signature checked at load."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from broker.directory import AgencyDirectory, DirectoryError
from broker.directory_trust import (
    install_operator_key,
    open_directory,
    sign_directory,
    signature_path,
)
from broker.signing import (
    generate_private_key,
    public_key_to_raw_b64,
    save_private_key,
    sign_envelope,
    verify_envelope,
)
from schemas.envelope import Envelope
from schemas.errors import ContractError
from tests.unit.test_directory import _agency

OLD, NEW, OTHER = generate_private_key(), generate_private_key(), generate_private_key()
NOW = datetime.now(UTC)


def _envelope(key: Any) -> Envelope:
    envelope = Envelope(
        message_id=uuid.uuid4(),
        case_id=uuid.uuid4(),
        type="contact_letter",
        version=1,
        sender="110000",
        recipient="320100",
        sent_at=NOW,
        payload={"text": "hello"},
    )
    return sign_envelope(envelope, key)


def _directory(keys: list[dict[str, Any]], primary: Any = OLD) -> AgencyDirectory:
    entry = _agency("110000", public_key_to_raw_b64(primary), keys=keys)
    return AgencyDirectory.parse(json.dumps({"agencies": [entry]}))


def _key(key_id: str, key: Any, **validity: Any) -> dict[str, Any]:
    return {"key_id": key_id, "public_key": public_key_to_raw_b64(key), **validity}


def test_an_old_directory_without_keys_verifies_with_public_key_alone() -> None:
    directory = _directory([])
    assert directory.valid_keys("110000") == (directory.public_key("110000"),)


def test_during_a_rotation_both_keys_verify_then_only_the_new_one() -> None:
    rotating = _directory([_key("2027-01", NEW, not_before=(NOW - timedelta(days=1)).isoformat())])
    for key in (OLD, NEW):
        verify_envelope(_envelope(key), rotating.valid_keys("110000"))
    with pytest.raises(ContractError, match=r"bad_signature|does not match"):
        verify_envelope(_envelope(OTHER), rotating.valid_keys("110000"))
    # The old key given an end: after it, only the new key is believed.
    ended = _directory(
        [_key("2026-01", OLD, not_after=(NOW - timedelta(seconds=1)).isoformat()), _key("2027-01", NEW)]
    )
    verify_envelope(_envelope(NEW), ended.valid_keys("110000"))
    with pytest.raises(ContractError):
        verify_envelope(_envelope(OLD), ended.valid_keys("110000"))


def test_a_key_not_yet_valid_and_a_revoked_key_verify_nothing() -> None:
    directory = _directory(
        [
            _key("future", NEW, not_before=(NOW + timedelta(days=1)).isoformat()),
            _key("old", OLD, revoked=True),
        ]
    )
    assert directory.valid_keys("110000") == ()
    for key in (OLD, NEW):
        with pytest.raises(ContractError):
            verify_envelope(_envelope(key), directory.valid_keys("110000"))
    assert directory.valid_keys("110000", NOW + timedelta(days=2)) != ()


@pytest.mark.parametrize(
    "keys, message",
    [
        ([_key("a", NEW), _key("a", OTHER)], "key ids repeat"),
        ([_key("a b", NEW)], "key_id"),
        ([_key("a", NEW, not_before=NOW.isoformat(), not_after=NOW.isoformat())], "not_after"),
        ([_key("a", NEW, not_before="2027-01-01T00:00:00")], "timezone"),
        ([{**_key("a", NEW), "colour": "blue"}], "colour"),
    ],
)
def test_bad_keys_are_refused(keys: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(DirectoryError, match=message):
        _directory(keys)


def test_keys_round_trip_through_save(tmp_path: Path) -> None:
    directory = _directory([_key("2027-01", NEW, not_before="2027-01-01T00:00:00+08:00")])
    directory.save(tmp_path / "d.json")
    again = AgencyDirectory.load(tmp_path / "d.json")
    assert again.get("110000").keys == directory.get("110000").keys


# -- the operator's signature ---------------------------------------------------------------------

OPERATOR = generate_private_key()


def _signed(tmp_path: Path) -> tuple[Path, Path]:
    path = tmp_path / "directory.json"
    _directory([]).save(path)
    sign_directory(path, OPERATOR)
    secrets = tmp_path / "secrets"
    install_operator_key(secrets, OPERATOR)
    return path, secrets


def test_a_signed_directory_loads(tmp_path: Path) -> None:
    path, secrets = _signed(tmp_path)
    assert open_directory(path, secrets, env={}).codes == ("110000",)


def test_a_changed_directory_is_refused_even_when_unsigned_ones_are_allowed(tmp_path: Path) -> None:
    path, secrets = _signed(tmp_path)
    text = path.read_text(encoding="utf-8").replace("0200001234567890123", "0200009999999999999")
    path.write_text(text, encoding="utf-8")  # the bank account diverted
    for allowed in (False, True):
        with pytest.raises(DirectoryError, match="does not verify"):
            open_directory(path, secrets, allow_unsigned=allowed, env={})


def test_another_signer_is_refused(tmp_path: Path) -> None:
    path, secrets = _signed(tmp_path)
    sign_directory(path, generate_private_key())
    with pytest.raises(DirectoryError, match="does not verify"):
        open_directory(path, secrets, env={})


def test_an_unsigned_directory_is_refused_unless_allowed(tmp_path: Path) -> None:
    path, secrets = _signed(tmp_path)
    signature_path(path).unlink()
    with pytest.raises(DirectoryError, match="no signature"):
        open_directory(path, secrets, env={})
    assert open_directory(path, secrets, env={"JIEXU_ALLOW_UNSIGNED_DIRECTORY": "true"}).codes
    with pytest.raises(DirectoryError, match="no operator key"):
        open_directory(path, tmp_path / "elsewhere", env={})


def test_the_operator_key_may_come_from_jiexu_operator_key(tmp_path: Path) -> None:
    path, secrets = _signed(tmp_path)
    key = secrets / "operator.ed25519.pub"
    assert open_directory(path, None, env={"JIEXU_OPERATOR_KEY": str(key)}).codes == ("110000",)


def test_keys_generate_operator_and_sign_directory(tmp_path: Path) -> None:
    from agents.cli.keys_cmd import keys_app

    runner = CliRunner()
    made = runner.invoke(keys_app, ["generate", "--agency", "operator", "--out", str(tmp_path / "op")])
    assert made.exit_code == 0, made.output
    path = tmp_path / "directory.json"
    _directory([]).save(path)
    signed = runner.invoke(
        keys_app, ["sign-directory", str(path), "--key", str(tmp_path / "op/operator.ed25519.pem")]
    )
    assert signed.exit_code == 0, signed.output
    env = {"JIEXU_OPERATOR_KEY": str(tmp_path / "op/operator.ed25519.pub")}
    assert open_directory(path, None, env=env).codes == ("110000",)
    bad = tmp_path / "bad.json"
    bad.write_text("{}", encoding="utf-8")
    refused = runner.invoke(
        keys_app, ["sign-directory", str(bad), "--key", str(tmp_path / "op/operator.ed25519.pem")]
    )
    assert refused.exit_code == 2 and not signature_path(bad).exists()


def test_an_agent_refuses_an_unsigned_directory_at_start(tmp_path: Path) -> None:
    import asyncio

    from agents.service.bootstrap import open_service
    from agents.service.settings import AgentSettings

    settings = AgentSettings(
        agency="110000", data_dir=tmp_path / "data", secrets_dir=tmp_path / "secrets",
        directory=tmp_path / "directory.json",
    )
    _directory([]).save(settings.paths.directory)
    save_private_key(OLD, settings.paths.private_key("110000"))
    install_operator_key(settings.secrets_dir, OPERATOR)
    with pytest.raises(DirectoryError, match="not trusted"):
        asyncio.run(open_service(settings))


def test_certificates_verify_against_every_unrevoked_key() -> None:
    directory = _directory(
        [_key("old", OLD, not_after=(NOW - timedelta(days=1)).isoformat()), _key("new", NEW)],
        primary=NEW,
    )
    raw = [public_key_to_raw_b64(k) for k in directory.unrevoked_keys("110000")]
    assert raw == [public_key_to_raw_b64(NEW), public_key_to_raw_b64(OLD)]  # expired: still there
    revoked = _directory([_key("old", OLD, revoked=True), _key("new", NEW)], primary=NEW)
    assert [public_key_to_raw_b64(k) for k in revoked.unrevoked_keys("110000")] == [
        public_key_to_raw_b64(NEW)
    ]
