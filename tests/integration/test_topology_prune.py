"""``jiexu topology apply --prune`` (issue 13 item 7): an agency that left the signed directory
loses its broker user (its connection is closed) and its queues; a dead-letter queue that still
holds messages is kept and reported; the agencies that stay are untouched."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import aio_pika
import aiormq
import pytest
from typer.testing import CliRunner

from agents.cli import app
from broker.directory import AgencyDirectory, AgencyEntry
from broker.directory_trust import install_operator_key, sign_directory
from broker.names import dlq_queue, inbox_queue
from broker.pytest_plugin import TestVhost
from broker.signing import generate_private_key, public_key_to_raw_b64
from broker.topology import TopologySpec, delete_agency_users, load_agency_secret
from tests.unit.test_directory import _agency

pytestmark = pytest.mark.integration

STAYS, LEAVES = "110000", "320100"
OPERATOR = generate_private_key()


def _directory(path: Path, codes: tuple[str, ...]) -> None:
    entries = [
        AgencyEntry.model_validate(_agency(c, public_key_to_raw_b64(generate_private_key())))
        for c in codes
    ]
    AgencyDirectory(entries).save(path)
    sign_directory(path, OPERATOR)


def _apply(args: list[str]) -> dict[str, Any]:
    result = CliRunner().invoke(app, ["topology", "apply", *args, "--json"])
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


async def test_prune_removes_the_users_and_queues_of_an_agency_that_left(
    rabbitmq_vhost: TestVhost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = f"p{uuid.uuid4().hex[:6]}-"
    directory, secrets = tmp_path / "directory.json", tmp_path / "secrets"
    install_operator_key(secrets, OPERATOR)
    monkeypatch.setenv("JIEXU_AMQP_URL", rabbitmq_vhost.amqp_url)
    monkeypatch.setenv("JIEXU_MANAGEMENT_URL", rabbitmq_vhost.endpoint.management_url)
    common = ["--directory", str(directory), "--secrets-dir", str(secrets), "--user-prefix", prefix,
              "--retry-delays", "100"]
    spec = TopologySpec(agency_codes=(STAYS, LEAVES), retry_delays_ms=(100,), user_prefix=prefix)
    try:
        _directory(directory, (STAYS, LEAVES))
        _apply(common)
        leaving = load_agency_secret(secrets / f"{LEAVES}.broker.json")
        connection = await aio_pika.connect(leaving["amqp_url"])
        # Without --directory, --prune would remove everyone: refused.
        refused = CliRunner().invoke(app, ["topology", "apply", "--agency", STAYS, "--prune",
                                           "--secrets-dir", str(secrets)])
        assert refused.exit_code == 2 and "--prune needs --directory" in refused.output

        _directory(directory, (STAYS,))  # the operator signs a directory without LEAVES
        kept_apply = _apply(common)  # without --prune nothing is removed
        assert kept_apply["pruned_users"] == []
        with rabbitmq_vhost.management() as api:
            assert api.get_user(f"{prefix}agency-{LEAVES}") is not None
        pruned = _apply([*common, "--prune"])

        assert pruned["pruned_users"] == [f"{prefix}agency-{LEAVES}"]
        assert set(pruned["pruned_queues"]) == {
            inbox_queue(LEAVES), dlq_queue(LEAVES), f"jiexu.retry.{LEAVES}.100ms"
        }
        with rabbitmq_vhost.management() as api:
            assert api.get_user(f"{prefix}agency-{LEAVES}") is None
            names = {q["name"] for q in api.list_queues(rabbitmq_vhost.name)}
            assert inbox_queue(STAYS) in names and api.get_user(f"{prefix}agency-{STAYS}")
            assert not {n for n in names if LEAVES in n}
        with pytest.raises(aiormq.exceptions.AMQPError):  # its login no longer works
            await aio_pika.connect(leaving["amqp_url"])
        await connection.close()
    finally:
        with rabbitmq_vhost.management() as api:
            delete_agency_users(api, spec)


async def test_prune_keeps_a_dead_letter_queue_that_holds_messages(
    rabbitmq_vhost: TestVhost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = f"p{uuid.uuid4().hex[:6]}-"
    directory, secrets = tmp_path / "directory.json", tmp_path / "secrets"
    install_operator_key(secrets, OPERATOR)
    monkeypatch.setenv("JIEXU_AMQP_URL", rabbitmq_vhost.amqp_url)
    monkeypatch.setenv("JIEXU_MANAGEMENT_URL", rabbitmq_vhost.endpoint.management_url)
    common = ["--directory", str(directory), "--secrets-dir", str(secrets), "--user-prefix", prefix,
              "--retry-delays", "100"]
    spec = TopologySpec(agency_codes=(STAYS, LEAVES), retry_delays_ms=(100,), user_prefix=prefix)
    try:
        _directory(directory, (STAYS, LEAVES))
        _apply(common)
        connection = await aio_pika.connect(rabbitmq_vhost.amqp_url)  # the administrator
        async with connection:
            channel = await connection.channel()
            await channel.default_exchange.publish(
                aio_pika.Message(b"a dead letter"), routing_key=dlq_queue(LEAVES)
            )
        with rabbitmq_vhost.management() as api:
            for _ in range(40):
                if api.get_queue(rabbitmq_vhost.name, dlq_queue(LEAVES)).get("messages"):
                    break
                await asyncio.sleep(0.25)
        _directory(directory, (STAYS,))
        pruned = _apply([*common, "--prune"])
        assert pruned["kept_dead_letter_queues"] == [dlq_queue(LEAVES)]
        assert dlq_queue(LEAVES) not in pruned["pruned_queues"]
        assert inbox_queue(LEAVES) in pruned["pruned_queues"]
    finally:
        with rabbitmq_vhost.management() as api:
            delete_agency_users(api, spec)
            api.delete_queue(rabbitmq_vhost.name, dlq_queue(LEAVES))
