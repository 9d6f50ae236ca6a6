"""The topology on a real broker: provisioning is idempotent, export equals apply, routing works."""

from __future__ import annotations

import asyncio
import json
import logging
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest
import structlog
from typer.testing import CliRunner

from agents.cli import app
from broker.directory import AgencyDirectory, AgencyEntry
from broker.directory_trust import install_operator_key, sign_directory
from broker.management import ManagementClient, ManagementError
from broker.names import (
    DLX,
    EXCHANGE,
    RECONCILER_CODE,
    RETRY_EXCHANGE,
    UNROUTABLE_EXCHANGE,
    UNROUTABLE_QUEUE,
    agency_retry_exchange,
    dlq_queue,
    inbox_queue,
    retry_delay_key,
    retry_inbox_key,
    retry_queue,
    routing_key,
)
from broker.pytest_plugin import TestVhost
from broker.signing import generate_private_key, public_key_to_raw_b64
from broker.topology import (
    AgencyCredentials,
    TopologySpec,
    apply_topology,
    declarations,
    delete_agency_users,
    export_definitions,
    load_agency_secret,
)

A, B = "110000", "320100"
WAIT_S = 30.0  # upper bound for a message to arrive; never asserted as a duration


@pytest.fixture
def spec() -> TopologySpec:
    return TopologySpec(
        agency_codes=(A, B),
        retry_delays_ms=(100, 300),
        delivery_limit=2,
        user_prefix=f"t{uuid.uuid4().hex[:8]}-",
    )


@pytest.fixture
def provisioned(
    rabbitmq_vhost: TestVhost, spec: TopologySpec
) -> Iterator[AgencyCredentials]:
    with rabbitmq_vhost.management() as api:
        try:
            yield apply_topology(api, rabbitmq_vhost.name, spec)
        finally:
            delete_agency_users(api, spec)


def _snapshot(api: ManagementClient, vhost: str) -> dict[str, Any]:
    """What a vhost holds, in comparable form (names, types, arguments, bindings, permissions)."""
    return {
        "exchanges": sorted(
            (x["name"], x["type"], x["durable"], tuple(sorted(x["arguments"].items())))
            for x in api.list_exchanges(vhost)
            if x["name"].startswith("jiexu")
        ),
        "queues": sorted(
            (q["name"], q["durable"], tuple(sorted(q["arguments"].items())))
            for q in api.list_queues(vhost)
        ),
        "bindings": sorted(
            (b["source"], b["destination"], b["routing_key"])
            for b in api.list_bindings(vhost)
            if b["source"]  # the default exchange's implicit bindings are not ours
        ),
        "permissions": sorted(
            (p["user"], p["configure"], p["write"], p["read"])
            for p in api.list_permissions(vhost)
            if p["user"].endswith(tuple(f"agency-{c}" for c in (A, B, RECONCILER_CODE)))
        ),
    }


async def _wait_for_message(
    channel: aio_pika.abc.AbstractChannel, queue_name: str
) -> aio_pika.abc.AbstractIncomingMessage:
    queue = await channel.get_queue(queue_name, ensure=True)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while loop.time() < deadline:
        message = await queue.get(fail=False)
        if message is not None:
            return message
        await asyncio.sleep(0.05)
    raise AssertionError(f"no message reached {queue_name} within {WAIT_S} s")


