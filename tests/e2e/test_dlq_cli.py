"""`jiexu dlq list` and `jiexu dlq replay` against a real broker, through the command line."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import aio_pika
import structlog
from typer.testing import CliRunner, Result

from agents.cli import app
from broker.connection import connect
from broker.delivery import HEADER_DEAD_AT, HEADER_DEAD_DETAIL, HEADER_DEAD_REASON
from broker.names import agency_dlx, dlq_queue
from broker.pytest_plugin import TestVhost
from broker.topology import AgencyCredentials, TopologySpec
from tests.integration.transport_support import A, B

ID_NUMBER = "11010519491231002X"


async def _dead_letter(url: str, user: str, reason: str, detail: str) -> str:
    """Put one dead letter into A's DLQ the way A's consumer does (A's login, reason headers)."""
    connection = await connect(url, name="test-seed-dlq")
    async with connection:
        channel = await connection.channel()
        message_id = str(uuid.uuid4())
        exchange = await channel.get_exchange(agency_dlx(A), ensure=False)
        await exchange.publish(
            aio_pika.Message(
                b'{"not": "an envelope"}',
                message_id=message_id,
                correlation_id=str(uuid.uuid4()),
                type="information_form",
                user_id=user,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                headers={
                    HEADER_DEAD_REASON: reason,
                    HEADER_DEAD_DETAIL: detail,
                    HEADER_DEAD_AT: "2026-01-05T08:00:00+00:00",
                    "x-jiexu-original-user-id": f"agency-{B}",
                    "x-jiexu-version": 2,
                },
            ),
            routing_key=A,
            mandatory=True,
        )
        return message_id


async def _depth(url: str, queue: str) -> int:
    connection = await connect(url, name="test-depth")
    async with connection:
        channel = await connection.channel(confirms=False)
        declared = await channel.declare_queue(queue, passive=True, robust=False)
        return declared.declaration_result.message_count or 0


def _run(*args: str, url: str | None = None) -> Result:
    """Invoke the CLI in-process; the logging it configures is pointed at the runner's stderr,
    which closes afterwards, so the previous configuration is put back. ``url``: the agency's
    login, in the environment (a password is refused on the command line)."""
    saved = structlog.get_config()
    try:
        env = {"JIEXU_AGENCY_AMQP_URL": url} if url is not None else None
        return CliRunner().invoke(app, list(args), env=env)
    finally:
        structlog.configure(**saved)


def _invoke(*args: str, url: str | None = None) -> dict[str, Any]:
    result = _run(*args, url=url)
    assert result.exit_code == 0, result.output
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def test_dlq_list_shows_reasons_with_id_numbers_masked_and_replay_empties_the_chosen(
    agencies_sync: tuple[TestVhost, TopologySpec, AgencyCredentials],
) -> None:
    vhost, _, credentials = agencies_sync
    cred = credentials[A]
    url = vhost.url_for(cred.username, cred.password)
    schema_id = asyncio.run(
        _dead_letter(
            url, cred.username, "invalid_payload", f"payload.person.id_number {ID_NUMBER} bad"
        )
    )
    other_id = asyncio.run(_dead_letter(url, cred.username, "unknown_version", "v9"))

    listed = _invoke("dlq", "list", "--agency", A, "--json", url=url)
    assert listed["count"] == 2
    assert listed["by_reason"] == {"invalid_payload": 1, "unknown_version": 1}
    by_id = {x["message_id"]: x for x in listed["dead_letters"]}
    letter = by_id[schema_id]
    assert letter["reason"] == "invalid_payload"
    assert letter["type"] == "information_form"
    assert letter["version"] == "2"
    assert letter["case_id"]
    assert letter["age_s"] > 0
    assert ID_NUMBER not in json.dumps(listed)
    assert "110105********X" in letter["detail"]
    assert asyncio.run(_depth(vhost.amqp_url, dlq_queue(A))) == 2, "listing consumed nothing"

    human = _run("dlq", "list", "--agency", A, url=url)
    assert human.exit_code == 0, human.output
    assert "invalid_payload" in human.stdout and ID_NUMBER not in human.stdout

    replayed = _invoke("dlq", "replay", "--agency", A, "--message-id", other_id, "--json", url=url)
    assert replayed == {"agency": A, "replayed": [other_id], "kept": 1, "failed": []}
    remaining = _invoke("dlq", "list", "--agency", A, "--json", url=url)
    assert [x["message_id"] for x in remaining["dead_letters"]] == [schema_id]


def test_dlq_replay_refuses_a_login_that_is_not_the_agencys(
    agencies_sync: tuple[TestVhost, TopologySpec, AgencyCredentials],
) -> None:
    vhost, _, _ = agencies_sync
    result = _run("dlq", "replay", "--agency", A, "--all", url=vhost.amqp_url)
    assert result.exit_code == 2
    assert "own broker user" in result.output


def test_a_password_on_the_command_line_is_refused() -> None:
    result = _run("dlq", "list", "--agency", A, "--amqp-url", "amqp://agency-x:secret@127.0.0.1:5672/v")
    assert result.exit_code == 2
    said = " ".join(result.output.replace("│", " ").split())  # typer's error box wraps lines
    assert "visible to every user" in said and ":secret@" not in said


def test_dlq_list_prints_no_terminal_escapes_and_no_raw_personal_data(
    agencies_sync: tuple[TestVhost, TopologySpec, AgencyCredentials],
) -> None:
    vhost, _, credentials = agencies_sync
    cred = credentials[A]
    url = vhost.url_for(cred.username, cred.password)
    hostile = f"\x1b[2J\x1b[H\x1b[32mall fine\x1b[0m\u202eid {ID_NUMBER}\r\nsecond line\x07"
    message_id = asyncio.run(_dead_letter(url, cred.username, "invalid_payload\x1b[8m", hostile))

    human = _run("dlq", "list", "--agency", A, url=url)
    assert human.exit_code == 0, human.output
    for raw in ("\x1b", "\u202e", "\r", "\x07", ID_NUMBER):
        assert raw not in human.stdout, repr(raw)
    assert "\\x1b[2J" in human.stdout  # shown, escaped, so the operator sees what was sent
    assert len(human.stdout.strip().splitlines()) == 4  # header, one row, blank, summary

    listed = _invoke("dlq", "list", "--agency", A, "--json", url=url)
    (letter,) = listed["dead_letters"]
    assert letter["message_id"] == message_id
    assert letter["reason"] == "invalid_payload\\x1b[8m"
    text = json.dumps(listed, ensure_ascii=False)
    for raw in ("\x1b", "\u202e", "\r", "\x07", ID_NUMBER):
        assert raw not in text, repr(raw)
