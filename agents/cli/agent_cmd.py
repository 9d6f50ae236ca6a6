"""`jiexu agent`, `jiexu apply` and `jiexu case show|list|cancel`: run an agency, open a case,
follow it, withdraw it.

Imports only typer and the standard library at import time (``jiexu --help`` starts fast); each
command imports the service when it runs. Failures rise to `agents.cli.errors`.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from agents.cli.case_view import case_summary, one_line, show_lines
from agents.cli.choices import (
    CaseStateChoice,
    GenderChoice,
    InsuranceTypeChoice,
    PayoutReasonChoice,
    RegimeChoice,
    ResolveDecision,
)
from agents.cli.errors import CliError
from agents.cli.log_level import LOG_LEVEL_INFO, LogLevel
from agents.cli.sensitive import personal_data

if TYPE_CHECKING:
    from agents.service.settings import AgentSettings

__all__ = ["agent_command", "apply_command", "case_app"]

case_app = typer.Typer(help="Follow, list, withdraw and resolve transfer cases.", no_args_is_help=True)

_AGENCY = typer.Option(..., "--agency", help="this agency's 6-digit region code")
_DATA = typer.Option(None, "--data-dir", help="data directory [default: .jiexu/data; env JIEXU_DATA_DIR]")
_SECRETS = typer.Option(
    None, "--secrets-dir", help="keys and broker credentials [default: .jiexu/secrets; env JIEXU_SECRETS_DIR]"
)
_DIRECTORY = typer.Option(
    None,
    "--directory",
    help="agency directory file [default: .jiexu/directory.json; env JIEXU_DIRECTORY]",
)
_JSON = typer.Option(False, "--json", help="print JSON")


def _settings(agency: str, **options: Any) -> AgentSettings:
    """The agent's settings from the options given and the environment; a bad value is one line."""
    from pydantic import ValidationError

    from agents.service.settings import AgentSettings

    given = {k: v for k, v in options.items() if v is not None}
    try:
        settings = AgentSettings(agency=agency, **given)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in exc.errors(include_input=False, include_url=False)
        )
        raise CliError(
            f"invalid configuration ({problems}): check the options and JIEXU_* variables"
        ) from None
    if settings.amqp_url is not None:
        from agents.cli.errors import check_amqp_url

        check_amqp_url(settings.amqp_url)
    return settings


def _check_agency_known(settings: AgentSettings) -> None:
    """Before any file is created for the agency: its directory entry exists."""
    from broker.directory_trust import open_directory

    open_directory(settings.directory, settings.secrets_dir).get(settings.agency)  # operator-signed


def _check_metrics(settings: AgentSettings) -> None:
    """No plain metrics port off loopback under JIEXU_REQUIRE_TLS; TLS files that load."""
    from agents.service.metrics_tls import check_plaintext

    check_plaintext(settings.metrics_host, settings.metrics_port, settings.metrics_tls_cert is not None)
    if settings.metrics_port is not None:
        settings.metrics.ssl_context()


def _check_ledger(settings: AgentSettings) -> None:
    """Fail at startup, in one line, when ``JIEXU_LEDGER`` names no usable ledger."""
    from agents.ledger.choice import LedgerConfigError, resolve_ledger_factory

    try:
        resolve_ledger_factory(settings.ledger)
    except LedgerConfigError as exc:
        raise CliError(f"invalid configuration: {exc}") from None


