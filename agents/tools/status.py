"""What an operator wants at a glance: queues, dead letters, cases, overdue steps, mismatches.

Read-only: the broker through its management API, each agency's store, the reconciler's report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from agents.reconcile.report import ReconciliationReport
from agents.store.base import Store
from agents.store.postgres import PostgresStore
from agents.store.sqlite import SqliteStore
from broker.management import ManagementClient, ManagementError
from broker.names import RECONCILER_CODE, UNROUTABLE_QUEUE, dlq_queue, inbox_queue

__all__ = ["StatusSources", "collect_status"]

OVERDUE_LISTED = 20


@dataclass(frozen=True)
class StatusSources:
    """Where to look: the management API and vhost, the data directory, an optional PostgreSQL."""

    api: ManagementClient | None
    vhost: str
    data_dir: Path
    database_url: str | None = None
    agencies: Sequence[str] = ()
    """Agency codes to report on; empty: every agency with a store in `data_dir` or a queue."""


def _queue_figures(queue: dict[str, Any] | None) -> dict[str, Any]:
    if queue is None:
        return {"exists": False}
    return {
        "exists": True,
        "messages": int(queue.get("messages", 0)),
        "ready": int(queue.get("messages_ready", 0)),
        "unacked": int(queue.get("messages_unacknowledged", 0)),
        "consumers": int(queue.get("consumers", 0)),
        # A quorum queue's replicas (broker.topology.queue_replicas reads the same fields).
        "leader": queue.get("leader"),
        "members": list(queue.get("members") or []),
        "missing": [m for m in queue.get("members") or [] if m not in (queue.get("online") or [])],
    }


def _broker_status(sources: StatusSources) -> tuple[dict[str, Any], list[str]]:
    if sources.api is None:
        return {"available": False, "error": "no management API configured"}, []
    try:
        queues = {q["name"]: q for q in sources.api.list_queues(sources.vhost)}
    except ManagementError as exc:
        return {"available": False, "error": str(exc)}, []
    codes = sorted(
        name.removeprefix("jiexu.inbox.") for name in queues if name.startswith("jiexu.inbox.")
    )
    agencies = {}
    for code in codes:
        retry = [q for name, q in queues.items() if name.startswith(f"jiexu.retry.{code}.")]
        agencies[code] = {
            "inbox": _queue_figures(queues.get(inbox_queue(code))),
            "dead_letters": _queue_figures(queues.get(dlq_queue(code))).get("messages", 0),
            "waiting_retry": sum(int(q.get("messages", 0)) for q in retry),
        }
    unroutable = _queue_figures(queues.get(UNROUTABLE_QUEUE))
    return {
        "available": True,
        "vhost": sources.vhost,
        "agencies": agencies,
        "unroutable": unroutable.get("messages", 0),
        "dead_letters_total": sum(a["dead_letters"] for a in agencies.values()),
    }, codes


async def _open_store(sources: StatusSources, code: str) -> Store | None:
    if sources.database_url:
        return await PostgresStore.open(sources.database_url, schema=f"agency_{code}")
    path = sources.data_dir / code / "store.db"
    if not path.exists():
        return None
    return await SqliteStore.open(path)


async def _cases_status(sources: StatusSources, codes: Sequence[str], today: date) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for code in codes:
        if code == RECONCILER_CODE:
            continue
        store = await _open_store(sources, code)
        if store is None:
            continue
        try:
            overdue = await store.cases_due_before(today)
            result[code] = {
                "by_state": dict(sorted((await store.cases_by_state()).items())),
                "overdue": len(overdue),
                "overdue_steps": [
                    {
                        "case_id": str(r.case_id),
                        "role": r.role,
                        "state": r.state,
                        "whose_turn": r.whose_turn,
                        "due_date": r.due_date.isoformat() if r.due_date else None,
                        "days_late": (today - r.due_date).days if r.due_date else None,
                    }
                    for r in overdue[:OVERDUE_LISTED]
                ],
                "held_messages": len(await store.held_messages()),
            }
        finally:
            await store.close()
    return result


async def _reconciliation_status(sources: StatusSources) -> dict[str, Any]:
    path = sources.data_dir / RECONCILER_CODE / "reconcile.db"
    if not path.exists():
        return {"available": False}
    report = await ReconciliationReport.open(path)
    try:
        counts = await report.counts()
        mismatches = await report.latest_mismatches(10)
        return {
            "available": True,
            **counts,
            "latest_mismatches": [
                {
                    "case_id": str(m.case_id),
                    "outgoing": m.outgoing,
                    "receiving": m.receiving,
                    "differences": [
                        d.model_dump(mode="json") for d in (m.result.differences if m.result else ())
                    ],
                }
                for m in mismatches
            ],
        }
    finally:
        await report.close()


async def collect_status(sources: StatusSources, today: date) -> dict[str, Any]:
    """Everything `jiexu status` shows, as JSON-ready values."""
    broker, queue_codes = _broker_status(sources)
    local = sorted(
        p.name for p in sources.data_dir.glob("*") if p.is_dir() and p.name.isdigit()
    ) if sources.data_dir.exists() else []
    codes = list(sources.agencies) or sorted(set(queue_codes) | set(local))
    return {
        "today": today.isoformat(),
        "broker": broker,
        "cases": await _cases_status(sources, codes, today),
        "reconciliation": await _reconciliation_status(sources),
    }
