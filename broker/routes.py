"""Is there an inbox to deliver to? A check the relay makes before it publishes to an agency.

The exchange sends what no binding routes to its alternate exchange (``jiexu.unroutable``), where
the publisher's confirm says nothing of it: a letter to an agency whose inbox was never declared
(the directory lists it, the broker does not) would sit there unseen while its case waits. So
before publishing to a recipient the relay asks, with a *passive* ``queue.declare`` of the
recipient's inbox (it needs no permission on that queue), whether it exists. The answer is
cached: an inbox found is not asked about again for ``found_ttl_s``; one missing is asked about
again after ``missing_ttl_s``. A missing inbox closes the channel the question was asked on (the
broker's ``NOT_FOUND``), so each miss opens a new one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aio_pika.abc import AbstractRobustChannel
from aio_pika.exceptions import ChannelNotFoundEntity

from broker.connection import BrokerConnection
from broker.names import inbox_queue

__all__ = ["InboxCheck"]


class InboxCheck:
    """``await check.exists(code)``: does agency `code`'s inbox exist on the broker?"""

    def __init__(
        self,
        connection: BrokerConnection,
        *,
        found_ttl_s: float = 300.0,
        missing_ttl_s: float = 5.0,
        timeout_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._connection = connection
        self._found_ttl_s = found_ttl_s
        self._missing_ttl_s = missing_ttl_s
        self._clock = clock
        self._timeout_s = timeout_s
        self._known: dict[str, tuple[bool, float]] = {}
        self._channel: AbstractRobustChannel | None = None
        # One question at a time: a round of many rows to one recipient asks once, and a miss
        # (which closes the channel) cannot break another question in flight.
        self._asking = asyncio.Lock()

    async def exists(self, code: str) -> bool:
        """Raises what the broker connection raises when it cannot ask (an outage), or
        `TimeoutError` when the broker does not answer within ``timeout_s``."""
        known = self._known.get(code)
        if known is not None and known[1] > self._clock():
            return known[0]
        async with self._asking:
            known = self._known.get(code)
            if known is not None and known[1] > self._clock():
                return known[0]
            found = await self._ask(code)
            ttl = self._found_ttl_s if found else self._missing_ttl_s
            self._known[code] = (found, self._clock() + ttl)
            return found

    def forget(self, code: str) -> None:
        """Ask again next time (e.g. after the broker returned a message for `code`)."""
        self._known.pop(code, None)

    async def _ask(self, code: str) -> bool:
        # Bounded: a stalled node never answers; the caller counts a failed publish and retries.
        async with asyncio.timeout(self._timeout_s):
            return await self._ask_now(code)

    async def _ask_now(self, code: str) -> bool:
        if self._channel is None or self._channel.is_closed:
            if self._channel is not None:
                self._connection.forget(self._channel)
            self._channel = await self._connection.channel(confirms=False)
        try:
            await self._channel.get_queue(inbox_queue(code), ensure=True)
        except ChannelNotFoundEntity:
            self._connection.forget(self._channel)
            self._channel = None
            return False
        return True
