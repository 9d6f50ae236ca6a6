"""`jiexu schemas export DIR`: write the published contract (JSON Schemas, AsyncAPI)."""

from __future__ import annotations

from pathlib import Path

import typer

from schemas.export import write_contract

__all__ = ["schemas_app"]

schemas_app = typer.Typer(
    help="The message contracts: JSON Schema per (type, version), envelope, AsyncAPI.",
    no_args_is_help=True,
)


@schemas_app.callback()
def _schemas() -> None:
    """The message contracts: JSON Schema per (type, version), envelope, AsyncAPI."""


@schemas_app.command("export")
def export_command(
    directory: Path = typer.Argument(
        ..., help="where to write json/*.json and asyncapi.yaml (created if missing)"
    ),
) -> None:
    """Write DIR/json/<type>.v<N>.json, DIR/json/envelope.json, DIR/json/directory.schema.json
    (the agency directory file) and DIR/asyncapi.yaml."""
    written = write_contract(directory)
    typer.echo(f"wrote {len(written)} files under {directory}", err=True)


@schemas_app.command("vectors")
def vectors_command(
    directory: Path = typer.Argument(..., help="where to write the vectors (schemas/vectors)"),
) -> None:
    """Write the test vectors (valid and invalid messages, the test-only key) under DIR."""
    from schemas.vectors import write_vectors

    written = write_vectors(directory)
    typer.echo(f"wrote {len(written)} files under {directory}", err=True)


@schemas_app.command("protocol")
def protocol_command(
    path: Path = typer.Argument(Path("docs/protocol.md"), help="the file to write"),
) -> None:
    """Write the protocol (roles, steps, causation, copies, limits) as Markdown."""
    from schemas.protocol import write_protocol

    typer.echo(f"wrote {write_protocol(path)}", err=True)
