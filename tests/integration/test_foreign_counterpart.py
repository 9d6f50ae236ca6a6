"""A counterpart written from the published contract alone completes a transfer *and* its
reconciliation with jiexu's outgoing agent and jiexu's reconciler.

The foreign agency (Jiujiang, receiving) uses nothing of jiexu's code: plain aio-pika, the
`cryptography` and `rfc8785` packages, the JSON Schemas in ``schemas/json/`` (read with
`jsonschema`) and what ``docs/protocol.md`` says: the routing key, the properties, the causations,
the copies to the reconciler and the answer a statement request obliges. jiexu's code only sets the
world up (provisioning, the outgoing agent, the reconciler) and reads its outcome.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import pytest
import rfc8785
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jsonschema import Draft202012Validator

from agents.domain.case import State
from agents.reconcile import run_reconciler
from agents.tools.provision import AgencyProfile
from broker.consumer import ConsumerSettings
from broker.pytest_plugin import TestVhost
from broker.signing import load_private_key, private_key_path
from tests.integration.agent_world import World, agent_world
from tests.integration.test_agent_branches import DONGGUAN, EMPLOYEE, JIUJIANG

pytestmark = pytest.mark.integration

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas" / "json"
RECONCILER = "000000"


def _validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads((SCHEMAS / name).read_text(encoding="utf-8")))


class ForeignAgency:
    """An agency client written from docs/protocol.md: JSON, Ed25519 over RFC 8785, AMQP."""

    def __init__(self, code: str, url: str, username: str, key_pem: bytes) -> None:
        self.code, self.url, self.username = code, url, username
        key = serialization.load_pem_private_key(key_pem, password=None)
        assert isinstance(key, Ed25519PrivateKey)
        self.key = key
        self.received: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []

    async def __aenter__(self) -> ForeignAgency:
        self.connection = await aio_pika.connect(self.url)
        self.channel = await self.connection.channel(publisher_confirms=True)
        self.exchange = await self.channel.get_exchange("jiexu", ensure=False)
        self.inbox = await self.channel.get_queue(f"jiexu.inbox.{self.code}", ensure=False)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.connection.close()

    async def send(
        self, message_type: str, version: int, payload: dict[str, Any], *, recipient: str,
        case_id: str, causation_id: str | None,
    ) -> dict[str, Any]:
        now = datetime.now(UTC).replace(microsecond=0)
        envelope: dict[str, Any] = {
            "message_id": str(uuid.uuid4()),
            "case_id": case_id,
            "causation_id": causation_id,
            "type": message_type,
            "version": version,
            "sender": self.code,
            "recipient": recipient,
            "sent_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "payload": payload,
        }
        signature = self.key.sign(rfc8785.dumps(envelope))
        envelope["signature"] = base64.b64encode(signature).decode("ascii")
        _validator(f"{message_type}.v{version}.json").validate(envelope)
        await self.exchange.publish(
            aio_pika.Message(
                json.dumps(envelope, ensure_ascii=False).encode("utf-8"),
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=envelope["message_id"],
                correlation_id=case_id,
                type=message_type,
                user_id=self.username,
                timestamp=now,
                headers={"x-jiexu-type": message_type, "x-jiexu-version": version},
            ),
            routing_key=f"agency.{recipient}.{message_type}",
            mandatory=True,
        )
        self.sent.append(envelope)
        return envelope

    async def expect(self, message_type: str, case_id: str, within_s: float = 60.0) -> dict[str, Any]:
        """The next message of ``message_type`` for ``case_id`` (others are kept)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while True:
            for message in self.received:
                if message["type"] == message_type and message["case_id"] == case_id:
                    self.received.remove(message)
                    return message
            incoming = await self.inbox.get(no_ack=False, fail=False)
            if incoming is not None:
                envelope = json.loads(incoming.body)
                _validator(f"{envelope['type']}.v{envelope['version']}.json").validate(envelope)
                assert incoming.message_id == envelope["message_id"]
                assert incoming.correlation_id == envelope["case_id"]
                self.received.append(envelope)
                await incoming.ack()
                continue
            if loop.time() > deadline:
                raise AssertionError(f"no {message_type} for {case_id}; got {self.received}")
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def reconciler(world: World, tmp_path: Path) -> AsyncIterator[None]:
    provisioned = world.provisioned
    credential = provisioned.credentials[RECONCILER]
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_reconciler(
            amqp_url=provisioned.endpoint.amqp_url(
                vhost=provisioned.vhost, username=credential.username, password=credential.password
            ),
            directory=world.directory,
            private_key=load_private_key(private_key_path(provisioned.secrets_dir, RECONCILER)),
            store_path=tmp_path / "reconcile.db",
            consumer_settings=ConsumerSettings(
                user_prefix=provisioned.user_prefix, retry_delays_ms=provisioned.retry_delays_ms
            ),
            sweep_interval_s=3600,
            stop_event=stop,
            signals=(),
        )
    )
    try:
        yield
    finally:
        stop.set()
        await task


