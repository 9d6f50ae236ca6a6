"""A throwaway RabbitMQ cluster of containers of jiexu's offline image (``jiexu/rabbitmq:offline``).

`ContainerCluster` is `broker.cluster.LocalCluster` with containers for processes, behind the same
interface (`broker.cluster_base.BrokerCluster`): N containers of ``JIEXU_RABBITMQ_IMAGE`` on a
user-defined Docker bridge network made for the cluster, where they reach each other by host name
(node ``rabbit@<hostname>``), sharing one Erlang cookie. Each publishes AMQP and the management API
on 127.0.0.1 only, on host ports chosen once at creation (the management port is the AMQP port +
10000), so every URL stays valid across a node's stop and start. The containers start in parallel
and form the cluster on their own through ``classic_config`` peer discovery, with ``autoheal``
partition handling and a short ``net_ticktime``, like the local cluster.

What a test does to a node maps onto Docker: ``kill`` is ``docker kill`` (SIGKILL), ``stop`` is
``docker stop`` (SIGTERM: RabbitMQ's clean shutdown; SIGKILL past the bound), ``pause``/``resume``
are ``docker pause``/``unpause`` (the cgroup freezer: the SIGSTOP/SIGCONT of a container), and
``restart`` starts the same container again on its own data. ``close`` removes the containers and
the network; nothing is written on the host.

The cluster needs the offline image's entrypoint (deploy/images/rabbitmq/entrypoint.sh): it turns
on clustering with ``JIEXU_RABBITMQ_CLUSTER=true``, reads the shared cookie from
``RABBITMQ_ERLANG_COOKIE_FILE`` and creates the administrator from ``RABBITMQ_DEFAULT_USER`` /
``RABBITMQ_DEFAULT_PASS`` at the first start. The cookie and the cluster's ``rabbitmq.conf``
fragment are copied into each container before it starts. The docker SDK comes with the test
extra; it is imported when a cluster starts.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import tarfile
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from broker.cluster_base import (
    DEFAULT_NET_TICKTIME_S,
    DEFAULT_PARTITION_HANDLING,
    READY_TIMEOUT_S,
    BrokerCluster,
    ClusterError,
    NodeAddresses,
)
from broker.cluster_nodes import node_ports
from broker.container import ADMIN_USER

__all__ = [
    "CLUSTER_LABEL",
    "DEFAULT_CLUSTER_IMAGE",
    "ContainerCluster",
    "ContainerNode",
    "container_cluster",
    "docker_available",
]

log = structlog.get_logger("jiexu.broker.container_cluster")

DEFAULT_CLUSTER_IMAGE = "jiexu/rabbitmq:offline"
CLUSTER_LABEL = "org.jiexu.cluster"
"""Label on every container and network a `ContainerCluster` makes (value: the cluster's tag)."""
COOKIE_PATH = "/etc/rabbitmq/jiexu-cluster.cookie"
CONF_NAME = "60-jiexu-cluster.conf"


def _docker() -> Any:
    try:
        import docker
    except ImportError as exc:  # the test extra is not installed
        raise ClusterError("the docker SDK is missing: pip install 'jiexu[test]'") from exc
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:
        raise ClusterError(f"no Docker engine answers ({type(exc).__name__}: {exc})") from exc
    return client


def docker_available(image: str | None = None) -> str | None:
    """None when a Docker engine answers (and has ``image``, when given), else why not."""
    try:
        client = _docker()
    except ClusterError as exc:
        return str(exc)
    try:
        if image is not None:
            try:
                client.images.get(image)
            except Exception:
                return f"image {image} is not built: run deploy/images/rabbitmq/build.sh"
        return None
    finally:
        client.close()


@dataclass
class ContainerNode(NodeAddresses):
    """One node of a `ContainerCluster`: its container, host name and published ports."""

    index: int
    hostname: str
    amqp_port: int
    management_port: int
    username: str
    password: str = field(repr=False)
    container: Any = field(default=None, repr=False)
    paused: bool = False

    @property
    def name(self) -> str:
        return f"rabbit@{self.hostname}"

    @property
    def short(self) -> str:
        return f"c{self.index + 1}"

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.management_port}"

    @property
    def status(self) -> str:
        """Docker's word for the container: created, running, paused, exited, dead (or gone)."""
        if self.container is None:
            return "gone"
        try:
            self.container.reload()
        except Exception:
            return "gone"
        status: str = self.container.status
        return status

    @property
    def running(self) -> bool:
        return self.status in ("running", "paused", "restarting")

    def logs(self, tail: int | str = "all") -> str:
        if self.container is None:
            return ""
        with contextlib.suppress(Exception):
            raw: bytes = self.container.logs(tail=tail)
            return raw.decode(errors="replace")
        return ""


