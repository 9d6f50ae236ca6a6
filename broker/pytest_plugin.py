"""pytest plugin (entry point ``pytest11: jiexu``): a real RabbitMQ for every test, in its own vhost.

Fixtures:

``rabbitmq_broker``  (session)  the `BrokerEndpoint` found or started by the provider chain
                                (see `broker.provider`); a throwaway broker is stopped at the end.
``rabbitmq_vhost``   (function) a fresh vhost on it, removed after the test: a `TestVhost`.
``amqp_url``         (function) the AMQP URL of that vhost, as the administrator.
``rabbitmq_cluster`` (session)  three RabbitMQ nodes (``JIEXU_CLUSTER_SIZE`` to change) joined
                                into one cluster, removed at the end (no process, container,
                                network or directory left). ``JIEXU_CLUSTER`` chooses what runs
                                them: ``local`` (a `broker.cluster.LocalCluster` of local
                                ``rabbitmq-server`` processes; the default where that executable
                                is found) or ``docker`` (a
                                `broker.container_cluster.ContainerCluster`: containers of
                                ``JIEXU_RABBITMQ_IMAGE``, default ``jiexu/rabbitmq:offline``, on a
                                network of their own). Both have one interface
                                (`broker.cluster_base.BrokerCluster`): tests may stop, kill,
                                pause, resume and restart its nodes, and read each node's AMQP
                                and management address.
``cluster_vhost``    (function) a fresh vhost on that cluster (every node running again first,
                                before and after the test: `BrokerCluster.heal`, which restarts
                                the nodes a partition has left apart once RabbitMQ has had 90 s to
                                mend it): a `TestVhost` whose ``amqp_url`` names every node.

Agency teams get these by installing jiexu; nothing to import.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from broker.cluster import DEFAULT_PARTITION_HANDLING, AnyCluster, ClusterError, create_cluster
from broker.management import ManagementClient
from broker.provider import BrokerEndpoint, BrokerUnavailable, acquire_broker

__all__ = ["TestVhost", "cluster_test_vhost"]


@dataclass(frozen=True)
class TestVhost:
    """A vhost made for one test on a real broker."""

    __test__ = False  # not a test class, despite the name

    name: str
    endpoint: BrokerEndpoint

    @property
    def amqp_url(self) -> str:
        return self.endpoint.amqp_url(vhost=self.name)

    def url_for(self, username: str, password: str) -> str:
        return self.endpoint.amqp_url(vhost=self.name, username=username, password=password)

    def management(self) -> ManagementClient:
        return self.endpoint.management()


@pytest.fixture(scope="session")
def rabbitmq_broker() -> Iterator[BrokerEndpoint]:
    try:
        provided = acquire_broker()
    except BrokerUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield provided.endpoint
    finally:
        provided.close()


@pytest.fixture
def rabbitmq_vhost(rabbitmq_broker: BrokerEndpoint) -> Iterator[TestVhost]:
    name = f"jiexu-test-{uuid.uuid4().hex[:12]}"
    with rabbitmq_broker.management() as api:
        api.create_vhost(name)
        api.set_permissions(name, rabbitmq_broker.username, ".*", ".*", ".*")
    try:
        yield TestVhost(name=name, endpoint=rabbitmq_broker)
    finally:
        with rabbitmq_broker.management() as api:
            api.delete_vhost(name)


@pytest.fixture
def amqp_url(rabbitmq_vhost: TestVhost) -> str:
    return rabbitmq_vhost.amqp_url


@pytest.fixture(scope="session")
def rabbitmq_cluster() -> Iterator[AnyCluster]:
    size = int(os.environ.get("JIEXU_CLUSTER_SIZE", "3"))
    try:
        cluster = create_cluster(
            size,
            partition_handling=os.environ.get(
                "JIEXU_CLUSTER_PARTITION_HANDLING", DEFAULT_PARTITION_HANDLING
            ),
        )
        cluster.start()
    except ClusterError as exc:
        pytest.fail(f"could not start a RabbitMQ cluster: {exc}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.close()


@contextlib.contextmanager
def cluster_test_vhost(cluster: AnyCluster) -> Iterator[TestVhost]:
    """A fresh vhost on ``cluster`` (every node brought back first and again at the end), removed
    on exit: what ``cluster_vhost`` gives, for a cluster a test started itself."""
    cluster.heal()
    endpoint = cluster.endpoint()
    name = f"jiexu-test-{uuid.uuid4().hex[:12]}"
    with endpoint.management() as api:
        api.create_vhost(name)
        api.set_permissions(name, endpoint.username, ".*", ".*", ".*")
    try:
        yield TestVhost(name=name, endpoint=endpoint)
    finally:
        cluster.heal()
        with endpoint.management() as api:
            api.delete_vhost(name)


@pytest.fixture
def cluster_vhost(rabbitmq_cluster: AnyCluster) -> Iterator[TestVhost]:
    with cluster_test_vhost(rabbitmq_cluster) as vhost:
        yield vhost
