"""The cluster fixture's Docker variant: three containers of the offline image, one cluster.

A `ContainerCluster` of ``JIEXU_RABBITMQ_IMAGE`` (default ``jiexu/rabbitmq:offline``) on a network
of its own; one short flow of two agencies' agents on it, the node leading Jiujiang's inbox
SIGKILLed (``docker kill``) in the middle and started again, with the end checks of
`test_cluster` (every case terminal at both ends, ledgers exact, nothing dead-lettered); and
teardown leaving no container and no network, also when a node is frozen or the start failed.

Without a Docker engine or the image these tests skip on a developer's machine; in CI (``CI`` set)
or when ``JIEXU_RABBITMQ_IMAGE`` is set they fail instead, like test_broker_image's.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.cluster_base import ClusterError
from broker.container_cluster import (
    DEFAULT_CLUSTER_IMAGE,
    ContainerCluster,
    docker_available,
)
from broker.pytest_plugin import cluster_test_vhost
from tests.integration.test_cluster import kill_the_inbox_leader_mid_flow

pytestmark = [pytest.mark.integration, pytest.mark.cluster, pytest.mark.timeout(900)]

IMAGE = os.environ.get("JIEXU_RABBITMQ_IMAGE") or DEFAULT_CLUSTER_IMAGE
TRANSFERS = 40


def _require_docker() -> None:
    """In CI, or with an image named, Docker and the image must be there; elsewhere a skip."""
    why = docker_available(IMAGE)
    if why is None:
        return
    if os.environ.get("CI") or os.environ.get("JIEXU_RABBITMQ_IMAGE"):
        pytest.fail(f"the Docker cluster must be tested here: {why}")
    pytest.skip(why)


@pytest.fixture(scope="module")
def docker_cluster() -> Iterator[ContainerCluster]:
    _require_docker()
    cluster = ContainerCluster.create(3, image=IMAGE)
    try:
        cluster.start()
    except ClusterError as exc:
        pytest.fail(f"could not start a cluster of {IMAGE} containers: {exc}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.close()


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_three_containers_on_their_own_network_form_one_cluster_reachable_on_loopback_only(
    docker_cluster: ContainerCluster,
) -> None:
    names = {n.name for n in docker_cluster.nodes}
    assert names == {f"rabbit@{n.hostname}" for n in docker_cluster.nodes} and len(names) == 3
    for node in docker_cluster.nodes:
        with node.management() as api:
            listed = api.list_nodes()
        assert {n["name"] for n in listed if n.get("running")} == names, node.short
        assert not any(n.get("partitions") for n in listed), node.short
        # Published on 127.0.0.1 only, on the ports chosen at creation (management = AMQP + 10000).
        node.container.reload()
        published = node.container.attrs["NetworkSettings"]["Ports"]
        assert published["5672/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": str(node.amqp_port)}]
        assert published["15672/tcp"] == [
            {"HostIp": "127.0.0.1", "HostPort": str(node.management_port)}
        ]
        assert node.management_port == node.amqp_port + 10000
        assert {p for p, bound in published.items() if bound} == {"5672/tcp", "15672/tcp"}
        assert set(node.container.attrs["NetworkSettings"]["Networks"]) == {docker_cluster.network_name}
    assert docker_cluster.amqp_url().count(",") == 2
    assert docker_cluster.describe()["kind"] == "docker"


async def test_the_node_leading_an_inbox_killed_mid_flow_and_restarted_loses_nothing(
    docker_cluster: ContainerCluster, tmp_path: Path
) -> None:
    with cluster_test_vhost(docker_cluster) as vhost:
        before = {n.short: n.amqp_port for n in docker_cluster.nodes}
        await kill_the_inbox_leader_mid_flow(docker_cluster, vhost, tmp_path, transfers=TRANSFERS)
        # The restarted container kept its host ports: the URLs the agents hold stay valid.
        assert {n.short: n.amqp_port for n in docker_cluster.nodes} == before
        for node in docker_cluster.nodes:
            node.container.reload()
            port = node.container.attrs["NetworkSettings"]["Ports"]["5672/tcp"][0]["HostPort"]
            assert int(port) == node.amqp_port


def test_closing_removes_every_container_and_the_network_even_with_a_node_frozen() -> None:
    _require_docker()
    cluster = ContainerCluster.create(1, image=IMAGE)
    try:
        cluster.start()
        cluster.pause(0)
        assert cluster.node(0).status == "paused"
        assert len(cluster.leftovers()) == 2  # the container and the network
    finally:
        cluster.close()
    assert cluster.leftovers() == []
    assert _port_free(cluster.nodes[0].amqp_port) and _port_free(cluster.nodes[0].management_port)


def test_a_start_that_fails_leaves_nothing_behind() -> None:
    _require_docker()
    cluster = ContainerCluster.create(2, image="jiexu/no-such-image:never-built")
    with pytest.raises(ClusterError, match="no-such-image"):
        cluster.start()
    assert cluster.leftovers() == []
