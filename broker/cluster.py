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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import structlog

from broker.cluster_nodes import (
    ClusterError,
    ClusterNode,
    node_ports,
    node_view,
    reap_node,
    signal_node,
    spawn_node,
    write_node_config,
)
from broker.management import ManagementClient
from broker.provider import BrokerEndpoint, ProvidedBroker, _rabbitmq_server_binary

__all__ = [
    "DEFAULT_NET_TICKTIME_S",
    "DEFAULT_PARTITION_HANDLING",
    "ClusterError",
    "ClusterNode",
    "LocalCluster",
    "acquire_cluster",
    "local_cluster",
]

log = structlog.get_logger("jiexu.broker.cluster")

DEFAULT_PARTITION_HANDLING = "autoheal"
DEFAULT_NET_TICKTIME_S = 20
"""Erlang's distribution tick (default 60): a frozen peer is declared down after 0.75-1.25 of it.
Shorter here so a test's pause turns into a real partition within a bounded wait."""
READY_TIMEOUT_S = 180.0


@dataclass
class LocalCluster:
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

    def _spawn(self, node: ClusterNode) -> None:
        spawn_node(node, self.binary, self.base)

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self, timeout_s: float = READY_TIMEOUT_S) -> LocalCluster:
        """Boot every node at once and wait until each runs and all see each other."""
        self._prepare()
        started = time.monotonic()
        try:
            for node in self.nodes:
                self._spawn(node)
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

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S, nodes: Sequence[int] | None = None) -> None:
        """Wait until the given nodes (default: all) answer and each sees every running node."""
        wanted = [self.nodes[i] for i in (nodes if nodes is not None else range(len(self.nodes)))]
        deadline = time.monotonic() + timeout_s
        last = "not started"
        while time.monotonic() < deadline:
            for node in wanted:
                if node.process is not None and node.process.poll() is not None:
                    raise ClusterError(
                        f"{node.name} exited with {node.process.returncode}:\n{node.log_tail()}"
                    )
            states = [node_view(node) for node in wanted]
            expected = {n.name for n in self.nodes if n.running and not n.paused}
            missing = [
                (node.short, view)
                for node, view in zip(wanted, states, strict=True)
                if not isinstance(view, set) or not expected <= view
            ]
            if not missing:
                return
            last = "; ".join(f"{short}: {view}" for short, view in missing)
            time.sleep(0.5)
        raise ClusterError(f"cluster not ready after {timeout_s:.0f} s: {last}")

    def running_nodes(self) -> list[ClusterNode]:
        return [n for n in self.nodes if n.running and not n.paused]

    def node(self, which: int | str) -> ClusterNode:
        """A node by index (0-based), short name (``c1``) or full node name."""
        if isinstance(which, int):
            return self.nodes[which]
        for node in self.nodes:
            if which in (node.short, node.name):
                return node
        raise KeyError(which)

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

    def restart(self, which: int | str, timeout_s: float = READY_TIMEOUT_S) -> ClusterNode:
        """Start a stopped or killed node again on its own directory, and wait until it rejoined."""
        node = self.node(which)
        if node.running:
            self.stop(which)
        self._spawn(node)
        self.wait_ready(timeout_s, nodes=[node.index])
        return node

    def start_nodes(self, which: Sequence[int | str], timeout_s: float = READY_TIMEOUT_S) -> None:
        """Start several stopped nodes at once (after a whole-cluster stop: they wait for each other)."""
        chosen = [self.node(w) for w in which]
        for node in chosen:
            if not node.running:
                self._spawn(node)
        self.wait_ready(timeout_s, nodes=[n.index for n in chosen])

    def heal(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Bring every node back (resume the paused, start the stopped) and wait for the cluster:
        what a session-wide fixture does between tests that take nodes away."""
        for node in self.nodes:
            if node.paused:
                self.resume(node.index)
        stopped = [n.index for n in self.nodes if not n.running]
        for index in stopped:
            self._spawn(self.nodes[index])
        self.wait_ready(timeout_s)

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

    # -- addresses --------------------------------------------------------------------------------
    @property
    def username(self) -> str:
        return self.nodes[0].username

    @property
    def password(self) -> str:
        return self.nodes[0].password

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
        chosen = [self.nodes[i] for i in (order if order is not None else range(len(self.nodes)))]
        hosts = ",".join(f"127.0.0.1:{n.amqp_port}" for n in chosen)
        return f"amqp://{user}:{pwd}@{hosts}/{quote(vhost, safe='')}"

    def management_urls(self) -> list[str]:
        return [n.management_url for n in self.nodes]

    def endpoint(self, order: Sequence[int] | None = None) -> BrokerEndpoint:
        """The cluster as a `BrokerEndpoint`: every node's AMQP address and management API, in
        ``order`` (node indexes; default c1, c2...): clients try them in that order."""
        chosen = [self.nodes[i] for i in (order if order is not None else range(len(self.nodes)))]
        first = chosen[0]
        return BrokerEndpoint(
            host=first.host,
            amqp_port=first.amqp_port,
            management_url=first.management_url,
            username=first.username,
            password=first.password,
            source=f"local cluster of {len(self.nodes)} nodes",
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

    def describe(self) -> dict[str, Any]:
        return {
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


@contextlib.contextmanager
def local_cluster(size: int = 3, **options: Any) -> Iterator[LocalCluster]:
    """A started `LocalCluster`, closed (every node killed, every directory removed) on exit."""
    cluster = LocalCluster.create(size, **options)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.close()


def acquire_cluster(size: int = 3, **options: Any) -> ProvidedBroker:
    """A started `LocalCluster` as a `ProvidedBroker` (``jiexu demo --cluster N``): its endpoint
    names every node; ``close()`` kills the nodes and removes their directories."""
    cluster = LocalCluster.create(size, **options).start()
    provided = ProvidedBroker(cluster.endpoint())
    provided._closers.append(cluster.close)
    return provided