def test_apply_creates_every_queue_binding_and_user_the_spec_describes(
    rabbitmq_vhost: TestVhost, spec: TopologySpec, provisioned: AgencyCredentials
) -> None:
    with rabbitmq_vhost.management() as api:
        snapshot = _snapshot(api, rabbitmq_vhost.name)
        queues = {q["name"]: q for q in api.list_queues(rabbitmq_vhost.name)}
        exchanges = {x["name"]: x for x in api.list_exchanges(rabbitmq_vhost.name)}
        users = {u["name"] for u in api.list_users()}
    decl = declarations(spec)
    assert {name for name, *_ in snapshot["queues"]} == {q.name for q in decl.queues}
    assert {(b.exchange, b.queue, b.routing_key) for b in decl.bindings} == set(
        snapshot["bindings"]
    )
    for code in (A, B, RECONCILER_CODE):
        inbox = queues[inbox_queue(code)]
        assert inbox["type"] == "quorum"
        assert inbox["arguments"]["x-delivery-limit"] == 2
        assert inbox["arguments"]["x-dead-letter-exchange"] == DLX
        assert inbox["arguments"]["x-dead-letter-routing-key"] == code
        assert inbox["arguments"]["x-quorum-initial-group-size"] == 3
        assert inbox["arguments"]["x-queue-leader-locator"] == "balanced"
        assert queues[dlq_queue(code)]["type"] == "quorum"
        for ms in (100, 300):
            # Quorum (replicated on a cluster), expiring by TTL (RabbitMQ 3.10+) and moved back
            # to the inbox only once the inbox has it (at-least-once dead-lettering).
            retry = queues[retry_queue(code, ms)]
            assert retry["type"] == "quorum"
            assert retry["arguments"]["x-dead-letter-strategy"] == "at-least-once"
            assert retry["arguments"]["x-message-ttl"] == ms
            assert retry["arguments"]["x-dead-letter-exchange"] == RETRY_EXCHANGE
            assert retry["arguments"]["x-dead-letter-routing-key"] == retry_inbox_key(code)
        assert spec.user(code) in users
        assert provisioned[code].username == spec.user(code)
    assert exchanges[EXCHANGE]["type"] == "topic"
    assert exchanges[EXCHANGE]["arguments"] == {"alternate-exchange": UNROUTABLE_EXCHANGE}
    assert exchanges[UNROUTABLE_EXCHANGE]["type"] == "fanout"
    assert queues[UNROUTABLE_QUEUE]["durable"]
    assert queues[UNROUTABLE_QUEUE]["type"] == "quorum"


def test_applying_twice_changes_nothing_and_raises_nothing(
    rabbitmq_vhost: TestVhost, spec: TopologySpec, provisioned: AgencyCredentials
) -> None:
    with rabbitmq_vhost.management() as api:
        before = _snapshot(api, rabbitmq_vhost.name)
        again = apply_topology(
            api, rabbitmq_vhost.name, spec, {c: k.password for c, k in provisioned.items()}
        )
        after = _snapshot(api, rabbitmq_vhost.name)
    assert after == before
    assert again == provisioned


def test_applying_over_a_queue_with_other_arguments_fails_loudly(
    rabbitmq_vhost: TestVhost, spec: TopologySpec, provisioned: AgencyCredentials
) -> None:
    changed = TopologySpec(
        agency_codes=spec.agency_codes,
        retry_delays_ms=spec.retry_delays_ms,
        delivery_limit=spec.delivery_limit + 1,
        user_prefix=spec.user_prefix,
    )
    with rabbitmq_vhost.management() as api, pytest.raises(ManagementError, match="inequivalent"):
        apply_topology(api, rabbitmq_vhost.name, changed)


async def test_exported_definitions_load_into_a_fresh_vhost_as_the_same_topology(
    rabbitmq_vhost: TestVhost, spec: TopologySpec, provisioned: AgencyCredentials
) -> None:
    fresh = f"jiexu-test-export-{uuid.uuid4().hex[:8]}"
    definitions = export_definitions(
        spec, fresh, {code: cred.password for code, cred in provisioned.items()}
    )
    with rabbitmq_vhost.management() as api:
        try:
            api.load_definitions(definitions)
            api.set_permissions(fresh, rabbitmq_vhost.endpoint.username, ".*", ".*", ".*")
            assert _snapshot(api, fresh) == _snapshot(api, rabbitmq_vhost.name)
            # The exported password hash is RabbitMQ's own scheme: the agency can log in with it.
            a = provisioned[A]
            url = rabbitmq_vhost.endpoint.amqp_url(vhost=fresh, username=a.username, password=a.password)
            connection = await aio_pika.connect(url)
            async with connection:
                channel = await connection.channel()
                inbox = await channel.get_queue(inbox_queue(A), ensure=True)
                assert inbox.name == inbox_queue(A)
        finally:
            api.delete_vhost(fresh)


