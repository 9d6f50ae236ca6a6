"""What every throwaway RabbitMQ cluster offers, whatever runs its nodes.

`BrokerCluster` is the interface of `broker.cluster.LocalCluster` (local ``rabbitmq-server``
processes) and `broker.container_cluster.ContainerCluster` (containers of the offline image): a
test takes nodes away (``stop``, ``kill``, ``pause``, ``resume``, ``restart``, ``stop_all``,
``start_nodes``), brings them back (``heal``) and reaches them (``amqp_url``, ``endpoint``,
``management``, ``leaders``), the same way on either. The addresses, the readiness wait and the
ways back are implemented here once; each variant says how to boot, signal and inspect one node.

Every node is reached on 127.0.0.1, its management API on its AMQP port + 10000 (RabbitMQ's
convention, what `broker.address` derives when no management URL is given).
"""

from __future__ import annotations

import contextlib
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import quote

import httpx
import structlog

from broker.management import ManagementClient
from broker.provider import BrokerEndpoint

__all__ = [
    "DEFAULT_NET_TICKTIME_S",
    "DEFAULT_PARTITION_HANDLING",
    "HEAL_PATIENCE_S",
    "READY_TIMEOUT_S",
    "BrokerCluster",
    "ClusterError",
    "ClusterMember",
    "NodeAddresses",
    "node_view",
]

log = structlog.get_logger("jiexu.broker.cluster")

READY_TIMEOUT_S = 180.0
HEAL_PATIENCE_S = 90.0
"""How long `BrokerCluster.heal` leaves RabbitMQ to mend a partition itself (autoheal restarts the
losing side) before it restarts, on their own data, the nodes that still do not see the cluster.
Seen here: autoheal after a frozen node took 66 s (the loser's stop waits out a 60 s timeout) and,
on a loaded machine, once never finished (every node's API timing out for minutes)."""
DEFAULT_PARTITION_HANDLING = "autoheal"
DEFAULT_NET_TICKTIME_S = 20
"""Erlang's distribution tick (default 60): a frozen peer is declared down after 0.75-1.25 of it.
Shorter here so a test's pause turns into a real partition within a bounded wait."""


class ClusterError(RuntimeError):
    """A node would not start, or the cluster would not form."""


class ClusterMember(Protocol):
    """One node of a cluster, as `BrokerCluster` uses it."""

    index: int
    amqp_port: int
    paused: bool
    username: str
    password: str

    @property
    def name(self) -> str: ...

    @property
    def short(self) -> str: ...

    @property
    def host(self) -> str: ...

    @property
    def management_url(self) -> str: ...

    @property
    def running(self) -> bool:
        """Its process (or container) exists, paused or not."""
        ...

    def management(self, timeout: float = 5.0) -> ManagementClient: ...


