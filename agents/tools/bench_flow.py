"""`jiexu bench`'s full-flow section: whole transfers through agents that run as separate processes.

Each size is its own world on the bench's broker: a vhost provisioned for it (`agents.tools.provision`),
N agencies, their ledgers seeded with the people of the planned transfers (every branch of
`agents.tools.demo.BRANCHES`), one ``jiexu agent --agency CODE`` process per agency configured only
through ``JIEXU_*`` variables made from `Provisioned.settings`, and one ``jiexu reconcile`` process.
The bench process plays the agencies' front offices: it commits the applications into each
agency's store, as ``jiexu apply`` does, and the running agent's relay sends the contact letters.

Figures per size, from the stores once everything is over (nothing is estimated from polling):

* ``flow_msgs_per_s``       every message the agents and the reconciler published (outbox rows
                            stamped published), divided by the flow's wall time: from the first
                            application to the last commit or publish anywhere;
* ``flow_transfers_per_s``  transfers (applications) over the same time;
* ``latency_ms``            per case, from the application's commit to the last commit of the case
                            at either end (p50, p99, max);
* ``peak_rss_mb``           per process, ``VmHWM`` from ``/proc/<pid>/status`` read just before it
                            is told to stop.

Applications are fed through a window (at most ``window`` open at the receiving agencies at once),
so that the latency is the flow's and not the queue's; the window is large enough to keep every
agent busy. The backlog check is the other way round: ``backlog`` applications are committed while
no agent runs, then the agents start and drain it, ``VmRSS`` sampled every second; the figures show
whether memory grows with the backlog (``first``, ``last``, ``peak`` and ``by_progress``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import structlog

from agents.ledger.sqlite import SqliteLedger
from agents.service.process import OpenedService, open_service
from agents.service.settings import AgentSettings
from agents.tools.bench import BenchContext, Section
from agents.tools.demo import (
    Planned,
    applications_for,
    choose_agencies,
    expected_outcome,
    percentile,
    plan_transfers,
)
from agents.tools.provision import Provisioned, provision
from broker.names import RECONCILER_CODE, inbox_queue
from broker.provider import BrokerEndpoint

__all__ = [
    "FLOW_RETRY_DELAYS_MS",
    "FlowConfig",
    "add_flow_ratios",
    "flow_section",
    "run_flow",
    "settings_env",
]

log = structlog.get_logger("jiexu.bench.flow")

FLOW_RETRY_DELAYS_MS: tuple[int, ...] = (200, 1000, 5000)
TERMINAL = ("completed", "rejected", "discrepancy")
_REPO = Path(__file__).resolve().parents[1]


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
    work_dir: Path | None = None
    """Where the worlds' files go (default: a temporary directory, removed afterwards)."""
    keep_files: bool = False

    def sizes(self) -> list[int]:
        small = max(1, self.transfers // 10)
        return [small, self.transfers] if small < self.transfers else [self.transfers]


# -- processes ------------------------------------------------------------------------------------


def settings_env(settings: AgentSettings, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a ``jiexu agent`` process configured by ``settings``: the given (or this
    process's) environment minus every inherited ``JIEXU_*``, plus one ``JIEXU_*`` per setting."""
    source = os.environ if base is None else base
    env = {k: v for k, v in source.items() if not k.startswith("JIEXU_")}
    for name, value in settings.model_dump(mode="json").items():
        if value is None:
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, list | dict):
            text = json.dumps(value)  # pydantic-settings reads complex values as JSON
        else:
            text = str(value)
        env[f"JIEXU_{name.upper()}"] = text
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO), env.get("PYTHONPATH")]))
    return env


