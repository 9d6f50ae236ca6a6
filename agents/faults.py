"""Crash points: fault injection for the crash tests, off unless ``JIEXU_CRASH_AT`` is set.

``JIEXU_CRASH_AT`` names one or more points, comma-separated; ``name@N`` crashes on the N-th time
the point is reached in this process (default: the first), so a test can kill an agent in the
middle of a batch. At the chosen moment the process writes one line to stderr and sends itself
SIGKILL: no ``finally``, no drain, no flush, no rollback but the database's own — exactly what a
power cut or ``kill -9`` does. The variable is read once, at import; when it is unset a crash point
is one function call and one test of an empty dict.

An unknown point name raises ``ValueError`` at import, so a typo cannot make a crash test pass
without crashing.

The points, in the order a case meets them:

``after_commit_before_publish``
    `agents.service.agency.AgencyService`, right after a store transaction that added rows to the
    outbox committed, before the relay is woken (a handled message, a ledger result, a deadline tick, a
    statement answer, an application). The rows are durable and unpublished; the delivery being
    handled, if any, is unacked. The relay may have an earlier batch in flight at that moment.
``before_publish``
    `agents.service.relay.OutboxRelay`, a batch of unpublished rows fetched, nothing published yet.
``after_publish_before_mark``
    `agents.service.relay.OutboxRelay`, the broker confirmed the batch, ``mark_published`` not yet run:
    the restarted relay publishes the same messages (same message ids) again.
``mid_ledger_change``
    `agents.service.agency.AgencyService` (its `agents.service.ledger_commands`), between two ledger
    commands of one case (a payout case runs terminate_and_debit, then pay_out): the first is applied
    in the ledger, the second is not.
``mid_ledger_transaction``
    `agents.ledger.sqlite.SqliteLedger`, inside one operation's transaction: the account row and
    the idempotency row are written, the ``COMMIT`` is not. SQLite must roll it back: after the
    crash neither the balance change nor the ``ledger_ops`` row exists.
``after_ledger_before_commit``
    `agents.service.agency.AgencyService` (its `agents.service.ledger_commands`), every ledger command
    of a case applied, the result (the case leaving ``releasing``/``crediting``, its outgoing
    messages) not yet committed to the store.
``after_handle_before_ack``
    The end of `agents.service.agency.AgencyService.handle` for a message that moves a case: its effect
    is committed (its outgoing messages may be published), the consumer has not acked it yet.

The reconciler (`agents.reconcile.service.ReconcilerService`) meets the same names:
``after_commit_before_publish`` after a unit of work that queued envelopes, and
``after_handle_before_ack`` at the end of its ``handle``; ``before_publish`` and
``after_publish_before_mark`` come from the same `OutboxRelay`, which publishes its outbox too.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping

__all__ = ["CRASH_AT_ENV", "POINTS", "crash_point", "parse_crash_at"]

CRASH_AT_ENV = "JIEXU_CRASH_AT"

POINTS = frozenset(
    {
        "after_commit_before_publish",
        "before_publish",
        "after_publish_before_mark",
        "mid_ledger_change",
        "mid_ledger_transaction",
        "after_ledger_before_commit",
        "after_handle_before_ack",
    }
)


def parse_crash_at(value: str | None) -> dict[str, int]:
    """``"a,b@3"`` -> ``{"a": 1, "b": 3}``: each point and the visit on which to crash."""
    armed: dict[str, int] = {}
    for item in (value or "").split(","):
        item = item.strip()
        if not item:
            continue
        name, _, nth = item.partition("@")
        name = name.strip()
        if name not in POINTS:
            raise ValueError(
                f"{CRASH_AT_ENV}: unknown crash point {name!r}; known: {', '.join(sorted(POINTS))}"
            )
        try:
            visit = int(nth) if nth else 1
        except ValueError:
            raise ValueError(f"{CRASH_AT_ENV}: {item!r}: the visit after '@' must be a number") from None
        if visit < 1:
            raise ValueError(f"{CRASH_AT_ENV}: {item!r}: visits count from 1")
        armed[name] = visit
    return armed


_ARMED: Mapping[str, int] = parse_crash_at(os.environ.get(CRASH_AT_ENV))
_visits: dict[str, int] = {}


def crash_point(name: str) -> None:
    """Kill this process with SIGKILL if ``JIEXU_CRASH_AT`` arms `name` for this visit."""
    if not _ARMED:
        return
    _visit(name)


def _visit(name: str) -> None:
    wanted = _ARMED.get(name)
    if wanted is None:
        return
    seen = _visits.get(name, 0) + 1
    _visits[name] = seen
    if seen != wanted:
        return
    # Straight to the file descriptor: nothing buffered may stand between this line and the kill.
    os.write(2, f"jiexu crash point {name}@{seen} reached: SIGKILL pid {os.getpid()}\n".encode())
    os.kill(os.getpid(), signal.SIGKILL)
