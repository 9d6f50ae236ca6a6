"""`jiexu demo`: the main job — agencies, the reconciler and transfers through every branch."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from agents.tools.demo import DemoResult, run_demo
from broker.cluster import ClusterError, acquire_cluster
from broker.logging import configure_logging
from broker.provider import BrokerUnavailable, acquire_broker

__all__ = ["demo_command"]


def demo_command(
    agencies: int = typer.Option(5, "--agencies", min=3, max=10, help="how many agencies"),
    transfers: int = typer.Option(42, "--transfers", min=1, help="how many transfers"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
    seed: int = typer.Option(20261122, help="random seed for the people and the pairs"),
    data_dir: Path | None = typer.Option(
        None, help="keep the agencies' files here (default: a temporary directory, removed)"
    ),
    cluster: int = typer.Option(
        0, "--cluster", min=0, max=5, help="run on a throwaway cluster of N local RabbitMQ nodes"
    ),
) -> None:
    """Provision N agencies and the reconciler, run M transfers through every branch, sum up."""
    configure_logging(level="WARNING", json=True)
    console = Console(stderr=True)
    try:
        provided = acquire_cluster(cluster) if cluster else acquire_broker()
    except (BrokerUnavailable, ClusterError) as exc:
        console.print(str(exc), markup=False)
        raise typer.Exit(2) from exc
    base = data_dir or Path(tempfile.mkdtemp(prefix="jiexu-demo-"))
    show_progress = not as_json and sys.stderr.isatty()
    if not as_json:
        console.print(
            f"jiexu demo: {agencies} agencies, {transfers} transfers, broker: "
            f"{provided.endpoint.source}",
            markup=False,
        )
    try:
        with Progress(
            TextColumn("transfers"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=not show_progress,
            transient=False,
        ) as bar:
            task = bar.add_task("transfers", total=transfers)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            result = asyncio.run(
                run_demo(
                    provided.endpoint,
                    base / "world",
                    agencies=agencies,
                    transfers=transfers,
                    seed=seed,
                    progress=progress,
                )
            )
    finally:
        provided.close()
        if data_dir is None:
            shutil.rmtree(base, ignore_errors=True)
    summary = result.to_json()
    if as_json:
        typer.echo(json.dumps(summary, ensure_ascii=False))
    else:
        _print_summary(console, result, summary)
    ok = (
        result.unfinished == 0
        and not result.unexpected
        and result.reconciled_mismatched == 0
        and result.money_conserved
    )
    if not ok:
        raise typer.Exit(1)


def _yuan(fen: int) -> str:
    return f"¥{fen // 100:,}.{fen % 100:02d}"


def _print_summary(console: Console, result: DemoResult, summary: dict[str, Any]) -> None:
    table = Table(title="outcomes by branch", title_justify="left")
    table.add_column("branch")
    table.add_column("outcome")
    table.add_column("cases", justify="right")
    for branch, outcomes in summary["outcomes_by_branch"].items():
        for outcome, count in sorted(outcomes.items()):
            table.add_row(branch, outcome, str(count))
    console.print(table)
    lat = summary["latency_ms"]
    lines = [
        f"transfers      {result.transfers}: {result.completed} completed, {result.rejected} rejected, "
        f"{result.discrepancy} in discrepancy, {result.unfinished} unfinished",
        f"unexpected     {len(result.unexpected)}"
        + "".join(
            f"\n  {u['branch']}: expected {u['expected']}, got {u['outcome']}" for u in result.unexpected
        ),
        f"reconciliation {result.reconciled_matched} matched, {result.reconciled_mismatched} mismatched, "
        f"{result.reconciliation_pending} pending",
        f"money          before {_yuan(result.money_before_fen)} = after {_yuan(result.money_after_fen)}"
        f" + paid out {_yuan(result.paid_out_fen)}: "
        + ("conserved" if result.money_conserved else "NOT CONSERVED"),
        f"deadlines      {result.overdue_cases} open steps overdue",
        f"time           {summary['elapsed_s']} s, {summary['transfers_per_s']} transfers/s, "
        f"{result.messages_published} messages published; "
        f"case latency p50 {lat['p50']} ms, p99 {lat['p99']} ms",
    ]
    console.print("\n".join(lines), markup=False, highlight=False)