def agent_command(
    agency: str = _AGENCY,
    data_dir: Path | None = _DATA,
    secrets_dir: Path | None = _SECRETS,
    directory: Path | None = _DIRECTORY,
    regime: RegimeChoice | None = typer.Option(None, help="deadline rules [default: 2021; env JIEXU_REGIME]"),
    database_url: str | None = typer.Option(
        None,
        help="PostgreSQL DSN for the store [default: SQLite in the data directory; env JIEXU_DATABASE_URL]",
    ),
    prefetch: int | None = typer.Option(None, help="messages in flight [default: 100; env JIEXU_PREFETCH]"),
    log_level: LogLevel = LOG_LEVEL_INFO,
) -> None:
    """Run one agency's agent until SIGTERM (which drains and exits cleanly).

    The broker is JIEXU_AMQP_URL (host, port); the agent logs in as its agency with the
    credentials in the secrets directory. Other settings: JIEXU_CALENDAR_DIR,
    JIEXU_VERIFY_IN_THREAD (see the README's Configuration). With JIEXU_METRICS_PORT set it serves
    /metrics, /healthz and /readyz on that port."""
    from agents.service.process import run_agent
    from broker.logging import configure_logging

    configure_logging(level=log_level.value)
    settings = _settings(
        agency,
        data_dir=data_dir,
        secrets_dir=secrets_dir,
        directory=directory,
        regime=regime.value if regime else None,
        database_url=database_url,
        prefetch=prefetch,
    )
    _check_ledger(settings)
    _check_metrics(settings)
    _check_agency_known(settings)
    asyncio.run(run_agent(settings))


def apply_command(
    agency: str = _AGENCY,
    from_region: str = typer.Option(..., help="region code the person transfers out of"),
    id_number: str = typer.Option(
        ..., envvar="JIEXU_ID_NUMBER", callback=personal_data,
        help="the person's 公民身份号码 [env JIEXU_ID_NUMBER only: not on the command line]",
    ),
    name: str = typer.Option(
        ..., envvar="JIEXU_NAME", callback=personal_data,
        help="the person's name [env JIEXU_NAME only: not on the command line]",
    ),
    gender: GenderChoice = typer.Option(..., help="the person's gender"),
    insurance_type: InsuranceTypeChoice = typer.Option(
        InsuranceTypeChoice.EMPLOYEE,
        help="insurance type at the outgoing place (310 employee, 390 resident)",
    ),
    letter_number: str | None = typer.Option(None, help="number of the contact letter"),
    payout_reason: PayoutReasonChoice | None = typer.Option(
        None,
        help="ask for the balance to be paid to the person's own account",
    ),
    payout_account: str | None = typer.Option(
        None,
        envvar="JIEXU_PAYOUT_ACCOUNT",
        callback=personal_data,
        help="the person's account as JSON with bank_name, bank_code, account_name, account_number "
        "[env JIEXU_PAYOUT_ACCOUNT only: not on the command line]",
    ),
    data_dir: Path | None = _DATA,
    secrets_dir: Path | None = _SECRETS,
    directory: Path | None = _DIRECTORY,
    as_json: bool = _JSON,
) -> None:
    """Accept an application at this (receiving) agency: the case opens and the contact letter is
    queued; the running agent sends it. An outgoing region that is not in the directory, is this
    agency, or cannot read the letter is refused before anything is written."""
    from agents.domain.case import ApplicationSubmitted, case_from_data
    from agents.service.bootstrap import open_service
    from broker.logging import configure_logging
    from schemas.common import BankAccount, Gender, InsuranceType, Person
    from schemas.contact import PayoutReason

    configure_logging(level="WARNING", json=as_json)
    settings = _settings(agency, data_dir=data_dir, secrets_dir=secrets_dir, directory=directory)
    _check_ledger(settings)
    _check_agency_known(settings)
    person = Person(name=name, gender=Gender(gender.value), id_number=id_number)
    account = BankAccount.model_validate_json(payout_account) if payout_account else None
    case_id = uuid.uuid4()
    application = ApplicationSubmitted(
        case_id=case_id,
        person=person,
        insurance_type=InsuranceType(insurance_type.value),
        from_region=from_region,
        letter_number=letter_number or f"LX{agency}{case_id.hex[:10].upper()}",
        payout_account=account,
        payout_reason=PayoutReason(payout_reason.value) if payout_reason else None,
    )

    async def run() -> dict[str, Any]:
        opened = await open_service(settings)
        try:
            case = await opened.service.apply(application)
        finally:
            await opened.close()
        return case_summary(case_from_data(case.model_dump(mode="json")))

    summary = asyncio.run(run())
    if as_json:
        typer.echo(json.dumps(summary, ensure_ascii=False))
    else:
        typer.echo(one_line(summary))


def _case_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise CliError(f"not a case id: {text!r} (a UUID, as `jiexu apply` and `case list` print)") from None


