"""The replay check: has a message with this id been handled already?

The consumer (`broker.consumer`) asks it after the signature check. An agent passes its store's
inbox, which remembers across restarts and records the id in the same transaction as the handler's
effects; without one the consumer remembers recent ids in memory (`RecentMessageIds`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from uuid import UUID

__all__ = ["RecentMessageIds", "SeenCheck", "SenderSeenCheck"]

SeenCheck = Callable[[UUID], Awaitable[bool]]
"""Has a message with this id been handled (committed) already?"""

SenderSeenCheck = Callable[[str, UUID], Awaitable[bool]]
"""Has this sender's message with this id been handled? (An inbox keyed by sender: another
agency sending the same id neither blocks nor is blocked by the real sender's message.)"""


class RecentMessageIds:
    """The default replay check: the last ``capacity`` handled message ids, in memory.

    An agent passes its store's inbox instead, which remembers across restarts and records the id in
    the same transaction as the handler's effects.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        self._ids: OrderedDict[tuple[str, UUID], None] = OrderedDict()
        self._capacity = capacity

    async def __call__(self, message_id: UUID, sender: str = "") -> bool:
        return self.seen(message_id, sender)

    def seen(self, message_id: UUID, sender: str = "") -> bool:
        return (sender, message_id) in self._ids

    def remember(self, message_id: UUID, sender: str = "") -> None:
        self._ids[(sender, message_id)] = None
        self._ids.move_to_end((sender, message_id))
        while len(self._ids) > self._capacity:
            self._ids.popitem(last=False)


def _replay_check(seen: SeenCheck | None, seen_from: SenderSeenCheck | None) -> SenderSeenCheck:
    """``seen_from`` (by sender and id); else ``seen`` (by id alone, as before)."""
    if seen_from is not None:
        return seen_from
    by_id = seen

    async def check(_sender: str, message_id: UUID) -> bool:
        return by_id is not None and await by_id(message_id)

    return check
