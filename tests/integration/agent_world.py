"""Real agents on a real broker for tests: provisioned agencies, seeded ledgers, helpers to wait."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from agents.domain.case import ApplicationSubmitted, Case, State, case_from_data
from agents.domain.clock import Clock
from agents.ledger.base import PersonAccount
from agents.ledger.sqlite import SqliteLedger
from agents.service.process import AgentProcess
from agents.tools.provision import AgencyProfile, Provisioned, provision
from agents.tools.seed import make_mover
from broker.connection import BrokerConnection, connect
from broker.directory import AgencyDirectory
from broker.names import inbox_queue
from broker.publisher import Publisher
from broker.pytest_plugin import TestVhost
from broker.signing import Ed25519PrivateKey, load_private_key, sign_envelope
from schemas.common import AgencyDetails, BankAccount, Document, Person
from schemas.envelope import Envelope
from schemas.registry import Message, envelope_for, parse

TERMINAL = {State.COMPLETED.value, State.REJECTED.value, State.DISCREPANCY.value}


@dataclass(frozen=True)
class Sent:
    """One row of an agency's outbox: what it committed to send (published or not yet)."""

    recipient: str
    type: str
    version: int
    envelope: dict[str, Any]
    published: bool


@dataclass
class Impersonator:
    """Publishes as an agency (its broker user, its signing key) without running its agent."""

    code: str
    publisher: Publisher
    private_key: Ed25519PrivateKey

    async def send(
        self,
        document: Document,
        *,
        recipient: str,
        case_id: uuid.UUID,
        causation_id: uuid.UUID | None = None,
        message_id: uuid.UUID | None = None,
        version: int | None = None,
        sent_at: datetime | None = None,
    ) -> Envelope:
        """``sent_at``: the recipient's clock when it runs on a manual one (else now): a message
        outside the recipient's freshness window is dead-lettered as stale."""
        envelope = envelope_for(
            document,
            sender=self.code,
            recipient=recipient,
            case_id=case_id,
            causation_id=causation_id,
            message_id=message_id,
            version=version,
            sent_at=sent_at,
        )
        return await self.publisher.publish(sign_envelope(envelope, self.private_key))


