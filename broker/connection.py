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
* **Several nodes.** The URL may name every node of a cluster (`broker.address`). The first
  connection tries them in order; after a loss the connection moves to the next node at once,
  tries each node once without waiting, and only then backs off. A node that stalls (SIGSTOP, a
  frozen VM) is found by the heartbeat (5 s unless the URL says otherwise: dead after 18 s without
  a frame) or by a publisher whose confirm does not come (`BrokerConnection.abandon`), and left
  for another node. Closing is bounded: a frozen node cannot hold a process that is stopping.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from types import TracebackType
from typing import Any

import aio_pika
import aiormq
import structlog
from aio_pika.abc import AbstractRobustChannel
from aio_pika.robust_connection import RobustConnection
from yarl import URL

from broker.address import DEFAULT_HEARTBEAT_S, parse_broker_url
from broker.tls import check_amqp_url

__all__ = ["BackoffRobustConnection", "BrokerConnection", "BrokerUnreachable", "connect"]

log = structlog.get_logger("jiexu.broker.connection")

DEFAULT_RECONNECT_FLOOR_S = 0.5
DEFAULT_RECONNECT_CEILING_S = 5.0
"""A node back from a restart is found within 5 s (the issue measured 30 s of waiting after its
return with a 30 s ceiling); the other nodes of a cluster are tried before any wait at all."""
DEFAULT_ATTEMPT_TIMEOUT_S = 5.0
"""One connection attempt to one node: a frozen node accepts TCP and then says nothing."""
CLOSE_TIMEOUT_S = 5.0
NEXT_NODE_DELAY_S = 0.05


class _ReconnectNoiseAsWarning(logging.Filter):
    """aiormq and aio-pika log the routine events of a lost connection at ERROR: each failed
    connection attempt, the broker closing connections on shutdown, and the robust channels'
    close callbacks failing because the transport is gone. With several nodes these are routine
    (the next node is tried at once) and the outage itself is reported once by
    `amqp_connection_lost` / `amqp_connection_restored`. Such records are kept, as warnings
    without a traceback; every other error stays an error."""

    _PREFIXES = (
        "error when creating transport",
        "Reconnect attempt failed",
        "Unexpected connection close from remote",
    )

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR:
            return True
        text = str(record.msg)
        routine = text.startswith(self._PREFIXES) or (
            text.startswith("Callback %r error") and "RobustChannel._on_close" in record.getMessage()
        )
        if routine:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text = None, None
        return True


for _name in ("aiormq.connection", "aio_pika.robust_connection", "aio_pika.tools"):
    logging.getLogger(_name).addFilter(_ReconnectNoiseAsWarning())


class BrokerUnreachable(ConnectionError):
    """No node of the broker accepted a connection; the message lists each node's error."""


class BackoffRobustConnection(RobustConnection):
    """A `RobustConnection` whose reconnect wait grows with the time the broker has been away.

    The wait is a pure function of state (read several times per attempt by aio-pika's logging and
    its sleep), so it is computed from the moment the connection was lost rather than counted.
    """

    reconnect_floor_s: float = DEFAULT_RECONNECT_FLOOR_S
    reconnect_ceiling_s: float = DEFAULT_RECONNECT_CEILING_S

    def __init__(self, url: URL, loop: asyncio.AbstractEventLoop | None = None, **kwargs: Any):
        self._lost_at: float | None = None
        self._failures = 0
        self.node_urls: list[URL] = [URL(url)]
        self.node_index = 0
        # A per-process jitter factor spreads a fleet's reconnects apart.
        self._jitter = 1.0 + random.uniform(0.0, 0.25)
        super().__init__(url, loop=loop, **kwargs)

    def use_nodes(self, urls: list[URL], index: int) -> None:
        """Every node of the cluster, and the one this connection is on now."""
        self.node_urls = list(urls)
        self.node_index = index
        self.url = self.node_urls[index]

    def _next_node(self) -> None:
        if len(self.node_urls) > 1:
            self.node_index = (self.node_index + 1) % len(self.node_urls)
            self.url = self.node_urls[self.node_index]

    @property
    def reconnect_interval(self) -> float:
        if self._lost_at is None:
            return self.reconnect_floor_s
        if self._failures % len(self.node_urls):
            return NEXT_NODE_DELAY_S  # other nodes not yet tried in this round: no wait
        down_for = self.loop.time() - self._lost_at
        return min(self.reconnect_ceiling_s, max(self.reconnect_floor_s, down_for / 2)) * (
            self._jitter
        )

    @reconnect_interval.setter
    def reconnect_interval(self, value: float) -> None:
        # aio-pika assigns the URL's ``reconnect_interval`` here; it becomes the floor.
        self.reconnect_floor_s = float(value)

    async def _on_connection_close(self, closing: asyncio.Future[Any]) -> None:
        # Called when an established connection is lost and when an attempt fails: either way
        # the next attempt goes to the next node.
        if not self._close_called and self.connection_attempt > 0:  # once connected at all
            if self._lost_at is None:
                self._lost_at = self.loop.time()
                log.warning("amqp_connection_lost", connection=str(self), error=_reason(closing))
            self._failures += 1
            self._next_node()
        await super()._on_connection_close(closing)

    async def _on_connected(self) -> None:
        await super()._on_connected()
        if self._lost_at is not None:
            # A warning, not an error: the outage (warned about once) is over.
            log.warning(
                "amqp_connection_restored",
                connection=str(self),
                down_for_s=round(self.loop.time() - self._lost_at, 2),
                attempts=self._failures,
            )
        self._lost_at = None
        self._failures = 0


