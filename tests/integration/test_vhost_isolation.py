"""Each test gets its own vhost: tests declaring the same queue name never see each other's messages."""

from __future__ import annotations

import aio_pika
import pytest

from broker.pytest_plugin import TestVhost

SHARED_NAME = "jiexu.same-name-in-every-test"


@pytest.mark.parametrize("attempt", ["first", "second", "third"])
async def test_a_queue_with_a_shared_name_starts_empty_in_every_test(
    amqp_url: str, attempt: str
) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(SHARED_NAME, durable=True)
        assert queue.declaration_result.message_count == 0
        await channel.default_exchange.publish(
            aio_pika.Message(attempt.encode(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=SHARED_NAME,
        )
        again = await channel.declare_queue(SHARED_NAME, durable=True, passive=True)
        assert again.declaration_result.message_count == 1


def test_the_plugin_is_usable_by_an_agency_suite_and_cleans_up_its_vhosts(
    pytester: pytest.Pytester, rabbitmq_vhost: TestVhost
) -> None:
    pytester.makepyfile(
        """
        import aio_pika

        async def test_round_trip(amqp_url):
            connection = await aio_pika.connect(amqp_url)
            async with connection:
                channel = await connection.channel()
                queue = await channel.declare_queue("agency-suite", exclusive=True)
                await channel.default_exchange.publish(aio_pika.Message(b"x"), routing_key=queue.name)
                assert (await queue.get(timeout=5)).body == b"x"

        def test_vhost_is_private(rabbitmq_vhost):
            assert rabbitmq_vhost.name.startswith("jiexu-test-")
            with open("vhost.txt", "w") as f:
                f.write(rabbitmq_vhost.name)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-o", "asyncio_mode=auto")
    result.assert_outcomes(passed=2)
    used = (pytester.path / "vhost.txt").read_text()
    with rabbitmq_vhost.management() as api:
        assert used not in api.list_vhosts(), "the plugin must remove each test's vhost"