async def test_a_message_for_an_unknown_agency_lands_in_the_unroutable_queue(
    rabbitmq_vhost: TestVhost, provisioned: AgencyCredentials
) -> None:
    a = provisioned[A]
    connection = await aio_pika.connect(rabbitmq_vhost.url_for(a.username, a.password))
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(EXCHANGE, ensure=False)
        # mandatory never fires on EXCHANGE: the alternate exchange counts as a route.
        await exchange.publish(
            aio_pika.Message(b"lost", user_id=a.username),
            routing_key=routing_key("999999", "contact_letter"),
            mandatory=True,
        )
    admin = await aio_pika.connect(rabbitmq_vhost.amqp_url)
    async with admin:
        message = await _wait_for_message(await admin.channel(), UNROUTABLE_QUEUE)
        assert message.body == b"lost"
        assert message.routing_key == routing_key("999999", "contact_letter")


async def test_a_message_parked_in_a_retry_queue_returns_to_the_inbox_after_its_delay(
    rabbitmq_vhost: TestVhost, provisioned: AgencyCredentials
) -> None:
    b = provisioned[B]
    connection = await aio_pika.connect(rabbitmq_vhost.url_for(b.username, b.password))
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        retry = await channel.get_exchange(agency_retry_exchange(B), ensure=False)
        await retry.publish(
            aio_pika.Message(b"again", user_id=b.username, headers={"x-jiexu-attempt": 1}),
            routing_key=retry_delay_key(B, 100),
        )
        message = await _wait_for_message(channel, inbox_queue(B))
        assert message.body == b"again"
        assert message.headers["x-jiexu-attempt"] == 1
        await message.ack()


async def test_a_full_queue_refuses_the_publish_so_the_publisher_hears_it(
    rabbitmq_vhost: TestVhost,
) -> None:
    small = TopologySpec(
        agency_codes=(A, B),
        retry_delays_ms=(100,),
        max_queue_length=2,
        max_queue_bytes=1 << 20,
        user_prefix=f"t{uuid.uuid4().hex[:8]}-",
    )
    with rabbitmq_vhost.management() as api:
        creds = apply_topology(api, rabbitmq_vhost.name, small)
        queues = {q["name"]: q["arguments"] for q in api.list_queues(rabbitmq_vhost.name)}
    try:
        assert all(args.get("x-overflow") == "reject-publish" for args in queues.values())
        assert all(args.get("x-max-length") == 2 for args in queues.values())
        assert all(args.get("x-max-length-bytes") == 1 << 20 for args in queues.values())
        a = creds[A]
        connection = await aio_pika.connect(rabbitmq_vhost.url_for(a.username, a.password))
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(EXCHANGE, ensure=False)
            accepted = 0
            with pytest.raises(aio_pika.exceptions.DeliveryError):  # a nack, not silence
                for n in range(10):
                    await exchange.publish(
                        aio_pika.Message(f"{n}".encode(), user_id=a.username),
                        routing_key=routing_key(B, "receipt"),
                    )
                    accepted += 1
            # A quorum queue notices it is full once a message has taken it to the limit or just
            # past it (its state machine applies the limit after the enqueue).
            assert 2 <= accepted <= 3
    finally:
        with rabbitmq_vhost.management() as api:
            delete_agency_users(api, small)


