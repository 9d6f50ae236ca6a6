"""Options that carry personal data or passwords: taken from the environment, never the command line.

A command line is visible to every user of the machine (``ps``, ``/proc/PID/cmdline``) and is kept
in shell history. So ``--id-number``, ``--name`` and ``--payout-account`` (personal data) and an
``--amqp-url`` with a password in it are refused when typed on the command line; the same values
are read from their environment variables (``JIEXU_ID_NUMBER``, ``JIEXU_NAME``,
``JIEXU_PAYOUT_ACCOUNT``, ``JIEXU_AGENCY_AMQP_URL`` / ``JIEXU_RECONCILER_AMQP_URL``), which only the
process and its owner can read. A URL without a password (the password then comes from the secrets
file) may still be given on the command line.

Use as a typer option callback: ``typer.Option(None, envvar="JIEXU_ID_NUMBER",
callback=personal_data)``.
"""

from __future__ import annotations

import re

import typer

__all__ = ["password_free", "personal_data"]


def _typed(ctx: typer.Context, param: typer.CallbackParam) -> bool:
    # By name: typer may bring its own copy of click's ParameterSource.
    source = ctx.get_parameter_source(param.name) if param.name is not None else None
    return getattr(source, "name", None) == "COMMANDLINE"


def _envvar(param: typer.CallbackParam) -> str:
    envvar = param.envvar
    if isinstance(envvar, list | tuple):
        return str(envvar[0]) if envvar else "its environment variable"
    return str(envvar) if envvar else "its environment variable"


def _hint(param: typer.CallbackParam) -> str:
    return "--" + (param.name or "").replace("_", "-")


def personal_data(ctx: typer.Context, param: typer.CallbackParam, value: str | None) -> str | None:
    """Refuse personal data typed on the command line; take it from the environment instead."""
    if value is not None and _typed(ctx, param):
        raise typer.BadParameter(
            f"personal data on the command line is visible to every user (ps) and kept in shell "
            f"history: set {_envvar(param)} instead",
            param_hint=_hint(param),
        )
    return value


def password_free(ctx: typer.Context, param: typer.CallbackParam, value: str | None) -> str | None:
    """Refuse a URL with a password typed on the command line (the environment is fine)."""
    if value is not None and _typed(ctx, param):
        # user:password@ before the hosts (one host or a cluster's comma-separated list)
        has_password = re.search(r"://[^/@]*:[^/@]*@", value) is not None
        if has_password:
            raise typer.BadParameter(
                f"a password on the command line is visible to every user (ps): set "
                f"{_envvar(param)} instead, or leave the password to the secrets file",
                param_hint=_hint(param),
            )
    return value
