"""Reading the store's state for the gauges: `take_store_figures` and `FiguresRefresher`.

A scrape must not wait for a database, and several replicas must not each do expensive work per
scrape: a `FiguresRefresher` reads the figures every ``interval_s`` seconds in the background and the
collector (`agents.service.metrics.StoreCollector`, or the reconciler's ``ExchangeCollector`` with a
refresher around its own read) serves the latest ones. What `take_store_figures` reads:

* ``cases_by_state()`` (an aggregate query) for ``jiexu_cases``;
* the *open* cases (``list_cases(open_only=True)``, bounded by the work in progress) for open cases
  by role and state, overdue steps and money in flight: columns, plus two numbers from each case's
  JSON snapshot, without validating the whole case;
* the outbox: a store that offers ``outbox_figures()`` (`OutboxFiguresStore`: one ``count`` and one
  ``min``) answers exactly; otherwise the first ``OUTBOX_SCAN_LIMIT`` unpublished rows are read, so
  the depth shows at most that many (the oldest row's age is exact either way);
* ``held_messages()``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

import structlog

from agents.domain.clock import Clock
from agents.service.metrics import StoreFigures
from agents.store.base import CaseRecord, Store

__all__ = ["OUTBOX_SCAN_LIMIT", "FiguresRefresher", "OutboxFiguresStore", "take_store_figures"]

log = structlog.get_logger("jiexu.agents.service.figures")

OUTBOX_SCAN_LIMIT = 1000

T = TypeVar("T")


@runtime_checkable
class OutboxFiguresStore(Protocol):
    """Optional store capability: the outbox's depth and its oldest unpublished row, in SQL."""

    async def outbox_figures(self) -> tuple[int, datetime | None]: ...


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def in_flight_fen(record: CaseRecord) -> int:
    """Money of an open case that has moved but is not settled, from its JSON snapshot.

    Outgoing: the amount its ledger debited for the fund transfer (``booked.amount_fen``) while the
    case waits for the receiving agency's completion. Receiving: the fund transfers received
    (``funds[].transfer.amount``) while nothing is credited yet (``booked`` is empty).
    """
    if not record.open:
        return 0
    data: Mapping[str, Any] = record.data
    booked = data.get("booked")
    if record.role == "outgoing":
        return _int(booked.get("amount_fen")) if isinstance(booked, Mapping) else 0
    if booked:
        return 0
    total = 0
    for funds in data.get("funds") or ():
        transfer = funds.get("transfer") if isinstance(funds, Mapping) else None
        if isinstance(transfer, Mapping):
            total += _int(transfer.get("amount"))
    return total


async def take_store_figures(store: Store, clock: Clock) -> StoreFigures:
    """Read the figures the gauges export (see the module docstring for the cost)."""
    now = clock.now()
    today = clock.today()
    by_state = await store.cases_by_state()
    open_cases: Counter[tuple[str, str]] = Counter()
    overdue: Counter[tuple[str, str | None]] = Counter()
    money: Counter[str] = Counter()
    for record in await store.list_cases(open_only=True):
        open_cases[(record.role, record.state)] += 1
        if record.due_date is not None and record.due_date < today:
            overdue[(record.role, record.whose_turn)] += 1
        money[record.role] += in_flight_fen(record)
    oldest: datetime | None
    if isinstance(store, OutboxFiguresStore):
        depth, oldest = await store.outbox_figures()
    else:
        rows = await store.fetch_unpublished(OUTBOX_SCAN_LIMIT)
        depth = len(rows)
        oldest = min((row.created_at for row in rows), default=None)
    held = len(await store.held_messages())
    return StoreFigures(
        taken_at=now.timestamp(),
        cases=dict(by_state),
        open_cases=dict(open_cases),
        overdue=dict(overdue),
        money_in_flight_fen={role: money.get(role, 0) for role in ("outgoing", "receiving")},
        outbox_unpublished=depth,
        outbox_oldest_created_at=None if oldest is None else oldest.timestamp(),
        held_messages=held,
    )


class FiguresRefresher(Generic[T]):
    """Calls ``read`` every ``interval_s`` seconds; `latest` is the collector's source.

    A failed read is logged (``metrics_figures_failed``) and counted (``on_failure``); the previous
    figures stay exported, and ``jiexu_figures_timestamp_seconds`` shows how old they are.

    An agent: ``FiguresRefresher.for_store(store, clock, on_failure=...)``; the reconciler: a
    refresher around whatever reads its `ExchangeFigures`.
    """

    def __init__(
        self,
        read: Callable[[], Awaitable[T]],
        *,
        interval_s: float = 15.0,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        self._read = read
        self._interval_s = interval_s
        self._on_failure = on_failure or (lambda: None)
        self._latest: T | None = None
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def for_store(
        cls,
        store: Store,
        clock: Clock,
        *,
        interval_s: float = 15.0,
        on_failure: Callable[[], None] | None = None,
    ) -> FiguresRefresher[StoreFigures]:
        return FiguresRefresher(
            lambda: take_store_figures(store, clock), interval_s=interval_s, on_failure=on_failure
        )

    def latest(self) -> T | None:
        return self._latest

    async def refresh(self) -> T | None:
        """Read the figures now; on failure keep the previous ones."""
        try:
            self._latest = await self._read()
        except Exception as exc:
            self._on_failure()
            log.warning("metrics_figures_failed", error=repr(exc))
        return self._latest

    def start(self) -> FiguresRefresher[T]:
        self._task = asyncio.create_task(self._run(), name="metrics-figures")
        return self

    async def _run(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(self._interval_s)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
