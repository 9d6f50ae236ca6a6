"""`jiexu reconcile`: run the reconciliation agent (code 000000), or print its report.

The agent connects as the reconciler's own broker user: from ``--amqp-url``
(``JIEXU_RECONCILER_AMQP_URL``), else from ``{secrets-dir}/000000.broker.json`` (written by
``jiexu topology apply``) on the broker of ``JIEXU_AMQP_URL``. It signs with
``{keys-dir}/000000.ed25519.pem`` (``jiexu keys generate --agency 000000``), verifies senders with
the agency directory, and keeps its store where `agents.service.paths.Paths.report` says
(``{data-dir}/000000/``). The options fill an `agents.reconcile.settings.ReconcilerSettings`.

With ``--database-url`` (``JIEXU_DATABASE_URL``, the agents' store setting) the store is the
schema ``reconcile_000000`` of that PostgreSQL database instead, and several ``jiexu reconcile``
processes may share it (`agents.reconcile.stores`).

``--report`` reads that store only (no broker): per-pair control totals per day, counts, the
latest mismatches and the stuck cases.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import typer

from agents.calendars import CalendarFileError, open_calendar
from agents.cli.log_level import LOG_LEVEL_INFO, LogLevel
from agents.cli.sensitive import password_free
from agents.domain.deadlines import Regime
from agents.reconcile.process import reconciler_amqp_url, run_reconciler
from agents.reconcile.settings import ReconcilerSettings
from agents.reconcile.stores import open_report, report_exists
from agents.service.directory_watch import DirectoryWatch
from agents.service.paths import Paths
from broker.consumer import ConsumerSettings
from broker.directory import DirectoryError
from broker.logging import configure_logging
from broker.names import RECONCILER_CODE
from broker.signing import load_private_key, private_key_path
from broker.topology import DEFAULT_RETRY_DELAYS_MS

__all__ = ["reconcile_command", "store_path"]

_URL = typer.Option(
    None,
    "--amqp-url",
    callback=password_free,
    envvar="JIEXU_RECONCILER_AMQP_URL",
    help="AMQP URL with the reconciler's own login (default: from --secrets-dir and JIEXU_AMQP_URL)",
)
_VHOST = typer.Option(None, "--vhost", envvar="JIEXU_VHOST", help="vhost (default: the secrets file's)")
_SECRETS = typer.Option(
    Path(".jiexu/secrets"), "--secrets-dir", envvar="JIEXU_SECRETS_DIR", help="000000.broker.json"
)
_KEYS = typer.Option(
    None, "--keys-dir", envvar="JIEXU_KEYS_DIR", help="000000.ed25519.pem (default: --secrets-dir)"
)
_DIRECTORY = typer.Option(
    Path(".jiexu/directory.json"), "--directory", envvar="JIEXU_DIRECTORY", help="the agency directory"
)
_DATA = typer.Option(Path(".jiexu/data"), "--data-dir", envvar="JIEXU_DATA_DIR", help="store directory")
_DATABASE = typer.Option(
    None,
    "--database-url",
    envvar="JIEXU_DATABASE_URL",
    help="PostgreSQL DSN for the report (schema reconcile_000000; several reconcilers may share "
    "it) [default: SQLite in --data-dir]",
)
_REGIME = typer.Option(
    "2021", "--regime", envvar="JIEXU_REGIME", help="deadline rules for the sweep: 2016 or 2021"
)
_CALENDARS = typer.Option(
    None, "--calendar-dir", envvar="JIEXU_CALENDAR_DIR", help="extra working-day calendar files"
)
_PREFIX = typer.Option("", "--user-prefix", envvar="JIEXU_USER_PREFIX", help="prefix of broker users")
_DELAYS = typer.Option(
    ",".join(str(ms) for ms in DEFAULT_RETRY_DELAYS_MS),
    "--retry-delays",
    envvar="JIEXU_RETRY_DELAYS_MS",
    help="retry delays in ms, as provisioned by `jiexu topology apply`",
)
_ONCE = typer.Option(False, "--once", help="handle the inbox as it is now, sweep once, and exit")
_INTERVAL = typer.Option(300.0, "--sweep-interval", min=0.1, help="seconds between sweeps")
_REPORT = typer.Option(False, "--report", help="print the report from the store and exit (no broker)")
_LIMIT = typer.Option(20, "--limit", min=1, help="mismatches to show in the report")
_IMPORT = typer.Option(
    False,
    "--import-report",
    help="copy the SQLite report of --data-dir into the empty PostgreSQL report of --database-url "
    "and exit (stop the reconciler first; the file is left in place)",
)
_JSON = typer.Option(False, "--json", help="print one JSON object on stdout")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def store_path(data_dir: Path) -> Path:
    """Where the reconciler keeps its store under a data directory."""
    return Paths(data_dir=data_dir).report(RECONCILER_CODE)


def _human_report(summary: dict[str, Any]) -> str:
    counts = summary["counts"]
    lines = [
        f"cases: {counts['matched']} matched, {counts['mismatched']} mismatched, "
        f"{counts['open']} open ({counts['stuck']} stuck)",
        "",
    ]
    totals = summary["control_totals"]
    if totals:
        header = ("DAY", "OUT", "IN", "CASES", "FEN OUT", "FEN IN", "MONTHS OUT", "MONTHS IN", "")
        rows = [header] + [
            (
                t["day"],
                t["outgoing"],
                t["receiving"],
                str(t["cases"]),
                str(t["amount_out_fen"]),
                str(t["amount_in_fen"]),
                str(t["months_out"]),
                str(t["months_in"]),
                "ok" if t["balanced"] else "UNBALANCED",
            )
            for t in totals
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines += ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    else:
        lines.append("no reconciled cases yet")
    if summary["mismatches"]:
        lines += ["", "latest mismatches:"]
        for case in summary["mismatches"]:
            fields = ", ".join(
                f"{d['field']} {d['outgoing_value']} vs {d['receiving_value']}" for d in case["differences"]
            )
            reason = f" (rejected: {case['rejection_reason']})" if case["rejection_reason"] else ""
            lines.append(f"  {case['case_id']} {case['outgoing']}->{case['receiving']}{reason}: {fields}")
    if summary["stuck"]:
        lines += ["", "stuck (past due, no result):"]
        for case in summary["stuck"]:
            lines.append(
                f"  {case['case_id']} {case['outgoing'] or '?'}->{case['receiving'] or '?'} "
                f"overdue since {case['overdue_since']}, in flight {case['amount_in_flight_fen']} fen"
            )
    return "\n".join(lines)


async def _import(path: Path, database_url: str) -> dict[str, Any]:
    from agents.reconcile.report_import import ReportImportRefused, import_sqlite_report
    from agents.reconcile.report_postgres import PostgresReport
    from agents.reconcile.stores import report_schema
    from schemas.errors import TransientError

    try:
        target = await PostgresReport.open(database_url, schema=report_schema(), max_size=1)
    except (OSError, ValueError, TransientError) as exc:
        raise _fail(f"cannot open the PostgreSQL report: {exc} (check --database-url)") from None
    try:
        copied = await import_sqlite_report(path, target)
    except ReportImportRefused as exc:
        raise _fail(str(exc)) from None
    finally:
        await target.close()
    return {"imported_from": str(path), "schema": target.schema, "rows": copied}


async def _report(path: Path, limit: int, database_url: str | None = None) -> dict[str, Any]:
    report = await open_report(path, database_url=database_url, pool_size=1)
    try:
        return await report.summary(limit)
    finally:
        await report.close()


def reconcile_command(
    amqp_url: str | None = _URL,
    vhost: str | None = _VHOST,
    secrets_dir: Path = _SECRETS,
    keys_dir: Path | None = _KEYS,
    directory: Path = _DIRECTORY,
    data_dir: Path = _DATA,
    database_url: str | None = _DATABASE,
    regime: str = _REGIME,
    calendar_dir: Path | None = _CALENDARS,
    user_prefix: str = _PREFIX,
    retry_delays: str = _DELAYS,
    once: bool = _ONCE,
    sweep_interval: float = _INTERVAL,
    report: bool = _REPORT,
    limit: int = _LIMIT,
    import_report: bool = _IMPORT,
    as_json: bool = _JSON,
    log_level: LogLevel = LOG_LEVEL_INFO,
) -> None:
    """Run the reconciliation agent: compare both ends' books of every ended case, report every
    difference, total each pair of agencies per day (SIGTERM drains and exits). With
    JIEXU_RECONCILER_METRICS_PORT (else JIEXU_METRICS_PORT) set it serves /metrics (the national
    view included), /healthz and /readyz on that port."""
    path = store_path(data_dir)
    if import_report:
        if not database_url:
            raise _fail("--import-report copies into PostgreSQL: give --database-url (JIEXU_DATABASE_URL)")
        configure_logging(level="WARNING", json=as_json)
        result = asyncio.run(_import(path, database_url))
        rows = result["rows"]
        typer.echo(
            json.dumps(result, ensure_ascii=False)
            if as_json
            else f"imported {path} into schema {result['schema']}: "
            + ", ".join(f"{n} {table}" for table, n in rows.items())
        )
        return
    if report:
        configure_logging(level="WARNING", json=as_json)
        if not asyncio.run(report_exists(path, database_url=database_url)):
            where = "in that database" if database_url else f"at {path}"
            raise _fail(
                f"no reconciliation store {where}: has `jiexu reconcile` run with this "
                + ("--database-url?" if database_url else "--data-dir?")
            )
        summary = asyncio.run(_report(path, limit, database_url))
        typer.echo(json.dumps(summary, ensure_ascii=False) if as_json else _human_report(summary))
        return
    configure_logging(level=log_level.value, json=True)
    try:
        settings = ReconcilerSettings(
            regime=Regime.parse(regime),
            data_dir=data_dir,
            database_url=database_url or None,
            secrets_dir=secrets_dir,
            keys_dir=keys_dir,
            directory=directory,
            reconciler_amqp_url=amqp_url,
            vhost=vhost,
            calendar_dir=calendar_dir,
            user_prefix=user_prefix,
            retry_delays_ms=tuple(int(part) for part in retry_delays.split(",") if part.strip()),
            sweep_interval_s=sweep_interval,
        )
        calendar = open_calendar(directory=settings.calendar_dir)
    except (ValueError, CalendarFileError) as exc:
        raise _fail(str(exc)) from exc
    try:
        watch = DirectoryWatch.open(settings.directory, settings.secrets_dir)  # operator-signed
    except DirectoryError as exc:
        raise _fail(str(exc)) from exc
    key_file = private_key_path(settings.key_dir, settings.code)
    try:
        private_key = load_private_key(key_file)
    except (OSError, ValueError) as exc:
        raise _fail(
            f"cannot load the reconciler's signing key {key_file}: {exc} "
            "(create it with `jiexu keys generate --agency 000000`)"
        ) from exc
    try:
        url = reconciler_amqp_url(settings)
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    outcome = asyncio.run(
        run_reconciler(
            amqp_url=url,
            directory=watch.directory,
            directory_watch=watch,
            private_key=private_key,
            store_path=settings.report_path,
            settings=settings,
            consumer_settings=ConsumerSettings(
                retry_delays_ms=settings.retry_delays_ms, user_prefix=settings.user_prefix
            ),
            calendar=calendar,
            once=once,
            sweep_interval_s=settings.sweep_interval_s,
        )
    )
    if once and outcome is not None:
        summary = asyncio.run(_report(path, limit, settings.database_url))
        result = {
            "overdue": [str(case_id) for case_id in outcome.overdue],
            "requested": outcome.requested,
            "published": outcome.published,
            **summary,
        }
        typer.echo(json.dumps(result, ensure_ascii=False) if as_json else _human_report(summary))
