"""Robustness on a real broker: consumers come back after the broker drops every connection, and
a consumer process drains on SIGTERM without losing or repeating a message."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from uuid import UUID

from broker.names import dlq_queue, inbox_queue
from broker.publisher import Publisher, PublishInterrupted
from schemas.envelope import Envelope
from tests.integration.transport_support import (
    WAIT_S,
    A,
    Agencies,
    B,
    Recorder,
    drain_queue,
    eventually,
    queue_counts,
    receipt,
)

REPO = Path(__file__).resolve().parents[2]


async def _publish_when_possible(publisher: Publisher, envelope: Envelope) -> None:
    """Publish, retrying while the connection is being restored (as the outbox relay does)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while True:
        try:
            await publisher.publish(envelope)
            return
        except PublishInterrupted:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.2)


def _vhost_connections(agencies: Agencies) -> list[str]:
    with agencies.vhost.management() as api:
        return [
            c["name"] for c in api.list_connections() if c.get("vhost") == agencies.vhost.name
        ]


def _consumer_connections(agencies: Agencies, queue: str) -> list[str]:
    """The connection of each consumer on ``queue``, as the broker reports it."""
    with agencies.vhost.management() as api:
        details = api.get_queue(agencies.vhost.name, queue).get("consumer_details") or []
    # While a channel is being torn down the API reports its details as an empty list.
    return [
        d["channel_details"]["connection_name"]
        for d in details
        if isinstance(d.get("channel_details"), dict)
    ]


def _new_consumer(agencies: Agencies, old: list[str]) -> bool:
    current = _consumer_connections(agencies, inbox_queue(A))
    return len(current) == 1 and current[0] not in old


async def test_consumers_come_back_after_the_broker_closes_every_connection(
    agencies: Agencies,
) -> None:
    recorder = Recorder()
    consumer = await agencies.consumer(A, recorder)
    publisher = await agencies.publisher(B)
    before = await publisher.publish(receipt(B, A))
    await eventually(lambda: before.message_id in recorder.handled, "handled before the cut")
    await eventually(lambda: len(_vhost_connections(agencies)) >= 2, "connections listed")

    for _ in range(2):  # twice: the restored connection must itself be restorable
        names = _vhost_connections(agencies)
        with agencies.vhost.management() as api:
            for name in names:
                api.close_connection(name, reason="test: broker closes every connection")
        await eventually(
            lambda names=names: not set(names) & set(_vhost_connections(agencies)),
            "the old connections gone",
        )
        # Management figures lag a few seconds: require a consumer on a *new* connection.
        await eventually(
            lambda names=names: _new_consumer(agencies, names), "the consumer back"
        )

    after = [receipt(B, A) for _ in range(20)]
    for envelope in after:
        await _publish_when_possible(publisher, envelope)
    expected = {before.message_id} | {e.message_id for e in after}
    await eventually(lambda: set(recorder.handled) == expected, "messages after the cut handled")
    assert len(recorder.handled) == len(expected)
    assert consumer.stats.dead_lettered == 0


async def test_sigterm_drains_in_flight_messages_and_loses_none(
    agencies: Agencies, tmp_path: Path
) -> None:
    publisher = await agencies.publisher(B)
    sent = [receipt(B, A) for _ in range(60)]
    outcomes = await publisher.publish_many(sent)
    assert all(o.ok for o in outcomes)
    directory_file = tmp_path / "directory.json"
    agencies.directory.current.save(directory_file)
    handled_file = tmp_path / "handled.txt"
    handled_file.touch()

    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration.drain_worker",
        agencies.url(A),
        A,
        str(directory_file),
        agencies.spec.user_prefix,
        str(handled_file),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), WAIT_S)
        assert line.strip() == b"ready"
        await eventually(
            lambda: len(handled_file.read_text().split()) >= 5, "the worker handling messages"
        )
        process.send_signal(signal.SIGTERM)
        returncode = await asyncio.wait_for(process.wait(), WAIT_S)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert returncode == 0

    handled = [UUID(x) for x in handled_file.read_text().split()]
    assert len(handled) == len(set(handled)), "no message handled twice"
    assert len(handled) < len(sent), "the signal came while messages were still queued"
    admin = await agencies.admin()
    remaining = [UUID(m.message_id or "") for m in await drain_queue(admin, inbox_queue(A))]
    assert set(handled).isdisjoint(remaining), "nothing handled was left unacked"
    assert set(handled) | set(remaining) == {e.message_id for e in sent}, "nothing lost"
    assert (await queue_counts(admin, dlq_queue(A)))[0] == 0
