"""The `jiexu` command line: one typer app, one module per command group.

Commands are loaded lazily (`JiexuGroup`): ``jiexu --help`` lists them from `COMMANDS` without
importing any of them, and ``jiexu X`` imports only X's module (see docs/benchmarks.md for the start
times). Expected failures become one ``error:`` line and exit code 2 (`agents.cli.errors`).

A new command: add its module, attribute and one-line help to `COMMANDS`.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException

__all__ = ["COMMANDS", "JiexuGroup", "app", "main"]

COMMANDS: dict[str, tuple[str, str, str]] = {
    # name: (module, attribute: a command function or a typer.Typer, one line for `jiexu --help`)
    "demo": (
        "agents.cli.demo_cmd",
        "demo_command",
        "Provision agencies and the reconciler, run transfers through every branch, sum up.",
    ),
    "smoke": (
        "agents.cli.smoke",
        "smoke_command",
        "Find or start a broker, provision a topology, round-trip one message.",
    ),
    "agent": ("agents.cli.agent_cmd", "agent_command", "Run one agency's agent until SIGTERM."),
    "apply": ("agents.cli.agent_cmd", "apply_command", "Accept an application at this (receiving) agency."),
    "case": ("agents.cli.agent_cmd", "case_app", "Show, list, cancel and resolve transfer cases."),
    "reconcile": (
        "agents.cli.reconcile_cmd",
        "reconcile_command",
        "Run the reconciliation agent, or print its report.",
    ),
    "status": (
        "agents.cli.status_cmd",
        "status_command",
        "Queues, dead letters, cases, overdue steps and mismatches.",
    ),
    "dlq": ("agents.cli.dlq_cmd", "dlq_app", "List and replay an agency's dead letters."),
    "directory": ("agents.cli.directory_cmd", "directory_app", "Make and read the agency directory file."),
    "topology": (
        "agents.cli.topology_cmd",
        "topology_app",
        "Provision the broker, or export it as definitions.",
    ),
    "keys": ("agents.cli.keys_cmd", "keys_app", "Ed25519 signing keys of an agency."),
    "schemas": ("agents.cli.schemas_cmd", "schemas_app", "Write the JSON Schemas and the AsyncAPI document."),
    "bench": (
        "agents.cli.bench_cmd",
        "bench_command",
        "Measure raw aio-pika, jiexu's transport and the full flow.",
    ),
    "doctor": (
        "agents.cli.doctor_cmd",
        "doctor_command",
        "Check one agency's configuration end to end, one line per check.",
    ),
    "certificate": (
        "agents.cli.certificate_cmd",
        "certificate_app",
        "Verify a participation certificate (参保凭证) against the directory.",
    ),
    "conformance": (
        "agents.cli.conformance_cmd",
        "conformance_command",
        "Play the counterparts and the reconciler against another agency's implementation.",
    ),
}


def _load(name: str) -> Any:
    module, attribute, _ = COMMANDS[name]
    target = getattr(importlib.import_module(module), attribute)
    if isinstance(target, typer.Typer):
        # Plain help (no `--help <bool>`, no rich import) and no completion options per group.
        target.rich_markup_mode = None
        target._add_completion = False
        command = typer.main.get_command(target)
    else:
        single = typer.Typer(rich_markup_mode=None, add_completion=False)
        single.command(name)(target)
        command = typer.main.get_command(single)
    command.name = name
    return command


class JiexuGroup(TyperGroup):
    """The root group: commands loaded when used; an expected failure of any command prints one
    ``error:`` line and exits 2; ``--debug`` (or ``JIEXU_DEBUG=1``) lets the traceback through."""

    def list_commands(self, ctx: typer.Context) -> list[str]:  # type: ignore[override]
        return [*super().list_commands(ctx), *COMMANDS]

    def get_command(self, ctx: typer.Context, cmd_name: str) -> Any:  # type: ignore[override]
        if cmd_name in COMMANDS:
            return _load(cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: typer.Context, formatter: Any) -> None:  # type: ignore[override]
        rows = [(name, help_line) for name, (_, _, help_line) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except (TyperException, typer.Exit, typer.Abort):
            raise
        except Exception as exc:
            if ctx.meta.get("jiexu.debug") or os.environ.get("JIEXU_DEBUG") == "1":
                raise
            from agents.cli.errors import explain

            line = explain(exc)
            if line is None:
                raise
            typer.echo(f"error: {line}", err=True)
            raise typer.Exit(2) from exc


app = typer.Typer(
    name="jiexu",
    cls=JiexuGroup,
    help="接续 — the exchange for transferring medical-insurance relationships between agencies.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback()
def _root(
    ctx: typer.Context,
    debug: bool = typer.Option(
        False, "--debug", help="show the full traceback of an error [env JIEXU_DEBUG=1]"
    ),
) -> None:
    """接续 — medical-insurance relationship transfers between agencies, over RabbitMQ."""
    ctx.meta["jiexu.debug"] = debug


def main() -> None:
    app()
