"""What an operator wants at a glance: queues, dead letters, cases, overdue steps, mismatches.

Read-only: the broker through its management API, each agency's store, the reconciler's report.

From another machine, where no agency's files are, `StatusSources.reconciler_url` reads the
reconciler's ``/metrics`` instead (``jiexu status --from-reconciler URL``): the national view it
exports (`agents.reconcile.figures`), cases, overdue cases and money in flight per pair of agencies,
reconciliation outcomes and mismatches by field, replaces the local stores and report.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from agents.reconcile.stores import open_report, report_exists
from agents.service.bootstrap import open_agency_store
from agents.service.paths import Paths
from agents.store.base import Store
from broker.management import ManagementClient, ManagementError
from broker.names import RECONCILER_CODE, UNROUTABLE_QUEUE, dlq_queue, inbox_queue

__all__ = ["StatusSources", "collect_status", "reconciler_status"]

OVERDUE_LISTED = 20


@dataclass(frozen=True)
class StatusSources:
    """Where to look: the management API and vhost, the deployment's files, an optional PostgreSQL."""

    api: ManagementClient | None
    vhost: str
    paths: Paths
    database_url: str | None = None
    agencies: Sequence[str] = ()
    """Agency codes to report on; empty: every agency with a data directory or a queue."""
    reconciler_url: str | None = None
    """The reconciler's metrics endpoint (``http://host:port`` or ``.../metrics``): read the
    national view from it instead of the local stores and report."""
    timeout_s: float = 10.0


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
        "unroutable_messages": _unroutable_messages(sources) if unroutable.get("exists") else [],
        "dead_letters_total": sum(a["dead_letters"] for a in agencies.values()),
    }, codes


def _unroutable_messages(sources: StatusSources, limit: int = 20) -> list[dict[str, Any]]:
    """What waits in the unroutable queue, one line each (no personal data): which case, which
    message, from whom, to which routing key no queue is bound for."""
    assert sources.api is not None
    try:
        peeked = sources.api.peek_messages(sources.vhost, UNROUTABLE_QUEUE, limit)
    except ManagementError:
        return []
    found = []
    for message in peeked:
        envelope: dict[str, Any] = {}
        try:
            parsed = json.loads(message.get("payload") or "")
            if isinstance(parsed, dict):
                envelope = parsed
        except ValueError:
            pass
        found.append(
            {
                "routing_key": message.get("routing_key"),
                "type": envelope.get("type"),
                "sender": envelope.get("sender"),
                "recipient": envelope.get("recipient"),
                "case_id": envelope.get("case_id"),
                "message_id": envelope.get("message_id"),
            }
        )
    return found


async def _open_store(sources: StatusSources, code: str) -> Store | None:
    """The agency's store, or None for an SQLite store that does not exist (not created here)."""
    if not sources.database_url and not sources.paths.store(code).exists():
        return None
    return await open_agency_store(sources.paths, code, database_url=sources.database_url)


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
                "payouts_awaiting_approval": [
                    str(r.case_id)
                    for r in await store.list_cases(open_only=True, states=["awaiting_approval"])
                ],
            }
        finally:
            await store.close()
    return result


async def _reconciliation_status(sources: StatusSources) -> dict[str, Any]:
    path = sources.paths.report()
    if not await report_exists(path, database_url=sources.database_url):
        return {"available": False}
    report = await open_report(path, database_url=sources.database_url, pool_size=1)
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


def _metrics_url(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith("/metrics") else f"{url}/metrics"


def _agency(label: str) -> str | None:
    return None if label == "none" else label


async def reconciler_status(url: str, timeout_s: float = 10.0) -> dict[str, Any]:
    """The reconciler's national view, read from its ``/metrics``: ``reconciliation`` (as the
    local report's, with ``mismatches_by_field`` instead of the latest mismatches) and ``exchange``
    (one row per pair of agencies; an agency not known yet is null)."""
    source = _metrics_url(url)
    try:
        async with httpx.AsyncClient(timeout=timeout_s) as client:
            response = await client.get(source)
        response.raise_for_status()
        families = list(text_string_to_metric_families(response.text))
    except (httpx.HTTPError, ValueError) as exc:
        error = {"available": False, "source": source, "error": f"{type(exc).__name__}: {exc}"}
        return {"reconciliation": error, "exchange": error}
    outcomes: dict[str, int] = {}
    fields: dict[str, int] = {}
    pairs: dict[tuple[str | None, str | None], dict[str, Any]] = {}
    taken_at: float | None = None

    def pair(labels: dict[str, str]) -> dict[str, Any]:
        key = (_agency(labels["outgoing"]), _agency(labels["receiving"]))
        return pairs.setdefault(
            key,
            {"outgoing": key[0], "receiving": key[1], "cases": {}, "overdue": {},
             "money_in_flight_fen": 0},
        )

    for family in families:
        for sample in family.samples:
            labels, value = sample.labels, int(sample.value)
            if sample.name == "jiexu_reconciliation_cases":
                outcomes[labels["outcome"]] = value
            elif sample.name == "jiexu_reconciliation_mismatches":
                fields[labels["field"]] = value
            elif sample.name == "jiexu_exchange_cases":
                pair(labels)["cases"][labels["state"]] = value
            elif sample.name == "jiexu_exchange_overdue_steps":
                pair(labels)["overdue"][labels["whose_turn"]] = value
            elif sample.name == "jiexu_exchange_money_in_flight_fen":
                pair(labels)["money_in_flight_fen"] = value
            elif sample.name == "jiexu_figures_timestamp_seconds":
                taken_at = sample.value
    if not outcomes:
        error = {"available": False, "source": source,
                 "error": "no figures yet: not a reconciler, or it has not read its report yet"}
        return {"reconciliation": error, "exchange": error}
    stuck = outcomes.get("stuck", 0)
    return {
        "reconciliation": {
            "available": True,
            "source": source,
            "matched": outcomes.get("matched", 0),
            "mismatched": outcomes.get("mismatched", 0),
            "open": outcomes.get("pending", 0) + stuck,
            "stuck": stuck,
            "mismatches_by_field": dict(sorted(fields.items())),
        },
        "exchange": {
            "available": True,
            "source": source,
            "figures_taken_at": taken_at,
            "pairs": [pairs[key] for key in sorted(pairs, key=str)],
        },
    }


async def collect_status(sources: StatusSources, today: date) -> dict[str, Any]:
    """Everything `jiexu status` shows, as JSON-ready values."""
    broker, queue_codes = _broker_status(sources)
    if sources.reconciler_url:
        return {
            "today": today.isoformat(),
            "broker": broker,
            "cases": {},
            **await reconciler_status(sources.reconciler_url, sources.timeout_s),
        }
    local = sources.paths.agency_codes()
    codes = list(sources.agencies) or sorted(set(queue_codes) | set(local))
    return {
        "today": today.isoformat(),
        "broker": broker,
        "cases": await _cases_status(sources, codes, today),
        "reconciliation": await _reconciliation_status(sources),
    }
