"""`jiexu keys generate|public`: an agency's Ed25519 signing key pair."""

from __future__ import annotations

import json
import re
from pathlib import Path

import typer

from broker.signing import (
    generate_private_key,
    load_private_key,
    private_key_path,
    public_key_path,
    public_key_to_raw_b64,
    save_private_key,
    save_public_key,
)

__all__ = ["keys_app"]

keys_app = typer.Typer(help="Ed25519 signing keys of an agency.", no_args_is_help=True)

_AGENCY = typer.Option(..., "--agency", help="the agency code (6 digits)")
_OUT = typer.Option(..., "--out", help="directory for {code}.ed25519.pem and .pub")
_FORCE = typer.Option(False, "--force", help="replace an existing private key")
_JSON = typer.Option(False, "--json", help="print one JSON object on stdout")
_KEY = typer.Argument(..., help="a private key file (PEM or base64 raw)")


@keys_app.command("generate")
def generate_command(
    agency: str = _AGENCY,
    out: Path = _OUT,
    force: bool = _FORCE,
    as_json: bool = _JSON,
) -> None:
    """Generate a key pair: the private key (PEM, 0600) stays with the agency; the public key
    (base64 of its 32 raw bytes, printed and written to .pub) goes into the agency directory."""
    if not re.fullmatch(r"[0-9]{6}", agency):
        typer.echo(f"error: agency code must be 6 digits, got {agency!r}", err=True)
        raise typer.Exit(2)
    private_path = private_key_path(out, agency)
    if private_path.exists() and not force:
        typer.echo(
            f"error: {private_path} exists; replacing it invalidates the public key in the "
            "directory (use --force to do it anyway)",
            err=True,
        )
        raise typer.Exit(1)
    key = generate_private_key()
    save_private_key(key, private_path)
    save_public_key(key, public_key_path(out, agency))
    public = public_key_to_raw_b64(key)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "agency": agency,
                    "public_key": public,
                    "private_key_path": str(private_path),
                    "public_key_path": str(public_key_path(out, agency)),
                }
            )
        )
    else:
        typer.echo(public)
        typer.echo(f"private key: {private_path} (keep it secret)", err=True)


@keys_app.command("public")
def public_command(
    key: Path = _KEY,
) -> None:
    """Print the public key (base64 raw) of a private key file."""
    try:
        private = load_private_key(key)
    except (OSError, ValueError) as exc:
        typer.echo(f"error: {key}: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(public_key_to_raw_b64(private))
