"""`jiexu conformance --agency CODE`: play the counterpart and the reconciler against an agency."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import typer

from agents.tools.conformance import ConformanceSettings, Party, run_conformance
from broker.directory import DirectoryError
from broker.directory_trust import open_directory
from broker.names import RECONCILER_CODE
from broker.signing import load_private_key, private_key_path
from broker.topology import load_agency_secret, secret_path
from schemas.common import Gender, Person

__all__ = ["conformance_command"]

_AGENCY = typer.Option(..., "--agency", help="the agency under test")
_AS = typer.Option(..., "--as", help="the receiving agency the kit plays (its login and key)")
_PERSON = typer.Option(
    ..., "--person", help="ID_NUMBER:NAME:male|female, held by the agency's books (repeatable)"
)
_UNKNOWN = typer.Option(..., "--unknown-id", help="a valid ID number the agency's books do not hold")
_SECRETS = typer.Option(Path(".jiexu/secrets"), "--secrets-dir", help="CODE.broker.json of both parties")
_KEYS = typer.Option(None, "--keys-dir", help="CODE.ed25519.pem of both parties (default: --secrets-dir)")
_DIRECTORY = typer.Option(Path(".jiexu/directory.json"), "--directory", help="the agency directory")
_TIMEOUT = typer.Option(60.0, "--timeout", help="seconds to wait for each answer")
_JSON = typer.Option(False, "--json", help="print one JSON object on stdout")
_ROLE = typer.Option(
    ["outgoing"], "--role",
    help="outgoing (the kit sends letters) and/or receiving (the kit waits for the agency's letter: "
    "apply there for a person moving from --as); repeatable",
)
_LETTER = typer.Option(600.0, "--letter-timeout", help="seconds to wait for the agency's letter")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _party(code: str, secrets_dir: Path, keys_dir: Path) -> Party:
    try:
        secret = load_agency_secret(secret_path(secrets_dir, code))
        key = load_private_key(private_key_path(keys_dir, code))
    except (OSError, ValueError) as exc:
        raise _fail(f"{code}: {exc}") from exc
    if not secret.get("amqp_url"):
        raise _fail(f"{code}: its secrets file has no amqp_url (run `jiexu topology apply`)")
    return Party(code, secret["amqp_url"], key)


def _person(text: str) -> Person:
    try:
        id_number, name, gender = text.split(":")
        return Person(name=name, gender=Gender(gender), id_number=id_number)
    except ValueError as exc:
        raise _fail(f"--person {text!r}: {exc}") from exc


def conformance_command(
    agency: str = _AGENCY,
    kit_code: str = _AS,
    person: list[str] = _PERSON,
    unknown_id: str = _UNKNOWN,
    secrets_dir: Path = _SECRETS,
    keys_dir: Path | None = _KEYS,
    directory: Path = _DIRECTORY,
    timeout: float = _TIMEOUT,
    role: list[str] = _ROLE,
    letter_timeout: float = _LETTER,
    as_json: bool = _JSON,
) -> None:
    """Play the counterpart (--as) and the reconciler against AGENCY in its roles and its
    reconciliation duties; print pass/fail per step with what was expected. Exit 1 on a failure."""
    if not role or set(role) - {"outgoing", "receiving"}:
        raise _fail("--role is outgoing or receiving")
    try:
        loaded = open_directory(directory, secrets_dir)  # operator-signed
    except DirectoryError as exc:
        raise _fail(str(exc)) from exc
    keys = keys_dir or secrets_dir
    settings = ConformanceSettings(
        agency=agency,
        kit=_party(kit_code, secrets_dir, keys),
        reconciler=_party(RECONCILER_CODE, secrets_dir, keys),
        directory=loaded,
        persons=tuple(_person(p) for p in person),
        unknown_id_number=unknown_id,
        timeout_s=timeout,
        roles=tuple(role),
        letter_timeout_s=letter_timeout,
    )
    checks = asyncio.run(run_conformance(settings))
    passed = all(c.ok for c in checks)
    if as_json:
        typer.echo(json.dumps({"agency": agency, "passed": passed,
                               "checks": [c.__dict__ for c in checks]}, ensure_ascii=False))
    else:
        for c in checks:
            typer.echo(f"{'PASS' if c.ok else 'FAIL'}  {c.step}")
            if not c.ok:
                typer.echo(f"      expected: {c.expected}\n      got: {c.got}")
        typer.echo(f"{sum(c.ok for c in checks)}/{len(checks)} passed")
    if not passed:
        raise typer.Exit(1)
