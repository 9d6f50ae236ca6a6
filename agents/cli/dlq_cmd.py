"""`jiexu dlq list|replay`: what is in an agency's dead-letter queue, and sending it back.

Both connect as the agency's own broker user (replayed copies must carry its ``user_id``): from
``--amqp-url`` (or ``JIEXU_AGENCY_AMQP_URL``), else from ``{secrets-dir}/{code}.broker.json`` as
written by ``jiexu topology apply``.
"""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from agents.cli.sensitive import password_free
from agents.service.paths import CREDENTIALS_PATTERN, DEFAULT_SECRETS_DIR
from broker.connection import connect
from broker.dlq import DeadLetterInfo, list_dead_letters, replay_dead_letters, summarize
from broker.logging import configure_logging, mask_value
from broker.provider import BrokerEndpoint
from broker.topology import load_agency_secret, secret_path

__all__ = ["dlq_app", "resolve_agency_url"]

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"

dlq_app = typer.Typer(
    help="List and replay an agency's dead letters.",
    no_args_is_help=True,
)

_AGENCY = typer.Option(..., "--agency", help="the agency code whose DLQ to use")
_URL = typer.Option(
    None,
    "--amqp-url",
    callback=password_free,
    envvar="JIEXU_AGENCY_AMQP_URL",
    help="AMQP URL with the agency's own login (default: from --secrets-dir)",
)
_SECRETS = typer.Option(
    DEFAULT_SECRETS_DIR,
    "--secrets-dir",
    envvar="JIEXU_SECRETS_DIR",
    help=f"where {CREDENTIALS_PATTERN} credentials live",
)
_JSON = typer.Option(False, "--json", help="print one JSON object on stdout")
_LIMIT = typer.Option(10_000, "--limit", help="look at no more than this many")
_MESSAGE_ID = typer.Option(None, "--message-id", help="replay this message (repeatable)")
_REASON = typer.Option(
    None, "--reason", help="replay every dead letter with this reason (repeatable)"
)
_ALL = typer.Option(False, "--all", help="replay every dead letter")


def _quiet_client(as_json: bool) -> None:
    """A one-shot command for a person: the AMQP client's own reconnect errors would repeat the
    one ``error:`` line the command prints (`agents.cli.errors`)."""
    if not as_json:
        import logging

        for name in ("aiormq", "aio_pika"):
            logging.getLogger(name).setLevel(logging.CRITICAL)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def resolve_agency_url(agency: str, amqp_url: str | None, secrets_dir: Path) -> str:
    """The agency's AMQP URL: given, or from its secrets file (its URL, or its login on the broker
    of JIEXU_AMQP_URL / the local one)."""
    if amqp_url:
        from agents.cli.errors import check_amqp_url

        check_amqp_url(amqp_url, "--amqp-url")
        return amqp_url
    try:
        path = secret_path(secrets_dir, agency)
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    if not path.exists():
        raise _fail(
            f"no credentials for agency {agency}: pass --amqp-url (the agency's own login) or "
            f"--secrets-dir holding {path.name} (written by `jiexu topology apply`)"
        )
    try:
        secret = load_agency_secret(path)
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    if secret.get("amqp_url"):
        return secret["amqp_url"]
    endpoint = BrokerEndpoint.from_url(
        os.environ.get("JIEXU_AMQP_URL") or DEFAULT_AMQP_URL, None, "JIEXU_AMQP_URL"
    )
    return endpoint.amqp_url(
        vhost=secret.get("vhost", endpoint.vhost),
        username=secret["username"],
        password=secret["password"],
    )


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.0f}h"
    return f"{seconds / 86400:.0f}d"


def _table(letters: list[DeadLetterInfo], now: datetime) -> str:
    if not letters:
        return "no dead letters"
    rows = [("MESSAGE ID", "REASON", "TYPE", "CASE", "PUBLISHER", "AGE", "DETAIL")]
    for letter in letters:
        rows.append(
            (
                letter.message_id or "-",
                letter.reason,
                f"{letter.type or '-'} v{letter.version or '?'}",
                letter.case_id or "-",
                letter.publisher_user or "(no user_id)",
                _age(letter.age_s(now)),
                mask_value(letter.detail)[:80],
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])) + "  " + row[-1]
        for row in rows
    ]
    counts = ", ".join(f"{reason}: {n}" for reason, n in summarize(letters).items())
    return "\n".join([*lines, "", f"{len(letters)} dead letter(s) — {counts}"])


async def _list(url: str, agency: str, limit: int) -> list[DeadLetterInfo]:
    connection = await connect(url, name=f"jiexu-dlq-{agency}")
    async with connection:
        return await list_dead_letters(connection, agency, limit=limit)


@dlq_app.command("list")
def list_command(
    agency: str = _AGENCY,
    amqp_url: str | None = _URL,
    secrets_dir: Path = _SECRETS,
    limit: int = _LIMIT,
    as_json: bool = _JSON,
) -> None:
    """Show each dead letter's reason, type, case and age (left in the queue)."""
    configure_logging(level="INFO" if as_json else "ERROR", json=as_json)
    _quiet_client(as_json)
    url = resolve_agency_url(agency, amqp_url, secrets_dir)
    letters = asyncio.run(_list(url, agency, limit))
    now = datetime.now(UTC)
    if as_json:
        result: dict[str, Any] = {
            "agency": agency,
            "count": len(letters),
            "by_reason": summarize(letters),
            "dead_letters": [letter.as_dict(now) for letter in letters],
        }
        typer.echo(json.dumps(result, ensure_ascii=False))
    else:
        typer.echo(_table(letters, now))


async def _replay(
    url: str, agency: str, ids: list[str], reasons: list[str], replay_all: bool
) -> dict[str, Any]:
    connection = await connect(url, name=f"jiexu-dlq-{agency}")
    async with connection:
        if not connection.user.endswith(f"agency-{agency}"):
            raise _fail(
                f"replay must run as agency {agency}'s own broker user, not {connection.user!r} "
                "(replayed copies carry its user_id)"
            )
        report = await replay_dead_letters(
            connection, agency, message_ids=ids, reasons=reasons, replay_all=replay_all
        )
    return {
        "agency": agency,
        "replayed": [letter.message_id for letter in report.replayed],
        "kept": report.kept,
        "failed": [
            {"message_id": letter.message_id, "error": mask_value(error)}
            for letter, error in report.failed
        ],
    }


@dlq_app.command("replay")
def replay_command(
    agency: str = _AGENCY,
    message_id: list[str] | None = _MESSAGE_ID,
    reason: list[str] | None = _REASON,
    replay_all: bool = _ALL,
    amqp_url: str | None = _URL,
    secrets_dir: Path = _SECRETS,
    as_json: bool = _JSON,
) -> None:
    """Send chosen dead letters back through the agency's inbox and remove them from the DLQ."""
    configure_logging(level="INFO" if as_json else "ERROR", json=as_json)
    _quiet_client(as_json)
    if not (message_id or reason or replay_all):
        raise _fail("choose what to replay: --message-id ID, --reason R or --all")
    url = resolve_agency_url(agency, amqp_url, secrets_dir)
    result = asyncio.run(_replay(url, agency, message_id or [], reason or [], replay_all))
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False))
    else:
        typer.echo(
            f"replayed {len(result['replayed'])} into {agency}'s inbox; "
            f"{result['kept']} left in the DLQ; {len(result['failed'])} failed"
        )
        for failure in result["failed"]:
            typer.echo(f"  failed {failure['message_id']}: {failure['error']}", err=True)
    if result["failed"]:
        raise typer.Exit(1)

