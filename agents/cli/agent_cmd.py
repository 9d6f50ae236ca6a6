"""`jiexu agent`, `jiexu apply` and `jiexu case show`: run an agency, open a case, follow it."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import typer

from agents.domain.case import ApplicationSubmitted, case_from_data
from agents.ledger.choice import LedgerConfigError, resolve_ledger_factory
from agents.service.bootstrap import open_service, open_store
from agents.service.process import run_agent
from agents.service.settings import AgentSettings
from broker.logging import configure_logging, mask_name, mask_value
from schemas.common import BankAccount, Gender, InsuranceType, Person
from schemas.contact import PayoutReason

__all__ = ["agent_command", "apply_command", "case_app"]

case_app = typer.Typer(help="Follow transfer cases.", no_args_is_help=True)

_AGENCY = typer.Option(..., "--agency", help="this agency's 6-digit region code")
_DATA = typer.Option(None, "--data-dir", help="data directory [env JIEXU_DATA_DIR]")
_SECRETS = typer.Option(None, "--secrets-dir", help="secrets directory [env JIEXU_SECRETS_DIR]")
_DIRECTORY = typer.Option(None, "--directory", help="agency directory file [env JIEXU_DIRECTORY]")


def _settings(agency: str, **options: Any) -> AgentSettings:
    given = {k: v for k, v in options.items() if v is not None}
    try:
        return AgentSettings(agency=agency, **given)
    except ValueError as exc:
        typer.echo(f"invalid configuration: {exc}", err=True)
        raise typer.Exit(2) from exc


def _check_ledger(settings: AgentSettings) -> None:
    """Fail at startup, in one line, when ``JIEXU_LEDGER`` names no usable ledger."""
    try:
        resolve_ledger_factory(settings.ledger)
    except LedgerConfigError as exc:
        typer.echo(f"invalid configuration: {exc}", err=True)
        raise typer.Exit(2) from exc


def _run_with_ledger(run: Any) -> Any:
    """``asyncio.run(run)``, a `LedgerConfigError` raised while opening the ledger (a missing
    DSN, an adapter that is not a ledger) printed as one line, exit 2."""
    try:
        return asyncio.run(run)
    except LedgerConfigError as exc:
        typer.echo(f"invalid configuration: {exc}", err=True)
        raise typer.Exit(2) from exc


def agent_command(
    agency: str = _AGENCY,
    data_dir: Path | None = _DATA,
    secrets_dir: Path | None = _SECRETS,
    directory: Path | None = _DIRECTORY,
    regime: str | None = typer.Option(None, help="deadline rules: 2016 or 2021 [env JIEXU_REGIME]"),
    database_url: str | None = typer.Option(
        None, help="PostgreSQL DSN for the store [env JIEXU_DATABASE_URL]"
    ),
    prefetch: int | None = typer.Option(None, help="messages in flight [env JIEXU_PREFETCH]"),
) -> None:
    """Run one agency's agent until SIGTERM (which drains and exits cleanly)."""
    configure_logging()
    settings = _settings(
        agency,
        data_dir=data_dir,
        secrets_dir=secrets_dir,
        directory=directory,
        regime=regime,
        database_url=database_url,
        prefetch=prefetch,
    )
    _check_ledger(settings)
    _run_with_ledger(run_agent(settings))


