"""A throwaway RabbitMQ cluster of local ``rabbitmq-server`` nodes, for tests, the demo and the bench.

`LocalCluster` starts N nodes (3 by default) side by side on this machine, each with its own node
name, free ports (AMQP, management, Erlang distribution) and directories under one temporary
directory, sharing one Erlang cookie. The nodes are started **in parallel** and form the cluster on
their own through the ``classic_config`` peer discovery backend (every node lists every node; since
3.8.18 the nodes take an internal lock, so parallel boots form one cluster, not two). Nothing is
joined by hand, which is what makes startup as short as one node's boot.

A test can then stop (SIGTERM: a clean shutdown), kill (SIGKILL), pause (SIGSTOP), resume
(SIGCONT) and restart a node; `close` kills every node and removes the directory. One node (its
ports, directory, configuration and process) is `broker.cluster_nodes`; this module assembles the
cluster and re-exports `ClusterNode` and `ClusterError`.

Partition handling is ``autoheal``. With quorum queues (everything jiexu declares on a cluster is
one, see `broker.topology`) messages are replicated by Raft, which makes progress only in a
majority whatever the Mnesia partition strategy is; the strategy decides how the *metadata*
(Mnesia: exchanges, bindings, users) recovers. A node frozen by SIGSTOP and resumed never sees
itself in a minority, so ``pause_minority`` leaves the cluster partitioned until an operator
restarts it, while ``autoheal`` picks a winner once every node is reachable again and restarts
the losers. RabbitMQ's own guidance for 3.10 (docs/operations-cluster.md quotes the measurements).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from broker.cluster_base import (
    DEFAULT_NET_TICKTIME_S,
    DEFAULT_PARTITION_HANDLING,
    READY_TIMEOUT_S,
    BrokerCluster,
    ClusterError,
)
from broker.cluster_nodes import (
    ClusterNode,
    node_ports,
    reap_node,
    signal_node,
    spawn_node,
    write_node_config,
)
from broker.provider import ProvidedBroker, _rabbitmq_server_binary

__all__ = [
    "CLUSTER_KINDS",
    "DEFAULT_NET_TICKTIME_S",
    "DEFAULT_PARTITION_HANDLING",
    "AnyCluster",
    "BrokerCluster",
    "ClusterError",
    "ClusterNode",
    "LocalCluster",
    "acquire_cluster",
    "cluster_kind",
    "create_cluster",
    "local_cluster",
    "started_cluster",
]

log = structlog.get_logger("jiexu.broker.cluster")

CLUSTER_KINDS = ("local", "docker")


@dataclass
class LocalCluster(BrokerCluster[ClusterNode]):
    """N local nodes forming one cluster. Use `local_cluster` (a context manager) or `start`/`close`."""

    nodes: list[ClusterNode]
    base: Path
    binary: str
    partition_handling: str = DEFAULT_PARTITION_HANDLING
    net_ticktime_s: int = DEFAULT_NET_TICKTIME_S
    cookie: str = field(default_factory=lambda: secrets.token_hex(16), repr=False)

    # -- making one -------------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        size: int = 3,
        *,
        binary: str | None = None,
        partition_handling: str = DEFAULT_PARTITION_HANDLING,
        net_ticktime_s: int = DEFAULT_NET_TICKTIME_S,
        base: Path | None = None,
    ) -> LocalCluster:
        """Choose names, ports and directories (nothing runs yet; `start` boots the nodes)."""
        if size < 1:
            raise ValueError("a cluster has at least one node")
        found = binary or _rabbitmq_server_binary(os.environ)
        if found is None:
            raise ClusterError(
                "no rabbitmq-server executable found: install it (Debian: `apt-get install "
                "rabbitmq-server`) or set JIEXU_RABBITMQ_SERVER"
            )
        base = base or Path(tempfile.mkdtemp(prefix="jiexu-cluster-"))
        tag = uuid.uuid4().hex[:6]
        nodes = [
            ClusterNode(
                index=i,
                name=f"jiexu{tag}c{i + 1}@localhost",
                amqp_port=amqp,
                management_port=management,
                dist_port=dist,
                base=base / f"c{i + 1}",
            )
            for i, (amqp, management, dist) in enumerate(node_ports(size))
        ]
        return cls(
            nodes=nodes,
            base=base,
            binary=found,
            partition_handling=partition_handling,
            net_ticktime_s=net_ticktime_s,
        )

    def _prepare(self) -> None:
        cookie = self.base / ".erlang.cookie"
        if not cookie.exists():
            self.base.mkdir(parents=True, exist_ok=True)
            cookie.write_text(self.cookie)
            cookie.chmod(0o400)
        peers = "".join(
            f"cluster_formation.classic_config.nodes.{n.index + 1} = {n.name}\n" for n in self.nodes
        )
        for node in self.nodes:
            write_node_config(
                node,
                peers=peers,
                partition_handling=self.partition_handling,
                net_ticktime_s=self.net_ticktime_s,
            )

    def _boot(self, node: ClusterNode) -> None:
        spawn_node(node, self.binary, self.base)

    def _failure(self, node: ClusterNode) -> str | None:
        if node.process is not None and node.process.poll() is not None:
            return f"{node.name} exited with {node.process.returncode}:\n{node.log_tail()}"
        return None

    @property
    def kind(self) -> str:
        return "local"

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self, timeout_s: float = READY_TIMEOUT_S) -> LocalCluster:
        """Boot every node at once and wait until each runs and all see each other."""
        self._prepare()
        started = time.monotonic()
        try:
            for node in self.nodes:
                self._boot(node)
            self.wait_ready(timeout_s)
        except BaseException:
            self.close()
            raise
        log.info(
            "cluster_started",
            nodes=[n.name for n in self.nodes],
            seconds=round(time.monotonic() - started, 1),
            partition_handling=self.partition_handling,
        )
        return self

    def kill(self, which: int | str) -> ClusterNode:
        """SIGKILL the node's whole process group: a crash, no clean shutdown."""
        node = self.node(which)
        if node.paused:
            signal_node(node, signal.SIGCONT)  # a stopped process dies on SIGKILL anyway
        signal_node(node, signal.SIGKILL)
        reap_node(node, 30)
        return node

    def stop(self, which: int | str, timeout_s: float = 60.0) -> ClusterNode:
        """Stop the node cleanly (SIGTERM: RabbitMQ shuts down in order); SIGKILL past the bound."""
        node = self.node(which)
        if node.paused:
            self.resume(which)
        if node.running:
            signal_node(node, signal.SIGTERM)
        reap_node(node, timeout_s)
        return node

    def stop_all(self, timeout_s: float = 60.0) -> None:
        """Stop every node cleanly and at once (SIGTERM to all, then wait for each)."""
        for node in self.nodes:
            if node.paused:
                self.resume(node.index)
            if node.running:
                signal_node(node, signal.SIGTERM)
        for node in self.nodes:
            reap_node(node, timeout_s)

    def pause(self, which: int | str) -> ClusterNode:
        """SIGSTOP: the node freezes (its sockets stay open, nothing answers), as a stalled VM."""
        node = self.node(which)
        signal_node(node, signal.SIGSTOP)
        node.paused = True
        return node

    def resume(self, which: int | str) -> ClusterNode:
        node = self.node(which)
        signal_node(node, signal.SIGCONT)
        node.paused = False
        return node

    def close(self) -> None:
        """Kill every node and remove every directory: nothing is left behind."""
        for node in self.nodes:
            if node.process is not None:
                with contextlib.suppress(Exception):
                    if node.paused:
                        signal_node(node, signal.SIGCONT)
                    signal_node(node, signal.SIGKILL)
                with contextlib.suppress(Exception):
                    reap_node(node, 30)
        shutil.rmtree(self.base, ignore_errors=True)

    def log_lines(self, *needles: str) -> dict[str, list[str]]:
        """Lines of each node's RabbitMQ log containing any of ``needles`` (case-insensitive):
        what a test reports about partitions and autoheal."""
        found: dict[str, list[str]] = {}
        lowered = [n.lower() for n in needles]
        for node in self.nodes:
            lines: list[str] = []
            for path in sorted((node.base / "log").glob("*.log")):
                with contextlib.suppress(OSError):
                    for line in path.read_text(errors="replace").splitlines():
                        if any(n in line.lower() for n in lowered):
                            lines.append(line)
            found[node.short] = lines
        return found


