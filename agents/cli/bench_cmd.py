"""`jiexu bench`: the raw aio-pika ceiling, jiexu's transport and jiexu's full flow (agents as
separate processes) on the same broker, in one run, with ratios."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import typer

from agents.tools.bench import (
    SECTIONS,
    BenchConfig,
    FlowConfig,
    add_flow_ratios,
    flow_section,
    replica_flow_section,
    run_bench,
    run_flow,
)
from broker.cluster import ClusterError, acquire_cluster
from broker.logging import configure_logging
from broker.provider import BrokerUnavailable, acquire_broker

__all__ = ["bench_command"]

_MESSAGES = typer.Option(2000, "--messages", min=1, help="messages per section")
_IN_FLIGHT = typer.Option(500, "--in-flight", min=1, help="publishes awaiting a confirm at once")
_PREFETCH = typer.Option(200, "--prefetch", min=1, help="consumer prefetch in the hop sections")
_JSON = typer.Option(False, "--json", help="print one JSON object on stdout")
_FLOW = typer.Option(True, "--flow/--no-flow", help="run the full flow section (agents as processes)")
_TRANSFERS = typer.Option(
    10_000, "--transfers", min=1, help="full flow: the larger size (the smaller is a tenth of it)"
)
_AGENCIES = typer.Option(5, "--agencies", min=3, max=10, help="full flow: agencies (one process each)")
_BACKLOG = typer.Option(
    100_000, "--backlog", min=0, help="full flow: applications drained as a backlog (0: skip)"
)
_WINDOW = typer.Option(200, "--window", min=1, help="full flow: applications open at once, at most")
_WORK_DIR = typer.Option(None, "--work-dir", help="full flow: keep the agents' files and logs here")
_DATABASE_URL = typer.Option(
    None,
    "--database-url",
    help="full flow: a PostgreSQL server for the stores and ledgers (a database per world)",
)
_POOL_SIZE = typer.Option(
    3,
    "--pool-size",
    min=1,
    help="full flow on PostgreSQL: each process's pool size (agents x replicas x 2 x this must "
    "fit the server's max_connections)",
)
_REPLICAS = typer.Option(
    None,
    "--replicas",
    help="full flow: agents per agency, a comma list (e.g. 1,2,3: the flow once per count, "
    "larger size only, no backlog; needs --database-url above 1)",
)
_CLUSTER = typer.Option(
    0, "--cluster", min=0, max=5,
    help="also run the full flow on a throwaway cluster of N nodes (local; containers with "
    "JIEXU_CLUSTER=docker), beside the single node",
)

_HUMAN = [
    ("raw_publish", "raw aio-pika publish, confirms"),
    ("transport_publish", "jiexu Publisher (sign, confirm)"),
    ("raw_hop", "raw aio-pika hop"),
    ("signed_hop", "raw hop + signatures only"),
    ("transport_hop", "jiexu transport hop"),
]


def bench_command(
    messages: int = _MESSAGES,
    in_flight: int = _IN_FLIGHT,
    prefetch: int = _PREFETCH,
    as_json: bool = _JSON,
    flow: bool = _FLOW,
    transfers: int = _TRANSFERS,
    agencies: int = _AGENCIES,
    backlog: int = _BACKLOG,
    window: int = _WINDOW,
    work_dir: Path | None = _WORK_DIR,
    database_url: str | None = _DATABASE_URL,
    replicas: str | None = _REPLICAS,
    pool_size: int = _POOL_SIZE,
    cluster: int = _CLUSTER,
) -> None:
    """Measure, in one run on one broker, raw aio-pika against jiexu's transport and full flow.

    The broker is JIEXU_AMQP_URL's, else the provider chain's (local broker, container, node).
    """
    configure_logging(level="WARNING", json=as_json)
    try:
        counts = [int(n) for n in replicas.split(",")] if replicas else []
    except ValueError as exc:
        typer.echo(f"--replicas is a comma list of numbers, not {replicas!r}", err=True)
        raise typer.Exit(2) from exc
    if any(n < 1 for n in counts) or (max(counts, default=1) > 1 and not database_url):
        typer.echo("--replicas needs numbers of 1 or more, and --database-url above 1", err=True)
        raise typer.Exit(2)
    try:
        provided = acquire_broker()
    except BrokerUnavailable as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    try:
        sections = list(SECTIONS)
        if flow:
            config = FlowConfig(
                transfers=transfers,
                agencies=agencies,
                backlog=backlog,
                window=window,
                prefetch=prefetch,
                work_dir=work_dir,
                keep_files=work_dir is not None,
                database_url=database_url,
                agent_settings={"database_pool_size": pool_size} if database_url else {},
            )
            sections.append(
                replica_flow_section(config, counts) if counts else flow_section(config)
            )
        result = add_flow_ratios(
            run_bench(
                provided.endpoint,
                BenchConfig(messages=messages, in_flight=in_flight, prefetch=prefetch),
                sections,
            )
        )
    finally:
        provided.close()
    if cluster and flow:
        result.update(_cluster_flow(cluster, FlowConfig(
            transfers=transfers, agencies=agencies, backlog=0, window=window, prefetch=prefetch,
        ), result))
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False))
        return
    typer.echo(
        f"broker: {result['broker']}; {result['messages']} messages of ~{result['body_bytes']} "
        f"bytes; {result['in_flight']} in flight; prefetch {result['prefetch']}"
    )
    for key, label in _HUMAN:
        if f"{key}_msgs_per_s" in result:
            typer.echo(
                f"  {label:<36} {result[f'{key}_msgs_per_s']:>8,.0f} msg/s"
                f"  {result.get(f'{key}_cpu_us_per_msg', 0):>7,.0f} us CPU/msg (client)"
            )
    for key in ("ratio_publish_vs_raw", "ratio_signed_hop_vs_raw", "ratio_transport_vs_raw"):
        if key in result:
            typer.echo(f"  {key:<36} {result[key]:>8.2f}")
    if "transport_steps_us_per_msg" in result:
        steps = ", ".join(f"{k} {v:.0f}" for k, v in result["transport_steps_us_per_msg"].items())
        typer.echo(f"  transport steps in place, us CPU/msg: {steps}")
    if "codec_cpu_us_per_msg" in result:
        steps = ", ".join(f"{k} {v:.0f}" for k, v in result["codec_cpu_us_per_msg"].items())
        typer.echo(f"  the same on an idle core (codec), us CPU/msg: {steps}")
    if "sizes" in result:
        _print_flow(result)
    for run in result.get("replica_runs", []):
        lat = run["latency_ms"]
        typer.echo(
            f"  {run['replicas']} replica(s) per agency ({result['flow_store']}): "
            f"{run['transfers']:,} transfers  {run['flow_transfers_per_s']:,.1f} transfers/s  "
            f"latency p50 {lat['p50']:,.0f} ms, p99 {lat['p99']:,.0f} ms  "
            f"unexpected {run['unexpected_outcomes']}"
        )
    if "cluster" in result:
        typer.echo(f"  on a {result['cluster']['nodes']}-node cluster: {result['cluster']}")
        for key in ("ratio_cluster_vs_single_transfers_per_s", "ratio_cluster_vs_single_p99"):
            if key in result:
                typer.echo(f"  {key:<36} {result[key]:>8.2f}")


def _cluster_flow(nodes: int, config: FlowConfig, single: dict[str, Any]) -> dict[str, Any]:
    """The same flow on a throwaway cluster of ``nodes`` local nodes, and its ratios to the single
    node measured in this run (the backlog drain is not repeated)."""
    try:
        provided = acquire_cluster(nodes)
    except ClusterError as exc:
        return {"cluster": {"nodes": nodes, "error": str(exc)}}
    try:
        figures = asyncio.run(run_flow(provided.endpoint, config))
    finally:
        provided.close()
    on_cluster = {
        "nodes": nodes,
        "flow_transfers_per_s": figures["flow_transfers_per_s"],
        "flow_msgs_per_s": figures["flow_msgs_per_s"],
        "latency_ms": figures["latency_ms"],
    }
    ratios: dict[str, float] = {}
    if single.get("flow_transfers_per_s"):
        ratios["ratio_cluster_vs_single_transfers_per_s"] = round(
            figures["flow_transfers_per_s"] / single["flow_transfers_per_s"], 3
        )
    p99 = single.get("latency_ms", {}).get("p99")
    if p99:
        ratios["ratio_cluster_vs_single_p99"] = round(figures["latency_ms"]["p99"] / p99, 3)
    return {"cluster": on_cluster, **ratios}


def _print_flow(result: dict[str, Any]) -> None:
    typer.echo(
        f"full flow: {result['flow_agencies']} agencies as processes, window {result['flow_window']}"
    )
    for size in result["sizes"]:
        lat = size["latency_ms"]
        rss = ", ".join(f"{k} {v:.0f}" for k, v in size["peak_rss_mb"].items() if v is not None)
        typer.echo(
            f"  {size['transfers']:>7,} transfers  {size['flow_transfers_per_s']:>7,.1f} transfers/s"
            f"  {size['flow_msgs_per_s']:>7,.0f} msg/s (ratio {size.get('ratio_flow_vs_raw', 0):.2f})"
            f"  latency p50 {lat['p50']:,.0f} ms, p99 {lat['p99']:,.0f} ms"
            f"  unexpected {size['unexpected_outcomes']}"
        )
        typer.echo(f"           peak RSS MB: {rss}")
    if "rss_ratio_large_vs_small" in result:
        typer.echo(f"  peak RSS, large / small: {result['rss_ratio_large_vs_small']}")
    backlog = result.get("backlog")
    if backlog:
        typer.echo(
            f"  backlog {backlog['applications']:,}: drained in {backlog['drain_s']:,.0f} s "
            f"({backlog['drain_transfers_per_s']:,.1f} transfers/s), unexpected "
            f"{backlog['unexpected_outcomes']}, reconciled {backlog['reconciled']}, money "
            f"{'conserved' if backlog['money_conserved'] else 'NOT conserved'}"
        )
        for name, rss in backlog["rss_mb"].items():
            typer.echo(
                f"    {name:<10} RSS MB first {rss['first']}, last {rss['last']}, peak {rss['peak']}"
            )
