"""`jiexu demo`: N agencies, the reconciliation agent and M transfers through every branch.

Everything is real: the broker (found or started by the provider chain), one broker user and one
Ed25519 key per agency, SQLite stores and ledgers seeded with people whose ID numbers, balances,
months and contribution periods are valid. Agents run in this process, each with its own broker
connection; they talk only through RabbitMQ.

With ``JIEXU_METRICS_PORT`` set, every agent and the reconciler serve their metrics and health
endpoints, each on a free port of its own (one port cannot serve them all): ``serving`` is told
each one's code and URL once it runs (``jiexu demo`` prints them on stderr).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from agents.domain.case import ApplicationSubmitted, State, case_from_data
from agents.domain.certificate import ParticipationCertificate
from agents.ledger.base import SeedableLedger
from agents.reconcile import ReconcilerProcess, ReconcilerSettings
from agents.reconcile.report import ReconciliationReport
from agents.service.certificates import CertificateFiles, save_certificate
from agents.service.process import AgentProcess
from agents.store.base import CaseRecord
from agents.tools.figures import latency_summary
from agents.tools.provision import Provisioned, provision
from agents.tools.scenarios import (
    Branch,
    Planned,
    applications_for,
    choose_agencies,
    expected_outcome,
    plan_transfers,
)
from agents.tools.seed import seed_accounts
from broker.consumer import ConsumerSettings
from broker.directory_trust import open_directory
from broker.names import RECONCILER_CODE
from broker.provider import BrokerEndpoint
from broker.signing import load_private_key
from broker.topology import load_agency_secret

__all__ = ["DemoResult", "run_demo", "write_sample_certificate"]

log = structlog.get_logger("jiexu.agents.tools.demo")

TERMINAL = frozenset({State.COMPLETED.value, State.REJECTED.value, State.DISCREPANCY.value})


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
    continuity: list[dict[str, Any]] = field(default_factory=list)
    """Per completed transfer: the receiving agency's continuity decision (no personal data)."""
    sample_certificate: ParticipationCertificate | None = None
    """One signed participation certificate from an outgoing case, for the demo to write out."""

    @property
    def continuity_counts(self) -> dict[str, int]:
        """Transfers per continuity outcome; a broken one counted with its waiting period."""
        counts: Counter[str] = Counter()
        for item in self.continuity:
            outcome = item["outcome"]
            if item["waiting_months"]:
                outcome = f"{outcome} (waiting {item['waiting_months']} months)"
            counts[outcome] += 1
        return dict(sorted(counts.items()))
    transfers_planned: int = 0
    """Transfers planned (``--transfers``); ``transfers`` counts applications, one more for each
    duplicate application."""
    reconciliation_expected: int = 0
    """Cases that reached an outgoing agency: each needs a reconciliation result. The others were
    refused at the receiving agency before any letter, so nothing moved and nothing is compared."""
    reconciliation_pending_cases: list[str] | None = None

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
            "reconciliation_expected": self.reconciliation_expected,
            "reconciliation_pending_cases": self.reconciliation_pending_cases or [],
            "transfers_planned": self.transfers_planned,
            "money_before_fen": self.money_before_fen,
            "money_after_fen": self.money_after_fen,
            "paid_out_fen": self.paid_out_fen,
            "money_conserved": self.money_conserved,
            "overdue_cases": self.overdue_cases,
            "elapsed_s": round(self.elapsed_s, 3),
            "transfers_per_s": round(self.transfers / self.elapsed_s, 2) if self.elapsed_s else 0.0,
            "messages_published": self.messages_published,
            "latency_ms": latency_summary(lat),
            "continuity": self.continuity_counts,
            "continuity_per_transfer": self.continuity,
        }


async def run_demo(
    endpoint: BrokerEndpoint,
    base_dir: Path,
    *,
    agencies: int = 5,
    transfers: int = 42,
    seed: int = 20261122,
    progress: Callable[[int, int], None] | None = None,
    timeout_s: float = 600.0,
    serving: Callable[[str, str], None] | None = None,
    on_planned: Callable[[int, int], None] | None = None,
    reconcile_timeout_s: float = 120.0,
) -> DemoResult:
    """Provision, start the agents and the reconciler, run the transfers, wait until every case
    has ended and every case that reached an outgoing agency is reconciled (or the timeouts pass),
    and sum up. ``on_planned(applications, transfers)`` is called once the applications are known,
    before any is submitted (a duplicate branch applies twice)."""
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
    reconciler: ReconcilerProcess | None = None
    try:
        for code in codes:
            settings = provisioned.settings(code, deadline_interval_s=5.0, prefetch=200)
            if settings.metrics_port is not None:
                # JIEXU_METRICS_PORT is set: one port cannot serve every agent of this process;
                # each takes a free one (logged as metrics_serving).
                settings = settings.model_copy(update={"metrics_port": 0})
            agents[code] = agent = await AgentProcess(settings).start()
            if serving is not None and agent.health is not None:
                serving(code, agent.health.url)
        reconciler = _reconciler(provisioned)
        await reconciler.start()
        reconciler.start_sweeper(5.0)
        if serving is not None and reconciler.health is not None:
            serving(RECONCILER_CODE, reconciler.health.url)
        planned = await _seed(agents, codes, transfers, rng)
        money_before = await _money(agents)
        applications = [(item, applications_for(item)) for item in planned]
        if on_planned is not None:
            on_planned(sum(len(apps) for _, apps in applications), len(planned))
        started = time.perf_counter()
        submitted = await _submit(agents, applications)
        states = await _wait(agents, submitted, progress, timeout_s)
        elapsed = time.perf_counter() - started
        recon = await _wait_reconciled(provisioned, agents, submitted, timeout_s=reconcile_timeout_s)
        money_after, paid_out = await _money_after(agents)
        latencies = await _latencies(agents, submitted)
        overdue = await _overdue(agents)
        published = sum(a.relay.published for a in agents.values() if a.relay is not None)
        continuity = await _continuity(agents, submitted)
        certificate = await _sample_certificate(agents, submitted)
    finally:
        if reconciler is not None:
            with contextlib.suppress(Exception):
                await reconciler.stop()
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
        reconciliation_pending=len(recon["pending"]),
        reconciliation_expected=recon["expected"],
        reconciliation_pending_cases=recon["pending"],
        transfers_planned=len(planned),
        money_before_fen=money_before,
        money_after_fen=money_after,
        paid_out_fen=paid_out,
        overdue_cases=overdue,
        elapsed_s=elapsed,
        latencies_ms=latencies,
        messages_published=published,
        broker=endpoint.source,
        continuity=continuity,
        sample_certificate=certificate,
    )