async def test_a_message_that_keeps_failing_is_dead_lettered_after_the_delivery_limit(
    rabbitmq_vhost: TestVhost, provisioned: AgencyCredentials
) -> None:
    a, b = provisioned[A], provisioned[B]
    sender = await aio_pika.connect(rabbitmq_vhost.url_for(a.username, a.password))
    async with sender:
        channel = await sender.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(EXCHANGE, ensure=False)
        await exchange.publish(
            aio_pika.Message(b"poison", user_id=a.username), routing_key=routing_key(B, "x")
        )
    receiver = await aio_pika.connect(rabbitmq_vhost.url_for(b.username, b.password))
    async with receiver:
        channel = await receiver.channel()
        inbox = await channel.get_queue(inbox_queue(B), ensure=True)
        dlq = await channel.get_queue(dlq_queue(B), ensure=True)
        deliveries = 0
        dead: aio_pika.abc.AbstractIncomingMessage | None = None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_S
        # Like an agent that crashes on this message every time: it is never settled for good.
        while dead is None and loop.time() < deadline:
            message = await inbox.get(fail=False)
            if message is not None:
                deliveries += 1
                await message.nack(requeue=True)
            else:
                dead = await dlq.get(fail=False)
                if dead is None:
                    await asyncio.sleep(0.05)
        assert dead is not None, "the poison message never reached the dead-letter queue"
        assert deliveries == 3  # the first delivery and two redeliveries (x-delivery-limit 2)
        assert dead.body == b"poison"
        deaths: Any = dead.headers["x-death"]
        assert deaths[0]["reason"] == "delivery_limit"
        assert dead.user_id == a.username
        await dead.ack()
        assert await inbox.get(fail=False) is None


def _undo_cli_logging() -> None:
    """The command configured process-wide logging; leave the next test a clean slate."""
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_jiexu", False)]:
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)


async def test_jiexu_topology_apply_writes_private_credentials_and_keeps_them_on_rerun(
    rabbitmq_vhost: TestVhost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    directory = tmp_path / "directory.json"
    AgencyDirectory([]).with_agency(
        AgencyEntry.model_validate(
            {
                "code": A,
                "name": "北京市医疗保障事务中心",
                "supported_versions": {"contact_letter": [1]},
                "public_key": public_key_to_raw_b64(generate_private_key()),
                "bank_account": {
                    "bank_name": "中国工商银行",
                    "bank_code": "102100099996",
                    "account_name": "北京市医疗保障事务中心",
                    "account_number": "0200001234567890123",
                },
            }
        )
    ).save(directory)
    operator = generate_private_key()  # the operator signs the directory; apply checks it
    sign_directory(directory, operator)
    install_operator_key(tmp_path / "secrets", operator)
    monkeypatch.setenv("JIEXU_AMQP_URL", rabbitmq_vhost.amqp_url)
    monkeypatch.setenv("JIEXU_MANAGEMENT_URL", rabbitmq_vhost.endpoint.management_url)
    secrets_dir = tmp_path / "secrets"
    args = [
        "topology", "apply", "--directory", str(directory), "--agency", B,
        "--user-prefix", prefix, "--secrets-dir", str(secrets_dir), "--retry-delays", "100",
        "--json",
    ]
    runner = CliRunner()
    spec = TopologySpec(agency_codes=(A, B), retry_delays_ms=(100,), user_prefix=prefix)
    try:
        first = runner.invoke(app, args)
        assert first.exit_code == 0, first.output
        assert json.loads(first.stdout)["new_passwords"] == sorted([A, B, RECONCILER_CODE])
        files = {p.name: p for p in secrets_dir.iterdir()}
        assert set(files) == {f"{c}.broker.json" for c in (A, B, RECONCILER_CODE)} | {
            "operator.ed25519.pub"
        }
        del files["operator.ed25519.pub"]
        assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files.values())
        secret = load_agency_secret(files[f"{A}.broker.json"])
        second = runner.invoke(app, args)
        assert second.exit_code == 0, second.output
        assert json.loads(second.stdout)["new_passwords"] == []
        assert load_agency_secret(files[f"{A}.broker.json"]) == secret
        connection = await aio_pika.connect(secret["amqp_url"])
        async with connection:
            channel = await connection.channel()
            await channel.get_queue(inbox_queue(A), ensure=True)
    finally:
        with rabbitmq_vhost.management() as api:
            delete_agency_users(api, spec)
        _undo_cli_logging()