def _archive(files: Mapping[str, tuple[bytes, int]]) -> bytes:
    """A tar of ``files`` (name -> (content, mode)), owned by root, for ``put_archive``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, (content, mode) in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(content), mode, int(time.time())
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


@dataclass
class ContainerCluster(BrokerCluster[ContainerNode]):
    """N containers forming one cluster. Use `container_cluster` (a context manager) or
    `create`, `start` and `close`."""

    nodes: list[ContainerNode]
    image: str
    tag: str
    partition_handling: str
    net_ticktime_s: int
    cookie: str = field(default_factory=lambda: secrets.token_hex(16), repr=False)
    client: Any = field(default=None, repr=False)
    network: Any = field(default=None, repr=False)

    @classmethod
    def create(
        cls,
        size: int = 3,
        *,
        image: str | None = None,
        partition_handling: str = DEFAULT_PARTITION_HANDLING,
        net_ticktime_s: int = DEFAULT_NET_TICKTIME_S,
    ) -> ContainerCluster:
        """Choose host names and host ports (nothing runs yet; `start` makes the containers)."""
        if size < 1:
            raise ValueError("a cluster has at least one node")
        tag = uuid.uuid4().hex[:6]
        password = secrets.token_urlsafe(24)
        nodes = [
            ContainerNode(
                index=i,
                hostname=f"jiexu-{tag}-n{i + 1}",
                amqp_port=amqp,
                management_port=management,
                username=ADMIN_USER,
                password=password,
            )
            for i, (amqp, management, _dist) in enumerate(node_ports(size))
        ]
        return cls(
            nodes=nodes,
            image=image or os.environ.get("JIEXU_RABBITMQ_IMAGE") or DEFAULT_CLUSTER_IMAGE,
            tag=tag,
            partition_handling=partition_handling,
            net_ticktime_s=net_ticktime_s,
        )

    @property
    def kind(self) -> str:
        return "docker"

    @property
    def network_name(self) -> str:
        return f"jiexu-cluster-{self.tag}"

    def _config(self) -> bytes:
        peers = "".join(
            f"cluster_formation.classic_config.nodes.{n.index + 1} = {n.name}\n" for n in self.nodes
        )
        return (
            f"# written by jiexu's ContainerCluster {self.tag}\n"
            f"cluster_partition_handling = {self.partition_handling}\n"
            f"net_ticktime = {self.net_ticktime_s}\n"
            "queue_leader_locator = balanced\n"
            "cluster_formation.peer_discovery_backend = classic_config\n"
            f"{peers}"
        ).encode()

    def _create_container(self, node: ContainerNode) -> None:
        labels = {CLUSTER_LABEL: self.tag}
        node.container = self.client.containers.create(
            self.image,
            name=node.hostname,
            hostname=node.hostname,
            detach=True,
            network=self.network_name,
            labels=labels,
            environment={
                "JIEXU_RABBITMQ_CLUSTER": "true",
                "RABBITMQ_ERLANG_COOKIE_FILE": COOKIE_PATH,
                "RABBITMQ_DEFAULT_USER": node.username,
                "RABBITMQ_DEFAULT_PASS": node.password,
            },
            # Pinned host ports on loopback only: a stopped and started node keeps its URLs.
            ports={
                "5672/tcp": ("127.0.0.1", node.amqp_port),
                "15672/tcp": ("127.0.0.1", node.management_port),
            },
        )
        node.container.put_archive(
            "/etc/rabbitmq",
            _archive(
                {
                    COOKIE_PATH.rsplit("/", 1)[1]: (self.cookie.encode(), 0o400),
                    f"conf.d/{CONF_NAME}": (self._config(), 0o644),
                }
            ),
        )

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self, timeout_s: float = READY_TIMEOUT_S) -> ContainerCluster:
        """Make the network and the containers, start them all at once, wait for one cluster."""
        started = time.monotonic()
        try:
            self.client = _docker()
            self.network = self.client.networks.create(
                self.network_name, driver="bridge", labels={CLUSTER_LABEL: self.tag}
            )
            for node in self.nodes:
                self._create_container(node)
            for node in self.nodes:
                self._boot(node)
            self.wait_ready(timeout_s)
        except ClusterError:
            self.close()
            raise
        except Exception as exc:  # the engine refused (no such image, a port taken...): one line
            self.close()
            raise ClusterError(f"could not start {self.image} containers: {exc}") from exc
        except BaseException:
            self.close()
            raise
        log.info(
            "container_cluster_started",
            nodes=[n.name for n in self.nodes],
            image=self.image,
            seconds=round(time.monotonic() - started, 1),
            partition_handling=self.partition_handling,
        )
        return self

    def _boot(self, node: ContainerNode) -> None:
        node.container.start()
        node.paused = False

    def _failure(self, node: ContainerNode) -> str | None:
        status = node.status
        if status in ("exited", "dead", "gone"):
            return f"{node.name} ({node.hostname}) is {status}:\n{node.logs(tail=30)}"
        return None

    def _wait_exit(self, node: ContainerNode, timeout_s: float) -> None:
        with contextlib.suppress(Exception):
            node.container.wait(timeout=timeout_s)
        if node.running:
            node.container.kill()
            node.container.wait(timeout=30)

    def kill(self, which: int | str) -> ContainerNode:
        """``docker kill``: SIGKILL to the container, a crash without a clean shutdown."""
        node = self.node(which)
        if node.paused:
            self.resume(which)
        node.container.kill()
        self._wait_exit(node, 30)
        return node

    def stop(self, which: int | str, timeout_s: float = 60.0) -> ContainerNode:
        """``docker stop``: SIGTERM (RabbitMQ stops in order), SIGKILL past ``timeout_s``."""
        node = self.node(which)
        if node.paused:
            self.resume(which)
        if node.running:
            node.container.stop(timeout=int(timeout_s))
        self._wait_exit(node, timeout_s)
        return node

    def stop_all(self, timeout_s: float = 60.0) -> None:
        """SIGTERM to every container at once, then wait for each (SIGKILL past the bound)."""
        for node in self.nodes:
            if node.paused:
                self.resume(node.index)
            if node.running:
                node.container.kill(signal="SIGTERM")
        for node in self.nodes:
            self._wait_exit(node, timeout_s)

    def pause(self, which: int | str) -> ContainerNode:
        """``docker pause`` (cgroup freezer): every process of the node stops, its sockets stay."""
        node = self.node(which)
        node.container.pause()
        node.paused = True
        return node

    def resume(self, which: int | str) -> ContainerNode:
        node = self.node(which)
        node.container.unpause()
        node.paused = False
        return node

    def close(self) -> None:
        """Remove every container (killed) and the network: nothing is left behind."""
        for node in self.nodes:
            if node.container is not None:
                with contextlib.suppress(Exception):
                    if node.status == "paused":
                        node.container.unpause()
                with contextlib.suppress(Exception):
                    node.container.remove(force=True, v=True)
                node.container = None
                node.paused = False
        if self.network is not None:
            with contextlib.suppress(Exception):
                self.network.remove()
            self.network = None
        if self.client is not None:
            # Anything of this cluster's a failed start did not get to record.
            with contextlib.suppress(Exception):
                for container in self.client.containers.list(
                    all=True, filters={"label": f"{CLUSTER_LABEL}={self.tag}"}
                ):
                    container.remove(force=True, v=True)
                for network in self.client.networks.list(
                    filters={"label": f"{CLUSTER_LABEL}={self.tag}"}
                ):
                    network.remove()
            with contextlib.suppress(Exception):
                self.client.close()
            self.client = None

    def leftovers(self) -> list[str]:
        """Containers and networks labelled with this cluster's tag that still exist."""
        client = _docker()
        try:
            selector = {"label": f"{CLUSTER_LABEL}={self.tag}"}
            return [f"container {c.name}" for c in client.containers.list(all=True, filters=selector)] + [
                f"network {n.name}" for n in client.networks.list(filters=selector)
            ]
        finally:
            client.close()

    def log_lines(self, *needles: str) -> dict[str, list[str]]:
        """Lines of each container's log (RabbitMQ logs to the console there) with any of
        ``needles`` (case-insensitive): what a test reports about partitions and autoheal."""
        lowered = [n.lower() for n in needles]
        return {
            node.short: [
                line for line in node.logs().splitlines() if any(n in line.lower() for n in lowered)
            ]
            for node in self.nodes
        }

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "image": self.image, "network": self.network_name}


@contextlib.contextmanager
def container_cluster(size: int = 3, **options: Any) -> Iterator[ContainerCluster]:
    """A started `ContainerCluster`, closed (containers and network removed) on exit."""
    cluster = ContainerCluster.create(size, **options)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.close()
