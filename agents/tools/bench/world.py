"""One world of the full flow: a provisioned vhost with its agencies, their processes and the
front office that commits the applications."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from agents.service.bootstrap import OpenedService, open_ledger, open_service
from agents.service.settings import AgentSettings
from agents.tools.bench.files import WorldFiles
from agents.tools.bench.pgfiles import PostgresWorldFiles, create_database, drop_database
from agents.tools.bench.processes import (
    REPO,
    Child,
    megabytes,
    proc_cpu_s,
    settings_env,
    spawn,
)
from agents.tools.provision import Provisioned, provision
from agents.tools.scenarios import (
    Planned,
    applications_for,
    choose_agencies,
    expected_outcome,
    plan_transfers,
)
from agents.tools.seed import seed_accounts
from broker.names import RECONCILER_CODE, inbox_queue
from broker.provider import BrokerEndpoint

__all__ = [
    "FLOW_RETRY_DELAYS_MS",
    "TERMINAL",
    "Application",
    "FlowConfig",
    "World",
    "outcome_of",
    "second_came_too_late",
]

FLOW_RETRY_DELAYS_MS: tuple[int, ...] = (200, 1000, 5000)
TERMINAL = ("completed", "rejected", "discrepancy")


@dataclass(frozen=True)
class FlowConfig:
    transfers: int = 10_000
    """The larger size; the smaller one is a tenth of it."""
    agencies: int = 5
    backlog: int = 100_000
    """Applications committed before the agents start, then drained (0: no backlog check)."""
    window: int = 200
    """At most this many applications open at the receiving agencies while feeding the flow."""
    prefetch: int = 200
    seed: int = 20261122
    timeout_s: float = 3600.0
    """Per world: how long the flow (or the drain) may take before the bench gives up on it."""
    sample_interval_s: float = 1.0
    agent_settings: Mapping[str, Any] = field(default_factory=dict)
    """Extra `AgentSettings` for every agent (e.g. ``{"verify_in_thread": False}``)."""
    database_url: str | None = None
    """A PostgreSQL server: each world's stores and ledgers go into a database made on it for the
    world (dropped afterwards), with ``JIEXU_LEDGER=postgres``. None: SQLite files."""
    replicas: int = 1
    """``jiexu agent`` processes per agency (more than one needs ``database_url``)."""
    work_dir: Path | None = None
    """Where the worlds' files go (default: a temporary directory, removed afterwards)."""
    keep_files: bool = False

    def sizes(self) -> list[int]:
        small = max(1, self.transfers // 10)
        return [small, self.transfers] if small < self.transfers else [self.transfers]


@dataclass
class Application:
    case_id: uuid.UUID
    planned: Planned
    duplicate_of: uuid.UUID | None = None
    """For the second application of a duplicate branch: the first one's case."""

    @property
    def duplicate(self) -> bool:
        return self.duplicate_of is not None


class World:
    """One provisioned vhost with its agencies, their processes and the front office."""

    def __init__(
        self, endpoint: BrokerEndpoint, config: FlowConfig, transfers: int, root: Path, label: str
    ) -> None:
        self.endpoint = endpoint
        self.config = config
        self.transfers = transfers
        self.label = label
        self.base = root / f"{label}-{transfers}"
        self.profiles = choose_agencies(config.agencies)
        self.codes = [p.code for p in self.profiles]
        self.provisioned: Provisioned | None = None
        self.children: dict[str, Child] = {}
        self.front: dict[str, OpenedService] = {}
        self.applications: list[Application] = []
        self.planned: list[Planned] = []
        self.files: WorldFiles | None = None
        self.submitted = 0
        self.dsn: str | None = None

    # -- set up and tear down
    async def provision(self) -> None:
        tag = uuid.uuid4().hex[:8]
        self.provisioned = await asyncio.to_thread(
            provision,
            self.endpoint,
            f"jiexu-bench-flow-{tag}",
            self.profiles,
            self.base,
            user_prefix=f"bflow{tag}-",
            retry_delays_ms=FLOW_RETRY_DELAYS_MS,
        )
        if self.config.database_url:
            self.dsn = await create_database(self.config.database_url, f"jiexu_bench_{tag}")
            self.files = PostgresWorldFiles(self.provisioned.paths, self.codes, self.dsn)
        else:
            self.files = WorldFiles(self.provisioned.paths, self.codes)
        planned, per_agency = plan_transfers(
            self.codes, self.transfers, random.Random(self.config.seed)
        )
        for code, accounts in per_agency.items():
            ledger = await open_ledger(self.settings(code))
            try:
                await seed_accounts(ledger, accounts)
            finally:
                await ledger.close()
        self.planned = planned
        for code in self.codes:
            self.front[code] = await open_service(self.settings(code))

    def settings(self, code: str) -> AgentSettings:
        assert self.provisioned is not None
        stored: dict[str, Any] = (
            {"database_url": self.dsn, "ledger": "postgres"} if self.dsn is not None else {}
        )
        return self.provisioned.settings(
            code, **{"prefetch": self.config.prefetch, **stored, **self.config.agent_settings}
        )

    async def start(self) -> None:
        assert self.provisioned is not None
        log_dir = self.base / "logs"
        replicas = self.config.replicas
        for code in self.codes:
            for n in range(replicas):
                name = code if replicas == 1 else f"{code}/{n + 1}"
                self.children[name] = await spawn(
                    name.replace("/", "-"),
                    ["agent", "--agency", code],
                    settings_env(self.settings(code)),
                    log_dir,
                )
        p = self.provisioned
        reconciler_env = {k: v for k, v in os.environ.items() if not k.startswith("JIEXU_")}
        reconciler_env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(REPO), reconciler_env.get("PYTHONPATH")])
        )
        if self.dsn is not None:
            # The report beside the stores and ledgers: schema reconcile_000000 of the world's
            # database (in the environment, not on the command line, as an operator would).
            reconciler_env["JIEXU_DATABASE_URL"] = self.dsn
            reconciler_env["JIEXU_DATABASE_POOL_SIZE"] = str(
                self.settings(self.codes[0]).database_pool_size
            )
        self.children[RECONCILER_CODE] = await spawn(
            "reconciler",
            [
                "reconcile",
                "--secrets-dir", str(p.secrets_dir),
                "--directory", str(p.directory_path),
                "--data-dir", str(p.data_dir),
                "--user-prefix", p.user_prefix,
                "--retry-delays", ",".join(str(ms) for ms in p.retry_delays_ms),
                "--sweep-interval", "30",
            ],
            reconciler_env,
            log_dir,
        )
        await self._wait_consuming()

    async def _wait_consuming(self, within_s: float = 120.0) -> None:
        """Until every inbox has its consumer (the agents have started)."""
        assert self.provisioned is not None
        vhost = self.provisioned.vhost
        queues = [inbox_queue(code) for code in [*self.codes, RECONCILER_CODE]]

        def consumers() -> list[int]:
            with self.endpoint.management() as api:
                return [int(api.get_queue(vhost, q).get("consumers", 0) or 0) for q in queues]

        deadline = time.monotonic() + within_s
        while True:
            for child in self.children.values():
                if child.process.returncode is not None:
                    raise RuntimeError(
                        f"bench: {child.name} exited with {child.process.returncode} at start; "
                        f"see {child.log_path}"
                    )
            wanted = [self.config.replicas] * len(self.codes) + [1]  # the reconciler: one
            if all(n >= w for n, w in zip(await asyncio.to_thread(consumers), wanted, strict=True)):
                return
            if time.monotonic() > deadline:
                raise TimeoutError("bench: the agents did not start consuming")
            await asyncio.sleep(0.2)

    async def close(self) -> None:
        for child in self.children.values():
            await child.stop()
        for opened in self.front.values():
            await opened.close()
        self.front.clear()
        if self.provisioned is not None:
            await asyncio.to_thread(self.provisioned.teardown)
        if isinstance(self.files, PostgresWorldFiles):
            await self.files.close()
        if self.dsn is not None and self.config.database_url:
            await drop_database(self.config.database_url, self.dsn)
            self.dsn = None

    # -- the front office
    async def _apply(self, item: Planned) -> None:
        service = self.front[item.receiving].service
        first: uuid.UUID | None = None
        for application in applications_for(item):
            self.applications.append(Application(application.case_id, item, duplicate_of=first))
            self.submitted += 1
            await service.apply(application)
            first = application.case_id

    async def submit_all(self, chunk: int = 2000) -> None:
        for start in range(0, len(self.planned), chunk):
            await asyncio.gather(*(self._apply(item) for item in self.planned[start : start + chunk]))

    async def submit_windowed(self, window: int, poll_s: float = 0.1) -> None:
        assert self.files is not None
        pending = list(reversed(self.planned))
        while pending:
            free = window - await self.files.open_receiving()
            if free <= 0:
                await asyncio.sleep(poll_s)
                continue
            batch = [pending.pop() for _ in range(min(free, len(pending)))]
            await asyncio.gather(*(self._apply(item) for item in batch))

    # -- waiting and sampling
    async def wait_done(
        self, started: float, on_progress: Callable[[dict[str, int]], None] | None = None
    ) -> bool:
        """Until every case is closed at both ends, every outbox is published and every case that
        reached its outgoing agency is reconciled. False on timeout."""
        assert self.files is not None
        deadline = started + self.config.timeout_s
        expected = self.expected_applications
        # The stores are polled while the agents work on them: every 0.5 s for a small world, less
        # often for a large one (0.5 s per 10,000 applications, at most every 5 s), so that the
        # bench's own queries do not take a noticeable share of the cores it measures. The figures
        # come from the stores' timestamps, not from when the poll noticed the end.
        interval = min(5.0, max(0.5, expected / 20_000))
        while True:
            progress = await self.files.progress()
            if on_progress is not None:
                on_progress(progress)
            if (
                self.submitted == expected
                and progress["open"] == 0
                and progress["unpublished"] == 0
                and progress["reconciler_unsent"] == 0
            ):
                progress = await self.files.progress(complete=True)
                if progress["reconciled"] >= progress["outgoing_cases"]:
                    return True
            for child in self.children.values():
                if child.process.returncode is not None:
                    raise RuntimeError(
                        f"bench: {child.name} exited with {child.process.returncode}; "
                        f"see {child.log_path}"
                    )
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(interval)

    @property
    def expected_applications(self) -> int:
        return sum(2 if item.branch.duplicate else 1 for item in self.planned)

    async def sample(self, started: float, finished: Callable[[], int], stop: asyncio.Event) -> None:
        while not stop.is_set():
            elapsed = time.monotonic() - started
            done = finished()
            for child in self.children.values():
                rss = child.status().get("VmRSS")
                if rss is not None:
                    child.samples.append((round(elapsed, 1), done, round(rss / 1024, 1)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.config.sample_interval_s)

    async def stop_children(self) -> None:
        for child in self.children.values():
            child.hwm_kb = child.status().get("VmHWM")
            child.cpu_s = proc_cpu_s(child.process.pid)
        await asyncio.gather(*(child.stop() for child in self.children.values()))

    # -- the figures
    async def outcomes(self) -> dict[str, Any]:
        assert self.files is not None
        cases = await self.files.cases()
        outcomes: dict[str, int] = {}
        unexpected: list[dict[str, str]] = []
        latencies: list[float] = []
        first_created: datetime | None = None
        last_update: datetime | None = None
        unexpected_count = 0
        late_duplicates = 0
        for app in self.applications:
            item = app.planned
            receiving = cases[item.receiving].get(app.case_id)
            outgoing = cases[item.outgoing].get(app.case_id)
            outcome = outcome_of(cases, app)
            kind = outcome.split(":")[0]
            outcomes[kind] = outcomes.get(kind, 0) + 1
            expected = expected_outcome(item.branch, app.duplicate)
            if outcome != expected and second_came_too_late(cases, app, outcome):
                # The front office committed the second application only after the first case
                # had closed (its store was busy): no longer a duplicate, and the outgoing agency
                # answers that the relationship has already been transferred out.
                expected = outcome
                late_duplicates += 1
            if outcome != expected:
                unexpected_count += 1
                if len(unexpected) < 20:
                    unexpected.append(
                        {"case_id": str(app.case_id), "branch": item.branch.name,
                         "expected": expected, "outcome": outcome}
                    )
            if receiving is None:
                continue
            created = datetime.fromisoformat(receiving[2])
            ends = [datetime.fromisoformat(r[3]) for r in (receiving, outgoing) if r is not None]
            end = max(ends)
            latencies.append((end - created).total_seconds() * 1000)
            first_created = created if first_created is None else min(first_created, created)
            last_update = end if last_update is None else max(last_update, end)
        return {
            "outcomes": outcomes,
            "unexpected": unexpected,
            "unexpected_count": unexpected_count,
            "late_duplicates": late_duplicates,
            "latencies": sorted(latencies),
            "first_created": first_created,
            "last_update": last_update,
        }

    def cpu(self) -> dict[str, float | None]:
        return {
            ("reconciler" if code == RECONCILER_CODE else code): (
                round(child.cpu_s, 2) if child.cpu_s is not None else None
            )
            for code, child in self.children.items()
        }

    def rss(self) -> dict[str, float | None]:
        return {
            ("reconciler" if code == RECONCILER_CODE else code): megabytes(child.hwm_kb)
            for code, child in self.children.items()
        }


def outcome_of(
    cases: Mapping[str, Mapping[uuid.UUID, tuple[str, str | None, str, str]]], app: Application
) -> str:
    receiving = cases[app.planned.receiving].get(app.case_id)
    outgoing = cases[app.planned.outgoing].get(app.case_id)
    if receiving is None or receiving[0] not in TERMINAL:
        return "unfinished"
    if outgoing is not None and outgoing[0] not in TERMINAL:
        return "unfinished"
    state, reason = receiving[0], receiving[1]
    return f"{state}:{reason}" if state == "rejected" and reason else state


def second_came_too_late(
    cases: Mapping[str, Mapping[uuid.UUID, tuple[str, str | None, str, str]]],
    app: Application,
    outcome: str,
) -> bool:
    """A duplicate branch's second application, created after the first case had closed, and so
    refused by the outgoing agency (``other``: transferred out already) instead of as a duplicate."""
    if app.duplicate_of is None or outcome != "rejected:other":
        return False
    at_receiving = cases[app.planned.receiving]
    first, second = at_receiving.get(app.duplicate_of), at_receiving.get(app.case_id)
    if first is None or second is None or first[0] not in TERMINAL:
        return False
    return datetime.fromisoformat(first[3]) <= datetime.fromisoformat(second[2])
