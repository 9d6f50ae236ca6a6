"""The `jiexu` command line: one typer app, one module per command group."""

from __future__ import annotations

import typer

from agents.cli.agent_cmd import agent_command, apply_command, case_app
from agents.cli.bench_cmd import bench_command
from agents.cli.certificate_cmd import case_certificate_command, certificate_app
from agents.cli.demo_cmd import demo_command
from agents.cli.dlq_cmd import dlq_app
from agents.cli.doctor_cmd import doctor_command
from agents.cli.keys_cmd import keys_app
from agents.cli.payout_cmd import approve_payout_command
from agents.cli.reconcile_cmd import reconcile_command
from agents.cli.schemas_cmd import schemas_app
from agents.cli.smoke import smoke_command
from agents.cli.status_cmd import status_command
from agents.cli.topology_cmd import topology_app
from broker.tls import PlaintextRefused

__all__ = ["app", "main"]

app = typer.Typer(
    name="jiexu",
    help="接续 — the exchange for transferring medical-insurance relationships between agencies.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """接续 — medical-insurance relationship transfers between agencies, over RabbitMQ."""


app.command("demo")(demo_command)
app.command("smoke")(smoke_command)

app.add_typer(topology_app, name="topology")
app.add_typer(keys_app, name="keys")
app.add_typer(schemas_app, name="schemas")
app.add_typer(dlq_app, name="dlq")
app.command("bench")(bench_command)
app.command("reconcile")(reconcile_command)
app.command("agent")(agent_command)
app.command("apply")(apply_command)
case_app.command("certificate")(case_certificate_command)
case_app.command("approve-payout")(approve_payout_command)
app.add_typer(case_app, name="case")
app.add_typer(certificate_app, name="certificate")
app.command("status")(status_command)
app.command("doctor")(doctor_command)


def main() -> None:
    try:
        app()
    except PlaintextRefused as exc:  # JIEXU_REQUIRE_TLS: one line, no traceback
        typer.echo(f"configuration error: {exc}", err=True)
        raise SystemExit(2) from None
