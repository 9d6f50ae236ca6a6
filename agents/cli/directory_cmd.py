"""`jiexu directory init|add|show`: the agency directory file, without writing JSON by hand."""

from __future__ import annotations

import typer

__all__ = ["directory_app"]

directory_app = typer.Typer(help="Make and read the agency directory file.", no_args_is_help=True)
