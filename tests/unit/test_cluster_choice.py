"""Which cluster the fixture starts (JIEXU_CLUSTER), and what a container cluster is made of,
checked without starting anything."""

from __future__ import annotations

import pytest

from broker.cluster import LocalCluster, cluster_kind, create_cluster
from broker.cluster_base import ClusterError
from broker.container_cluster import DEFAULT_CLUSTER_IMAGE, ContainerCluster


def test_jiexu_cluster_chooses_and_unset_means_local_where_rabbitmq_server_is() -> None:
    assert cluster_kind({"JIEXU_CLUSTER": "docker"}) == "docker"
    assert cluster_kind({"JIEXU_CLUSTER": " Local "}) == "local"
    assert cluster_kind({"JIEXU_RABBITMQ_SERVER": "/bin/true"}) == "local"
    nowhere = {"JIEXU_RABBITMQ_SERVER": "/nonexistent/rabbitmq-server", "PATH": "/nonexistent"}
    assert cluster_kind(nowhere) == "docker"
    with pytest.raises(ClusterError, match="local or docker"):
        cluster_kind({"JIEXU_CLUSTER": "kubernetes"})


def test_create_cluster_makes_either_kind_without_starting_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JIEXU_RABBITMQ_IMAGE", raising=False)
    docker = create_cluster(3, "docker")
    assert isinstance(docker, ContainerCluster) and docker.image == DEFAULT_CLUSTER_IMAGE
    assert docker.client is None and docker.network is None  # nothing made yet
    local = create_cluster(1, "local", binary="/bin/true")
    try:
        assert isinstance(local, LocalCluster)
    finally:
        local.close()
    monkeypatch.setenv("JIEXU_RABBITMQ_IMAGE", "example/rabbitmq:1")
    assert ContainerCluster.create(1).image == "example/rabbitmq:1"


def test_a_container_cluster_names_nodes_by_host_and_pins_loopback_ports() -> None:
    cluster = ContainerCluster.create(3)
    names = [n.name for n in cluster.nodes]
    assert names == [f"rabbit@jiexu-{cluster.tag}-n{i}" for i in (1, 2, 3)]
    assert [n.short for n in cluster.nodes] == ["c1", "c2", "c3"]
    assert len({n.amqp_port for n in cluster.nodes}) == 3
    for node in cluster.nodes:
        assert node.management_port == node.amqp_port + 10000
        assert node.management_url == f"http://127.0.0.1:{node.management_port}"
    url = cluster.amqp_url("v", order=[2, 0, 1])
    assert url.startswith(f"amqp://jiexu-admin:{cluster.password}@127.0.0.1:{cluster.nodes[2].amqp_port},")
    assert url.endswith("/v")
    endpoint = cluster.endpoint()
    assert endpoint.source == "docker cluster of 3 nodes"
    assert len(endpoint.more_hosts) == 2


def test_the_container_clusters_configuration_lists_every_peer_and_heals_partitions() -> None:
    cluster = ContainerCluster.create(3, partition_handling="autoheal", net_ticktime_s=20)
    config = cluster._config().decode()
    assert "cluster_partition_handling = autoheal\n" in config
    assert "net_ticktime = 20\n" in config
    assert "cluster_formation.peer_discovery_backend = classic_config\n" in config
    for node in cluster.nodes:
        assert f"cluster_formation.classic_config.nodes.{node.index + 1} = {node.name}\n" in config
    assert len(cluster.cookie) >= 20 and cluster.cookie.isalnum()