@contextlib.contextmanager
def local_cluster(size: int = 3, **options: Any) -> Iterator[LocalCluster]:
    """A started `LocalCluster`, closed (every node killed, every directory removed) on exit."""
    cluster = LocalCluster.create(size, **options)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.close()


AnyCluster = BrokerCluster[Any]
"""A `LocalCluster` or a `broker.container_cluster.ContainerCluster`."""


def cluster_kind(env: Mapping[str, str] | None = None) -> str:
    """What runs the nodes: ``JIEXU_CLUSTER`` (``local`` or ``docker``); unset, ``local`` where a
    ``rabbitmq-server`` executable is found, else ``docker``."""
    env = os.environ if env is None else env
    chosen = env.get("JIEXU_CLUSTER", "").strip().lower()
    if chosen:
        if chosen not in CLUSTER_KINDS:
            raise ClusterError(f"JIEXU_CLUSTER is local or docker, not {chosen!r}")
        return chosen
    return "local" if _rabbitmq_server_binary(env) is not None else "docker"


def create_cluster(size: int = 3, kind: str | None = None, **options: Any) -> AnyCluster:
    """A cluster of ``size`` nodes, not started, of ``kind`` (default: `cluster_kind`). Options
    shared by both: ``partition_handling``, ``net_ticktime_s``; ``image`` for docker only."""
    kind = kind or cluster_kind()
    if kind == "docker":
        from broker.container_cluster import ContainerCluster

        return ContainerCluster.create(size, **options)
    if kind != "local":
        raise ClusterError(f"a cluster is local or docker, not {kind!r}")
    return LocalCluster.create(size, **options)


@contextlib.contextmanager
def started_cluster(size: int = 3, kind: str | None = None, **options: Any) -> Iterator[AnyCluster]:
    """A started cluster of ``kind`` (default: `cluster_kind`), closed on exit."""
    cluster = create_cluster(size, kind, **options)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.close()


def acquire_cluster(size: int = 3, kind: str | None = None, **options: Any) -> ProvidedBroker:
    """A started cluster (`LocalCluster`, or containers with ``JIEXU_CLUSTER=docker``) as a
    `ProvidedBroker` (``jiexu demo --cluster N``): its endpoint names every node; ``close()``
    removes the nodes and whatever was made for them."""
    cluster = create_cluster(size, kind, **options)
    cluster.start()
    provided = ProvidedBroker(cluster.endpoint())
    provided._closers.append(cluster.close)
    return provided