def apply_command(
    agency: str = _AGENCY,
    from_region: str = typer.Option(..., help="region code the person transfers out of"),
    id_number: str = typer.Option(..., help="the person's 公民身份号码"),
    name: str = typer.Option(..., help="the person's name"),
    gender: Gender = typer.Option(..., help="male or female"),
    insurance_type: InsuranceType = typer.Option(
        InsuranceType.EMPLOYEE, help="insurance type at the outgoing place (310 or 390)"
    ),
    letter_number: str | None = typer.Option(None, help="number of the contact letter"),
    payout_reason: PayoutReason | None = typer.Option(
        None, help="ask for the balance to be paid to the person's own account"
    ),
    payout_account: str | None = typer.Option(
        None,
        help="the person's account as JSON with bank_name, bank_code, account_name, account_number",
    ),
    data_dir: Path | None = _DATA,
    secrets_dir: Path | None = _SECRETS,
    directory: Path | None = _DIRECTORY,
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Accept an application at this (receiving) agency: the case opens and the contact letter is
    queued; the running agent sends it."""
    configure_logging(level="WARNING", json=as_json)
    settings = _settings(
        agency, data_dir=data_dir, secrets_dir=secrets_dir, directory=directory
    )
    _check_ledger(settings)
    try:
        person = Person(name=name, gender=gender, id_number=id_number)
        account = BankAccount.model_validate_json(payout_account) if payout_account else None
    except ValueError as exc:
        typer.echo(f"invalid application: {exc}", err=True)
        raise typer.Exit(2) from exc
    case_id = uuid.uuid4()
    application = ApplicationSubmitted(
        case_id=case_id,
        person=person,
        insurance_type=insurance_type,
        from_region=from_region,
        letter_number=letter_number or f"LX{agency}{case_id.hex[:10].upper()}",
        payout_account=account,
        payout_reason=payout_reason,
    )

    async def run() -> dict[str, Any]:
        opened = await open_service(settings)
        try:
            case = await opened.service.apply(application)
        finally:
            await opened.close()
        return _case_summary(case_from_data(case.model_dump(mode="json")))

    summary = _run_with_ledger(run())
    if as_json:
        typer.echo(json.dumps(summary, ensure_ascii=False))
    else:
        typer.echo(
            f"case {summary['case_id']}: {summary['state']}"
            + (f" (due {summary['due_date']}, {summary['whose_turn']}'s turn)" if summary["due_date"] else "")
            + (f" — {summary['rejection_reason']}" if summary["rejection_reason"] else "")
        )


def _case_summary(case: Any, history: list[Any] | None = None) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "case_id": str(case.case_id),
        "role": case.role.value,
        "state": case.state.value,
        "person": {
            "name": mask_name(case.person.name),
            "id_number": mask_value(case.person.id_number),
        },
        "counterpart": case.counterpart_code,
        "whose_turn": case.whose_turn,
        "waiting_since": case.waiting_since.isoformat() if case.waiting_since else None,
        "due_date": case.due_date.isoformat() if case.due_date else None,
        "flow_due_date": case.flow_due_date.isoformat() if case.flow_due_date else None,
        "overdue_step": case.overdue_step.value if case.overdue_step else None,
        "reminders_sent": case.reminders_sent,
        "rejection_reason": case.rejection_reason.value if case.rejection_reason else None,
        "discrepancy": case.discrepancy.model_dump(mode="json") if case.discrepancy else None,
        "booked": case.booked.model_dump(mode="json") if case.booked else None,
    }
    if history is not None:
        summary["history"] = [
            {
                "at": t.at.isoformat(),
                "from": t.from_state,
                "to": t.to_state,
                "event": t.event,
            }
            for t in history
        ]
    return summary


@case_app.command("show")
def case_show_command(
    case_id: str | None = typer.Argument(None, help="the case id"),
    agency: str = _AGENCY,
    id_number: str | None = typer.Option(None, help="find the cases of a person instead"),
    data_dir: Path | None = _DATA,
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """A case's progress: state, whose turn, due date, history (personal data masked)."""
    configure_logging(level="WARNING", json=as_json)
    if (case_id is None) == (id_number is None):
        typer.echo("give a case id or --id-number, not both", err=True)
        raise typer.Exit(2)
    settings = _settings(agency, data_dir=data_dir)

    async def run() -> list[dict[str, Any]]:
        store = await open_store(settings)
        try:
            if case_id is not None:
                try:
                    records = [await store.get_case(uuid.UUID(case_id))]
                except ValueError as exc:
                    raise typer.BadParameter(f"not a case id: {case_id}") from exc
            else:
                assert id_number is not None
                records = list(await store.find_cases_by_person(id_number.upper()))
            return [
                _case_summary(case_from_data(r.data), await store.history(r.case_id))
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
        typer.echo(
            f"case {summary['case_id']} ({summary['role']}, counterpart {summary['counterpart']})\n"
            f"  person   {summary['person']['name']} {summary['person']['id_number']}\n"
            f"  state    {summary['state']}"
            + (f"; {summary['whose_turn']}'s turn, due {summary['due_date']}" if summary["due_date"] else "")
        )
        if summary["rejection_reason"]:
            typer.echo(f"  rejected {summary['rejection_reason']}")
        if summary["discrepancy"]:
            typer.echo(f"  discrepancy {summary['discrepancy']['kind']}: {summary['discrepancy']['text']}")
        for step in summary.get("history", []):
            typer.echo(f"  {step['at']}  {step['from'] or '-':>20} -> {step['to']:<20} {step['event']}")