def _proc_status_kb(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` (kB) of a live process; empty once it is gone."""
    values: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    values[key] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        return {}
    return values


def _proc_cpu_s(pid: int) -> float | None:
    """User plus system CPU seconds of a live process (``/proc/<pid>/stat``)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            fields = stat.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _broker_pid() -> int | None:
    """The local RabbitMQ node's pid when exactly one runs on this machine (for its CPU time)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text(encoding="ascii", errors="replace").strip() == "beam.smp":
                    found.append(int(entry.name))
            except OSError:
                continue
    return found[0] if len(found) == 1 else None


@dataclass
class _CpuClock:
    """CPU seconds of this process (the bench, playing the front offices) and of the broker."""

    broker_pid: int | None = field(default_factory=_broker_pid)
    own: float = field(default_factory=time.process_time)
    broker: float | None = None

    def __post_init__(self) -> None:
        self.broker = _proc_cpu_s(self.broker_pid) if self.broker_pid else None

    def stop(self) -> dict[str, float | None]:
        broker_now = _proc_cpu_s(self.broker_pid) if self.broker_pid else None
        return {
            "bench": round(time.process_time() - self.own, 2),
            "broker": (
                round(broker_now - self.broker, 2)
                if broker_now is not None and self.broker is not None
                else None
            ),
        }


def _mb(kb: int | None) -> float | None:
    return round(kb / 1024, 1) if kb is not None else None


@dataclass
class _Child:
    """One agent (or the reconciler) running as its own process."""

    name: str
    process: asyncio.subprocess.Process
    log_path: Path
    log_file: IO[bytes]
    samples: list[tuple[float, int, float]] = field(default_factory=list)
    """(seconds since the drain started, applications finished, VmRSS MB)."""
    hwm_kb: int | None = None
    cpu_s: float | None = None
    returncode: int | None = None

    def status(self) -> dict[str, int]:
        return _proc_status_kb(self.process.pid) if self.process.returncode is None else {}

    async def stop(self, within_s: float = 60.0) -> None:
        if self.process.returncode is None:
            self.hwm_kb = self.status().get("VmHWM", self.hwm_kb)
            self.cpu_s = _proc_cpu_s(self.process.pid) or self.cpu_s
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), within_s)
            except TimeoutError:
                log.warning("bench_flow_process_killed", name=self.name, log=str(self.log_path))
                self.process.kill()
                await self.process.wait()
        self.returncode = self.process.returncode
        self.log_file.close()


def _open_log(log_dir: Path, name: str) -> tuple[Path, IO[bytes]]:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    return log_path, log_path.open("ab")


async def _spawn(name: str, args: Sequence[str], env: Mapping[str, str], log_dir: Path) -> _Child:
    log_path, log_file = _open_log(log_dir, name)
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "agents.cli",
            *args,
            cwd=_REPO,
            env=dict(env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log_file,
            stderr=asyncio.subprocess.STDOUT,
        )
    except BaseException:
        log_file.close()
        raise
    return _Child(name, process, log_path, log_file)


# -- reading the stores (plain sqlite3 on a worker thread, committed data only) ---------------------


class _Files:
    """Read-only queries on a world's SQLite files; every call opens, reads and closes."""

    def __init__(self, provisioned: Provisioned, codes: Sequence[str]) -> None:
        self.stores = {code: provisioned.data_dir / code / "store.db" for code in codes}
        self.ledgers = {code: provisioned.data_dir / code / "ledger.db" for code in codes}
        self.report = provisioned.data_dir / RECONCILER_CODE / "reconcile.db"

    @staticmethod
    def _query(path: Path, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if not path.exists():
            return []
        db = sqlite3.connect(path, timeout=30.0)
        try:
            return list(db.execute(sql, params).fetchall())
        finally:
            db.close()

    async def query(self, path: Path, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return await asyncio.to_thread(self._query, path, sql, params)

    async def open_receiving(self) -> int:
        """Applications still open at their receiving agencies (cheap: the open cases' index)."""
        total = 0
        for path in self.stores.values():
            for (count,) in await self.query(
                path, "SELECT COUNT(*) FROM cases WHERE open = 1 AND role = 'receiving'"
            ):
                total += int(count or 0)
        return total

    async def progress(self, *, complete: bool = False) -> dict[str, int]:
        """Open cases (receiving, all), unpublished outbox rows, the reconciler's unsent envelopes;
        with ``complete`` also the cases that reached an outgoing agency and the reconciled ones
        (those two scan whole tables: asked only once the rest says the flow is over)."""
        totals = {"open_receiving": 0, "open": 0, "unpublished": 0}
        for path in self.stores.values():
            rows = await self.query(
                path,
                "SELECT (SELECT COUNT(*) FROM cases WHERE open = 1 AND role = 'receiving'), "
                "(SELECT COUNT(*) FROM cases WHERE open = 1), "
                "(SELECT COUNT(*) FROM outbox WHERE published_at IS NULL)",
            )
            if rows:
                for key, value in zip(totals, rows[0], strict=True):
                    totals[key] += int(value or 0)
        unsent = await self.query(self.report, "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL")
        totals["reconciler_unsent"] = int(unsent[0][0] or 0) if unsent else 0
        if complete:
            outgoing = 0
            for path in self.stores.values():
                for (count,) in await self.query(
                    path, "SELECT COUNT(*) FROM cases WHERE role = 'outgoing'"
                ):
                    outgoing += int(count or 0)
            reconciled = await self.query(
                self.report, "SELECT COUNT(*) FROM cases WHERE status != 'open'"
            )
            totals["outgoing_cases"] = outgoing
            totals["reconciled"] = int(reconciled[0][0] or 0) if reconciled else 0
        return totals

    async def cases(self) -> dict[str, dict[uuid.UUID, tuple[str, str | None, str, str]]]:
        """Per agency: case id -> (state, rejection reason, created_at, updated_at)."""
        result: dict[str, dict[uuid.UUID, tuple[str, str | None, str, str]]] = {}
        for code, path in self.stores.items():
            rows = await self.query(
                path,
                "SELECT case_id, state, json_extract(data, '$.rejection_reason'), created_at, "
                "updated_at FROM cases",
            )
            result[code] = {uuid.UUID(r[0]): (r[1], r[2], r[3], r[4]) for r in rows}
        return result

    async def first_publish(self) -> str | None:
        """When the first agent published its first message (a drain's real start)."""
        first: str | None = None
        for path in self.stores.values():
            for (earliest,) in await self.query(path, "SELECT MIN(published_at) FROM outbox"):
                first = min(filter(None, (first, earliest)), default=None)
        return first

    async def published(self) -> tuple[int, int, str | None]:
        """(agents' published outbox rows, the reconciler's sent envelopes, the last stamp)."""
        agents, last = 0, None
        for path in self.stores.values():
            for count, latest in await self.query(
                path, "SELECT COUNT(*), MAX(published_at) FROM outbox WHERE published_at IS NOT NULL"
            ):
                agents += int(count or 0)
                last = max(filter(None, (last, latest)), default=None)
        reconciler = 0
        for count, latest in await self.query(
            self.report, "SELECT COUNT(*), MAX(sent_at) FROM outbox WHERE sent_at IS NOT NULL"
        ):
            reconciler += int(count or 0)
            last = max(filter(None, (last, latest)), default=None)
        return agents, reconciler, last

    async def money(self) -> tuple[int, int]:
        """(total balance, total paid out) over every agency's ledger, in fen."""
        balance = paid = 0
        for path in self.ledgers.values():
            for b, p in await self.query(
                path,
                "SELECT (SELECT COALESCE(SUM(balance_fen), 0) FROM accounts), "
                "(SELECT COALESCE(SUM(amount_fen), 0) FROM payouts)",
            ):
                balance += int(b)
                paid += int(p)
        return balance, paid

    async def reconciled(self) -> dict[str, int]:
        rows = await self.query(self.report, "SELECT status, COUNT(*) FROM cases GROUP BY status")
        return {str(status): int(count) for status, count in rows}


# -- one world ------------------------------------------------------------------------------------


@dataclass
class _Application:
    case_id: uuid.UUID
    planned: Planned
    duplicate_of: uuid.UUID | None = None
    """For the second application of a duplicate branch: the first one's case."""

    @property
    def duplicate(self) -> bool:
        return self.duplicate_of is not None


class _World:
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
        self.children: dict[str, _Child] = {}
        self.front: dict[str, OpenedService] = {}
        self.applications: list[_Application] = []
        self.planned: list[Planned] = []
        self.files: _Files | None = None
        self.submitted = 0

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
        self.files = _Files(self.provisioned, self.codes)
        planned, per_agency = plan_transfers(
            self.codes, self.transfers, random.Random(self.config.seed)
        )
        for code, accounts in per_agency.items():
            ledger = await SqliteLedger.open(self.base / "data" / code / "ledger.db", code)
            try:
                await ledger.put_accounts(accounts)
            finally:
                await ledger.close()
        self.planned = planned
        for code in self.codes:
            self.front[code] = await open_service(self.settings(code))

    def settings(self, code: str) -> AgentSettings:
        assert self.provisioned is not None
        return self.provisioned.settings(
            code, **{"prefetch": self.config.prefetch, **self.config.agent_settings}
        )

    async def start(self) -> None:
        assert self.provisioned is not None
        log_dir = self.base / "logs"
        for code in self.codes:
            self.children[code] = await _spawn(
                code, ["agent", "--agency", code], settings_env(self.settings(code)), log_dir
            )
        p = self.provisioned
        reconciler_env = {k: v for k, v in os.environ.items() if not k.startswith("JIEXU_")}
        reconciler_env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(_REPO), reconciler_env.get("PYTHONPATH")])
        )
        self.children[RECONCILER_CODE] = await _spawn(
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
            if all(n >= 1 for n in await asyncio.to_thread(consumers)):
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

    # -- the front office
    async def _apply(self, item: Planned) -> None:
        service = self.front[item.receiving].service
        first: uuid.UUID | None = None
        for application in applications_for(item):
            self.applications.append(_Application(application.case_id, item, duplicate_of=first))
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
            child.cpu_s = _proc_cpu_s(child.process.pid)
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
            outcome = _outcome_of(cases, app)
            kind = outcome.split(":")[0]
            outcomes[kind] = outcomes.get(kind, 0) + 1
            expected = expected_outcome(item.branch, app.duplicate)
            if outcome != expected and _second_came_too_late(cases, app, outcome):
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
            ("reconciler" if code == RECONCILER_CODE else code): _mb(child.hwm_kb)
            for code, child in self.children.items()
        }


def _outcome_of(
    cases: Mapping[str, Mapping[uuid.UUID, tuple[str, str | None, str, str]]], app: _Application
) -> str:
    receiving = cases[app.planned.receiving].get(app.case_id)
    outgoing = cases[app.planned.outgoing].get(app.case_id)
    if receiving is None or receiving[0] not in TERMINAL:
        return "unfinished"
    if outgoing is not None and outgoing[0] not in TERMINAL:
        return "unfinished"
    state, reason = receiving[0], receiving[1]
    return f"{state}:{reason}" if state == "rejected" and reason else state


def _second_came_too_late(
    cases: Mapping[str, Mapping[uuid.UUID, tuple[str, str | None, str, str]]],
    app: _Application,
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


def _latency(latencies: Sequence[float]) -> dict[str, float]:
    return {
        "p50": round(percentile(latencies, 50), 1),
        "p99": round(percentile(latencies, 99), 1),
        "max": round(latencies[-1], 1) if latencies else 0.0,
    }


def _parse(stamp: str | None) -> datetime | None:
    return datetime.fromisoformat(stamp) if stamp else None


# -- the two measurements -------------------------------------------------------------------------


async def _flow_size(
    endpoint: BrokerEndpoint, config: FlowConfig, transfers: int, root: Path
) -> dict[str, Any]:
    world = _World(endpoint, config, transfers, root, "flow")
    try:
        await world.provision()
        assert world.files is not None
        money_before, _ = await world.files.money()
        await world.start()
        log.info("bench_flow_started", transfers=transfers, agencies=config.agencies)
        started_at = datetime.now(UTC)
        started = time.monotonic()
        cpu_clock = _CpuClock()
        stop_sampling = asyncio.Event()
        sampler = asyncio.create_task(world.sample(started, lambda: 0, stop_sampling))
        try:
            await world.submit_windowed(config.window)
            finished = await world.wait_done(started)
        finally:
            stop_sampling.set()
            await sampler
        other_cpu = cpu_clock.stop()
        await world.stop_children()
        agents_published, reconciler_published, last_publish = await world.files.published()
        found = await world.outcomes()
        money_after, paid_out = await world.files.money()
        reconciled = await world.files.reconciled()
    finally:
        await world.close()
        if not config.keep_files:
            shutil.rmtree(world.base, ignore_errors=True)
    ends = [t for t in (found["last_update"], _parse(last_publish)) if t is not None]
    elapsed = max(((max(ends) - started_at).total_seconds() if ends else 0.0), 1e-6)
    published = agents_published + reconciler_published
    return {
        "transfers": transfers,
        "applications": len(world.applications),
        "finished": finished,
        "elapsed_s": round(elapsed, 3),
        "flow_msgs_per_s": round(published / elapsed, 1),
        "flow_transfers_per_s": round(len(world.applications) / elapsed, 1),
        "messages_published": {"agents": agents_published, "reconciler": reconciler_published},
        "messages_per_transfer": round(published / max(len(world.applications), 1), 2),
        "latency_ms": _latency(found["latencies"]),
        "peak_rss_mb": world.rss(),
        "cpu_s": {**world.cpu(), **other_cpu},
        "cpu_ms_per_msg": _cpu_per_msg(world.cpu(), published),
        "outcomes": found["outcomes"],
        "unexpected_outcomes": found["unexpected_count"],
        "unexpected_examples": found["unexpected"],
        "duplicates_after_first_closed": found["late_duplicates"],
        "reconciled": reconciled,
        "money_conserved": money_before == money_after + paid_out,
        "exit_codes": {child.name: child.returncode for child in world.children.values()},
    }


async def _backlog(endpoint: BrokerEndpoint, config: FlowConfig, root: Path) -> dict[str, Any]:
    world = _World(endpoint, config, config.backlog, root, "backlog")
    try:
        await world.provision()
        assert world.files is not None
        money_before, _ = await world.files.money()
        committed = time.monotonic()
        await world.submit_all()
        commit_s = time.monotonic() - committed
        total = world.submitted
        progress: dict[str, int] = {"open_receiving": total}
        spawned_at = datetime.now(UTC)
        started = time.monotonic()
        await world.start()
        log.info("bench_backlog_started", applications=total, agencies=config.agencies)
        stop_sampling = asyncio.Event()
        sampler = asyncio.create_task(
            world.sample(started, lambda: total - progress["open_receiving"], stop_sampling)
        )
        try:
            finished = await world.wait_done(started, progress.update)
        finally:
            stop_sampling.set()
            await sampler
        await world.stop_children()
        agents_published, reconciler_published, last_publish = await world.files.published()
        first_publish = _parse(await world.files.first_publish())
        found = await world.outcomes()
        money_after, paid_out = await world.files.money()
        reconciled = await world.files.reconciled()
    finally:
        await world.close()
        if not config.keep_files:
            shutil.rmtree(world.base, ignore_errors=True)
    # The drain starts when the first agent, up and running, publishes the first contact letter;
    # starting the processes (imports, connecting) comes before and is reported apart.
    started_at = first_publish or spawned_at
    ends = [t for t in (found["last_update"], _parse(last_publish)) if t is not None]
    elapsed = max(((max(ends) - started_at).total_seconds() if ends else 0.0), 1e-3)
    published = agents_published + reconciler_published
    rss: dict[str, Any] = {}
    for code, child in world.children.items():
        name = "reconciler" if code == RECONCILER_CODE else code
        rss[name] = _rss_summary(child, total)
    return {
        "applications": total,
        "commit_s": round(commit_s, 1),
        "startup_s": round((started_at - spawned_at).total_seconds(), 1),
        "finished": finished,
        "drain_s": round(elapsed, 1),
        "drain_transfers_per_s": round(total / elapsed, 1),
        "drain_msgs_per_s": round(published / elapsed, 1),
        "unexpected_outcomes": found["unexpected_count"],
        "unexpected_examples": found["unexpected"],
        "duplicates_after_first_closed": found["late_duplicates"],
        "outcomes": found["outcomes"],
        "reconciled": reconciled,
        "money_conserved": money_before == money_after + paid_out,
        "rss_mb": rss,
    }


def _cpu_per_msg(cpu: Mapping[str, float | None], published: int) -> float | None:
    """CPU of every agent and the reconciler per message published (the bench process, which plays
    the front offices, and the broker are not in it)."""
    if not published or any(v is None for v in cpu.values()):
        return None
    return round(sum(v for v in cpu.values() if v is not None) / published * 1000, 3)


def _rss_summary(child: _Child, total: int) -> dict[str, Any]:
    samples = child.samples
    if not samples:
        return {"first": None, "last": None, "peak": _mb(child.hwm_kb), "by_progress": {}}
    # The first sample once a tenth of the backlog is done: past imports and warm-up.
    warm = next((s for s in samples if s[1] >= total // 10), samples[0])
    by_progress: dict[str, float] = {}
    for decile in range(0, 11):
        target = total * decile // 10
        sample = next((s for s in samples if s[1] >= target), None)
        if sample is not None:
            by_progress[f"{decile * 10}%"] = sample[2]
    return {
        "first": warm[2],
        "last": samples[-1][2],
        "peak": _mb(child.hwm_kb) or max(s[2] for s in samples),
        "growth": round(samples[-1][2] - warm[2], 1),
        "by_progress": by_progress,
    }


async def run_flow(endpoint: BrokerEndpoint, config: FlowConfig) -> dict[str, Any]:
    """Both sizes, then the backlog drain; the figures for the larger size at the top level."""
    root = config.work_dir or Path(tempfile.mkdtemp(prefix="jiexu-bench-flow-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        sizes = [await _flow_size(endpoint, config, n, root) for n in config.sizes()]
        backlog = await _backlog(endpoint, config, root) if config.backlog > 0 else None
    finally:
        if not config.keep_files and config.work_dir is None:
            shutil.rmtree(root, ignore_errors=True)
    large = sizes[-1]
    result: dict[str, Any] = {
        "flow_agencies": config.agencies,
        "flow_window": config.window,
        "flow_prefetch": config.prefetch,
        "flow_agent_settings": dict(config.agent_settings),
        "flow_msgs_per_s": large["flow_msgs_per_s"],
        "flow_transfers_per_s": large["flow_transfers_per_s"],
        "latency_ms": large["latency_ms"],
        "peak_rss_mb": large["peak_rss_mb"],
        "sizes": sizes,
    }
    if len(sizes) > 1:
        result["rss_ratio_large_vs_small"] = _rss_ratio(sizes[0]["peak_rss_mb"], large["peak_rss_mb"])
    if backlog is not None:
        result["backlog"] = backlog
    return result


def _rss_ratio(small: Mapping[str, float | None], large: Mapping[str, float | None]) -> dict[str, float]:
    ratios: dict[str, float] = {}
    for name, mb in large.items():
        before = small.get(name)
        if mb and before:
            ratios[name] = round(mb / before, 3)
    if ratios:
        ratios["max"] = max(ratios.values())
    return ratios


def flow_section(config: FlowConfig) -> Section:
    """The full flow as a `jiexu bench` section, on the bench's broker."""

    async def flow(ctx: BenchContext) -> dict[str, Any]:
        return await run_flow(ctx.endpoint, config)

    return flow


def add_flow_ratios(result: dict[str, Any]) -> dict[str, Any]:
    """``ratio_flow_vs_raw``: the flow's message rate over the raw hop's, measured in one run."""
    raw = result.get("raw_hop_msgs_per_s")
    if raw and "flow_msgs_per_s" in result:
        result["ratio_flow_vs_raw"] = round(result["flow_msgs_per_s"] / raw, 3)
        for size in result.get("sizes", []):
            size["ratio_flow_vs_raw"] = round(size["flow_msgs_per_s"] / raw, 3)
    return result
