"""`jiexu case certificate` and `jiexu certificate verify`: the participation certificate (参保凭证).

The outgoing agency issues the certificate when it ends the person's relationship; it is kept,
signed, in the outgoing case (`agents.domain.case.Case.certificate`).

- ``jiexu case certificate CASE_ID --agency CODE [--out DIR]`` writes it as a printable PDF and as
  JSON (``<number>.pdf`` and ``<number>.json``, by default into ``<data dir>/<CODE>/certificates``)
  and prints both paths. Exit 1 when the case does not exist or holds no certificate (a receiving
  case, a case refused before the books changed, or one the certificate could not be made for).
- ``jiexu certificate verify FILE.json [--check-code CODE] [--on DATE]`` is the counter's check of
  a certificate a person brings: its JSON form parses and agrees with itself, it is signed by the
  issuing agency's key in the agency directory, the check code printed on the paper (when typed)
  is the one its signature gives, and (with ``--on``) it is still valid that day. One line on
  stdout and exit 0 when it passes; one line on stderr naming the failed check and exit 2 when it
  is refused; exit 1 when the file or the directory cannot be read.

Registered in `agents.cli` with::

    from agents.cli.certificate_cmd import case_certificate_command, certificate_app
    case_app.command("certificate")(case_certificate_command)
    app.add_typer(certificate_app, name="certificate")
"""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import typer

from agents.domain.case import case_from_data
from agents.domain.certificate import ParticipationCertificate
from agents.service.bootstrap import open_store
from agents.service.certificates import (
    CertificateRefused,
    FontMissing,
    save_certificate,
    verify_certificate,
)
from agents.service.paths import DEFAULT_DIRECTORY, DEFAULT_SECRETS_DIR
from agents.service.settings import AgentSettings
from broker.directory import DirectoryError
from broker.directory_trust import open_directory
from broker.logging import configure_logging

__all__ = ["case_certificate_command", "certificate_app", "verify_command"]

certificate_app = typer.Typer(help="Participation certificates (参保凭证).", no_args_is_help=True)


def case_certificate_command(
    case_id: str = typer.Argument(..., help="the case id"),
    agency: str = typer.Option(..., "--agency", help="the outgoing agency's 6-digit region code"),
    out: Path | None = typer.Option(
        None, "--out", help="folder for the PDF and JSON [default: <data dir>/<CODE>/certificates]"
    ),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="data directory [env JIEXU_DATA_DIR]"),
    database_url: str | None = typer.Option(
        None, help="PostgreSQL DSN for the store [env JIEXU_DATABASE_URL]"
    ),
) -> None:
    """Write the participation certificate of an outgoing case as PDF and JSON."""
    configure_logging(level="WARNING")
    given: dict[str, Any] = {"data_dir": data_dir, "database_url": database_url}
    try:
        settings = AgentSettings(agency=agency, **{k: v for k, v in given.items() if v is not None})
    except ValueError as exc:
        typer.echo(f"invalid configuration: {exc}", err=True)
        raise typer.Exit(2) from exc
    try:
        wanted = uuid.UUID(case_id)
    except ValueError as exc:
        typer.echo(f"not a case id: {case_id}", err=True)
        raise typer.Exit(2) from exc

    async def find() -> ParticipationCertificate | None:
        store = await open_store(settings)
        try:
            record = await store.get_case(wanted)
        finally:
            await store.close()
        if record is None:
            typer.echo(f"no case {wanted} at agency {agency}", err=True)
            raise typer.Exit(1)
        return case_from_data(record.data).certificate

    certificate = asyncio.run(find())
    if certificate is None:
        typer.echo(
            f"case {wanted} holds no certificate: only an outgoing case whose books ended the "
            "relationship has one",
            err=True,
        )
        raise typer.Exit(1)
    folder = out if out is not None else settings.agency_dir / "certificates"
    try:
        files = save_certificate(certificate, folder)
    except (FontMissing, OSError) as exc:
        typer.echo(f"cannot write the certificate: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"certificate {certificate.certificate_number} check code {certificate.check_code}")
    typer.echo(f"pdf  {files.pdf}")
    typer.echo(f"json {files.json}")


@certificate_app.command("verify")
def verify_command(
    file: Path = typer.Argument(..., help="the certificate's JSON form"),
    check_code: str | None = typer.Option(
        None, "--check-code", help="the check code printed on the paper, as typed"
    ),
    on: str | None = typer.Option(None, "--on", help="registration day YYYY-MM-DD: refuse if expired"),
    directory: Path = typer.Option(
        DEFAULT_DIRECTORY, "--directory", envvar="JIEXU_DIRECTORY", help="the agency directory"
    ),
) -> None:
    """Verify a certificate against the agency directory: exit 0 valid, 2 refused, 1 unreadable."""
    try:
        text = file.read_bytes()
    except OSError as exc:
        typer.echo(f"cannot read {file}: {exc.strerror or exc}", err=True)
        raise typer.Exit(1) from exc
    try:
        secrets = Path(os.environ.get("JIEXU_SECRETS_DIR", DEFAULT_SECRETS_DIR))
        keys = open_directory(directory, secrets)  # operator-signed
    except DirectoryError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    day: date | None = None
    if on is not None:
        try:
            day = date.fromisoformat(on)
        except ValueError as exc:
            typer.echo(f"--on must be a day YYYY-MM-DD, not {on!r}", err=True)
            raise typer.Exit(2) from exc
    try:
        certificate = verify_certificate(text, keys, printed_check_code=check_code, on=day)
    except CertificateRefused as exc:
        typer.echo(f"refused ({exc.reason_code}): {exc.text}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(
        f"valid: certificate {certificate.certificate_number} issued by {certificate.issuer.code} on "
        f"{certificate.issued_on}, register by {certificate.register_by}"
        + ("" if check_code is None else ", check code matches")
    )
