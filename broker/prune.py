"""``jiexu topology apply --prune``: remove what the broker still holds for agencies that left.

An agency that left the (signed) directory keeps, until pruned, a broker user that can log in and
publish, and its queues. `prune_agencies` deletes, on one vhost, the jiexu agency users (of the
spec's prefix, with permissions on that vhost) whose code the spec does not list, closes their
connections, and deletes their inbox and retry queues. A dead-letter queue that still holds
messages is kept (an operator decides about those) and reported; an empty one is deleted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import structlog

from broker.management import ManagementClient
from broker.names import code_of_user
from broker.topology import TopologySpec

__all__ = ["Pruned", "prune_agencies"]

log = structlog.get_logger("jiexu.broker.prune")

_QUEUE = re.compile(r"^jiexu\.(inbox|dlq|retry)\.([0-9]{6})(\.[0-9]+ms)?$")


@dataclass
class Pruned:
    users: list[str] = field(default_factory=list)
    queues: list[str] = field(default_factory=list)
    kept_queues: list[str] = field(default_factory=list)
    """Dead-letter queues of departed agencies kept because they still hold messages."""


def prune_agencies(api: ManagementClient, vhost: str, spec: TopologySpec) -> Pruned:
    """Delete the users and queues on ``vhost`` of agencies that ``spec`` no longer lists."""
    keep = set(spec.codes)
    result = Pruned()
    users_here = {p["user"] for p in api.list_permissions(vhost)}
    for user in sorted(users_here):
        code = code_of_user(user, spec.user_prefix)
        if code is None or code in keep:
            continue
        api.delete_user(user)
        result.users.append(user)
        for connection in api.list_connections():
            if connection.get("user") == user:
                api.close_connection(connection["name"], "agency left the directory")
        log.warning("topology.pruned_user", user=user, agency=code, vhost=vhost)
    for queue in api.list_queues(vhost):
        match = _QUEUE.match(queue["name"])
        if match is None or match.group(2) in keep:
            continue
        if match.group(1) == "dlq" and int(queue.get("messages") or 0) > 0:
            result.kept_queues.append(queue["name"])
            continue
        api.delete_queue(vhost, queue["name"])
        result.queues.append(queue["name"])
    if result.queues:
        log.warning("topology.pruned_queues", vhost=vhost, queues=result.queues)
    return result
