"""Where the queues live: the members and leader of each quorum queue as the cluster sees them now.

What ``jiexu status`` shows of the queues `broker.topology` declares.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from broker.management import ManagementClient
from broker.names import inbox_queue

__all__ = ["QueueReplicas", "inbox_replicas", "queue_replicas"]


@dataclass(frozen=True)
class QueueReplicas:
    """One quorum queue's members as the cluster sees them now."""

    name: str
    leader: str | None
    members: tuple[str, ...]
    online: tuple[str, ...]

    @property
    def missing(self) -> tuple[str, ...]:
        """Members that are not online (their node is down, paused or cut off)."""
        return tuple(m for m in self.members if m not in self.online)


def queue_replicas(
    api: ManagementClient, vhost: str, names: Iterable[str] | None = None
) -> list[QueueReplicas]:
    """Leader, members and missing members of the quorum queues of ``vhost`` (``names`` only,
    when given), from whichever node's management API answers: what ``jiexu status`` shows."""
    wanted = set(names) if names is not None else None
    result: list[QueueReplicas] = []
    for q in api.list_queues(vhost):
        if q.get("type") != "quorum" or (wanted is not None and q["name"] not in wanted):
            continue
        result.append(
            QueueReplicas(
                name=q["name"],
                leader=q.get("leader") or None,
                members=tuple(q.get("members") or ()),
                online=tuple(q.get("online") or ()),
            )
        )
    return sorted(result, key=lambda r: r.name)


def inbox_replicas(api: ManagementClient, vhost: str, codes: Iterable[str]) -> list[QueueReplicas]:
    """`queue_replicas` of the inboxes of ``codes``."""
    return queue_replicas(api, vhost, [inbox_queue(c) for c in codes])
