"""`jiexu demo`: N agencies, the reconciliation agent and M transfers through every branch.

Everything is real: the broker (found or started by the provider chain), one broker user and one
Ed25519 key per agency, SQLite stores and ledgers seeded with people whose ID numbers, balances,
months and contribution periods are valid. Agents run in this process, each with its own broker
connection; they talk only through RabbitMQ.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import structlog

from agents.domain.case import ApplicationSubmitted, State
from agents.domain.deadlines import Regime
from agents.ledger.base import PersonAccount, SeedableLedger
from agents.ledger.sqlite import SqliteLedger
from agents.reconcile.agent import ReconcilerSettings, run_reconciler
from agents.reconcile.report import ReconciliationReport
from agents.service.process import AgentProcess
from agents.store.base import CaseRecord
from agents.tools.provision import AgencyProfile, Provisioned, provision
from agents.tools.seed import make_mover
from broker.consumer import ConsumerSettings
from broker.directory import AgencyDirectory
from broker.names import RECONCILER_CODE
from broker.provider import BrokerEndpoint
from broker.signing import load_private_key, private_key_path
from schemas.common import BankAccount, InsuranceType, Person
from schemas.contact import PayoutReason

__all__ = [
    "AGENCY_ORDER",
    "BRANCHES",
    "Branch",
    "DemoResult",
    "Planned",
    "applications_for",
    "choose_agencies",
    "expected_outcome",
    "percentile",
    "plan_transfers",
    "run_demo",
]

log = structlog.get_logger("jiexu.agents.tools.demo")

AGENCY_ORDER = (
    "441900",  # 东莞 (Guangdong)
    "360400",  # 九江
    "440300",  # 深圳 (Guangdong)
    "110000",  # 北京
    "540100",  # 拉萨: still on version 1 of every message
    "410100",  # 郑州
    "320100",  # 南京
    "310000",  # 上海
    "510100",  # 成都
    "440100",  # 广州 (Guangdong)
)
V1_AGENCY = "540100"

TERMINAL = frozenset({State.COMPLETED.value, State.REJECTED.value, State.DISCREPANCY.value})


@dataclass(frozen=True)
class Branch:
    """One path through domain.md: how to seed the person and what the case should end in."""

    name: str
    expected: str
    """Terminal state at the receiving agency (``rejected:<reason>`` for a rejection)."""
    outgoing_options: dict[str, Any] = field(default_factory=dict)
    receiving_type: InsuranceType | None = None
    receiving_enrolled: bool = True
    seed_outgoing: bool = True
    payout: PayoutReason | None = None
    guangdong: bool = False
    v1_side: bool = False
    duplicate: bool = False


_EMPLOYEE = {"insurance_type": InsuranceType.EMPLOYEE, "retiree": False, "arrears": False}

BRANCHES: tuple[Branch, ...] = (
    Branch("normal", "completed", {**_EMPLOYEE, "zero_balance": False}),
    Branch("zero_balance", "completed", {**_EMPLOYEE, "zero_balance": True}),
    Branch("guangdong_in_province", "completed", {**_EMPLOYEE, "zero_balance": False}, guangdong=True),
    Branch(
        "payout_retiree_resettled",
        "completed",
        {**_EMPLOYEE, "retiree": True, "zero_balance": False},
        payout=PayoutReason.RETIREE_RESETTLED,
    ),
    Branch(
        "resident",
        "completed",
        {"insurance_type": InsuranceType.RESIDENT, "retiree": False, "arrears": False},
        receiving_type=InsuranceType.RESIDENT,
    ),
    Branch(
        "switch_employee_to_resident",
        "completed",
        {**_EMPLOYEE, "zero_balance": False},
        receiving_type=InsuranceType.RESIDENT,
        payout=PayoutReason.SCHEME_SWITCH,
    ),
    Branch(
        "switch_resident_to_employee",
        "completed",
        {"insurance_type": InsuranceType.RESIDENT, "retiree": False, "arrears": False},
        receiving_type=InsuranceType.EMPLOYEE,
    ),
    Branch("mixed_versions_v1_agency", "completed", {**_EMPLOYEE, "zero_balance": False}, v1_side=True),
    Branch("rejected_arrears", "rejected:arrears", {**_EMPLOYEE, "arrears": True}),
    Branch(
        "rejected_participation_not_stopped",
        "rejected:participation_not_stopped",
        {**_EMPLOYEE, "participation": "active"},
    ),
    Branch(
        "rejected_not_enrolled_here",
        "rejected:not_enrolled_at_receiving_place",
        _EMPLOYEE,
        receiving_enrolled=False,
    ),
    Branch("rejected_unknown_person", "rejected:unknown_person", _EMPLOYEE, seed_outgoing=False),
    Branch("rejected_retiree", "rejected:retiree", {**_EMPLOYEE, "retiree": True}),
    Branch("rejected_duplicate_application", "rejected:duplicate_case", _EMPLOYEE, duplicate=True),
)


@dataclass
class Transfer:
    case_id: uuid.UUID
    branch: Branch
    outgoing: str
    receiving: str
    submitted_at: float
    duplicate_of: uuid.UUID | None = None


@dataclass
class DemoResult:
    agencies: list[str]
    transfers: int
    completed: int
    rejected: int
    discrepancy: int
    unfinished: int
    outcomes_by_branch: dict[str, dict[str, int]]
    unexpected: list[dict[str, str]]
    reconciled_matched: int
    reconciled_mismatched: int
    reconciliation_pending: int
    money_before_fen: int
    money_after_fen: int
    paid_out_fen: int
    overdue_cases: int
    elapsed_s: float
    latencies_ms: list[float]
    messages_published: int
    broker: str

    @property
    def money_conserved(self) -> bool:
        return self.money_before_fen == self.money_after_fen + self.paid_out_fen

    def to_json(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)
        return {
            "broker": self.broker,
            "agencies": self.agencies,
            "transfers": self.transfers,
            "completed": self.completed,
            "rejected": self.rejected,
            "discrepancy": self.discrepancy,
            "unfinished": self.unfinished,
            "outcomes_by_branch": self.outcomes_by_branch,
            "unexpected_outcomes": self.unexpected,
            "reconciled_matched": self.reconciled_matched,
            "reconciled_mismatched": self.reconciled_mismatched,
            "reconciliation_pending": self.reconciliation_pending,
            "money_before_fen": self.money_before_fen,
            "money_after_fen": self.money_after_fen,
            "paid_out_fen": self.paid_out_fen,
            "money_conserved": self.money_conserved,
            "overdue_cases": self.overdue_cases,
            "elapsed_s": round(self.elapsed_s, 3),
            "transfers_per_s": round(self.transfers / self.elapsed_s, 2) if self.elapsed_s else 0.0,
            "messages_published": self.messages_published,
            "latency_ms": {
                "p50": round(percentile(lat, 50), 1),
                "p99": round(percentile(lat, 99), 1),
                "max": round(lat[-1], 1) if lat else 0.0,
            },
        }


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    if not sorted_values:
        return 0.0
    if len(sorted_values) == 1:
        return sorted_values[0]
    return statistics.quantiles(sorted_values, n=100, method="inclusive")[int(pct) - 1]


def choose_agencies(n: int) -> list[AgencyProfile]:
    if not 3 <= n <= len(AGENCY_ORDER):
        raise ValueError(f"--agencies must be between 3 and {len(AGENCY_ORDER)}")
    profiles = []
    for i, code in enumerate(AGENCY_ORDER[:n]):
        regime = Regime.R2021 if i % 2 == 0 else Regime.R2016
        if code == V1_AGENCY:
            profiles.append(AgencyProfile.v1_only(code, regime))
        else:
            profiles.append(AgencyProfile(code, regime))
    return profiles


def _pair(branch: Branch, codes: Sequence[str], rng: random.Random) -> tuple[str, str]:
    guangdong = [c for c in codes if c.startswith("44")]
    if branch.guangdong:
        out, into = rng.sample(guangdong, 2)
        return out, into
    if branch.v1_side and V1_AGENCY in codes:
        other = rng.choice([c for c in codes if c != V1_AGENCY])
        return (V1_AGENCY, other) if rng.random() < 0.5 else (other, V1_AGENCY)
    candidates = [
        (a, b) for a in codes for b in codes if a != b and not (a in guangdong and b in guangdong)
    ]
    # A payout letter is a contact letter v2: a v1-only agency cannot receive one.
    candidates = [(a, b) for a, b in candidates if V1_AGENCY not in (a, b) or branch.payout is None]
    return rng.choice(candidates)


def _bank_account(person: PersonAccount) -> BankAccount:
    digits = "".join(ch for ch in person.id_number if ch.isdigit())
    return BankAccount(
        bank_name="中国建设银行",
        bank_code="105100000017",
        account_name=person.name,
        account_number=f"6217{digits[-12:]}",
    )


async def run_demo(
    endpoint: BrokerEndpoint,
    base_dir: Path,
    *,
    agencies: int = 5,
    transfers: int = 42,
    seed: int = 20261122,
    progress: Callable[[int, int], None] | None = None,
    timeout_s: float = 600.0,
) -> DemoResult:
    """Provision, start the agents and the reconciler, run the transfers, wait, and sum up."""
    rng = random.Random(seed)
    profiles = choose_agencies(agencies)
    codes = [p.code for p in profiles]
    tag = uuid.uuid4().hex[:8]
    provisioned = provision(
        endpoint,
        f"jiexu-demo-{tag}",
        profiles,
        base_dir,
        user_prefix=f"demo{tag}-",
        retry_delays_ms=(200, 1000, 5000),
    )
    agents: dict[str, AgentProcess] = {}
    stop_reconciler = asyncio.Event()
    reconciler_task: asyncio.Task[Any] | None = None
    try:
        for code in codes:
            agents[code] = await AgentProcess(
                provisioned.settings(code, deadline_interval_s=5.0, prefetch=200)
            ).start()
        reconciler_task = asyncio.create_task(
            _run_reconciler(provisioned, stop_reconciler), name="reconciler"
        )
        planned = await _seed(agents, codes, transfers, rng)
        money_before = await _money(agents)
        started = time.perf_counter()
        submitted = await _submit(agents, planned)
        states = await _wait(agents, submitted, progress, timeout_s)
        elapsed = time.perf_counter() - started
        recon = await _wait_reconciled(provisioned, agents, submitted, timeout_s=60.0)
        money_after, paid_out = await _money_after(agents)
        latencies = await _latencies(agents, submitted)
        overdue = await _overdue(agents)
        published = sum(a.relay.published for a in agents.values() if a.relay is not None)
    finally:
        stop_reconciler.set()
        if reconciler_task is not None:
            await asyncio.gather(reconciler_task, return_exceptions=True)
        for agent in agents.values():
            await agent.stop()
        provisioned.teardown()
    by_branch: dict[str, Counter[str]] = {}
    unexpected: list[dict[str, str]] = []
    for transfer in submitted:
        outcome = states[transfer.case_id]
        by_branch.setdefault(transfer.branch.name, Counter())[outcome] += 1
        expected = expected_outcome(transfer.branch, transfer.duplicate_of is not None)
        if outcome != expected:
            unexpected.append(
                {"case_id": str(transfer.case_id), "branch": transfer.branch.name,
                 "expected": expected, "outcome": outcome}
            )
    outcomes = Counter(states[t.case_id].split(":")[0] for t in submitted)
    return DemoResult(
        agencies=codes,
        transfers=len(submitted),
        completed=outcomes.get("completed", 0),
        rejected=outcomes.get("rejected", 0),
        discrepancy=outcomes.get("discrepancy", 0),
        unfinished=sum(v for k, v in outcomes.items() if k not in ("completed", "rejected", "discrepancy")),
        outcomes_by_branch={k: dict(v) for k, v in sorted(by_branch.items())},
        unexpected=unexpected,
        reconciled_matched=recon["matched"],
        reconciled_mismatched=recon["mismatched"],
        reconciliation_pending=recon["open"],
        money_before_fen=money_before,
        money_after_fen=money_after,
        paid_out_fen=paid_out,
        overdue_cases=overdue,
        elapsed_s=elapsed,
        latencies_ms=latencies,
        messages_published=published,
        broker=endpoint.source,
    )


async def _run_reconciler(provisioned: Provisioned, stop: asyncio.Event) -> None:
    from broker.topology import load_agency_secret, secret_path

    secret = load_agency_secret(secret_path(provisioned.secrets_dir, RECONCILER_CODE))
    await run_reconciler(
        amqp_url=secret["amqp_url"],
        directory=AgencyDirectory.load(provisioned.directory_path),
        private_key=load_private_key(private_key_path(provisioned.secrets_dir, RECONCILER_CODE)),
        store_path=provisioned.data_dir / RECONCILER_CODE / "reconcile.db",
        settings=ReconcilerSettings(),
        consumer_settings=ConsumerSettings(
            user_prefix=provisioned.user_prefix, retry_delays_ms=provisioned.retry_delays_ms
        ),
        sweep_interval_s=5.0,
        stop_event=stop,
        signals=(),
    )


@dataclass
class Planned:
    """One planned transfer: its branch, both agencies, and the person as the outgoing books hold them."""

    branch: Branch
    outgoing: str
    receiving: str
    account: PersonAccount


def plan_transfers(
    codes: Sequence[str], transfers: int, rng: random.Random
) -> tuple[list[Planned], dict[str, list[PersonAccount]]]:
    """``transfers`` transfers cycling through every branch, and the accounts to seed per agency."""
    planned: list[Planned] = []
    per_agency: dict[str, list[PersonAccount]] = {code: [] for code in codes}
    used: set[str] = set()
    for i in range(transfers):
        branch = BRANCHES[i % len(BRANCHES)]
        out, into = _pair(branch, codes, rng)
        options = dict(branch.outgoing_options)
        # An ID number is region, birthday and a sequence number: with many thousands of people
        # two can meet. One person in two transfers would be a duplicate application (a branch of
        # its own), not what this transfer's branch says: draw another birthday.
        while True:
            account_out, account_in = make_mover(rng, out, into, (i + 1) % 1000, **options)
            if account_out.id_number not in used:
                used.add(account_out.id_number)
                break
        if branch.receiving_type is not None:
            account_in = replace(account_in, insurance_type=branch.receiving_type)
        if not branch.receiving_enrolled:
            account_in = replace(account_in, enrolled=False, participation="stopped")
        if branch.seed_outgoing:
            per_agency[out].append(account_out)
        per_agency[into].append(account_in)
        planned.append(Planned(branch, out, into, account_out))
    return planned, per_agency


def applications_for(item: Planned) -> list[ApplicationSubmitted]:
    """The application(s) of one planned transfer, in order: a duplicate branch applies twice (the
    same person again while the first case is open, refused as a duplicate)."""
    account = item.account
    case_id = uuid.uuid4()
    payout = _bank_account(account) if item.branch.payout is not None else None
    application = ApplicationSubmitted(
        case_id=case_id,
        person=Person(name=account.name, gender=account.gender, id_number=account.id_number),
        insurance_type=account.insurance_type,
        from_region=item.outgoing,
        letter_number=f"LX{item.receiving}{case_id.hex[:10].upper()}",
        payout_account=payout,
        payout_reason=item.branch.payout if payout is not None else None,
    )
    if not item.branch.duplicate:
        return [application]
    second = replace(application, case_id=uuid.uuid4(), letter_number=application.letter_number + "B")
    return [application, second]


def expected_outcome(branch: Branch, duplicate: bool) -> str:
    """What the case should end in: a duplicate branch's first application completes, its second
    is refused."""
    return branch.expected if duplicate or not branch.duplicate else "completed"


async def _seed(
    agents: dict[str, AgentProcess],
    codes: Sequence[str],
    transfers: int,
    rng: random.Random,
) -> list[Planned]:
    planned, per_agency = plan_transfers(codes, transfers, rng)
    for code, accounts in per_agency.items():
        ledger = agents[code].service.ledger
        assert isinstance(ledger, SqliteLedger)
        await ledger.put_accounts(accounts)
    return planned


async def _submit(agents: dict[str, AgentProcess], planned: Sequence[Planned]) -> list[Transfer]:
    submitted: list[Transfer] = []

    async def one(item: Planned) -> None:
        service = agents[item.receiving].service
        first: uuid.UUID | None = None
        for application in applications_for(item):
            submitted.append(
                Transfer(application.case_id, item.branch, item.outgoing, item.receiving,
                         time.perf_counter(), duplicate_of=first)
            )
            await service.apply(application)
            first = application.case_id

    await asyncio.gather(*(one(item) for item in planned))
    return submitted


def _outcome(receiving: CaseRecord | None, outgoing: CaseRecord | None) -> str | None:
    """The case's outcome once BOTH ends are terminal (or the receiving end alone, when the case
    never reached the outgoing agency)."""
    if receiving is None or receiving.state not in TERMINAL:
        return None
    if outgoing is not None and outgoing.state not in TERMINAL:
        return None
    reason = receiving.data.get("rejection_reason")
    return f"{receiving.state}:{reason}" if receiving.state == "rejected" and reason else receiving.state


async def _cases(agents: dict[str, AgentProcess]) -> dict[str, dict[uuid.UUID, CaseRecord]]:
    """Every case of every agency: one query per store (polling case by case would load the stores
    the agents are working on)."""
    return {
        code: {r.case_id: r for r in await agent.service.store.list_cases()}
        for code, agent in agents.items()
    }


async def _wait(
    agents: dict[str, AgentProcess],
    submitted: Sequence[Transfer],
    progress: Callable[[int, int], None] | None,
    timeout_s: float,
) -> dict[uuid.UUID, str]:
    states: dict[uuid.UUID, str] = {}
    deadline = time.monotonic() + timeout_s
    while len(states) < len(submitted) and time.monotonic() < deadline:
        cases = await _cases(agents)
        for transfer in submitted:
            if transfer.case_id not in states:
                outcome = _outcome(
                    cases[transfer.receiving].get(transfer.case_id),
                    cases[transfer.outgoing].get(transfer.case_id),
                )
                if outcome is not None:
                    states[transfer.case_id] = outcome
        if progress is not None:
            progress(len(states), len(submitted))
        if len(states) < len(submitted):
            await asyncio.sleep(0.25)
    for transfer in submitted:
        states.setdefault(transfer.case_id, "unfinished")
    return states


async def _wait_reconciled(
    provisioned: Provisioned,
    agents: dict[str, AgentProcess],
    submitted: Sequence[Transfer],
    timeout_s: float,
) -> dict[str, int]:
    """Wait until every case that reached the outgoing agency has a reconciliation result."""
    cases = await _cases(agents)
    expected = sum(1 for t in submitted if t.case_id in cases[t.outgoing])
    report = await ReconciliationReport.open(provisioned.data_dir / RECONCILER_CODE / "reconcile.db")
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            counts = await report.counts()
            if counts["matched"] + counts["mismatched"] >= expected or time.monotonic() > deadline:
                return counts
            await asyncio.sleep(0.25)
    finally:
        await report.close()


def _books(agent: AgentProcess) -> SeedableLedger:
    """The demo counts money through the optional totals, which its own ledgers offer."""
    ledger = agent.service.ledger
    assert isinstance(ledger, SeedableLedger)
    return ledger


async def _money(agents: dict[str, AgentProcess]) -> int:
    return sum([await _books(a).total_balance_fen() for a in agents.values()])


async def _money_after(agents: dict[str, AgentProcess]) -> tuple[int, int]:
    balance = await _money(agents)
    paid = sum([await _books(a).total_paid_out_fen() for a in agents.values()])
    return balance, paid


async def _latencies(agents: dict[str, AgentProcess], submitted: Sequence[Transfer]) -> list[float]:
    """From the application to the last commit of the case at either end, per case."""
    cases = await _cases(agents)
    latencies = []
    for transfer in submitted:
        receiving = cases[transfer.receiving].get(transfer.case_id)
        outgoing = cases[transfer.outgoing].get(transfer.case_id)
        if receiving is None:
            continue
        end = max(r.updated_at for r in (receiving, outgoing) if r is not None)
        latencies.append((end - receiving.created_at).total_seconds() * 1000)
    return latencies


async def _overdue(agents: dict[str, AgentProcess]) -> int:
    total = 0
    for agent in agents.values():
        total += len(await agent.service.store.cases_due_before(agent.service.clock.today()))
    return total
