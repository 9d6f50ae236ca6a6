"""`jiexu ledger import FILE` and `jiexu ledger show --id-number N`: an agency's books by hand.

The commands reach the ledger through a `LedgerOpener`: given a `LedgerTarget` (the agency and
whatever the command line overrides), an async context manager that yields the configured ledger
and closes it. `ledger_app` uses `open_configured_ledger`, which makes the same choice as the
agent: `AgentSettings` from ``--agency``, the environment (``JIEXU_LEDGER``, ``JIEXU_LEDGER_URL``,
``JIEXU_DATABASE_URL``, ``JIEXU_DATA_DIR``) and the command line's overrides, opened by the
composition root's `agents.service.bootstrap.open_ledger` (see `agents.ledger.choice`). A test or
another composition root may build the app with its own opener: ``make_ledger_app(opener)``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from pydantic import TypeAdapter, ValidationError

from agents.ledger.base import LedgerPort, PersonAccount
from agents.ledger.choice import LedgerConfigError
from agents.ledger.importer import (
    AccountBook,
    FileFormat,
    ImportReport,
    LedgerImportRejected,
    import_people,
    read_people,
)
from agents.service.bootstrap import open_ledger
from agents.service.settings import AgentSettings
from schemas.common import CitizenId
from schemas.pii import mask_name, mask_value

__all__ = [
    "LedgerOpener",
    "LedgerTarget",
    "ledger_app",
    "make_ledger_app",
    "open_configured_ledger",
]


@dataclass(frozen=True)
class LedgerTarget:
    """Whose books, and the command line's overrides (None: from the environment)."""

    agency: str
    data_dir: Path | None = None
    database_url: str | None = None
    ledger: str | None = None
    ledger_url: str | None = None


LedgerOpener = Callable[[LedgerTarget], AbstractAsyncContextManager[LedgerPort]]


@asynccontextmanager
async def open_configured_ledger(target: LedgerTarget) -> AsyncIterator[LedgerPort]:
    """The ledger the agent of ``target.agency`` opens (its `AgentSettings`: the environment,
    overridden by ``target``), closed afterwards."""
    overrides: dict[str, Any] = {
        "data_dir": target.data_dir,
        "database_url": target.database_url,
        "ledger": target.ledger,
        "ledger_url": target.ledger_url,
    }
    try:
        settings = AgentSettings(
            agency=target.agency, **{k: v for k, v in overrides.items() if v is not None}
        )
    except ValidationError as exc:
        reason = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
            for e in exc.errors(include_url=False, include_input=False)
        )
        raise LedgerConfigError(f"invalid configuration: {reason}") from exc
    ledger = await open_ledger(settings)
    try:
        yield ledger
    finally:
        await ledger.close()


_AGENCY = typer.Option(..., "--agency", envvar="JIEXU_AGENCY", help="the agency's 6-digit code")
_DATA = typer.Option(None, "--data-dir", help="data directory [env JIEXU_DATA_DIR]")
_LEDGER = typer.Option(
    None, "--ledger", help="sqlite, postgres, an entry point or module:factory [env JIEXU_LEDGER]"
)
_LEDGER_URL = typer.Option(None, "--ledger-url", help="the ledger's DSN [env JIEXU_LEDGER_URL]")
_DATABASE_URL = typer.Option(
    None, "--database-url", help="the store's DSN, used when no ledger DSN [env JIEXU_DATABASE_URL]"
)
_JSON = typer.Option(False, "--json", help="print one JSON object on stdout")


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(code)


def _masked(account: PersonAccount) -> dict[str, Any]:
    return {
        "id_number": mask_value(account.id_number),
        "name": mask_name(account.name),
        "gender": account.gender.value,
        "insurance_type": account.insurance_type.value,
        "enrolled": account.enrolled,
        "participation": account.participation,
        "region": account.region,
        "retiree": account.retiree,
        "months_paid": account.months_paid,
        "deemed_months": account.deemed_months,
        "balance_fen": account.balance_fen,
        "arrears_fen": account.arrears_fen,
        "periods": [p.to_json() for p in account.periods],
        "enrolment_start": account.enrolment_start,
        "continuity": None if account.continuity is None else account.continuity.model_dump(mode="json"),
    }


def _yuan(fen: int) -> str:
    return f"{fen // 100:,}.{fen % 100:02d}"


