"""`jiexu doctor --agency CODE`: check one agency's configuration end to end, one line per check.

The settings are the agent's (the same options and ``JIEXU_*`` variables as ``jiexu agent``), and
the checks follow what the agent needs, in the order it needs it: the directory file, the agency's
entry in it, the private key matching the directory's public key, the broker credentials file (mode
0600), the broker (reachable, the agency user's login, the agency's inbox), the management API
(when ``JIEXU_MANAGEMENT_URL`` is set), the store and the ledger. Each line says ``ok`` or ``FAIL``
and, for a failure, how to fix it. Exit status 0 when every check passes, 2 otherwise; never a
traceback. Nothing is changed: a SQLite store or ledger not created yet is reported, not created.
"""

from __future__ import annotations

import asyncio
import os
import stat
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import typer
from aiormq.exceptions import ProbableAuthenticationError
from pydantic import ValidationError

from agents.service.bootstrap import agency_amqp_url, open_ledger, open_store
from agents.service.settings import AgentSettings
from broker.address import parse_broker_url
from broker.directory import AgencyDirectory
from broker.directory_trust import open_directory
from broker.logging import configure_logging
from broker.names import inbox_queue
from broker.signing import load_private_key, public_key_to_raw_b64
from broker.tls import check_http_url, management_tls
from broker.topology import load_agency_secret

__all__ = ["Check", "doctor_command", "run_checks"]

TIMEOUT_S = 10.0

_AGENCY = typer.Option(..., "--agency", help="this agency's 6-digit region code")
_DATA = typer.Option(None, "--data-dir", help="data directory [env JIEXU_DATA_DIR]")
_SECRETS = typer.Option(None, "--secrets-dir", help="secrets directory [env JIEXU_SECRETS_DIR]")
_DIRECTORY = typer.Option(None, "--directory", help="agency directory file [env JIEXU_DIRECTORY]")
_DATABASE = typer.Option(None, help="PostgreSQL DSN for the store [env JIEXU_DATABASE_URL]")


@dataclass(frozen=True)
class Check:
    """One check's outcome: ``detail`` says what was found, ``fix`` what to do when it failed."""

    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{'ok' if self.ok else 'FAIL':<5} {self.name:<15} {self.detail}"
        return text if self.ok or not self.fix else f"{text} -- fix: {self.fix}"


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


