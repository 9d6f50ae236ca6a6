"""The reconciler's outbox as `agents.service.relay.OutboxRelay` reads it.

The report queues envelopes unsigned (its ``outbox`` table holds the envelope JSON, as it always
has); `ReportOutbox` signs each one when the relay fetches it. Ed25519 signatures are
deterministic, so a re-send after a crash is the same message, byte for byte.
"""

from __future__ import annotations

from collections.abc import Sequence

from agents.domain.clock import Clock, SystemClock
from agents.reconcile.report_base import QueuedEnvelope, ReportStore
from agents.store.base import OutboxMessage
from broker.names import routing_key
from broker.signing import Ed25519PrivateKey, sign_and_encode

__all__ = ["ReportOutbox"]


class ReportOutbox:
    """`agents.service.relay.Outbox` over a report (SQLite or PostgreSQL), signing with the
    reconciler's key."""

    def __init__(
        self, report: ReportStore, private_key: Ed25519PrivateKey, clock: Clock | None = None
    ) -> None:
        self._report = report
        self._private_key = private_key
        self._clock = clock or SystemClock()

    def _signed(self, rows: list[QueuedEnvelope]) -> list[OutboxMessage]:
        messages: list[OutboxMessage] = []
        for row in rows:
            envelope = row.envelope
            if envelope.signature is not None:  # queued unsigned; never trust a stored signature
                envelope = envelope.model_copy(update={"signature": None})
            envelope, body = sign_and_encode(envelope, self._private_key)
            messages.append(
                OutboxMessage(
                    id=row.seq,
                    message_id=envelope.message_id,
                    recipient=envelope.recipient,
                    message_type=envelope.type,
                    routing_key=routing_key(envelope.recipient, envelope.type),
                    body=body,
                    created_at=row.created_at,
                    claims=row.claims,
                )
            )
        return messages

    async def fetch_unpublished(self, limit: int = 100) -> list[OutboxMessage]:
        return self._signed(await self._report.queued(limit))

    async def claim_unpublished(
        self, claimant: str, *, limit: int = 100, lease_s: float = 30.0
    ) -> list[OutboxMessage]:
        """The queued rows nobody else holds, claimed for ``lease_s`` (`ReportStore.claim_queued`:
        on SQLite every queued row, the file being one process's; on PostgreSQL a lease shared
        by every reconciler process)."""
        return self._signed(
            await self._report.claim_queued(claimant, limit=limit, lease_s=lease_s)
        )

    async def mark_published(self, ids: Sequence[int]) -> None:
        await self._report.mark_sent_seqs(ids, self._clock.now())
