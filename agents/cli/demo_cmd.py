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

from agents.cli.log_level import LOG_LEVEL_WARNING, LogLevel
from agents.service.certificates import FontMissing
from agents.service.paths import DEFAULT_DATA_DIR
from agents.tools.demo import DemoResult, run_demo, write_sample_certificate
from broker.cluster import ClusterError, acquire_cluster
from broker.logging import configure_logging
from broker.names import RECONCILER_CODE
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
    log_level: LogLevel = LOG_LEVEL_WARNING,
    cluster: int = typer.Option(
        0,
        "--cluster",
        min=0,
        max=5,
        help="run on a throwaway cluster of N RabbitMQ nodes (local processes; containers of the "
        "offline image with JIEXU_CLUSTER=docker)",
    ),
) -> None:
    """Provision N agencies and the reconciler, run M transfers through every branch, sum up.
    With JIEXU_METRICS_PORT set, each agent and the reconciler serve /metrics on a free port,
    printed on stderr while the demo runs."""
    # At a terminal, warnings (a calendar year chinesecalendar does not know, ...) are short
    # console lines the progress bar prints above itself; otherwise JSON, as every jiexu process.
    console = Console(stderr=True)
    configure_logging(level=log_level.value, json=as_json or not sys.stderr.isatty())
    try:
        provided = acquire_cluster(cluster) if cluster else acquire_broker()
    except (BrokerUnavailable, ClusterError) as exc:
        console.print(str(exc), markup=False)
        raise typer.Exit(2) from exc
    base = data_dir or Path(tempfile.mkdtemp(prefix="jiexu-demo-"))
    show_progress = not as_json and sys.stderr.isatty()
    if not as_json:
        console.print(
            f"jiexu demo: {agencies} agencies, {transfers} transfers, broker: {provided.endpoint.source}",
            markup=False,
        )
    try:
        with Progress(
            TextColumn("applications"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=not show_progress,
            transient=False,
        ) as bar:
            task = bar.add_task("applications", total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            def serving(code: str, url: str) -> None:
                # On stderr, with --json too: stdout holds the JSON summary and nothing else.
                role = "reconciler" if code == RECONCILER_CODE else "agent"
                console.print(
                    f"scrape {role} {code}: {url}/metrics (health {url}/healthz, {url}/readyz)",
                    markup=False, highlight=False, soft_wrap=True,
                )
            def planned(applications: int, planned_transfers: int) -> None:
                bar.update(task, total=applications)
                if not as_json:
                    twice = applications - planned_transfers
                    bar.console.print(
                        f"{applications} applications: {planned_transfers} transfers"
                        + (
                            f", {twice} of them applied for twice (the second is refused as a duplicate)"
                            if twice
                            else ""
                        ),
                        markup=False,
                    )

            result = asyncio.run(
                run_demo(
                    provided.endpoint,
                    base / "world",
                    agencies=agencies,
                    transfers=transfers,
                    seed=seed,
                    progress=progress,
                    serving=serving,
                    on_planned=planned,
                )
            )
    finally:
        provided.close()
        if data_dir is None:
            shutil.rmtree(base, ignore_errors=True)
    summary = result.to_json()
    summary["sample_certificate"] = _write_certificate(result, data_dir)
    if as_json:
        typer.echo(json.dumps(summary, ensure_ascii=False))
    else:
        _print_summary(console, result, summary)
    ok = (
        result.unfinished == 0
        and not result.unexpected
        and result.reconciled_mismatched == 0
        and result.reconciliation_pending == 0
        and result.money_conserved
    )
    if not ok:
        raise typer.Exit(1)


def _write_certificate(result: DemoResult, data_dir: Path | None) -> dict[str, str] | None:
    """The sample certificate's files (in ``--data-dir``/certificates, else .jiexu/demo/certificates,
    which outlives the demo's temporary directory); ``{"error": ...}`` when it cannot be written."""
    if result.sample_certificate is None:
        return None
    folder = (data_dir if data_dir is not None else DEFAULT_DATA_DIR.parent / "demo") / "certificates"
    try:
        files = write_sample_certificate(result.sample_certificate, folder)
    except (FontMissing, OSError) as exc:
        return {"error": str(exc)}
    return {"pdf": str(files.pdf.resolve()), "json": str(files.json.resolve())}


def _yuan(fen: int) -> str:
    return f"¥{fen // 100:,}.{fen % 100:02d}"


def _print_summary(console: Console, result: DemoResult, summary: dict[str, Any]) -> None:
    table = Table(title="outcomes by branch", title_justify="left")
    table.add_column("branch", no_wrap=True)
    table.add_column("outcome", no_wrap=True)
    table.add_column("cases", justify="right")
    for branch, outcomes in summary["outcomes_by_branch"].items():
        for outcome, count in sorted(outcomes.items()):
            # "rejected:reason" on two lines, so that 80 columns hold the longest names whole
            table.add_row(branch, outcome.replace(":", ":\n", 1), str(count))
    console.print(table)
    waiting = Table(title="continuity per transfer (receiving agency)", title_justify="left")
    for column in ("branch", "gap", "outcome", "waiting", "benefits from"):
        waiting.add_column(column)
    for item in result.continuity:
        waiting.add_row(
            item["branch"],
            f"{item['gap_months']} months",
            item["outcome"],
            f"{item['waiting_months']} months" if item["waiting_months"] else "-",
            item["benefits_from"],
        )
    console.print(waiting)
    lat = summary["latency_ms"]
    lines = [
        f"applications   {result.transfers} ({result.transfers_planned} transfers and "
        f"{result.transfers - result.transfers_planned} duplicate applications): "
        f"{result.completed} completed, {result.rejected} rejected, "
        f"{result.discrepancy} in discrepancy, {result.unfinished} unfinished",
        f"unexpected     {len(result.unexpected)}"
        + "".join(
            f"\n  {u['branch']}: expected {u['expected']}, got {u['outcome']}" for u in result.unexpected
        ),
        f"reconciliation {result.reconciled_matched} matched, {result.reconciled_mismatched} mismatched, "
        f"{result.reconciliation_pending} pending, of the {result.reconciliation_expected} cases that "
        f"reached an outgoing agency (the other {result.transfers - result.reconciliation_expected} "
        "were refused at the receiving agency before any letter: nothing moved, nothing to compare)"
        + "".join(f"\n  not reconciled: case {c}" for c in result.reconciliation_pending_cases or []),
        f"money          before {_yuan(result.money_before_fen)} = after {_yuan(result.money_after_fen)}"
        f" + paid out {_yuan(result.paid_out_fen)}: "
        + ("conserved" if result.money_conserved else "NOT CONSERVED"),
        "continuity     "
        + (
            ", ".join(f"{count} {outcome}" for outcome, count in result.continuity_counts.items())
            or "none decided"
        ),
        "certificate    "
        + (
            "none issued"
            if summary.get("sample_certificate") is None
            else summary["sample_certificate"].get("pdf")
            or f"not written: {summary['sample_certificate'].get('error')}"
        ),
        f"deadlines      {result.overdue_cases} open steps overdue",
        f"time           {summary['elapsed_s']} s, {summary['transfers_per_s']} transfers/s, "
        f"{result.messages_published} messages published; "
        f"case latency p50 {lat['p50']} ms, p99 {lat['p99']} ms",
    ]
    console.print("\n".join(lines), markup=False, highlight=False)