def _reason(closing: asyncio.Future[Any]) -> str | None:
    if not closing.done() or closing.cancelled():
        return None
    exc = closing.exception()
    return repr(exc) if exc is not None else None


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
        self._abandoning: asyncio.Task[None] | None = None

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

    @property
    def node(self) -> str:
        """host:port of the node this connection is on (or tries next)."""
        url: URL | None = getattr(self.raw, "url", None)
        return f"{url.host}:{url.port}" if url is not None else "?"

    def abandon(self, reason: str) -> None:
        """Drop the current transport so the connection moves to another node (a publish whose
        confirm never came: the node stalled, or lost its quorum). Idempotent while it runs."""
        if self._abandoning is not None and not self._abandoning.done():
            return
        transport = self.raw.transport
        if transport is None or self.raw.is_closed:
            return
        log.warning("amqp_connection_abandoned", node=self.node, reason=reason)
        self._abandoning = asyncio.create_task(
            _bounded(
                transport.connection.close(ConnectionError(f"abandoned: {reason}")),
                CLOSE_TIMEOUT_S,
                "abandon",
            ),
            name="amqp-abandon",
        )

    async def close(self) -> None:
        """Close the channels and the connection, each within a bound (a frozen node never
        answers a close): what is unconfirmed stays in the caller's outbox for the next start."""
        for channel in reversed(self._channels):
            if not channel.is_closed:
                await _bounded(channel.close(), CLOSE_TIMEOUT_S, "channel_close")
        self._channels.clear()
        if self._abandoning is not None and not self._abandoning.done():
            await asyncio.gather(self._abandoning, return_exceptions=True)
        await _bounded(self.raw.close(), CLOSE_TIMEOUT_S, "connection_close")
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


async def _bounded(awaitable: Any, seconds: float, what: str) -> None:
    """Await a closing step for at most ``seconds``; failures and timeouts are logged at debug:
    closing is best effort and must never hold a process that is stopping."""
    try:
        await asyncio.wait_for(awaitable, seconds)
    except TimeoutError:
        log.warning("amqp_close_timed_out", step=what, timeout_s=seconds)
    except Exception as exc:
        log.debug("amqp_close_failed", step=what, error=repr(exc))


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


_FATAL_CONNECT_ERRORS: tuple[type[BaseException], ...] = (
    aiormq.exceptions.ProbableAuthenticationError,
    aiormq.exceptions.AuthenticationError,
)


async def connect(
    url: str,
    *,
    name: str = "jiexu",
    reconnect_floor_s: float = DEFAULT_RECONNECT_FLOOR_S,
    reconnect_ceiling_s: float = DEFAULT_RECONNECT_CEILING_S,
    connect_timeout_s: float = 30.0,
    attempt_timeout_s: float = DEFAULT_ATTEMPT_TIMEOUT_S,
) -> BrokerConnection:
    """Connect robustly to ``url``; ``name`` shows in the management UI as the connection name.

    ``url`` may name several nodes (``amqp://u:p@h1:p1,h2:p2/vh``, see `broker.address`): they are
    tried in order, each for at most ``attempt_timeout_s``, until one accepts (within
    ``connect_timeout_s`` overall). A wrong password fails at once, on any node; no node answering
    raises `BrokerUnreachable` naming each node's error. After that the connection reconnects on
    its own, to the next node first.
    """
    address = parse_broker_url(check_amqp_url(url))
    if "heartbeat=" not in address.query:
        query = f"heartbeat={DEFAULT_HEARTBEAT_S}"
        address = dataclasses.replace(
            address, query=f"{address.query}&{query}" if address.query else query
        )
    node_urls = [URL(u) for u in address.node_urls()]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + connect_timeout_s
    errors: list[str] = []
    raw: BackoffRobustConnection | None = None
    index = 0
    for attempt, node_url in enumerate(node_urls):
        remaining = deadline - loop.time()
        if remaining <= 0:
            errors.append(f"{node_url.host}:{node_url.port}: not tried (connect timeout)")
            continue
        try:
            connected = await aio_pika.connect_robust(
                node_url,
                timeout=min(attempt_timeout_s, remaining)
                if len(node_urls) > 1
                else min(connect_timeout_s, remaining),
                client_properties={"connection_name": name},
                connection_class=BackoffRobustConnection,
                reconnect_interval=reconnect_floor_s,
            )
        except _FATAL_CONNECT_ERRORS:
            raise
        except (TimeoutError, ConnectionError, OSError, aiormq.exceptions.AMQPError) as exc:
            errors.append(f"{node_url.host}:{node_url.port}: {type(exc).__name__} {exc}".strip())
            continue
        assert isinstance(connected, BackoffRobustConnection)
        raw, index = connected, attempt
        break
    if raw is None:
        raise BrokerUnreachable(
            f"no broker node accepted a connection ({address.redacted()}): " + "; ".join(errors)
        )
    raw.reconnect_ceiling_s = reconnect_ceiling_s
    raw.use_nodes(node_urls, index)
    if errors:
        log.warning("amqp_nodes_skipped", connection_name=name, errors=errors)
    log.info(
        "amqp_connected",
        connection_name=name,
        user=address.username,
        host=node_urls[index].host,
        port=node_urls[index].port,
        nodes=len(node_urls),
    )
    return BrokerConnection(raw, user=address.username, name=name)
