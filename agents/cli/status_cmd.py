"""`jiexu status`: queues, dead letters, cases, overdue steps and mismatches at a glance."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from agents.domain.clock import SystemClock
from agents.tools.status import StatusSources, collect_status
from broker.logging import configure_logging
from broker.provider import BrokerEndpoint

__all__ = ["status_command"]


def status_command(
    vhost: str = typer.Option("/", help="the broker vhost the agencies use"),
    data_dir: Path = typer.Option(
        Path(".jiexu/data"), envvar="JIEXU_DATA_DIR", help="the agencies' data directory"
    ),
    agency: list[str] = typer.Option([], "--agency", help="only these agencies (repeatable)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """Queue depth and consumers per agency, dead letters, unroutable messages, cases by state,
    overdue steps and the latest reconciliation mismatches. The broker is JIEXU_AMQP_URL (an
    administrator) with JIEXU_MANAGEMENT_URL; stores are read from the data directory or
    JIEXU_DATABASE_URL."""
    configure_logging(level="ERROR", json=True)
    try:
        endpoint = BrokerEndpoint.from_url(
            os.environ.get("JIEXU_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
            os.environ.get("JIEXU_MANAGEMENT_URL"),
            "JIEXU_AMQP_URL",
        )
    except ValueError as exc:
        typer.echo(f"jiexu status: JIEXU_AMQP_URL: {exc}", err=True)
        raise typer.Exit(2) from None
    api = endpoint.management()
    try:
        status = asyncio.run(
            collect_status(
                StatusSources(
                    api=api,
                    vhost=vhost,
                    data_dir=data_dir,
                    database_url=os.environ.get("JIEXU_DATABASE_URL"),
                    agencies=tuple(agency),
                ),
                SystemClock().today(),
            )
        )
    finally:
        api.close()
    if as_json:
        typer.echo(json.dumps(status, ensure_ascii=False))
        return
    _print(Console(), status)


def _print(console: Console, status: dict[str, Any]) -> None:
    broker = status["broker"]
    if broker.get("available"):
        table = Table(title=f"queues (vhost {broker['vhost']})", title_justify="left")
        for column in ("agency", "inbox ready", "unacked", "consumers", "retrying", "dead letters"):
            table.add_column(column, justify="right" if column != "agency" else "left")
        for code, q in broker["agencies"].items():
            inbox = q["inbox"]
            table.add_row(
                code,
                str(inbox.get("ready", "-")),
                str(inbox.get("unacked", "-")),
                str(inbox.get("consumers", "-")),
                str(q["waiting_retry"]),
                str(q["dead_letters"]),
            )
        console.print(table)
        console.print(f"unroutable messages: {broker['unroutable']}", markup=False)
    else:
        console.print(f"broker: unavailable ({broker.get('error')})", markup=False)
    cases = Table(title="cases", title_justify="left")
    for column in ("agency", "by state", "overdue", "held"):
        cases.add_column(column)
    for code, c in status["cases"].items():
        states = ", ".join(f"{k} {v}" for k, v in c["by_state"].items()) or "-"
        cases.add_row(code, states, str(c["overdue"]), str(c["held_messages"]))
    console.print(cases)
    for code, c in status["cases"].items():
        for step in c["overdue_steps"]:
            console.print(
                f"overdue at {code}: case {step['case_id']} {step['state']}, {step['whose_turn']}'s "
                f"turn, due {step['due_date']} ({step['days_late']} days late)",
                markup=False,
            )
    recon = status["reconciliation"]
    if recon.get("available"):
        console.print(
            f"reconciliation: {recon['matched']} matched, {recon['mismatched']} mismatched, "
            f"{recon['open']} open, {recon['stuck']} stuck",
            markup=False,
        )
        for m in recon["latest_mismatches"]:
            fields = "; ".join(
                f"{d['field']}: outgoing {d['outgoing_value']} vs receiving {d['receiving_value']}"
                for d in m["differences"]
            )
            console.print(f"  mismatch {m['case_id']} ({m['outgoing']} -> {m['receiving']}): {fields}",
                          markup=False)
    else:
        console.print("reconciliation: no report in this data directory", markup=False)