@case_app.command("show")
def case_show_command(
    case_id: str | None = typer.Argument(None, help="the case id"),
    agency: str = _AGENCY,
    id_number: str | None = typer.Option(
        None, envvar="JIEXU_ID_NUMBER", callback=personal_data,
        help="find the cases of a person instead [env JIEXU_ID_NUMBER only]",
    ),
    data_dir: Path | None = _DATA,
    as_json: bool = _JSON,
) -> None:
    """A case's progress: state, whose turn, due date, history (personal data masked)."""
    from agents.domain.case import case_from_data
    from agents.service.bootstrap import open_store
    from broker.logging import configure_logging

    configure_logging(level="WARNING", json=as_json)
    if case_id is None and id_number is None:
        raise CliError("give a case id, or the person's ID number in JIEXU_ID_NUMBER")
    # A case id wins over JIEXU_ID_NUMBER left in the environment.
    wanted = _case_id(case_id) if case_id is not None else None
    settings = _settings(agency, data_dir=data_dir)
    if not settings.store_path.exists() and settings.database_url is None:
        raise CliError(f"agency {agency} has no store in {settings.data_dir}: check --agency and --data-dir")

    async def run() -> list[dict[str, Any]]:
        store = await open_store(settings)
        try:
            if wanted is not None:
                records = [await store.get_case(wanted)]
            else:
                assert id_number is not None
                records = list(await store.find_cases_by_person(id_number.upper()))
            return [
                case_summary(case_from_data(r.data), await store.history(r.case_id))
                for r in records
                if r is not None
            ]
        finally:
            await store.close()

    cases = asyncio.run(run())
    if not cases:
        typer.echo("no such case", err=True)
        raise typer.Exit(1)
    if as_json:
        typer.echo(json.dumps(cases if len(cases) > 1 else cases[0], ensure_ascii=False))
        return
    for summary in cases:
        for line in show_lines(summary):
            typer.echo(line)


@case_app.command("list")
def case_list_command(
    agency: str = _AGENCY,
    state: list[CaseStateChoice] = typer.Option([], "--state", help="only cases in this state (repeatable)"),
    open_only: bool = typer.Option(False, "--open", help="only open cases"),
    overdue: bool = typer.Option(False, "--overdue", help="only open cases past their due date"),
    counterpart: str | None = typer.Option(None, "--counterpart", help="only cases with this agency"),
    since: str | None = typer.Option(
        None, "--since", help="only cases opened on or after this day (YYYY-MM-DD)"
    ),
    data_dir: Path | None = _DATA,
    as_json: bool = typer.Option(False, "--json", help="print one JSON array"),
) -> None:
    """This agency's cases, oldest first, with filters (personal data masked)."""
    from agents.domain.case import case_from_data
    from agents.domain.clock import SystemClock
    from agents.service.bootstrap import open_store
    from broker.logging import configure_logging

    configure_logging(level="WARNING", json=as_json)
    try:
        since_day = date.fromisoformat(since) if since else None
    except ValueError:
        raise CliError(f"--since {since!r} is not a day: give YYYY-MM-DD") from None
    settings = _settings(agency, data_dir=data_dir)
    if not settings.store_path.exists() and settings.database_url is None:
        raise CliError(f"agency {agency} has no store in {settings.data_dir}: check --agency and --data-dir")
    today = SystemClock().today()

    async def run() -> list[dict[str, Any]]:
        store = await open_store(settings)
        try:
            records = await store.list_cases(
                open_only=open_only or overdue, states=[s.value for s in state] or None
            )
        finally:
            await store.close()
        out = []
        for record in records:
            if counterpart is not None and record.counterpart != counterpart:
                continue
            if overdue and (record.due_date is None or record.due_date >= today):
                continue
            case = case_from_data(record.data)
            if since_day is not None and case.opened_on < since_day:
                continue
            out.append(case_summary(case))
        return out

    cases = asyncio.run(run())
    if as_json:
        typer.echo(json.dumps(cases, ensure_ascii=False))
        return
    if not cases:
        typer.echo("no cases match", err=True)
        return
    typer.echo(f"{'case':36}  {'role':9}  {'with':6}  {'opened':10}  {'state':19}  due")
    for c in cases:
        late = " OVERDUE" if c["due_date"] and c["due_date"] < today.isoformat() else ""
        typer.echo(
            f"{c['case_id']:36}  {c['role']:9}  {c['counterpart']:6}  {c['opened_on']:10}  "
            f"{c['state']:19}  {c['due_date'] or '-'}{late}"
        )
    typer.echo(f"{len(cases)} case(s)")


