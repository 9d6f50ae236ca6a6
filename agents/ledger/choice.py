"""Which ledger an agency's processes open, chosen by one setting: ``JIEXU_LEDGER``.

=========================  ===================================================================
``JIEXU_LEDGER``           the ledger
=========================  ===================================================================
``sqlite`` (or unset)      `SqliteLedger` on ``<data_dir>/<code>/ledger.db``: one machine only
``postgres``               `PostgresLedger` in schema ``ledger_<code>`` of ``JIEXU_LEDGER_URL``,
                           or of ``JIEXU_DATABASE_URL`` (the store's database) when that is unset;
                           what several replicas of one agency share
``NAME``                   the factory an installed package names in the ``jiexu.ledgers`` entry
                           point group (``[project.entry-points."jiexu.ledgers"]``
                           ``mycore = "mycore_jiexu:open_ledger"``)
``package.module:factory`` that factory, imported (the module on ``PYTHONPATH``)
=========================  ===================================================================

A factory is called with one `LedgerContext` (the agency's code, the clock, the SQLite path the
default would use, the PostgreSQL DSNs) and returns a ledger, or an awaitable of one (``async
def`` is fine). The ledger must have the agent's methods (`agents.ledger.base.LedgerPort`);
`agents.testing`'s ``LedgerContract`` proves it behaves. Everything that goes wrong in the choice
raises `LedgerConfigError` with one line that says what to do; errors the factory itself raises
(a core system that is down, say) pass through unchanged.

The ledger DSN is separate from the store's on purpose: the books are often the agency's own
database, the store is the exchange's. Keeping both in one database is the simple default.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, TypeAlias

from agents.domain.clock import Clock, SystemClock
from agents.ledger.base import LedgerPort
from schemas.errors import JiexuError

__all__ = [
    "BUILTIN_LEDGERS",
    "ENTRY_POINT_GROUP",
    "LEDGER_ENV",
    "LEDGER_URL_ENV",
    "LedgerConfigError",
    "LedgerContext",
    "LedgerFactory",
    "ledger_settings_from_env",
    "open_ledger",
    "resolve_ledger_factory",
]

LEDGER_ENV = "JIEXU_LEDGER"
LEDGER_URL_ENV = "JIEXU_LEDGER_URL"
ENTRY_POINT_GROUP = "jiexu.ledgers"
DEFAULT_LEDGER = "sqlite"

# What the agent calls: a factory's result must have every one of these.
_PORT_METHODS = ("lookup", "terminate_and_debit", "credit", "pay_out", "statement", "close")


class LedgerConfigError(JiexuError):
    """``JIEXU_LEDGER`` names no usable ledger; the message (one line) says what to change."""


@dataclass(frozen=True, kw_only=True)
class LedgerContext:
    """What a ledger factory is given.

    ``agency``: the 6-digit code of the agency whose books these are. ``path``: the SQLite file
    the default adapter uses (``<data_dir>/<code>/ledger.db``; its directory is the agency's data
    directory, a place for an adapter's own files). ``database_url``: the store's PostgreSQL DSN
    (``JIEXU_DATABASE_URL``), ``ledger_url``: the ledger's own (``JIEXU_LEDGER_URL``), each None
    when unset.
    """

    agency: str
    clock: Clock
    path: Path
    database_url: str | None = None
    ledger_url: str | None = None
    pool_size: int = 10
    """Connections at most in a pool the ledger keeps (``JIEXU_DATABASE_POOL_SIZE``)."""

    @property
    def data_dir(self) -> Path:
        """The agency's data directory."""
        return self.path.parent

    @property
    def postgres_url(self) -> str | None:
        """The DSN a PostgreSQL ledger uses: ``JIEXU_LEDGER_URL``, else the store's."""
        return self.ledger_url or self.database_url


LedgerFactory: TypeAlias = Callable[[LedgerContext], LedgerPort | Awaitable[LedgerPort]]


async def _open_sqlite(context: LedgerContext) -> LedgerPort:
    from agents.ledger.sqlite import SqliteLedger

    context.path.parent.mkdir(parents=True, exist_ok=True)
    return await SqliteLedger.open(context.path, context.agency, clock=context.clock)


async def _open_postgres(context: LedgerContext) -> LedgerPort:
    from agents.ledger.postgres import PostgresLedger

    dsn = context.postgres_url
    if not dsn:
        raise LedgerConfigError(
            f"{LEDGER_ENV}=postgres needs a PostgreSQL DSN: set {LEDGER_URL_ENV} "
            "(or JIEXU_DATABASE_URL to keep the books beside the store)"
        )
    return await PostgresLedger.open(
        dsn, context.agency, clock=context.clock, max_size=context.pool_size
    )


BUILTIN_LEDGERS: Mapping[str, LedgerFactory] = {"sqlite": _open_sqlite, "postgres": _open_postgres}


def _installed_names() -> list[str]:
    return sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


def _import_factory(spec: str) -> Any:
    module_name, _, attribute = spec.partition(":")
    module_name, attribute = module_name.strip(), attribute.strip()
    if not module_name or not attribute:
        raise LedgerConfigError(
            f"{LEDGER_ENV}={spec!r} is not package.module:factory: name a module and the "
            "function in it that builds the ledger"
        )
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise LedgerConfigError(
            f"cannot import {module_name!r} for {LEDGER_ENV}={spec!r} ({exc}): install it or put "
            "its directory on PYTHONPATH"
        ) from exc
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise LedgerConfigError(
                f"{module_name!r} has no attribute {attribute!r} ({LEDGER_ENV}={spec!r}): name "
                "the function that builds the ledger"
            )
        target = getattr(target, part)
    return target


def _from_entry_point(name: str) -> Any:
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not found:
        installed = ", ".join(_installed_names()) or "none installed"
        raise LedgerConfigError(
            f"unknown ledger {name!r} in {LEDGER_ENV}: use sqlite, postgres, an installed "
            f"{ENTRY_POINT_GROUP} entry point ({installed}) or package.module:factory"
        )
    try:
        return found[0].load()
    except (ImportError, AttributeError) as exc:
        raise LedgerConfigError(
            f"the {ENTRY_POINT_GROUP} entry point {name!r} = {found[0].value!r} does not load "
            f"({exc}): reinstall the package that provides it"
        ) from exc


def resolve_ledger_factory(spec: str | None) -> LedgerFactory:
    """The factory ``spec`` names, without calling it: lets a process fail fast at startup."""
    name = (spec or "").strip() or DEFAULT_LEDGER
    if name in BUILTIN_LEDGERS:
        return BUILTIN_LEDGERS[name]
    factory = _import_factory(name) if ":" in name else _from_entry_point(name)
    if not callable(factory):
        raise LedgerConfigError(
            f"{LEDGER_ENV}={name!r} is not callable (its type is {type(factory).__name__}): name "
            "a function that takes a LedgerContext and returns a ledger"
        )
    return factory  # type: ignore[no-any-return]


def _missing_methods(ledger: object) -> list[str]:
    return [name for name in _PORT_METHODS if not callable(getattr(ledger, name, None))]


async def open_ledger(
    spec: str | None,
    *,
    agency: str,
    path: Path,
    database_url: str | None = None,
    ledger_url: str | None = None,
    clock: Clock | None = None,
    pool_size: int = 10,
) -> LedgerPort:
    """Open the ledger ``spec`` (the value of ``JIEXU_LEDGER``; None or empty: ``sqlite``) for
    ``agency``. ``path`` is the SQLite file (``AgentSettings.ledger_path``)."""
    factory = resolve_ledger_factory(spec)
    context = LedgerContext(
        agency=agency,
        clock=clock if clock is not None else SystemClock(),
        path=Path(path),
        database_url=database_url or None,
        ledger_url=ledger_url or None,
        pool_size=pool_size,
    )
    made: Any = factory(context)
    if inspect.isawaitable(made):
        made = await made
    missing = _missing_methods(made)
    if missing:
        raise LedgerConfigError(
            f"{LEDGER_ENV}={(spec or DEFAULT_LEDGER).strip()!r} built a {type(made).__name__}, "
            f"not a ledger: it lacks {', '.join(missing)} (see agents.ledger.LedgerPort)"
        )
    return made  # type: ignore[no-any-return]


def ledger_settings_from_env(environ: Mapping[str, str]) -> tuple[str, str | None]:
    """``(JIEXU_LEDGER or "sqlite", JIEXU_LEDGER_URL or None)`` from an environment mapping."""
    return (
        environ.get(LEDGER_ENV, "").strip() or DEFAULT_LEDGER,
        environ.get(LEDGER_URL_ENV) or None,
    )
