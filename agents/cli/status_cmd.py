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
from rich.text import Text

from agents.cli.errors import CliError, check_amqp_url
from agents.domain.clock import SystemClock
from agents.service.paths import DEFAULT_DATA_DIR, Paths
from agents.tools.status import StatusSources, collect_status
from broker.logging import configure_logging
from broker.provider import BrokerEndpoint

__all__ = ["inbox_replicas_lines", "inbox_replicas_table", "status_command"]


def status_command(
    vhost: str | None = typer.Option(
        None, help="the broker vhost the agencies use [default: the vhost of JIEXU_AMQP_URL, else /]"
    ),
    data_dir: Path = typer.Option(
        DEFAULT_DATA_DIR, envvar="JIEXU_DATA_DIR", help="the agencies' data directory"
    ),
    agency: list[str] = typer.Option([], "--agency", help="only these agencies (repeatable)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
    from_reconciler: str | None = typer.Option(
        None,
        "--from-reconciler",
        envvar="JIEXU_RECONCILER_METRICS_URL",
        help="the reconciler's metrics URL (http://host:port): read the national view (cases, "
        "overdue steps, money in flight per agency pair, mismatches) from it, not local files",
    ),
) -> None:
    """Queue depth and consumers per agency, dead letters, unroutable messages, cases by state,
    overdue steps and the latest reconciliation mismatches. The broker is JIEXU_AMQP_URL (an
    administrator) with JIEXU_MANAGEMENT_URL; stores are read from the data directory or
    JIEXU_DATABASE_URL. Exits 1, saying so, when it finds no agency at all (no store in the data
    directory, no agency queue in the vhost): usually a wrong --data-dir or vhost."""
    configure_logging(level="ERROR", json=True)
    url = os.environ.get("JIEXU_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    check_amqp_url(url)
    try:
        endpoint = BrokerEndpoint.from_url(url, os.environ.get("JIEXU_MANAGEMENT_URL"), "JIEXU_AMQP_URL")
    except ValueError as exc:
        raise CliError(f"JIEXU_AMQP_URL: {exc}") from None
    vhost = vhost or endpoint.vhost
    api = endpoint.management()
    try:
        status = asyncio.run(
            collect_status(
                StatusSources(
                    api=api,
                    vhost=vhost,
                    paths=Paths(data_dir=data_dir),
                    database_url=os.environ.get("JIEXU_DATABASE_URL"),
                    agencies=tuple(agency),
                    reconciler_url=from_reconciler,
                ),
                SystemClock().today(),
            )
        )
    finally:
        api.close()
    # Asked to read the reconciler, the answer (its figures, or why there are none) is the report.
    found = (
        bool(status["cases"])
        or bool(status["broker"].get("agencies"))
        or "exchange" in status
    )
    if as_json:
        typer.echo(json.dumps(status, ensure_ascii=False))
    else:
        _print(Console(), status)
    if not found:
        typer.echo(
            f"nothing found: no agency store in {data_dir} and no agency queue in vhost {vhost!r} "
            "(check --data-dir / JIEXU_DATA_DIR, and the vhost in JIEXU_AMQP_URL or --vhost)",
            err=True,
        )
        raise typer.Exit(1)


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
        replicas = inbox_replicas_table(broker["agencies"])
        if replicas is not None:
            console.print(replicas)
        for line in inbox_replicas_lines(broker["agencies"]):
            console.print(line, markup=False, soft_wrap=True)
        console.print(f"unroutable messages: {broker['unroutable']}", markup=False)
        for m in broker.get("unroutable_messages", []):
            console.print(
                f"  undeliverable: {m['type'] or 'a message'} from {m['sender'] or '?'} to "
                f"{m['recipient'] or '?'}, case {m['case_id'] or '?'}: no queue is bound for "
                f"{m['routing_key']} (is that agency provisioned? `jiexu topology apply`)",
                markup=False,
                soft_wrap=True,
            )
    else:
        console.print(f"broker: unavailable ({broker.get('error')})", markup=False)
    cases = Table(title="cases", title_justify="left")
    for column in ("agency", "by state", "overdue", "held"):
        cases.add_column(column)
    for code, c in status["cases"].items():
        states = ", ".join(f"{k} {v}" for k, v in c["by_state"].items()) or "-"
        cases.add_row(code, states, str(c["overdue"]), str(c["held_messages"]))
    if "exchange" not in status:  # read from the reconciler: no local store, no table
        console.print(cases)
    for code, c in status["cases"].items():
        for step in c["overdue_steps"]:
            console.print(
                f"overdue at {code}: case {step['case_id']} {step['state']}, {step['whose_turn']}'s "
                f"turn, due {step['due_date']} ({step['days_late']} days late)",
                markup=False,
            )
        for held in c.get("payouts_awaiting_approval", []):
            console.print(
                f"payout awaiting approval at {code}: case {held} "
                f"(jiexu case approve-payout {held} --agency {code})",
                markup=False,
            )
    recon = status["reconciliation"]
    if recon.get("available"):
        console.print(
            f"reconciliation: {recon['matched']} matched, {recon['mismatched']} mismatched, "
            f"{recon['open']} open, {recon['stuck']} stuck",
            markup=False,
        )
        by_field = recon.get("mismatches_by_field")
        if by_field:
            console.print(
                "  mismatched by field: " + ", ".join(f"{k} {v}" for k, v in by_field.items()),
                markup=False,
            )
        for m in recon.get("latest_mismatches", ()):
            fields = "; ".join(
                f"{d['field']}: outgoing {d['outgoing_value']} vs receiving {d['receiving_value']}"
                for d in m["differences"]
            )
            console.print(f"  mismatch {m['case_id']} ({m['outgoing']} -> {m['receiving']}): {fields}",
                          markup=False)
    elif "error" in recon:
        console.print(f"reconciliation: unavailable ({recon['error']})", markup=False)
    else:
        console.print("reconciliation: no report in this data directory", markup=False)
    if status.get("exchange", {}).get("available"):
        _print_exchange(console, status["exchange"])


def inbox_replicas_table(agencies: dict[str, Any]) -> Table | None:
    """Where each agency's inbox lives: its leader, its members, the members online and those
    missing (red). None when no inbox is a quorum queue with members (nothing to show)."""
    rows = [(code, a["inbox"]) for code, a in agencies.items() if a["inbox"].get("members")]
    if not rows:
        return None
    table = Table(title="inbox replicas", title_justify="left")
    for column in ("agency", "leader", "members", "online", "missing"):
        table.add_column(column)
    for code, inbox in rows:
        members, missing = inbox["members"], inbox.get("missing") or []
        table.add_row(
            code,
            inbox.get("leader") or Text("none", style="bold red"),
            "\n".join(members),
            f"{len(members) - len(missing)} of {len(members)}",
            Text("\n".join(missing), style="bold red") if missing else "-",
            style="red" if missing or not inbox.get("leader") else None,
        )
    return table


def inbox_replicas_lines(agencies: dict[str, Any]) -> list[str]:
    """One plain line per inbox that misses a member or has no leader (readable in any terminal
    and in logs): which members are missing and who leads now."""
    lines = []
    for code, a in agencies.items():
        inbox = a["inbox"]
        members, missing = inbox.get("members") or [], inbox.get("missing") or []
        if not members or (not missing and inbox.get("leader")):
            continue
        what = "no member missing"
        if missing:
            what = f"{len(missing)} of {len(members)} members missing ({', '.join(missing)})"
        lines.append(f"inbox of {code}: {what}; leader {inbox.get('leader') or 'none'}")
    return lines


def _print_exchange(console: Console, exchange: dict[str, Any]) -> None:
    """The reconciler's national view, one row per pair of agencies (``?``: not known yet)."""
    table = Table(title=f"exchange (from {exchange['source']})", title_justify="left")
    for column in ("outgoing", "receiving", "cases by state", "overdue", "money in flight"):
        table.add_column(column)
    for p in exchange["pairs"]:
        table.add_row(
            p["outgoing"] or "?",
            p["receiving"] or "?",
            ", ".join(f"{k} {v}" for k, v in sorted(p["cases"].items())) or "-",
            ", ".join(f"{v} at {k}'s turn" for k, v in sorted(p["overdue"].items())) or "-",
            f"{p['money_in_flight_fen']} fen",
        )
    console.print(table)
