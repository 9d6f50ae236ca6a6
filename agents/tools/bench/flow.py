"""`jiexu bench`'s full-flow section: whole transfers through agents that run as separate processes.

Each size is its own world on the bench's broker: a vhost provisioned for it (`agents.tools.provision`),
N agencies, their ledgers seeded with the people of the planned transfers (every branch of
`agents.tools.scenarios.BRANCHES`), one ``jiexu agent --agency CODE`` process per agency configured only
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
import dataclasses
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from agents.tools.bench.context import BenchContext, Section
from agents.tools.bench.processes import Child, CpuClock, megabytes
from agents.tools.bench.world import FlowConfig, World
from agents.tools.figures import latency_summary
from broker.names import RECONCILER_CODE
from broker.provider import BrokerEndpoint

__all__ = [
    "add_flow_ratios",
    "flow_section",
    "replica_flow_section",
    "run_flow",
    "run_replica_flows",
]

log = structlog.get_logger("jiexu.bench.flow")


def _parse(stamp: str | None) -> datetime | None:
    return datetime.fromisoformat(stamp) if stamp else None


# -- the two measurements -------------------------------------------------------------------------


async def _flow_size(
    endpoint: BrokerEndpoint, config: FlowConfig, transfers: int, root: Path
) -> dict[str, Any]:
    world = World(endpoint, config, transfers, root, "flow")
    try:
        await world.provision()
        assert world.files is not None
        money_before, _ = await world.files.money()
        await world.start()
        log.info("bench_flow_started", transfers=transfers, agencies=config.agencies)
        started_at = datetime.now(UTC)
        started = time.monotonic()
        cpu_clock = CpuClock()
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
        "latency_ms": latency_summary(found["latencies"]),
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
    world = World(endpoint, config, config.backlog, root, "backlog")
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


def _rss_summary(child: Child, total: int) -> dict[str, Any]:
    samples = child.samples
    if not samples:
        return {"first": None, "last": None, "peak": megabytes(child.hwm_kb), "by_progress": {}}
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
        "peak": megabytes(child.hwm_kb) or max(s[2] for s in samples),
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


async def run_replica_flows(
    endpoint: BrokerEndpoint, config: FlowConfig, counts: Sequence[int]
) -> dict[str, Any]:
    """The flow (the larger size only, no backlog) with each number of replicas per agency in
    ``counts``, on PostgreSQL (``config.database_url``): transfers/s and latency for each."""
    runs: list[dict[str, Any]] = []
    for count in counts:
        one = dataclasses.replace(config, replicas=count, backlog=0)
        root = config.work_dir or Path(tempfile.mkdtemp(prefix="jiexu-bench-replicas-"))
        root.mkdir(parents=True, exist_ok=True)
        try:
            size = await _flow_size(endpoint, one, config.transfers, root / f"r{count}")
        finally:
            if not config.keep_files and config.work_dir is None:
                shutil.rmtree(root, ignore_errors=True)
        runs.append(
            {
                "replicas": count,
                "transfers": size["transfers"],
                "finished": size["finished"],
                "flow_transfers_per_s": size["flow_transfers_per_s"],
                "flow_msgs_per_s": size["flow_msgs_per_s"],
                "latency_ms": size["latency_ms"],
                "unexpected_outcomes": size["unexpected_outcomes"],
                "money_conserved": size["money_conserved"],
                "reconciled": size["reconciled"],
                "cpu_s": size["cpu_s"],
                "exit_codes": size["exit_codes"],
            }
        )
    return {
        "flow_agencies": config.agencies,
        "flow_window": config.window,
        "flow_prefetch": config.prefetch,
        "flow_store": "postgresql" if config.database_url else "sqlite",
        "replica_runs": runs,
    }


def replica_flow_section(config: FlowConfig, counts: Sequence[int]) -> Section:
    """The flow per replica count as a `jiexu bench` section."""

    async def flow(ctx: BenchContext) -> dict[str, Any]:
        return await run_replica_flows(ctx.endpoint, config, counts)

    return flow


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
