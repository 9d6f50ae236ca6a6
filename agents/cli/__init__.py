"""The `jiexu` command line: one typer app, one module per command group."""

from __future__ import annotations

import typer

from agents.cli.smoke import smoke_command

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


app.command("smoke")(smoke_command)
# Until the full demo lands, `jiexu demo` is the smoke run: broker found, topology up, round trip.
app.command("demo")(smoke_command)


def main() -> None:
    app()
