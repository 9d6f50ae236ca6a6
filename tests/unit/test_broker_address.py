"""Broker URLs naming several nodes are read in one place, the same way by every process."""

from __future__ import annotations

import pytest
import structlog
from structlog.testing import capture_logs

from broker.address import BrokerURLError, management_urls, parse_broker_url
from broker.logging import mask_value
from broker.outage import Outage
from broker.provider import BrokerEndpoint
from broker.topology import TopologySpec, declarations


def test_one_url_with_comma_separated_hosts_names_every_node_with_one_login_and_vhost() -> None:
    address = parse_broker_url("amqp://u:p%40ss@h1:5681,h2:5682,h3/vh%2Fx?heartbeat=3")
    assert address.hosts == (("h1", 5681), ("h2", 5682), ("h3", 5672))
    assert (address.username, address.password, address.vhost) == ("u", "p@ss", "vh/x")
    assert address.query == "heartbeat=3"
    assert address.node_urls() == [
        "amqp://u:p%40ss@h1:5681/vh%2Fx?heartbeat=3",
        "amqp://u:p%40ss@h2:5682/vh%2Fx?heartbeat=3",
        "amqp://u:p%40ss@h3:5672/vh%2Fx?heartbeat=3",
    ]
    assert parse_broker_url(address.url()) == address


def test_a_comma_separated_list_of_urls_means_the_same_and_must_agree_on_login_and_vhost() -> None:
    listed = parse_broker_url("amqp://u:p@h1:5681/v, amqp://u:p@h2:5682/v")
    assert listed == parse_broker_url("amqp://u:p@h1:5681,h2:5682/v")
    with pytest.raises(BrokerURLError, match="different"):
        parse_broker_url("amqp://u:p@h1:5681/v,amqp://u:other@h2:5682/v")


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://h:5672/", "not an AMQP URL"),
        ("amqp://u:p@h1:5681,,h2/", "empty host"),
        ("amqp://u:p@h1:99999/", "bad port"),
        ("", "empty"),
    ],
)
def test_an_unusable_url_is_one_line_that_hides_the_password(url: str, why: str) -> None:
    with pytest.raises(BrokerURLError, match=why) as caught:
        parse_broker_url(url.replace("u:p@", "u:secret@"))
    assert "\n" not in str(caught.value) and "secret" not in str(caught.value)


def test_each_node_management_api_is_derived_from_its_amqp_port_unless_given() -> None:
    address = parse_broker_url("amqp://u:p@127.0.0.1:5672,127.0.0.1:5681/")
    assert management_urls(address) == ["http://127.0.0.1:15672", "http://127.0.0.1:15681"]
    assert management_urls(address, "http://a:1/, http://b:2") == ["http://a:1", "http://b:2"]
    endpoint = BrokerEndpoint.from_url("amqp://u:p@h1:5681,h2:5682/v", None, "test")
    assert endpoint.management_urls == ("http://h1:15681", "http://h2:15682")
    assert endpoint.amqp_url(vhost="w", username="a", password="b") == "amqp://a:b@h1:5681,h2:5682/w"


def test_the_masker_leaves_decimal_numbers_alone_and_still_masks_account_numbers() -> None:
    assert mask_value("Reconnecting after 0.59213420552314 seconds") == (
        "Reconnecting after 0.59213420552314 seconds"
    )
    assert mask_value("0.5921342055") == "0.5921342055"
    assert mask_value("card 6222021234567890123.") == "card 6222****0123."


def test_an_outage_is_one_warning_when_it_starts_and_one_when_it_ends() -> None:
    outage = Outage("outbox_publish_failed", structlog.get_logger("test"))
    with capture_logs() as logs:
        for _ in range(50):
            outage.failed(200, error="PublishInterrupted()")
        outage.succeeded(published=200)
        outage.succeeded(published=10)
    assert [e["event"] for e in logs] == ["outbox_publish_failed", "outbox_publish_failed_recovered"]
    assert logs[1]["failures"] == 50 * 200


def test_every_queue_is_a_quorum_queue_with_a_group_size_and_a_balanced_leader() -> None:
    spec = TopologySpec(agency_codes=("110000",), retry_delays_ms=(100, 300), group_size=5)
    for queue in declarations(spec).queues:
        assert queue.arguments["x-queue-type"] == "quorum", queue.name
        assert queue.arguments["x-quorum-initial-group-size"] == 5, queue.name
        assert queue.arguments["x-queue-leader-locator"] == "balanced", queue.name
    with pytest.raises(ValueError, match="leader locator"):
        TopologySpec(agency_codes=("110000",), leader_locator="random")