def _reconciler(provisioned: Provisioned) -> ReconcilerProcess:
    """The reconciler, sweeping every 5 s once started; a free metrics port of its own when
    ``JIEXU_METRICS_PORT`` (or ``JIEXU_RECONCILER_METRICS_PORT``) is set."""
    paths = provisioned.paths
    secret = load_agency_secret(paths.credentials(RECONCILER_CODE))
    # The demo's world is its data directory: the report too, whatever JIEXU_DATABASE_URL says.
    settings = ReconcilerSettings().model_copy(update={"database_url": None})
    if settings.metrics.port is not None:
        settings = settings.model_copy(update={"reconciler_metrics_port": 0})
    return ReconcilerProcess(
        amqp_url=secret["amqp_url"],
        directory=open_directory(paths.directory, paths.secrets_dir),
        private_key=load_private_key(paths.private_key(RECONCILER_CODE)),
        store_path=paths.report(),
        settings=settings,
        consumer_settings=ConsumerSettings(
            user_prefix=provisioned.user_prefix, retry_delays_ms=provisioned.retry_delays_ms
        ),
    )


async def _seed(
    agents: dict[str, AgentProcess],
    codes: Sequence[str],
    transfers: int,
    rng: random.Random,
) -> list[Planned]:
    today = agents[codes[0]].service.clock.today()
    planned, per_agency = plan_transfers(codes, transfers, rng, today=today)
    for code, accounts in per_agency.items():
        await seed_accounts(agents[code].service.ledger, accounts)
    return planned


async def _submit(
    agents: dict[str, AgentProcess], planned: Sequence[tuple[Planned, list[ApplicationSubmitted]]]
) -> list[Transfer]:
    submitted: list[Transfer] = []

    async def one(item: Planned, applications: list[ApplicationSubmitted]) -> None:
        service = agents[item.receiving].service
        first: uuid.UUID | None = None
        for application in applications:
            submitted.append(
                Transfer(application.case_id, item.branch, item.outgoing, item.receiving,
                         time.perf_counter(), duplicate_of=first)
            )
            await service.apply(application)
            first = application.case_id

    await asyncio.gather(*(one(item, applications) for item, applications in planned))
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
) -> dict[str, Any]:
    """Wait until every case that reached the outgoing agency has a reconciliation result.

    Returns ``matched`` and ``mismatched`` over those cases, ``expected`` (how many there are) and
    ``pending`` (the ids of those still without a result when the time ran out)."""
    cases = await _cases(agents)
    expected = {t.case_id for t in submitted if t.case_id in cases[t.outgoing]}
    report = await ReconciliationReport.open(provisioned.paths.report())
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            status = {r.case_id: r.status for r in await report.cases() if r.case_id in expected}
            pending = sorted(str(c) for c in expected if status.get(c, "open") == "open")
            if not pending or time.monotonic() > deadline:
                return {
                    "matched": sum(1 for v in status.values() if v == "matched"),
                    "mismatched": sum(1 for v in status.values() if v == "mismatched"),
                    "expected": len(expected),
                    "pending": pending,
                }
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


async def _continuity(agents: dict[str, AgentProcess], submitted: Sequence[Transfer]) -> list[dict[str, Any]]:
    """What each receiving agency decided about continuity, per transfer that credited."""
    cases = await _cases(agents)
    found: list[dict[str, Any]] = []
    for transfer in submitted:
        record = cases[transfer.receiving].get(transfer.case_id)
        decided = record.data.get("continuity") if record is not None else None
        if decided is None:
            continue
        found.append(
            {
                "case_id": str(transfer.case_id),
                "branch": transfer.branch.name,
                "outcome": decided["outcome"],
                "gap_months": decided["gap_months"],
                "back_payment_months": len(decided["back_payment_months"]),
                "waiting_months": decided["waiting_months"],
                "benefits_from": decided["benefits_from"],
            }
        )
    return found


async def _sample_certificate(
    agents: dict[str, AgentProcess], submitted: Sequence[Transfer]
) -> ParticipationCertificate | None:
    """The certificate of the first transfer whose outgoing case issued one (a balance if any)."""
    cases = await _cases(agents)
    issued: list[ParticipationCertificate] = []
    for transfer in submitted:
        record = cases[transfer.outgoing].get(transfer.case_id)
        if record is not None and record.data.get("certificate") is not None:
            certificate = case_from_data(record.data).certificate
            if certificate is not None:
                issued.append(certificate)
    with_balance = [c for c in issued if c.balance_fen > 0]
    return next(iter(with_balance or issued), None)


def write_sample_certificate(certificate: ParticipationCertificate, folder: Path) -> CertificateFiles:
    """Write the demo's sample certificate as PDF and JSON into ``folder`` (`FontMissing` without a
    CJK font)."""
    return save_certificate(certificate, folder)
