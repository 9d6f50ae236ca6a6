"""One node of a local cluster (`broker.cluster`): its ports, directory and configuration, and the
control of its process: start it, signal it (stop, kill, pause, resume), reap it.

Each node runs ``rabbitmq-server`` in a process group of its own, so a signal reaches the Erlang
VM and every child of it (``erl_child_setup``, ``inet_gethost``); `LocalCluster` decides which
node gets what, these functions do it to one node.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from broker.cluster_base import ClusterError, NodeAddresses

__all__ = [
    "ClusterError",
    "ClusterNode",
    "node_env",
    "node_ports",
    "reap_node",
    "signal_node",
    "spawn_node",
    "write_node_config",
]


def _is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def node_ports(count: int) -> list[tuple[int, int, int]]:
    """(AMQP, management, distribution) ports for ``count`` nodes, all free on 127.0.0.1.

    The management port is the AMQP port + 10000, RabbitMQ's convention (5672 -> 15672), which
    is what `broker.address` derives when ``JIEXU_MANAGEMENT_URL`` is unset: the cluster's AMQP
    URL alone reaches every node's API.
    """
    rng = secrets.SystemRandom()
    chosen: list[tuple[int, int, int]] = []
    taken: set[int] = set()
    while len(chosen) < count:
        amqp = rng.randrange(20000, 30000)
        dist = rng.randrange(40000, 50000)
        ports = (amqp, amqp + 10000, dist)
        if taken.isdisjoint(ports) and all(_is_free(p) for p in ports):
            chosen.append(ports)
            taken.update(ports)
    return chosen


@dataclass
class ClusterNode(NodeAddresses):
    """One node of a `LocalCluster`: its name, ports, directory and (while running) its process."""

    index: int
    name: str
    amqp_port: int
    management_port: int
    dist_port: int
    base: Path
    username: str = "guest"
    password: str = "guest"
    process: subprocess.Popen[bytes] | None = None
    paused: bool = False
    starts: int = 0
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def short(self) -> str:
        """``c1``, ``c2``...: how tests and logs name the node."""
        return f"c{self.index + 1}"

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.management_port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def log_path(self) -> Path:
        return self.base / f"server-{self.starts}.log"

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def write_node_config(
    node: ClusterNode, *, peers: str, partition_handling: str, net_ticktime_s: int
) -> None:
    """The node's directory and its ``rabbitmq.conf`` (``peers``: the classic_config lines that
    list every node), ``enabled_plugins`` and an empty ``rabbitmq-env.conf``."""
    node.base.mkdir(parents=True, exist_ok=True)
    (node.base / "rabbitmq.conf").write_text(
        f"listeners.tcp.default = 127.0.0.1:{node.amqp_port}\n"
        f"management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = {node.management_port}\n"
        "loopback_users = none\n"
        f"cluster_partition_handling = {partition_handling}\n"
        f"net_ticktime = {net_ticktime_s}\n"
        "queue_leader_locator = balanced\n"
        "cluster_formation.peer_discovery_backend = classic_config\n"
        f"{peers}"
    )
    (node.base / "enabled_plugins").write_text("[rabbitmq_management].\n")
    (node.base / "rabbitmq-env.conf").write_text("")


def node_env(node: ClusterNode, home: Path) -> dict[str, str]:
    """The node's environment; ``home`` is where the cluster's Erlang cookie is."""
    return {
        **os.environ,
        "HOME": str(home),  # where the Erlang cookie is, for the nodes and the CLI
        "RABBITMQ_NODENAME": node.name,
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(node.amqp_port),
        "RABBITMQ_DIST_PORT": str(node.dist_port),
        "RABBITMQ_MNESIA_BASE": str(node.base / "mnesia"),
        "RABBITMQ_LOG_BASE": str(node.base / "log"),
        "RABBITMQ_PID_FILE": str(node.base / "pid"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(node.base / "enabled_plugins"),
        "RABBITMQ_CONFIG_FILE": str(node.base / "rabbitmq.conf"),
        "RABBITMQ_CONF_ENV_FILE": str(node.base / "rabbitmq-env.conf"),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(node.base / "advanced.config"),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
    }


def spawn_node(node: ClusterNode, binary: str, home: Path) -> None:
    """Start the node's ``rabbitmq-server`` (``binary``), its output in a new log per start."""
    node.starts += 1
    node._log = node.log_path.open("wb")
    try:
        node.process = subprocess.Popen(
            [binary],
            env=node_env(node, home),
            cwd=node.base,
            stdout=node._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: signals reach beam and children
        )
    except OSError as exc:
        node._log.close()
        raise ClusterError(f"could not run {binary}: {exc}") from exc
    node.paused = False


def signal_node(node: ClusterNode, sig: signal.Signals) -> None:
    """Send ``sig`` to the node's whole process group."""
    if node.process is None:
        raise ClusterError(f"{node.name} is not running")
    with contextlib.suppress(ProcessLookupError):
        os.killpg(node.process.pid, sig)


def reap_node(node: ClusterNode, timeout_s: float) -> None:
    """Wait for the node's process to end (SIGKILL past ``timeout_s``) and close its log."""
    process = node.process
    if process is not None:
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGCONT)
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        # Children of the node (erl_child_setup, inet_gethost) share its process group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    if node._log is not None:
        node._log.close()
        node._log = None
    node.paused = False
