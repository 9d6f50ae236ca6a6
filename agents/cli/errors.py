"""One place that turns the expected failures of a command into one line a person can act on.

Every command lets its exceptions rise; the root group (`JiexuGroup` in `agents.cli`) catches
them, asks `explain` for a line, prints ``error: <line>`` on stderr and exits 2. An exception
`explain` does not know is a bug: its traceback is shown as usual. ``jiexu --debug`` (or
``JIEXU_DEBUG=1``) shows the traceback of every error.

A line never holds an ID number: pydantic's errors are rendered from their field and message only
(never the input), and whatever the line holds is passed through `scrub` before it is printed.

This module imports nothing heavy at import time (``jiexu --help`` must start fast); the exception
types it knows are imported when an error is explained.
"""

from __future__ import annotations

import re

__all__ = ["CliError", "check_amqp_url", "explain", "scrub"]

_ID_NUMBER = re.compile(r"(?<![0-9])[0-9]{6}(?:[0-9]{8})[0-9]{3}[0-9Xx](?![0-9A-Za-z])")


class CliError(Exception):
    """A mistake in what the person gave; the message says what to do."""


def scrub(text: str) -> str:
    """One line, with anything shaped like an ID number masked."""
    line = " ".join(text.split())
    return _ID_NUMBER.sub(lambda m: m.group(0)[:6] + "********" + m.group(0)[-4:], line)


def check_amqp_url(url: str, source: str = "JIEXU_AMQP_URL") -> None:
    """Refuse a broker URL that would make the client hang or guess: no ``amqp://`` /
    ``amqps://`` scheme, no host, a port that is not a number. One host or several (a cluster:
    ``amqp://u:p@h1:5672,h2:5672/vh``)."""
    scheme = url.partition("://")[0] if "://" in url else ""
    if scheme not in ("amqp", "amqps"):
        raise CliError(
            f"{source} must start with amqp:// or amqps:// (got {_without_password(url)!r}): "
            "give amqp://USER:PASS@HOST:5672/VHOST"
        )
    from broker.address import parse_broker_url

    try:
        address = parse_broker_url(url)
    except ValueError as exc:
        raise CliError(
            f"{source} is not a valid URL ({exc}): give amqp://USER:PASS@HOST:5672/VHOST"
        ) from None
    if any(not host for host, _ in address.hosts):
        raise CliError(f"{source} names no host: give amqp://USER:PASS@HOST:5672/VHOST")
    if any(port == 15672 for _, port in address.hosts):
        raise CliError(
            f"{source} names port 15672, the management API: the broker's AMQP port is usually 5672"
        )


def _without_password(url: str) -> str:
    return re.sub(r"//([^:/@]*):[^@/]*@", r"//\1:***@", url)


def explain(exc: BaseException) -> str | None:
    """The one line for an expected failure, or ``None`` (a bug: show the traceback)."""
    if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        return explain(exc.exceptions[0])
    line = _explain(exc)
    return None if line is None else scrub(line)


def _explain(exc: BaseException) -> str | None:
    if isinstance(exc, CliError):
        return str(exc)
    from agents.service.refusals import Refused

    if isinstance(exc, Refused):
        return str(exc)
    from agents.ledger.choice import LedgerConfigError

    if isinstance(exc, LedgerConfigError):
        return f"invalid configuration: {exc}"
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return "invalid input: " + "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or exc.title}: {error['msg']}"
            for error in exc.errors(include_input=False, include_url=False, include_context=False)
        )
    from broker.directory import DirectoryError, UnknownAgency

    if isinstance(exc, UnknownAgency):
        return (
            f"agency {exc.args[0] if exc.args else '?'} is not in the agency directory: check --agency, "
            "or add its entry to the directory file (see the README, Running an agency)"
        )
    if isinstance(exc, DirectoryError):
        return (
            f"{exc}: give the directory with --directory or JIEXU_DIRECTORY (the file every agency "
            "shares: see the README, Running an agency)"
        )
    from broker.tls import PlaintextRefused

    if isinstance(exc, PlaintextRefused):  # JIEXU_REQUIRE_TLS
        return f"configuration: {exc}"
    from agents.service.metrics_tls import MetricsTlsError

    if isinstance(exc, MetricsTlsError):
        return f"configuration: {exc}"
    auth = _broker_auth_error(exc)
    if auth is not None:
        return auth
    if isinstance(exc, FileNotFoundError):
        return _missing_file(exc.filename)
    if isinstance(exc, ValueError) and str(exc).startswith("cannot read broker secret"):
        return f"{exc}: `jiexu topology apply` writes it; check --secrets-dir or JIEXU_SECRETS_DIR"
    if isinstance(exc, ConnectionError | TimeoutError) or (
        isinstance(exc, OSError) and exc.errno is not None
    ):
        return (
            f"cannot reach the broker or the database ({exc}): is it running, and are the host and "
            "port in JIEXU_AMQP_URL / JIEXU_DATABASE_URL right?"
        )
    return None


def _broker_auth_error(exc: BaseException) -> str | None:
    try:
        from aiormq.exceptions import AMQPConnectionError, ProbableAuthenticationError
    except ImportError:  # pragma: no cover - aio-pika is a dependency
        return None
    if isinstance(exc, ProbableAuthenticationError):
        return (
            "the broker refused the login (wrong user or password): check the credentials file "
            "written by `jiexu topology apply`, or the user and password in the URL"
        )
    if isinstance(exc, AMQPConnectionError) and "NOT_ALLOWED" in str(exc):
        return f"the broker refused the connection ({exc}): does the vhost exist, may this user use it?"
    return None


def _missing_file(filename: object) -> str:
    name = str(filename) if filename is not None else "a file"
    if name.endswith((".ed25519.pem", ".ed25519.pub")):
        return (
            f"no key file {name}: make it with `jiexu keys generate --agency CODE --out DIR`, "
            "or point --secrets-dir / JIEXU_SECRETS_DIR at it"
        )
    if name.endswith(".broker.json"):
        return (
            f"no broker credentials {name}: `jiexu topology apply` writes them; check --secrets-dir "
            "or JIEXU_SECRETS_DIR"
        )
    return f"no such file: {name}"