class _Doctor:
    """Runs the checks in order; later checks use what earlier ones loaded (or say they cannot)."""

    def __init__(self, settings: AgentSettings, management_url: str | None) -> None:
        self.settings = settings
        self.code = settings.agency
        self.paths = settings.paths
        self.management_url = management_url
        self.directory: AgencyDirectory | None = None
        self.secret: dict[str, str] | None = None
        self.checks: list[Check] = []

    def add(self, name: str, ok: bool, detail: str, fix: str = "") -> None:
        self.checks.append(Check(name, ok, detail, fix))

    async def run(self) -> list[Check]:
        steps: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("directory", self.check_directory),
            ("agency", self.check_agency),
            ("private key", self.check_private_key),
            ("credentials", self.check_credentials),
            ("broker", self.check_broker),
            ("management API", self.check_management),
            ("store", self.check_store),
            ("ledger", self.check_ledger),
        ]
        for name, step in steps:
            try:
                await step()
            except Exception as exc:  # a check never ends the run with a traceback
                self.add(name, False, f"unexpected {type(exc).__name__}: {_short(exc)}",
                         "report this with the line above")
        return self.checks

    # -- files ------------------------------------------------------------------------------------
    async def check_directory(self) -> None:
        path = self.paths.directory
        try:
            self.directory = open_directory(path, self.paths.secrets_dir)  # operator-signed
        except Exception as exc:
            self.add("directory", False, _short(exc),
                     "point --directory (JIEXU_DIRECTORY) at the exchange's agency directory file; "
                     "it must be valid JSON with an entry per agency")
            return
        self.add("directory", True, f"{path}: {len(self.directory)} agencies")

    async def check_agency(self) -> None:
        if self.directory is None:
            self.add("agency", False, "cannot check: the directory did not load", "fix the directory")
        elif self.code not in self.directory:
            self.add("agency", False, f"{self.code} is not in {self.paths.directory}",
                     "check --agency, or add the agency's entry (code, name, bank account, public "
                     "key) to the directory")
        else:
            self.add("agency", True, f"{self.code} {self.directory.get(self.code).name}")

    async def check_private_key(self) -> None:
        path = self.paths.private_key(self.code)
        fix_new = (f"jiexu keys generate --agency {self.code} --out {self.paths.secrets_dir}, then "
                   "publish the printed public key in the agency directory")
        if not path.is_file():
            self.add("private key", False, f"{path}: no such file", fix_new)
            return
        try:
            key = load_private_key(path)
        except Exception as exc:
            self.add("private key", False, f"{path}: not an Ed25519 private key ({_short(exc)})",
                     fix_new)
            return
        if self.directory is None or self.code not in self.directory:
            self.add("private key", False, f"{path} loads, but there is no directory entry to "
                     "compare it with", "fix the directory and the agency checks above")
            return
        listed = self.directory.get(self.code).public_key
        if public_key_to_raw_b64(key) != listed:
            self.add("private key", False,
                     f"{path} does not match the directory's public key for {self.code}: the "
                     "other agencies would dead-letter every message as bad_signature",
                     f"use the key whose public half is in the directory, or publish this key's "
                     f"(jiexu keys public --agency {self.code}) in the directory")
            return
        self.add("private key", True, f"{path} matches the directory's public key")

    async def check_credentials(self) -> None:
        path = self.paths.credentials(self.code)
        fix = (f"run `jiexu topology apply` with --secrets-dir {self.paths.secrets_dir} (it writes "
               f"{path.name} with mode 0600)")
        if not path.is_file():
            self.add("credentials", False, f"{path}: no such file", fix)
            return
        try:
            secret = load_agency_secret(path)
        except ValueError as exc:
            self.add("credentials", False, _short(exc), fix)
            return
        if secret.get("agency") != self.code:
            self.add("credentials", False, f"{path} is agency {secret.get('agency')}'s, not "
                     f"{self.code}'s", fix)
            return
        self.secret = secret
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            self.add("credentials", False, f"{path} has mode {mode:04o}: others can read the "
                     "broker password", f"chmod 600 {path}")
            return
        self.add("credentials", True, f"{path} (user {secret['username']}, mode {mode:04o})")

    # -- the broker -------------------------------------------------------------------------------
    async def check_broker(self) -> None:
        if self.secret is None:
            self.add("broker", False, "cannot log in: no usable credentials", "fix the credentials")
            return
        try:
            url = agency_amqp_url(self.settings)
        except ValueError as exc:
            self.add("broker", False, _short(exc),
                     "set JIEXU_AMQP_URL to the broker (amqp://HOST:PORT/)")
            return
        where = parse_broker_url(url)
        target = ",".join(f"{host}:{port}" for host, port in where.hosts)
        user = self.secret["username"]
        vhost = self.secret.get("vhost", "/")
        try:
            connection = await aio_pika.connect(where.node_urls()[0], timeout=TIMEOUT_S)
        except ProbableAuthenticationError as exc:
            self.add("broker", False, f"{target} refused the login of {user}: {_short(exc)}",
                     f"the password in {self.paths.credentials(self.code)} is not the broker's: "
                     "run `jiexu topology apply` again (as an administrator) to set it")
            return
        except Exception as exc:
            text = _short(exc)
            if "ACCESS_REFUSED" in text or "NOT_ALLOWED" in text:
                self.add("broker", False, f"{target}: {user} may not use vhost {vhost}: {text}",
                         "run `jiexu topology apply` for this vhost (it grants the permissions)")
            else:
                self.add("broker", False, f"{target} unreachable: {text}",
                         "check that RabbitMQ runs there and JIEXU_AMQP_URL's host and port, "
                         "and the network or firewall between")
            return
        try:
            channel = await connection.channel()
            try:
                queue = await asyncio.wait_for(
                    channel.declare_queue(inbox_queue(self.code), passive=True), TIMEOUT_S
                )
            except Exception as exc:
                self.add("broker", False, f"{target}: logged in as {user}, but the inbox "
                         f"{inbox_queue(self.code)} is missing or not allowed: {_short(exc)}",
                         "run `jiexu topology apply` with this agency in the directory")
                return
            waiting = queue.declaration_result.message_count
            consumers = queue.declaration_result.consumer_count
            self.add("broker", True, f"{target} vhost {vhost}: logged in as {user}; "
                     f"{inbox_queue(self.code)} holds {waiting}, {consumers} consumer(s)")
        finally:
            await connection.close()

    async def check_management(self) -> None:
        if not self.management_url:
            self.add("management API", True, "not configured (JIEXU_MANAGEMENT_URL unset): "
                     "not checked")
            return
        url = self.management_url.rstrip("/") + "/api/overview"
        auth = (self.secret["username"], self.secret["password"]) if self.secret else None
        try:  # https with the exchange's CA (JIEXU_MANAGEMENT_CAFILE or the URL's cafile)
            check_http_url(self.management_url, "JIEXU_MANAGEMENT_URL")
            verify = management_tls(self.settings.amqp_url or (self.secret or {}).get("amqp_url"))
            async with httpx.AsyncClient(timeout=TIMEOUT_S, verify=verify) as client:
                response = await client.get(url, auth=auth)
        except Exception as exc:
            self.add("management API", False, f"{self.management_url} unreachable: {_short(exc)}",
                     "check JIEXU_MANAGEMENT_URL, and that the rabbitmq_management plugin is on")
            return
        if response.status_code == 200:
            self.add("management API", True, f"{self.management_url} answers")
        elif response.status_code == 401:
            self.add("management API", True, f"{self.management_url} answers (the agency user "
                     "may not log in to it, as provisioned)")
        else:
            self.add("management API", False, f"{url} answered HTTP {response.status_code}",
                     "check JIEXU_MANAGEMENT_URL: it names the management API's base URL")

    # -- the agency's own systems -----------------------------------------------------------------
    @staticmethod
    def _creatable(path: Path) -> bool:
        parent = path.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        return parent.is_dir() and os.access(parent, os.W_OK | os.X_OK)

    async def _probe(self, name: str, open_it: Callable[[], Awaitable[Any]],
                     probe: Callable[[Any], Awaitable[Any]], where: str, fix: str) -> None:
        try:
            resource = await asyncio.wait_for(open_it(), TIMEOUT_S)
        except Exception as exc:
            self.add(name, False, f"{where}: cannot open ({_short(exc)})", fix)
            return
        try:
            await asyncio.wait_for(probe(resource), TIMEOUT_S)
        except Exception as exc:
            self.add(name, False, f"{where}: opened, but a read failed ({_short(exc)})", fix)
            return
        finally:
            await resource.close()
        self.add(name, True, f"{where}: answers")

    async def check_store(self) -> None:
        settings = self.settings
        if settings.database_url:
            schema = f"agency_{self.code}"
            where = f"PostgreSQL schema {schema}"
            fix = "check JIEXU_DATABASE_URL (host, port, user, password, database) and that the " \
                  "database runs"
            try:
                exists = await asyncio.wait_for(_schema_exists(settings.database_url, schema),
                                                TIMEOUT_S)
            except Exception as exc:
                self.add("store", False, f"PostgreSQL unreachable: {_short(exc)}", fix)
                return
            if not exists:
                self.add("store", True, f"{where}: not created yet; the agent creates it on its "
                         "first start (the database answers)")
                return
        else:
            path = self.paths.store(self.code)
            where = str(path)
            fix = f"check --data-dir (JIEXU_DATA_DIR) and the permissions of {path.parent}"
            if not path.exists():
                ok = self._creatable(path)
                self.add("store", ok, f"{path}: not created yet"
                         + ("; the agent creates it on its first start" if ok else
                            ", and its directory is not writable"), fix)
                return
        await self._probe("store", lambda: open_store(settings),
                          lambda store: store.schema_versions(), where, fix)

    async def check_ledger(self) -> None:
        path = self.paths.ledger(self.code)
        fix = f"check --data-dir (JIEXU_DATA_DIR) and the permissions of {path.parent}"
        if not path.exists():
            ok = self._creatable(path)
            self.add("ledger", ok, f"{path}: not created yet"
                     + ("; it is empty until the agency's books are loaded" if ok else
                        ", and its directory is not writable"), fix)
            return
        nil_case = uuid.UUID(int=0)
        await self._probe("ledger", lambda: open_ledger(self.settings),
                          lambda ledger: ledger.statement(nil_case), str(path), fix)