async def test_a_counterpart_following_only_the_published_protocol_gets_its_case_reconciled(
    rabbitmq_vhost: TestVhost, tmp_path: Path
) -> None:
    async with agent_world(
        rabbitmq_vhost, tmp_path, [AgencyProfile(DONGGUAN), AgencyProfile(JIUJIANG)]
    ) as world:
        await world.start(DONGGUAN)
        out, _ = await world.mover(DONGGUAN, JIUJIANG, **EMPLOYEE)
        provisioned = world.provisioned
        mine = provisioned.credentials[JIUJIANG]
        details = world.details(JIUJIANG).model_dump(mode="json")
        key_pem = private_key_path(provisioned.secrets_dir, JIUJIANG).read_bytes()
        url = provisioned.endpoint.amqp_url(
            vhost=provisioned.vhost, username=mine.username, password=mine.password
        )
        async with reconciler(world, tmp_path), ForeignAgency(JIUJIANG, url, mine.username, key_pem) as me:
            case_id = str(uuid.uuid4())
            person = {"name": out.name, "gender": out.gender.value, "id_number": out.id_number}
            letter = await me.send(
                "contact_letter", 2,
                {"letter_number": "JJ-2025-0001", "person": person, "insurance_type": "310",
                 "from_region": DONGGUAN, "to_region": JIUJIANG, "receiving_agency": details,
                 "payout_account": None, "payout_reason": None},
                recipient=DONGGUAN, case_id=case_id, causation_id=None,
            )
            # Section 9: the letter is acknowledged by a receipt once Dongguan committed it.
            receipt = await me.expect("receipt", case_id)
            assert receipt["causation_id"] == letter["message_id"]
            assert receipt["payload"]["acknowledged_message_id"] == letter["message_id"]
            form = await me.expect("information_form", case_id)
            funds = await me.expect("fund_transfer", case_id)
            assert form["causation_id"] == funds["causation_id"] == letter["message_id"]
            for document in (form, funds):  # and this agency acknowledges what it committed
                await me.send("receipt", 1, {"acknowledged_message_id": document["message_id"]},
                              recipient=DONGGUAN, case_id=case_id,
                              causation_id=document["message_id"])
            assert funds["payload"]["information_form_id"] == form["message_id"]
            assert funds["payload"]["amount"] == form["payload"]["amount_transferred"] == out.balance_fen

            completion = {
                "months_credited": form["payload"]["months_paid"],
                "deemed_months_credited": form["payload"]["deemed_months"],
                "amount_credited": funds["payload"]["amount"],
            }
            for recipient in (DONGGUAN, RECONCILER):  # the completion, and its copy (section 5)
                await me.send("transfer_completed", 1, completion, recipient=recipient,
                              case_id=case_id, causation_id=form["message_id"])
            assert await world.wait_terminal(DONGGUAN, uuid.UUID(case_id)) == State.COMPLETED
            receipt = await me.expect("receipt", case_id)
            assert receipt["payload"]["acknowledged_message_id"] in {
                s["message_id"] for s in me.sent if s["recipient"] == DONGGUAN
                and s["type"] == "transfer_completed"
            }
            kept = await world.wait_case(DONGGUAN, uuid.UUID(case_id), lambda c: len(c.receipts) == 2)
            assert sorted(r.document for r in kept.receipts) == ["fund_transfer", "information_form"]

            request = await me.expect("statement_request", case_id)
            assert request["sender"] == RECONCILER and request["payload"]["case_id"] == case_id
            assert request["causation_id"] is None  # docs/protocol.md, the reconciler's steps
            statement = await me.send(
                "ledger_statement", 1,
                {"case_id": case_id, "role": "receiving", "counterpart": DONGGUAN, "has_record": True,
                 "months": completion["months_credited"],
                 "deemed_months": completion["deemed_months_credited"],
                 "amount": completion["amount_credited"], "paid_out": 0, "retained": 0},
                recipient=RECONCILER, case_id=case_id, causation_id=request["message_id"],
            )
            result = await me.expect("reconciliation_result", case_id)
            assert result["payload"]["outcome"] == "matched", result["payload"]
            assert result["causation_id"] == statement["message_id"]
            assert (result["payload"]["outgoing"], result["payload"]["receiving"]) == (DONGGUAN, JIUJIANG)