def make_ledger_app(opener: LedgerOpener = open_configured_ledger) -> typer.Typer:
    """The ``jiexu ledger`` commands over ledgers opened by ``opener``."""
    app = typer.Typer(help="An agency's books: import people, look one up.", no_args_is_help=True)

    @app.command("import")
    def import_command(
        file: Path = typer.Argument(..., exists=True, dir_okay=False, help="CSV or JSON lines"),
        agency: str = _AGENCY,
        file_format: str | None = typer.Option(
            None, "--format", help="csv or jsonl (default: from the file's suffix)"
        ),
        data_dir: Path | None = _DATA,
        ledger: str | None = _LEDGER,
        ledger_url: str | None = _LEDGER_URL,
        database_url: str | None = _DATABASE_URL,
        as_json: bool = _JSON,
    ) -> None:
        """Import people from FILE into the agency's ledger: every row is checked first and
        nothing is imported if any is bad; people already in the books are left alone if
        identical and refused if different (columns: see agents/ledger/importer.py)."""
        if file_format not in (None, "csv", "jsonl"):
            raise _fail("--format must be csv or jsonl")
        chosen: FileFormat | None = file_format  # type: ignore[assignment]
        target = LedgerTarget(agency, data_dir, database_url, ledger, ledger_url)

        async def run() -> ImportReport:
            people = read_people(file, agency, chosen)  # before connecting: a bad file fails fast
            async with opener(target) as books:
                if not isinstance(books, AccountBook):
                    raise _fail(
                        f"this ledger ({type(books).__name__}) cannot be filled by jiexu: load "
                        "the people into the core system it wraps"
                    )
                return await import_people(books, people)

        try:
            report = asyncio.run(run())
        except LedgerConfigError as exc:
            raise _fail(str(exc)) from exc
        except LedgerImportRejected as exc:
            if as_json:
                problems = [
                    {"line": p.line, "field": p.field, "message": p.message}
                    for p in exc.problems
                ]
                typer.echo(json.dumps({"imported": False, "problems": problems}, ensure_ascii=False))
            else:
                for problem in exc.problems:
                    typer.echo(str(problem), err=True)
                typer.echo(f"nothing imported: {len(exc.problems)} problem(s)", err=True)
            raise typer.Exit(1) from exc
        if as_json:
            typer.echo(
                json.dumps(
                    {
                        "imported": True,
                        "rows": report.rows,
                        "added": report.added,
                        "unchanged": report.unchanged,
                    }
                )
            )
            return
        typer.echo(
            f"{report.rows} people read: {report.added} added, {report.unchanged} already in "
            f"the books of {agency}"
        )

    @app.command("show")
    def show_command(
        id_number: str = typer.Option(..., "--id-number", help="the person's 公民身份号码"),
        agency: str = _AGENCY,
        data_dir: Path | None = _DATA,
        ledger: str | None = _LEDGER,
        ledger_url: str | None = _LEDGER_URL,
        database_url: str | None = _DATABASE_URL,
        as_json: bool = _JSON,
    ) -> None:
        """Look a person up in the agency's ledger (ID number and name masked)."""
        try:
            checked = TypeAdapter(CitizenId).validate_python(id_number)
        except ValidationError as exc:
            reason = exc.errors(include_url=False, include_input=False)[0]["msg"]
            raise _fail(f"not a valid ID number: {reason}") from exc
        target = LedgerTarget(agency, data_dir, database_url, ledger, ledger_url)

        async def run() -> PersonAccount | None:
            async with opener(target) as books:
                return await books.lookup(checked)

        try:
            account = asyncio.run(run())
        except LedgerConfigError as exc:
            raise _fail(str(exc)) from exc
        if account is None:
            if as_json:
                typer.echo(json.dumps({"found": False}))
            raise _fail(f"{mask_value(checked)} is not in the books of {agency}", 1)
        shown = _masked(account)
        if as_json:
            typer.echo(json.dumps({"found": True, "person": shown}, ensure_ascii=False))
            return
        typer.echo(f"{shown['id_number']}  {shown['name']}  {account.gender.value}")
        typer.echo(
            f"insurance {account.insurance_type.value}, "
            f"{'enrolled' if account.enrolled else 'transferred out'}, {account.participation}"
            f"{', retiree' if account.retiree else ''}, region {account.region}"
        )
        typer.echo(
            f"months paid {account.months_paid}, deemed {account.deemed_months}; balance "
            f"{_yuan(account.balance_fen)} yuan, arrears {_yuan(account.arrears_fen)} yuan"
        )
        for period in account.periods:
            typer.echo(
                f"  {period.from_month}..{period.to_month}  {period.region}  "
                f"{period.insurance_type.value}  {period.months} months"
            )
        if account.enrolment_start is not None:
            typer.echo(f"enrolled here since {account.enrolment_start}")
        if (c := account.continuity) is not None:  # decided at the last transfer in
            owed = f", back-payment {', '.join(c.back_payment_months)}" * bool(c.back_payment_months)
            typer.echo(
                f"continuity {c.outcome.value}: gap {c.gap_months} months{owed}, waiting "
                f"{c.waiting_months} months, benefits from {c.benefits_from}"
            )

    return app


ledger_app = make_ledger_app()