async def _schema_exists(url: str, schema: str) -> bool:
    """Whether ``schema`` exists, read without creating anything (opening the store would)."""
    import asyncpg  # loaded only where PostgreSQL is configured, as in agents.service.bootstrap

    connection = await asyncpg.connect(url, timeout=TIMEOUT_S)
    try:
        return bool(await connection.fetchval("SELECT to_regnamespace($1) IS NOT NULL", schema))
    finally:
        await connection.close()


async def run_checks(settings: AgentSettings, management_url: str | None = None) -> list[Check]:
    """Every check for ``settings``'s agency, in order (see the module docstring)."""
    return await _Doctor(settings, management_url).run()


def doctor_command(
    agency: str = _AGENCY,
    data_dir: Path | None = _DATA,
    secrets_dir: Path | None = _SECRETS,
    directory: Path | None = _DIRECTORY,
    database_url: str | None = _DATABASE,
) -> None:
    """Check one agency's configuration end to end (directory, keys, credentials, broker,
    management API, store, ledger): one line per check, with how to fix what fails. Exit status 0
    when all pass, 2 otherwise."""
    configure_logging(level="ERROR", json=False)
    given: dict[str, Any] = {
        "data_dir": data_dir, "secrets_dir": secrets_dir, "directory": directory,
        "database_url": database_url,
    }
    try:
        settings = AgentSettings(agency=agency, **{k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        typer.echo(Check("settings", False, problems, "correct the option or JIEXU_* variable").line())
        raise typer.Exit(2) from None
    typer.echo(f"jiexu doctor: agency {settings.agency}")
    checks = asyncio.run(run_checks(settings, os.environ.get("JIEXU_MANAGEMENT_URL")))
    for check in checks:
        typer.echo(check.line())
    failed = [c for c in checks if not c.ok]
    if failed:
        typer.echo(f"{len(failed)} of {len(checks)} checks failed")
        raise typer.Exit(2)
    typer.echo(f"all {len(checks)} checks passed")
