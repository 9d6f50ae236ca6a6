"""`jiexu case approve-payout CASE_ID`: an operator releases a payout held for approval.

A payout to a person of more than the agency's ``JIEXU_PAYOUT_APPROVAL_LIMIT_FEN`` waits in the
state ``awaiting_approval`` (``jiexu case show`` and ``jiexu status`` list it). Approving runs the
held ledger commands (end the relationship, pay the balance to the person's own account) and commits
the information form to the outbox; the running agent's relay publishes it.

Registered in `agents.cli` as ``case_app.command("approve-payout")(approve_payout_command)``.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import uuid
from pathlib import Path
from typing import Any

import typer

from agents.domain.case import State
from agents.service.bootstrap import open_service
from agents.service.settings import AgentSettings
from broker.logging import configure_logging

__all__ = ["approve_payout_command"]


def _settings(agency: str, **options: Any) -> AgentSettings:
    given = {k: v for k, v in options.items() if v is not None}
    try:
        return AgentSettings(agency=agency, **given)
    except ValueError as exc:
        typer.echo(f"invalid configuration: {exc}", err=True)
        raise typer.Exit(2) from exc


def approve_payout_command(
    case_id: str = typer.Argument(..., help="the case whose payout is held"),
    agency: str = typer.Option(..., "--agency", help="this (outgoing) agency's 6-digit region code"),
    operator: str | None = typer.Option(
        None, "--operator", help="who approves, kept in the case history [default: the login name]"
    ),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="data directory [env JIEXU_DATA_DIR]"),
    secrets_dir: Path | None = typer.Option(
        None, "--secrets-dir", help="secrets directory [env JIEXU_SECRETS_DIR]"
    ),
    directory: Path | None = typer.Option(
        None, "--directory", help="agency directory file [env JIEXU_DIRECTORY]"
    ),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Approve a payout held for an operator (state awaiting_approval): the balance is paid out."""
    configure_logging(level="WARNING", json=as_json)
    try:
        wanted = uuid.UUID(case_id)
    except ValueError as exc:
        raise typer.BadParameter(f"not a case id: {case_id}") from exc
    settings = _settings(agency, data_dir=data_dir, secrets_dir=secrets_dir, directory=directory)
    who = operator or getpass.getuser()

    async def run() -> tuple[str | None, str | None]:
        opened = await open_service(settings)
        try:
            before = await opened.store.get_case(wanted)
            if before is None:
                return None, None
            after = await opened.service.approve_payout(wanted, who)
            return before.state, after.state.value if after is not None else None
        finally:
            await opened.close()

    before, after = asyncio.run(run())
    if before is None:
        typer.echo("no such case", err=True)
        raise typer.Exit(1)
    if before != State.AWAITING_APPROVAL.value:
        typer.echo(f"case {wanted} holds no payout for approval (state {before})", err=True)
        raise typer.Exit(1)
    if as_json:
        typer.echo(json.dumps({"case_id": str(wanted), "approved_by": who, "state": after}))
    else:
        typer.echo(f"case {wanted}: payout approved by {who}; state {after}")
