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

_AGENCY = typer.Option(
    ..., "--agency", help="the agency code (6 digits), or 'operator' for the directory's signer"
)
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
    # "operator": the exchange operator's key pair, which signs the agency directory.
    if not re.fullmatch(r"[0-9]{6}", agency) and agency != "operator":
        typer.echo(f"error: agency code must be 6 digits (or 'operator'), got {agency!r}", err=True)
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


@keys_app.command("sign-directory")
def sign_directory_command(
    directory: Path = typer.Argument(..., help="the agency directory file to sign"),
    key: Path = typer.Option(
        ..., "--key", help="the operator's private key (operator.ed25519.pem)"
    ),
) -> None:
    """Sign the agency directory as the exchange's operator: writes DIRECTORY.sig beside it.

    Every process verifies it at load against the operator's public key (JIEXU_OPERATOR_KEY,
    default SECRETS_DIR/operator.ed25519.pub). Sign again after every change to the file."""
    from broker.directory import AgencyDirectory, DirectoryError
    from broker.directory_trust import key_fingerprint, sign_directory

    try:
        operator = load_private_key(key)
        AgencyDirectory.load(directory)  # never sign a file that does not parse
        written = sign_directory(directory, operator)
    except (OSError, ValueError, DirectoryError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"signed {directory} -> {written} (operator key {key_fingerprint(operator)})")
