"""`jiexu topology apply` on a broker shared by deployments: a password it did not set is never
changed unless --rotate; it says which users it created, kept or rotated."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from typer.testing import CliRunner

from agents.cli import app
from broker.pytest_plugin import TestVhost
from broker.topology import TopologySpec, delete_agency_users, load_credentials
from tests.integration.test_topology import _undo_cli_logging

pytestmark = pytest.mark.integration

CODES = ("110000", "440300")
ALL = (*CODES, "000000")


def _apply(vhost: TestVhost, prefix: str, secrets: Path, *extra: str) -> dict[str, Any]:
    args = ["topology", "apply", "--vhost", vhost.name, "--user-prefix", prefix,
            "--secrets-dir", str(secrets), "--retry-delays", "100", "--json"]
    for code in CODES:
        args += ["--agency", code]
    result = CliRunner().invoke(app, [*args, *extra])
    assert result.exit_code == 0, result.output
    outcome: dict[str, Any] = json.loads(result.stdout)
    return outcome


async def _works(vhost: TestVhost, username: str, password: str) -> bool:
    try:
        connection = await aio_pika.connect(vhost.url_for(username, password), timeout=10)
    except Exception:
        return False
    await connection.close()
    return True


async def _all_work(vhost: TestVhost, secrets: Path) -> bool:
    credentials = load_credentials(secrets, ALL)
    assert set(credentials) == set(ALL)
    results = [await _works(vhost, c.username, c.password) for c in credentials.values()]
    return all(results)


async def test_a_second_deployment_never_changes_the_first_ones_passwords(
    rabbitmq_vhost: TestVhost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JIEXU_AMQP_URL", rabbitmq_vhost.amqp_url)
    monkeypatch.setenv("JIEXU_MANAGEMENT_URL", rabbitmq_vhost.endpoint.management_url)
    first, second = f"t{uuid.uuid4().hex[:8]}-", f"t{uuid.uuid4().hex[:8]}-"
    users = lambda prefix: sorted(f"{prefix}agency-{c}" for c in ALL)  # noqa: E731
    try:
        one = _apply(rabbitmq_vhost, first, tmp_path / "one")
        assert one["created"] == users(first) and one["kept"] == [] and one["rotated"] == []
        assert await _all_work(rabbitmq_vhost, tmp_path / "one")

        # Another deployment with its own prefix: its own users; the first's still work.
        two = _apply(rabbitmq_vhost, second, tmp_path / "two")
        assert two["created"] == users(second)
        assert await _all_work(rabbitmq_vhost, tmp_path / "one")
        assert await _all_work(rabbitmq_vhost, tmp_path / "two")

        # Another deployment that names its users as the first does (no prefix of its own, or the
        # same one) and holds none of their passwords: every user kept, nothing written for them.
        three = _apply(rabbitmq_vhost, first, tmp_path / "three")
        assert three["kept"] == users(first) and three["created"] == three["rotated"] == []
        assert three["kept_password_unknown"] == users(first) and three["new_passwords"] == []
        assert not list((tmp_path / "three").glob("*.broker.json"))
        assert await _all_work(rabbitmq_vhost, tmp_path / "one")

        # The first deployment again: kept, with its own credentials written back unchanged.
        before = load_credentials(tmp_path / "one", ALL)
        again = _apply(rabbitmq_vhost, first, tmp_path / "one")
        assert again["kept"] == users(first) and again["kept_password_unknown"] == []
        assert load_credentials(tmp_path / "one", ALL) == before
        assert await _all_work(rabbitmq_vhost, tmp_path / "one")

        # Asked to: new passwords, the old ones no longer open a connection.
        rotated = _apply(rabbitmq_vhost, first, tmp_path / "one", "--rotate")
        assert rotated["rotated"] == users(first) and rotated["new_passwords"] == sorted(ALL)
        assert await _all_work(rabbitmq_vhost, tmp_path / "one")
        old = before["110000"]
        assert not await _works(rabbitmq_vhost, old.username, old.password)
        assert await _all_work(rabbitmq_vhost, tmp_path / "two")
    finally:
        with rabbitmq_vhost.management() as api:
            for prefix in (first, second):
                delete_agency_users(api, TopologySpec(agency_codes=CODES, user_prefix=prefix))
        _undo_cli_logging()


def test_the_human_output_names_created_kept_and_rotated(
    rabbitmq_vhost: TestVhost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JIEXU_AMQP_URL", rabbitmq_vhost.amqp_url)
    monkeypatch.setenv("JIEXU_MANAGEMENT_URL", rabbitmq_vhost.endpoint.management_url)
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    args = ["topology", "apply", "--vhost", rabbitmq_vhost.name, "--user-prefix", prefix,
            "--agency", CODES[0], "--retry-delays", "100"]
    try:
        first = CliRunner().invoke(app, [*args, "--secrets-dir", str(tmp_path / "a")])
        assert first.exit_code == 0, first.output
        assert f"created: {prefix}agency-000000, {prefix}agency-{CODES[0]}" in first.stdout
        other = CliRunner().invoke(app, [*args, "--secrets-dir", str(tmp_path / "b")])
        assert other.exit_code == 0, other.output
        assert f"kept: {prefix}agency-000000, {prefix}agency-{CODES[0]}" in other.stdout
        assert "kept without a known password" in other.stdout
        rotated = CliRunner().invoke(app, [*args, "--secrets-dir", str(tmp_path / "a"), "--rotate"])
        assert rotated.exit_code == 0, rotated.output
        assert f"rotated: {prefix}agency-000000, {prefix}agency-{CODES[0]}" in rotated.stdout
    finally:
        with rabbitmq_vhost.management() as api:
            delete_agency_users(api, TopologySpec(agency_codes=CODES[:1], user_prefix=prefix))
        _undo_cli_logging()