class _Addressed(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def host(self) -> str: ...

    @property
    def amqp_port(self) -> int: ...

    @property
    def management_url(self) -> str: ...

    @property
    def username(self) -> str: ...

    @property
    def password(self) -> str: ...


class NodeAddresses:
    """A node's URL, endpoint and management client, from its address (a mixin for node classes)."""

    def amqp_url(
        self: _Addressed, vhost: str = "/", username: str | None = None, password: str | None = None
    ) -> str:
        user = quote(username or self.username, safe="")
        pwd = quote(password if password is not None else self.password, safe="")
        return f"amqp://{user}:{pwd}@{self.host}:{self.amqp_port}/{quote(vhost, safe='')}"

    def endpoint(self: _Addressed) -> BrokerEndpoint:
        return BrokerEndpoint(
            host=self.host,
            amqp_port=self.amqp_port,
            management_url=self.management_url,
            username=self.username,
            password=self.password,
            source=f"cluster node {self.name}",
        )

    def management(self: _Addressed, timeout: float = 5.0) -> ManagementClient:
        return ManagementClient(self.management_url, self.username, self.password, timeout=timeout)


def node_view(node: ClusterMember) -> set[str] | str:
    """The names of the running nodes this node sees, or why it cannot say."""
    try:
        response = httpx.get(
            f"{node.management_url}/api/nodes",
            auth=(node.username, node.password),
            timeout=3.0,
        )
    except httpx.HTTPError as exc:
        return f"management API: {type(exc).__name__}"
    if response.status_code != 200:
        return f"HTTP {response.status_code}"
    return {n["name"] for n in response.json() if n.get("running")}


NodeT = TypeVar("NodeT", bound=ClusterMember)


class BrokerCluster(ABC, Generic[NodeT]):
    """N nodes forming one cluster; a subclass says how one node is booted, signalled, inspected."""

    nodes: list[NodeT]
    partition_handling: str

    # -- what each variant does ---------------------------------------------------------------------
    @abstractmethod
    def start(self, timeout_s: float = READY_TIMEOUT_S) -> BrokerCluster[NodeT]:
        """Boot every node at once and wait until each runs and all see each other; on failure,
        `close` and raise (`ClusterError` when a node would not start or the cluster not form)."""

    @abstractmethod
    def _boot(self, node: NodeT) -> None:
        """Start a node that does not run (on its own data: it rejoins the cluster)."""

    @abstractmethod
    def _failure(self, node: NodeT) -> str | None:
        """Why a node that should be booting is gone for good (exited, with its log), or None."""

    @property
    @abstractmethod
    def kind(self) -> str:
        """``local`` or ``docker``: what runs the nodes."""

    @abstractmethod
    def kill(self, which: int | str) -> NodeT:
        """SIGKILL the node: a crash, no clean shutdown."""

    @abstractmethod
    def stop(self, which: int | str, timeout_s: float = 60.0) -> NodeT:
        """Stop the node cleanly (SIGTERM: RabbitMQ shuts down in order); SIGKILL past the bound."""

    @abstractmethod
    def stop_all(self, timeout_s: float = 60.0) -> None:
        """Stop every node cleanly and at once."""

    @abstractmethod
    def pause(self, which: int | str) -> NodeT:
        """Freeze the node (its sockets stay open, nothing answers), as a stalled VM."""

    @abstractmethod
    def resume(self, which: int | str) -> NodeT:
        """Thaw a paused node."""

    @abstractmethod
    def close(self) -> None:
        """Remove every node and whatever was made for them: nothing is left behind."""

    @abstractmethod
    def log_lines(self, *needles: str) -> dict[str, list[str]]:
        """Lines of each node's RabbitMQ log containing any of ``needles`` (case-insensitive)."""

    # -- shared -----------------------------------------------------------------------------------
    def node(self, which: int | str) -> NodeT:
        """A node by index (0-based), short name (``c1``) or full node name."""
        if isinstance(which, int):
            return self.nodes[which]
        for node in self.nodes:
            if which in (node.short, node.name):
                return node
        raise KeyError(which)

    def running_nodes(self) -> list[NodeT]:
        return [n for n in self.nodes if n.running and not n.paused]

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S, nodes: Sequence[int] | None = None) -> None:
        """Wait until the given nodes (default: all) answer and each sees every running node."""
        wanted = [self.nodes[i] for i in (nodes if nodes is not None else range(len(self.nodes)))]
        deadline = time.monotonic() + timeout_s
        last = "not started"
        while time.monotonic() < deadline:
            for node in wanted:
                if (failure := self._failure(node)) is not None:
                    raise ClusterError(failure)
            missing = self._unready(wanted)
            if not missing:
                return
            last = "; ".join(f"{node.short}: {view}" for node, view in missing)
            time.sleep(0.5)
        raise ClusterError(f"cluster not ready after {timeout_s:.0f} s: {last}")

    def _unready(self, wanted: Sequence[NodeT]) -> list[tuple[NodeT, set[str] | str]]:
        """The nodes among ``wanted`` that do not answer or do not see every running node."""
        states = [node_view(node) for node in wanted]
        expected = {n.name for n in self.running_nodes()}
        return [
            (node, view)
            for node, view in zip(wanted, states, strict=True)
            if not isinstance(view, set) or not expected <= view
        ]

    def restart(self, which: int | str, timeout_s: float = READY_TIMEOUT_S) -> NodeT:
        """Start a stopped or killed node again on its own data, and wait until it rejoined."""
        node = self.node(which)
        if node.running:
            self.stop(which)
        self._boot(node)
        self.wait_ready(timeout_s, nodes=[node.index])
        return node

    def start_nodes(self, which: Sequence[int | str], timeout_s: float = READY_TIMEOUT_S) -> None:
        """Start several stopped nodes at once (after a whole-cluster stop: they wait for each other)."""
        chosen = [self.node(w) for w in which]
        for node in chosen:
            if not node.running:
                self._boot(node)
        self.wait_ready(timeout_s, nodes=[n.index for n in chosen])

    def heal(self, timeout_s: float = READY_TIMEOUT_S, patience_s: float = HEAL_PATIENCE_S) -> None:
        """Bring every node back (resume the paused, start the stopped) and wait for the cluster:
        what a session-wide fixture does between tests that take nodes away. A node that still
        does not see the whole cluster after ``patience_s`` (a partition RabbitMQ has not mended)
        is killed and started again on its own data, with every other such node at once."""
        for node in self.nodes:
            if node.paused:
                self.resume(node.index)
        for node in [n for n in self.nodes if not n.running]:
            self._boot(node)
        try:
            self.wait_ready(min(timeout_s, patience_s))
            return
        except ClusterError as exc:
            why = str(exc)
        stuck = [node for node, _ in self._unready(self.nodes)]
        if not stuck:
            return
        log.warning(
            "cluster_heal_restarting_nodes",
            nodes=[n.short for n in stuck],
            patience_s=patience_s,
            why=why,
        )
        # RabbitMQ did not mend it in time: restart the stuck nodes on their own data (all at once:
        # after a whole-cluster stop each waits for the others), as an operator would.
        for node in stuck:
            self.kill(node.index)
        self.start_nodes([n.index for n in stuck], timeout_s)

    @property
    def username(self) -> str:
        return self.nodes[0].username

    @property
    def password(self) -> str:
        return self.nodes[0].password

    def _chosen(self, order: Sequence[int] | None) -> list[NodeT]:
        return [self.nodes[i] for i in (order if order is not None else range(len(self.nodes)))]

    def amqp_url(
        self,
        vhost: str = "/",
        username: str | None = None,
        password: str | None = None,
        *,
        order: Sequence[int] | None = None,
    ) -> str:
        """One URL naming every node: ``amqp://u:p@127.0.0.1:P1,127.0.0.1:P2,.../vhost``.

        ``order`` lists node indexes in the order clients should try them (default: c1, c2...).
        """
        user = quote(username or self.username, safe="")
        pwd = quote(password if password is not None else self.password, safe="")
        hosts = ",".join(f"{n.host}:{n.amqp_port}" for n in self._chosen(order))
        return f"amqp://{user}:{pwd}@{hosts}/{quote(vhost, safe='')}"

    def management_urls(self) -> list[str]:
        return [n.management_url for n in self.nodes]

    def endpoint(self, order: Sequence[int] | None = None) -> BrokerEndpoint:
        """The cluster as a `BrokerEndpoint`: every node's AMQP address and management API, in
        ``order`` (node indexes; default c1, c2...): clients try them in that order."""
        chosen = self._chosen(order)
        first = chosen[0]
        return BrokerEndpoint(
            host=first.host,
            amqp_port=first.amqp_port,
            management_url=first.management_url,
            username=first.username,
            password=first.password,
            source=f"{self.kind} cluster of {len(self.nodes)} nodes",
            more_hosts=tuple((n.host, n.amqp_port) for n in chosen[1:]),
            more_management_urls=tuple(n.management_url for n in chosen[1:]),
        )

    def management(self, timeout: float = 5.0) -> ManagementClient:
        """A management client that uses whichever node answers."""
        return self.endpoint().management(timeout=timeout)

    def leaders(self, vhost: str) -> dict[str, str]:
        """Queue name -> the node leading it, as any running node's management API says."""
        for node in self.running_nodes():
            with contextlib.suppress(Exception), node.management() as api:
                return {q["name"]: q.get("leader") or q.get("node", "") for q in api.list_queues(vhost)}
        raise ClusterError("no node's management API answers")

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "nodes": [
                {
                    "name": n.name,
                    "amqp_port": n.amqp_port,
                    "management_url": n.management_url,
                    "running": n.running,
                    "paused": n.paused,
                }
                for n in self.nodes
            ],
            "partition_handling": self.partition_handling,
        }
