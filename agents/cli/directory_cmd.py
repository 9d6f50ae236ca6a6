"""`jiexu directory init|add|show`: the agency directory file, without writing JSON by hand.

Built on `broker.directory.AgencyDirectory` (the file's model and checks); the file is written
atomically. Imports only typer at import time.
"""

from __future__ import annotations

from pathlib import Path

import typer

from agents.cli.errors import CliError

__all__ = ["directory_app"]

directory_app = typer.Typer(help="Make and read the agency directory file.", no_args_is_help=True)

_DIRECTORY = typer.Option(
    Path(".jiexu/directory.json"),
    "--directory",
    envvar="JIEXU_DIRECTORY",
    help="the agency directory file [env JIEXU_DIRECTORY]",
    show_default=True,
)


@directory_app.command("init")
def init_command(
    directory: Path = _DIRECTORY,
    force: bool = typer.Option(False, "--force", help="replace an existing file"),
) -> None:
    """Write an empty directory (`{"agencies": []}`); add agencies with `jiexu directory add`."""
    from broker.directory import AgencyDirectory

    if directory.exists() and not force:
        raise CliError(f"{directory} exists: use --force to replace it, or `jiexu directory add`")
    AgencyDirectory([]).save(directory)
    typer.echo(f"wrote {directory}")


def _versions(given: list[str]) -> dict[str, tuple[int, ...]]:
    from schemas.registry import MODELS

    versions = {t: tuple(range(1, len(models) + 1)) for t, models in MODELS.items()}
    for item in given:
        message_type, _, listed = item.partition("=")
        if message_type not in versions or not listed:
            raise CliError(
                f"--versions {item!r}: give TYPE=1,2 with TYPE one of {', '.join(sorted(versions))}"
            )
        try:
            versions[message_type] = tuple(int(v) for v in listed.split(","))
        except ValueError:
            raise CliError(f"--versions {item!r}: versions are numbers, e.g. {message_type}=1,2") from None
    return versions


@directory_app.command("add")
def add_command(
    code: str = typer.Option(..., "--code", help="the agency's 6-digit region code"),
    name: str = typer.Option(..., "--name", help="the agency's name"),
    public_key: str = typer.Option(
        ...,
        "--public-key",
        help="base64 of the raw Ed25519 public key, or the path of the .pub file `jiexu keys generate` wrote",
    ),
    bank_name: str = typer.Option(..., "--bank-name", help="bank of the agency's account"),
    bank_code: str = typer.Option(..., "--bank-code", help="the bank's code (联行号)"),
    account_name: str = typer.Option(..., "--account-name", help="the account holder's name"),
    account_number: str = typer.Option(..., "--account-number", help="6 to 34 digits"),
    address: str | None = typer.Option(None, "--address", help="postal address"),
    phone: str | None = typer.Option(None, "--phone", help="contact phone"),
    versions: list[str] = typer.Option(
        [],
        "--versions",
        help="TYPE=1,2: the versions of a message type it speaks (repeatable) [default: every "
        "version jiexu knows, for every type]",
    ),
    replace: bool = typer.Option(False, "--replace", help="replace the agency's existing entry"),
    directory: Path = _DIRECTORY,
) -> None:
    """Add an agency (or the reconciler, 000000) to the directory file; it is created if missing."""
    from broker.directory import AgencyDirectory, AgencyEntry, DirectoryBankAccount

    key_path = Path(public_key)
    if key_path.suffix == ".pub" or key_path.is_file():
        try:
            public_key = key_path.read_text(encoding="ascii").strip()
        except OSError as exc:
            raise CliError(f"cannot read the public key file {key_path}: {exc.strerror}") from None
    current = AgencyDirectory.load(directory) if directory.exists() else AgencyDirectory([])
    if code in current and not replace:
        raise CliError(f"agency {code} is already in {directory}: use --replace to change its entry")
    entry = AgencyEntry(
        code=code,
        name=name,
        supported_versions=_versions(versions),
        public_key=public_key,
        bank_account=DirectoryBankAccount(
            bank_name=bank_name,
            bank_code=bank_code,
            account_name=account_name,
            account_number=account_number,
        ),
        address=address,
        phone=phone,
    )
    current.with_agency(entry).save(directory)
    typer.echo(f"{'replaced' if code in current else 'added'} {code} {name} in {directory}")


@directory_app.command("show")
def show_command(
    directory: Path = _DIRECTORY,
    as_json: bool = typer.Option(False, "--json", help="print the file's JSON as it is checked"),
) -> None:
    """The agencies of the directory, their versions and keys (after checking the file)."""
    from broker.directory import AgencyDirectory

    loaded = AgencyDirectory.load(directory)
    if as_json:
        typer.echo(loaded.to_json().rstrip())
        return
    if not len(loaded):
        typer.echo(f"{directory}: no agencies yet (`jiexu directory add`)")
        return
    for code in loaded.codes:
        entry = loaded.get(code)
        spoken = ", ".join(
            f"{t} {'/'.join(str(v) for v in vs)}" for t, vs in sorted(entry.supported_versions.items())
        )
        typer.echo(f"{code}  {entry.name}")
        typer.echo(
            f"        key {entry.public_key[:12]}…  account {entry.bank_account.bank_name} "
            f"…{entry.bank_account.account_number[-4:]}"
        )
        typer.echo(f"        speaks {spoken}")
    typer.echo(f"{len(loaded)} agencies in {directory}")
