"""Real agents on a real broker for tests: provisioned agencies, seeded ledgers, helpers to wait."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.agent import AgentProcess
from agents.case import ApplicationSubmitted, State, case_from_data
from agents.clock import Clock
from agents.ledger.base import PersonAccount
from agents.ledger.seed import make_mover
from agents.provision import AgencyProfile, Provisioned, provision
from broker.pytest_plugin import TestVhost
from schemas.common import BankAccount, Person

TERMINAL = {State.COMPLETED.value, State.REJECTED.value, State.DISCREPANCY.value}


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
        self, outgoing: str, receiving: str, **options: Any
    ) -> tuple[PersonAccount, PersonAccount]:
        """A person stopped at `outgoing` and enrolled at `receiving`, seeded in both ledgers."""
        self.seq += 1
        out, into = make_mover(self.rng, outgoing, receiving, self.seq, **options)
        await self.agents[outgoing].service.ledger.put_account(out)  # type: ignore[attr-defined]
        await self.agents[receiving].service.ledger.put_account(into)  # type: ignore[attr-defined]
        return out, into

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

    async def case(self, code: str, case_id: uuid.UUID) -> Any:
        record = await self.agents[code].service.store.get_case(case_id)
        assert record is not None
        return case_from_data(record.data)

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
