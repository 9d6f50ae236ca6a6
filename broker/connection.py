"""One robust AMQP connection per process role, with reconnect backoff and strong references.

aio-pika's `RobustConnection` re-opens channels, re-declares (passively, for the agency user) the
queues it knows and re-starts their consumers after the broker drops the connection. Two things it
leaves to us, which this module adds:

* **Backoff.** aio-pika waits a fixed ``reconnect_interval`` between attempts. A fleet of agents
  hammering a broker that is restarting makes the restart slower, so the wait here grows with the
  time the connection has been down (half of it, between a floor and a ceiling).
* **Strong references.** aio-pika keeps its channels in a `WeakSet`; a channel nobody references is
  garbage-collected and silently never restored, taking its consumers with it. `BrokerConnection`
  owns every channel it hands out until it is closed.
"""

from __future__ import annotations

import asyncio
import random
from types import TracebackType
from typing import Any

import aio_pika
import structlog
from aio_pika.abc import AbstractRobustChannel
from aio_pika.robust_connection import RobustConnection
from yarl import URL

from broker.tls import check_amqp_url

__all__ = ["BackoffRobustConnection", "BrokerConnection", "connect"]

log = structlog.get_logger("jiexu.broker.connection")

DEFAULT_RECONNECT_FLOOR_S = 0.5
DEFAULT_RECONNECT_CEILING_S = 30.0


class BackoffRobustConnection(RobustConnection):
    """A `RobustConnection` whose reconnect wait grows with the time the broker has been away.

    The wait is a pure function of state (read several times per attempt by aio-pika's logging and
    its sleep), so it is computed from the moment the connection was lost rather than counted.
    """

    reconnect_floor_s: float = DEFAULT_RECONNECT_FLOOR_S
    reconnect_ceiling_s: float = DEFAULT_RECONNECT_CEILING_S

    def __init__(self, url: URL, loop: asyncio.AbstractEventLoop | None = None, **kwargs: Any):
        self._lost_at: float | None = None
        # A per-process jitter factor spreads a fleet's reconnects apart.
        self._jitter = 1.0 + random.uniform(0.0, 0.25)
        super().__init__(url, loop=loop, **kwargs)

    @property
    def reconnect_interval(self) -> float:
        if self._lost_at is None:
            return self.reconnect_floor_s
        down_for = self.loop.time() - self._lost_at
        return min(self.reconnect_ceiling_s, max(self.reconnect_floor_s, down_for / 2)) * (
            self._jitter
        )

    @reconnect_interval.setter
    def reconnect_interval(self, value: float) -> None:
        # aio-pika assigns the URL's ``reconnect_interval`` here; it becomes the floor.
        self.reconnect_floor_s = float(value)

    async def _on_connection_close(self, closing: asyncio.Future[Any]) -> None:
        if self._lost_at is None and not self._close_called:
            self._lost_at = self.loop.time()
            log.warning("amqp_connection_lost", connection=str(self))
        await super()._on_connection_close(closing)

    async def _on_connected(self) -> None:
        await super()._on_connected()
        if self._lost_at is not None:
            log.info(
                "amqp_connection_restored",
                connection=str(self),
                down_for_s=round(self.loop.time() - self._lost_at, 2),
            )
        self._lost_at = None


class BrokerConnection:
    """A robust connection and the channels opened on it, kept alive until `close`.

    ``user`` is the broker user of the connection: the only value the broker accepts in the
    ``user_id`` property of what this connection publishes.
    """

    def __init__(self, raw: aio_pika.abc.AbstractRobustConnection, user: str, name: str) -> None:
        self.raw = raw
        self.user = user
        self.name = name
        self._channels: list[AbstractRobustChannel] = []

    async def channel(
        self, *, prefetch: int | None = None, confirms: bool = True
    ) -> AbstractRobustChannel:
        """Open a channel this object keeps a strong reference to; QoS is restored on reconnect."""
        channel = self.raw.channel(publisher_confirms=confirms, on_return_raises=confirms)
        await channel.initialize()
        assert isinstance(channel, AbstractRobustChannel)
        if prefetch is not None:
            await channel.set_qos(prefetch_count=prefetch)
        self._channels.append(channel)
        return channel

    def forget(self, channel: AbstractRobustChannel) -> None:
        """Drop the strong reference to a channel its owner has closed."""
        if channel in self._channels:
            self._channels.remove(channel)

    @property
    def is_closed(self) -> bool:
        return self.raw.is_closed

    async def ready(self) -> None:
        """Wait until the connection is up (after a reconnect, until it is restored)."""
        await self.raw.ready()

    async def close(self) -> None:
        for channel in reversed(self._channels):
            if not channel.is_closed:
                try:
                    await channel.close()
                except Exception as exc:  # closing is best effort
                    log.debug("amqp_channel_close_failed", error=repr(exc))
        self._channels.clear()
        await self.raw.close()
        await _let_client_tasks_finish()

    async def __aenter__(self) -> BrokerConnection:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def _let_client_tasks_finish(rounds: int = 20) -> None:
    """Give aiormq's own closing tasks a few loop turns to end.

    Closing returns while aiormq still has a writer-closing task scheduled; when the caller is
    ``asyncio.run`` that task is destroyed pending and warns on stderr (and at garbage collection).
    """
    for _ in range(rounds):
        pending = [task for task in asyncio.all_tasks() if _is_client_task(task)]
        if not pending:
            return
        await asyncio.sleep(0)


def _is_client_task(task: asyncio.Task[Any]) -> bool:
    if task.done():
        return False
    code = getattr(task.get_coro(), "cr_code", None)
    return code is not None and "aiormq" in code.co_filename


async def connect(
    url: str,
    *,
    name: str = "jiexu",
    reconnect_floor_s: float = DEFAULT_RECONNECT_FLOOR_S,
    reconnect_ceiling_s: float = DEFAULT_RECONNECT_CEILING_S,
    connect_timeout_s: float = 30.0,
) -> BrokerConnection:
    """Connect robustly to ``url``; ``name`` shows in the management UI as the connection name.

    The first connection fails fast (a wrong password should not hang a process); after that the
    connection reconnects on its own with backoff.
    """
    parsed = URL(check_amqp_url(url))
    raw = await aio_pika.connect_robust(
        url,
        timeout=connect_timeout_s,
        client_properties={"connection_name": name},
        connection_class=BackoffRobustConnection,
        reconnect_interval=reconnect_floor_s,
    )
    assert isinstance(raw, BackoffRobustConnection)
    raw.reconnect_ceiling_s = reconnect_ceiling_s
    user = parsed.user or "guest"
    log.info("amqp_connected", connection_name=name, user=user, host=parsed.host)
    return BrokerConnection(raw, user=user, name=name)