@case_app.command("cancel")
def case_cancel_command(
    case_id: str = typer.Argument(..., help="the case id"),
    agency: str = _AGENCY,
    reason: str = typer.Option(..., "--reason", help="why, in words (sent to the outgoing agency)"),
    data_dir: Path | None = _DATA,
    secrets_dir: Path | None = _SECRETS,
    directory: Path | None = _DIRECTORY,
    as_json: bool = _JSON,
) -> None:
    """Withdraw an application (receiving agency) while the outgoing agency has released nothing:
    the case ends `cancelled`, the outgoing agency is told (rejection `withdrawn`), and the
    person may apply again. Refused, with the reason, once a form or money has arrived."""
    from agents.domain.case import case_from_data
    from agents.service.bootstrap import open_service
    from agents.service.operator import cancel
    from broker.logging import configure_logging

    configure_logging(level="WARNING", json=as_json)
    wanted = _case_id(case_id)
    if not reason.strip():
        raise CliError("--reason must say why the application is withdrawn")
    settings = _settings(agency, data_dir=data_dir, secrets_dir=secrets_dir, directory=directory)
    _check_agency_known(settings)

    async def run() -> dict[str, Any]:
        opened = await open_service(settings)
        try:
            case = await cancel(opened.service, wanted, reason.strip())
        finally:
            await opened.close()
        return case_summary(case_from_data(case.model_dump(mode="json")))

    summary = asyncio.run(run())
    typer.echo(json.dumps(summary, ensure_ascii=False) if as_json else one_line(summary))


@case_app.command("resolve")
def case_resolve_command(
    case_id: str = typer.Argument(..., help="the case id"),
    agency: str = _AGENCY,
    decision: ResolveDecision = typer.Option(
        ..., "--decision", help="book what arrived, or send it back and book nothing"
    ),
    reason: str = typer.Option(..., "--reason", help="why, in words (kept in the case's history)"),
    data_dir: Path | None = _DATA,
    secrets_dir: Path | None = _SECRETS,
    directory: Path | None = _DIRECTORY,
    as_json: bool = _JSON,
) -> None:
    """Move a case out of `discrepancy` (an operator's decision). Receiving agency:
    credit_as_received credits the form's months and the money that actually arrived (once; the
    completion goes out and the reconciler reconciles again); return_funds ends the case
    `cancelled` with nothing booked. Outgoing agency: credit_as_received ends it `completed` as
    released."""
    from agents.domain.case import case_from_data
    from agents.service.bootstrap import open_service
    from agents.service.operator import resolve
    from broker.logging import configure_logging

    configure_logging(level="WARNING", json=as_json)
    wanted = _case_id(case_id)
    if not reason.strip():
        raise CliError("--reason must say why (it is kept in the case's history)")
    settings = _settings(agency, data_dir=data_dir, secrets_dir=secrets_dir, directory=directory)
    _check_agency_known(settings)

    async def run() -> dict[str, Any]:
        opened = await open_service(settings)
        try:
            case = await resolve(opened.service, wanted, decision.value, reason.strip())
        finally:
            await opened.close()
        return case_summary(case_from_data(case.model_dump(mode="json")))

    summary = asyncio.run(run())
    typer.echo(json.dumps(summary, ensure_ascii=False) if as_json else one_line(summary))


def _register_more_case_commands() -> None:
    """`case certificate` and `case approve-payout` live in their own modules."""
    from agents.cli.certificate_cmd import case_certificate_command
    from agents.cli.payout_cmd import approve_payout_command

    case_app.command("certificate")(case_certificate_command)
    case_app.command("approve-payout")(approve_payout_command)


_register_more_case_commands()