@dataclass
class World:
    provisioned: Provisioned
    agents: dict[str, AgentProcess] = field(default_factory=dict)
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    seq: int = 0

    async def start(self, code: str, clock: Clock | None = None, **overrides: Any) -> AgentProcess:
        settings = self.provisioned.settings(code, deadline_interval_s=3600, **overrides)
        agent = await AgentProcess(settings, clock=clock).start()
        self.agents[code] = agent
        return agent

    async def stop(self, code: str) -> None:
        agent = self.agents.pop(code)
        await agent.stop()

    async def stop_all(self) -> None:
        for code in list(self.agents):
            await self.stop(code)

    async def mover(
        self,
        outgoing: str,
        receiving: str,
        *,
        outgoing_changes: Mapping[str, Any] | None = None,
        receiving_changes: Mapping[str, Any] | None = None,
        seed_outgoing: bool = True,
        seed_receiving: bool = True,
        **options: Any,
    ) -> tuple[PersonAccount, PersonAccount]:
        """A person stopped at `outgoing` and enrolled at `receiving`, seeded in both ledgers.

        ``options`` go to `make_mover`; ``*_changes`` replace fields of either account (e.g.
        ``deemed_months`` at the outgoing place, ``insurance_type`` or ``enrolled`` at the
        receiving one); ``seed_*=False`` leaves that ledger without the person. Agents need not
        be running: a ledger without a running agent is opened for the seeding.
        """
        self.seq += 1
        out, into = make_mover(self.rng, outgoing, receiving, self.seq, **options)
        if outgoing_changes:
            out = dataclasses.replace(out, **outgoing_changes)
        if receiving_changes:
            into = dataclasses.replace(into, **receiving_changes)
        if seed_outgoing:
            await self.put_account(outgoing, out)
        if seed_receiving:
            await self.put_account(receiving, into)
        return out, into

    def ledger(self, code: str) -> SqliteLedger:
        """The running agent's own books."""
        opened = self.agents[code].opened
        assert opened is not None and isinstance(opened.ledger, SqliteLedger)
        return opened.ledger

    async def put_account(self, code: str, account: PersonAccount) -> None:
        if code in self.agents:
            await self.ledger(code).put_account(account)
            return
        ledger = await SqliteLedger.open(self.provisioned.paths.ledger(code), code)
        try:
            await ledger.put_account(account)
        finally:
            await ledger.close()

    @property
    def directory(self) -> AgencyDirectory:
        return AgencyDirectory.load(self.provisioned.directory_path)

    def details(self, code: str) -> AgencyDetails:
        """An agency's name, address, phone and bank account as the directory lists them."""
        entry = self.directory.get(code)
        return AgencyDetails(
            name=entry.name,
            address=entry.address or "(not stated)",
            phone=entry.phone or "00000000",
            bank_account=BankAccount(**entry.bank_account.model_dump()),
        )

    async def connect_as(self, code: str) -> BrokerConnection:
        """A broker connection as the agency's own user (the reconciler's too), never as guest."""
        credential = self.provisioned.credentials[code]
        url = self.provisioned.endpoint.amqp_url(
            vhost=self.provisioned.vhost, username=credential.username, password=credential.password
        )
        return await connect(url, name=f"test-as-{code}")

    @asynccontextmanager
    async def impersonate(self, code: str) -> AsyncIterator[Impersonator]:
        """Speak as `code` with its credentials and key: for orders a real agent never sends."""
        key = load_private_key(self.provisioned.paths.private_key(code))
        connection = await self.connect_as(code)
        async with connection:
            publisher = await Publisher(connection, agency=code).start()
            try:
                yield Impersonator(code, publisher, key)
            finally:
                await publisher.close()

    async def drain(
        self,
        code: str,
        until: Callable[[list[Message]], bool] = lambda messages: True,
        within_s: float = 30.0,
    ) -> list[Message]:
        """Take (and ack) what waits in `code`'s inbox, as that agency, until `until` holds.

        Only for an agency whose agent is not running (it would consume them first).
        """
        taken: list[Message] = []
        connection = await self.connect_as(code)
        async with connection:
            channel = await connection.channel(confirms=False)
            queue = await channel.get_queue(inbox_queue(code), ensure=False)
            deadline = asyncio.get_running_loop().time() + within_s
            while True:
                while (incoming := await queue.get(no_ack=False, fail=False)) is not None:
                    taken.append(parse(incoming.body))
                    await incoming.ack()
                if until(taken):
                    return taken
                if asyncio.get_running_loop().time() > deadline:
                    kinds = [(m.envelope.type, m.envelope.sender) for m in taken]
                    raise AssertionError(f"inbox of {code} never held what was expected: {kinds}")
                await asyncio.sleep(0.05)

    def sent(self, code: str, case_id: uuid.UUID | None = None) -> list[Sent]:
        """Everything `code` committed to its outbox (SQLite store), oldest first."""
        path = self.provisioned.paths.store(code)
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            rows = db.execute(
                "SELECT recipient, message_type, body, published_at FROM outbox ORDER BY id"
            ).fetchall()
        found: list[Sent] = []
        for recipient, message_type, body, published_at in rows:
            envelope = json.loads(body)
            if case_id is not None and envelope["case_id"] != str(case_id):
                continue
            found.append(
                Sent(recipient, message_type, int(envelope["version"]), envelope, published_at is not None)
            )
        return found

    async def apply(
        self,
        receiving: str,
        outgoing: str,
        account: PersonAccount,
        *,
        payout: tuple[BankAccount, Any] | None = None,
        case_id: uuid.UUID | None = None,
    ) -> uuid.UUID:
        case_id = case_id or uuid.uuid4()
        application = ApplicationSubmitted(
            case_id=case_id,
            person=Person(name=account.name, gender=account.gender, id_number=account.id_number),
            insurance_type=account.insurance_type,
            from_region=outgoing,
            letter_number=f"LX-{receiving}-{case_id.hex[:8]}",
            payout_account=payout[0] if payout else None,
            payout_reason=payout[1] if payout else None,
        )
        await self.agents[receiving].service.apply(application)
        return case_id

    async def state(self, code: str, case_id: uuid.UUID) -> str | None:
        record = await self.agents[code].service.store.get_case(case_id)
        return record.state if record is not None else None

    async def case(self, code: str, case_id: uuid.UUID) -> Case:
        record = await self.agents[code].service.store.get_case(case_id)
        assert record is not None, f"no case {case_id} at {code}"
        return case_from_data(record.data)

    async def wait_case(
        self, code: str, case_id: uuid.UUID, until: Callable[[Case], bool], within_s: float = 60.0
    ) -> Case:
        """Poll the case at `code` until `until` holds for it."""
        deadline = asyncio.get_running_loop().time() + within_s
        while True:
            record = await self.agents[code].service.store.get_case(case_id)
            if record is not None:
                case = case_from_data(record.data)
                if until(case):
                    return case
            if asyncio.get_running_loop().time() > deadline:
                state = record.state if record is not None else None
                raise AssertionError(f"case at {code} (state {state}) never met the condition")
            await asyncio.sleep(0.05)

    async def wait_state(
        self, code: str, case_id: uuid.UUID, states: Iterable[str], within_s: float = 60.0
    ) -> str:
        wanted = set(states)
        deadline = asyncio.get_running_loop().time() + within_s
        while True:
            state = await self.state(code, case_id)
            if state in wanted:
                return state
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"case at {code} is {state}, expected one of {sorted(wanted)}")
            await asyncio.sleep(0.05)

    async def wait_terminal(self, code: str, case_id: uuid.UUID, within_s: float = 60.0) -> str:
        return await self.wait_state(code, case_id, TERMINAL, within_s)


@asynccontextmanager
async def agent_world(
    vhost: TestVhost,
    tmp_path: Path,
    profiles: list[AgencyProfile],
    *,
    retry_delays_ms: tuple[int, ...] = (100, 300),
) -> AsyncIterator[World]:
    provisioned = provision(
        vhost.endpoint,
        vhost.name,
        profiles,
        tmp_path / "world",
        user_prefix=f"t{uuid.uuid4().hex[:6]}-",
        retry_delays_ms=retry_delays_ms,
    )
    world = World(provisioned)
    try:
        yield world
    finally:
        await world.stop_all()
        with vhost.management() as api:
            from broker.topology import delete_agency_users

            delete_agency_users(api, provisioned.spec)
