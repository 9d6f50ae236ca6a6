"""`jiexu topology apply|export`: provision the broker, or write it as a RabbitMQ definitions file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import typer

from agents.service.paths import CREDENTIALS_PATTERN, DEFAULT_SECRETS_DIR
from broker.directory import DirectoryError
from broker.directory_trust import open_directory
from broker.logging import configure_logging
from broker.management import ManagementError
from broker.provider import BrokerEndpoint
from broker.provisioning import apply_topology_safely
from broker.prune import Pruned, prune_agencies
from broker.topology import (
    DEFAULT_DELIVERY_LIMIT,
    DEFAULT_GROUP_SIZE,
    DEFAULT_RETRY_DELAYS_MS,
    AgencyCredential,
    TopologySpec,
    export_definitions,
    generate_password,
    load_credentials,
    write_credentials,
)

__all__ = ["topology_app"]

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"

topology_app = typer.Typer(
    help="Provision the exchange, queues, users and permissions, or export them as definitions.",
    no_args_is_help=True,
)

_DIRECTORY = typer.Option(None, "--directory", help="agency directory JSON: provision its agencies")
_AGENCY = typer.Option(None, "--agency", help="an agency code (repeatable)")
_VHOST = typer.Option(None, "--vhost", help="vhost (default: the one in JIEXU_AMQP_URL, else /)")
_SECRETS = typer.Option(
    DEFAULT_SECRETS_DIR, "--secrets-dir", help=f"where {CREDENTIALS_PATTERN} credentials live (0600)"
)
_LIMIT = typer.Option(DEFAULT_DELIVERY_LIMIT, "--delivery-limit", help="deliveries before the DLQ")
_DELAYS = typer.Option(
    ",".join(str(ms) for ms in DEFAULT_RETRY_DELAYS_MS),
    "--retry-delays",
    help="retry delays in ms, comma-separated",
)
_PREFIX = typer.Option("", "--user-prefix", help="prefix of broker user names (shared brokers)")
_JSON = typer.Option(False, "--json", help="print one JSON object on stdout")
_ROTATE = typer.Option(
    False, "--rotate", help="set new passwords for broker users that already exist (default: keep)"
)
_PRUNE = typer.Option(
    False,
    "--prune",
    help="also delete the broker users and queues (on this vhost) of agencies not in --directory",
)
_OUTPUT = typer.Option(..., "--output", help="definitions file to write")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _spec(
    directory: Path | None,
    agencies: list[str] | None,
    delivery_limit: int,
    delays: str,
    prefix: str,
    secrets_dir: Path | None = None,
) -> TopologySpec:
    codes: set[str] = set(agencies or [])
    if directory is not None:
        try:  # the operator's signature checked: --prune deletes whoever is not in it
            codes.update(open_directory(directory, secrets_dir).codes)
        except DirectoryError as exc:
            raise _fail(str(exc)) from exc
    if not codes:
        raise _fail("name the agencies: --directory FILE or --agency CODE (repeatable)")
    try:
        delays_ms = tuple(int(part) for part in delays.split(",") if part.strip())
        return TopologySpec(
            agency_codes=tuple(sorted(codes)),
            retry_delays_ms=delays_ms,
            delivery_limit=delivery_limit,
            user_prefix=prefix,
            # Quorum members per queue (broker.topology); 3 unless the operator says otherwise.
            group_size=int(os.environ.get("JIEXU_QUORUM_GROUP_SIZE") or DEFAULT_GROUP_SIZE),
        )
    except ValueError as exc:
        raise _fail(str(exc)) from exc


def _endpoint() -> BrokerEndpoint | None:
    url = os.environ.get("JIEXU_AMQP_URL")
    if not url:
        return None
    try:
        return BrokerEndpoint.from_url(url, os.environ.get("JIEXU_MANAGEMENT_URL"), "JIEXU_AMQP_URL")
    except ValueError as exc:
        raise _fail(f"JIEXU_AMQP_URL: {exc}") from exc


def _known_passwords(secrets_dir: Path, spec: TopologySpec) -> dict[str, str]:
    """Passwords already issued, so running again does not lock running agents out."""
    try:
        existing = load_credentials(secrets_dir, spec.codes)
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    return {
        code: cred.password
        for code, cred in existing.items()
        if cred.username == spec.user(code)
    }


def _emit(as_json: bool, result: dict[str, Any], human: str) -> None:
    typer.echo(json.dumps(result, ensure_ascii=False) if as_json else human)


@topology_app.command("apply")
def apply_command(
    directory: Path | None = _DIRECTORY,
    agency: list[str] | None = _AGENCY,
    vhost: str | None = _VHOST,
    secrets_dir: Path = _SECRETS,
    delivery_limit: int = _LIMIT,
    retry_delays: str = _DELAYS,
    user_prefix: str = _PREFIX,
    rotate: bool = _ROTATE,
    as_json: bool = _JSON,
    prune: bool = _PRUNE,
) -> None:
    """Provision the topology and one broker user per agency through the management API.

    The broker comes from JIEXU_AMQP_URL (an administrator) and JIEXU_MANAGEMENT_URL, else the
    local broker as guest. Safe to run again, and beside other deployments: a broker user that
    already exists keeps its password (its credentials are written only if --secrets-dir holds
    them) unless --rotate is given; prints which users were created, kept or rotated.
    """
    configure_logging(level="INFO" if as_json else "WARNING", json=as_json)
    spec = _spec(directory, agency, delivery_limit, retry_delays, user_prefix, secrets_dir)
    endpoint = _endpoint() or BrokerEndpoint.from_url(DEFAULT_AMQP_URL, None, "default")
    target = vhost or endpoint.vhost
    passwords = _known_passwords(secrets_dir, spec)
    if prune and directory is None:
        raise _fail("--prune needs --directory: it removes the agencies the directory does not list")
    pruned = Pruned()
    try:
        with endpoint.management() as api:
            done = apply_topology_safely(api, target, spec, passwords, rotate=rotate)
            if prune:
                pruned = prune_agencies(api, target, spec)
    except ManagementError as exc:
        raise _fail(str(exc)) from exc
    credentials = done.credentials
    urls = {
        code: endpoint.amqp_url(vhost=target, username=c.username, password=c.password)
        for code, c in credentials.items()
    }
    written = write_credentials(secrets_dir, credentials, target, urls)
    users = {action: [spec.user(c) for c in done.codes(action)] for action in ("created", "kept", "rotated")}
    unknown = [spec.user(c) for c in done.unknown_password]
    _emit(
        as_json,
        {
            "vhost": target,
            "broker": endpoint.management_url,
            "agencies": list(spec.codes),
            "users": [c.username for c in credentials.values()],
            "new_passwords": sorted(done.codes("created") + done.codes("rotated")),
            **users,
            "kept_password_unknown": unknown,
            "secrets": [str(p) for p in written],
            "pruned_users": pruned.users,
            "pruned_queues": pruned.queues,
            "kept_dead_letter_queues": pruned.kept_queues,
        },
        f"topology applied on vhost {target!r} at {endpoint.management_url}: "
        f"{len(spec.codes)} agencies (reconciler included)\n"
        + "".join(f"{action}: {', '.join(names) or '-'}\n" for action, names in users.items())
        + (
            f"kept without a known password (not written; another deployment's users? use "
            f"--user-prefix, or --rotate to take them over): {', '.join(unknown)}\n"
            if unknown
            else ""
        )
        + (
            f"pruned: users {', '.join(pruned.users) or '-'}; queues {', '.join(pruned.queues) or '-'}"
            + (f"; kept (not empty): {', '.join(pruned.kept_queues)}" if pruned.kept_queues else "")
            + "\n"
            if prune
            else ""
        )
        + f"credentials: {secrets_dir}/{CREDENTIALS_PATTERN}",
    )


@topology_app.command("export")
def export_command(
    output: Path = _OUTPUT,
    directory: Path | None = _DIRECTORY,
    agency: list[str] | None = _AGENCY,
    vhost: str | None = _VHOST,
    secrets_dir: Path = _SECRETS,
    delivery_limit: int = _LIMIT,
    retry_delays: str = _DELAYS,
    user_prefix: str = _PREFIX,
    as_json: bool = _JSON,
) -> None:
    """Write the topology, users (salted password hashes) and permissions as RabbitMQ definitions.

    Passwords come from --secrets-dir; agencies without one get a new one, written there first.
    Load the file with `load_definitions` in rabbitmq.conf or POST it to /api/definitions.
    """
    configure_logging(level="INFO" if as_json else "WARNING", json=as_json)
    spec = _spec(directory, agency, delivery_limit, retry_delays, user_prefix, secrets_dir)
    endpoint = _endpoint()
    target = vhost or (endpoint.vhost if endpoint else "/")
    passwords = _known_passwords(secrets_dir, spec)
    fresh = {
        code: AgencyCredential(code, spec.user(code), generate_password())
        for code in spec.codes
        if code not in passwords
    }
    if fresh:
        urls = (
            {
                code: endpoint.amqp_url(vhost=target, username=c.username, password=c.password)
                for code, c in fresh.items()
            }
            if endpoint
            else None
        )
        write_credentials(secrets_dir, fresh, target, urls)
        passwords.update({code: c.password for code, c in fresh.items()})
    definitions = export_definitions(spec, target, passwords)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(definitions, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    _emit(
        as_json,
        {
            "output": str(output),
            "vhost": target,
            "agencies": list(spec.codes),
            "queues": len(definitions["queues"]),
            "new_passwords": sorted(fresh),
        },
        f"definitions for vhost {target!r} ({len(spec.codes)} agencies) written to {output}",
    )
