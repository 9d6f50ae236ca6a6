"""PII stays out of logs: ID numbers, names, account numbers and secrets are masked in every field,
while the identifiers operators need (UUIDs, timestamps, fen amounts, agency codes) stay readable."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import uuid
from typing import Any

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from structlog.testing import capture_logs

from broker.logging import (
    bind_message_context,
    clear_message_context,
    configure_logging,
    message_context,
)
from schemas.pii import _mask_all, mask_pii, mask_value

ID_NUMBER = "11010519491231002X"
ID_NUMBER_DIGITS = "110105194912310021"
NAME = "张三丰"
ACCOUNT = "6222021234567890123"
CASE_ID = uuid.UUID("6f1c1a52-4a43-4a4e-9d53-0b1f64f0a002")


def _flatten(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=repr)


def _assert_clean(text: str) -> None:
    for secret in (ID_NUMBER, ID_NUMBER_DIGITS, NAME, "三丰", ACCOUNT, "s3cret-pw"):
        assert secret not in text, f"{secret!r} leaked into {text}"


class Person(BaseModel):
    name: str
    id_number: str


@dataclasses.dataclass
class Account:
    account_name: str
    account_number: str


@pytest.fixture(autouse=True)
def _clean_context() -> Any:
    structlog.contextvars.clear_contextvars()
    yield
    structlog.contextvars.clear_contextvars()


def test_no_id_number_name_or_account_survives_in_any_field() -> None:
    log = structlog.get_logger()
    with capture_logs(processors=[mask_pii]) as logs:
        log.info(
            f"received form for {ID_NUMBER} paid to {ACCOUNT}",
            id_number=ID_NUMBER_DIGITS,
            name=NAME,
            account_number=ACCOUNT,
            note=f"身份证{ID_NUMBER}，账号{ACCOUNT}",
            payload={
                "person": {"person_name": NAME, "idNumber": ID_NUMBER},
                "accounts": [{"accountNumber": int(ACCOUNT)}, (ACCOUNT,)],
                ID_NUMBER: "keyed by an ID number",
            },
            model=Person(name=NAME, id_number=ID_NUMBER),
            record=Account(account_name=NAME, account_number=ACCOUNT),
            url="amqp://agency-110000:s3cret-pw@127.0.0.1:5672/jiexu",
            password="s3cret-pw",
            error=ValueError(f"bad id {ID_NUMBER}"),
        )
    assert len(logs) == 1
    _assert_clean(_flatten(logs[0]))
    assert logs[0]["name"] == "张**"
    assert logs[0]["id_number"] == "110105********1"
    assert logs[0]["account_number"] == "6222****0123"
    assert logs[0]["url"] == "amqp://agency-110000:****@127.0.0.1:5672/jiexu"


def test_identifiers_times_amounts_and_codes_stay_readable() -> None:
    message_id = uuid.uuid4()
    readable: dict[str, Any] = {
        "case_id": str(CASE_ID),
        "message_id": message_id,
        "hex_id": "1234567890123456789abcdef0123456",
        "sent_at": "2024-03-01T09:30:00.123456+08:00",
        "timestamp": "1709256600123",
        "created_at": "20240301093000123456",
        "amount_fen": 123456789012345,
        "amount": "123456789012345",
        "agency": "110000",
        "recipient": "320100",
        "delivery_tag": 12345678901234,
    }
    with capture_logs(processors=[mask_pii]) as logs:
        structlog.get_logger().info(
            f"case {CASE_ID} from 110000 to 320100: 12345 fen at 2024-03-01T09:30:00Z", **readable
        )
    event = logs[0]
    for key, value in readable.items():
        assert event[key] == value, key
    assert event["event"] == f"case {CASE_ID} from 110000 to 320100: 12345 fen at 2024-03-01T09:30:00Z"


def test_short_or_odd_values_in_sensitive_fields_are_hidden_whole() -> None:
    event = mask_pii(None, "info", {"account_number": "1234-5678", "id_number": "X1"})
    assert event == {"account_number": "****5678", "id_number": "****"}


def test_an_id_number_right_after_letters_is_still_masked() -> None:
    assert ID_NUMBER not in mask_value(f"ID{ID_NUMBER}")
    assert ID_NUMBER_DIGITS not in mask_value(f"idno:{ID_NUMBER_DIGITS};")


def test_message_context_is_bound_to_every_event_and_masked_too() -> None:
    log = structlog.get_logger()
    message_id = uuid.uuid4()
    with capture_logs(processors=[structlog.contextvars.merge_contextvars, mask_pii]) as logs:
        bind_message_context(agency="110000", case_id=CASE_ID, message_id=message_id)
        log.info("handled")
        with message_context(message_id="m-2", person_name=NAME):
            log.info("nested")
        log.info("after")
        clear_message_context()
        log.info("cleared")
    assert logs[0]["agency"] == "110000"
    assert logs[0]["case_id"] == str(CASE_ID)
    assert logs[0]["message_id"] == str(message_id)
    assert logs[1]["message_id"] == "m-2" and logs[1]["person_name"] == "张**"
    assert logs[2]["message_id"] == str(message_id) and "person_name" not in logs[2]
    assert "agency" not in logs[3] and "case_id" not in logs[3]


async def test_context_bound_in_one_task_does_not_leak_into_another() -> None:
    log = structlog.get_logger()

    async def handle(case: str) -> None:
        bind_message_context(agency="110000", case_id=case)
        await asyncio.sleep(0)
        log.info("handled")

    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        await asyncio.gather(handle("case-1"), handle("case-2"))
        log.info("outside")
    assert sorted(e["case_id"] for e in logs[:2]) == ["case-1", "case-2"]
    assert "case_id" not in logs[2]


def test_configured_output_masks_structlog_and_stdlib_events(
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = logging.getLogger()
    level = root.level
    configure_logging(level="INFO", json=True)
    try:
        structlog.get_logger("t").warning("payee", account_name=NAME, note=f"账号{ACCOUNT}")
        logging.getLogger("aio_pika.test").warning(
            "connecting to %s for %s", "amqp://u:s3cret-pw@h/", ID_NUMBER
        )
        err = capsys.readouterr().err
    finally:
        structlog.reset_defaults()
        root.setLevel(level)
        for handler in [h for h in root.handlers if getattr(h, "_jiexu", False)]:
            root.removeHandler(handler)
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert len(lines) == 2
    assert lines[0]["account_name"] == "张**" and "timestamp" in lines[0]
    assert lines[1]["logger"] == "aio_pika.test"
    _assert_clean(err)


def _unconfigure(level: int) -> None:
    structlog.reset_defaults()
    root = logging.getLogger()
    root.setLevel(level)
    for handler in [h for h in root.handlers if getattr(h, "_jiexu", False)]:
        root.removeHandler(handler)


def test_logs_follow_sys_stderr_after_a_cli_run_closed_the_stream_it_had(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import io

    level = logging.getLogger().level
    first = io.StringIO()
    monkeypatch.setattr("sys.stderr", first)
    configure_logging(level="INFO", json=True)
    try:
        structlog.get_logger("t").warning("first", person_name=NAME)
        logging.getLogger("aio_pika.test").warning("first stdlib %s", ID_NUMBER)
        written = first.getvalue()
        first.close()  # what CliRunner does to the stream it lent
        second = io.StringIO()
        monkeypatch.setattr("sys.stderr", second)
        structlog.get_logger("t").warning("second", person_name=NAME)
        logging.getLogger("aio_pika.test").warning("second stdlib %s", ID_NUMBER)
    finally:
        _unconfigure(level)
    events = [json.loads(line)["event"] for line in written.splitlines()]
    assert events == ["first", f"first stdlib {ID_NUMBER[:6]}********{ID_NUMBER[-1]}"]
    later = [json.loads(line) for line in second.getvalue().splitlines()]
    assert [e["event"].split()[0:2] for e in later] == [["second"], ["second", "stdlib"]]
    _assert_clean(written + second.getvalue())


def test_events_below_the_level_run_no_processor_at_all(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rendered: list[str] = []

    class Spy:
        def __repr__(self) -> str:
            rendered.append("repr")
            return "spy"

    level = logging.getLogger().level
    configure_logging(level="INFO", json=True)
    try:
        log = structlog.get_logger("t")
        with message_context(agency="110000", message_id="m-1"):
            log.debug("per_message_detail", spy=Spy(), person_name=NAME)
            assert rendered == []  # neither masked (mask_pii reprs unknown objects) nor rendered
            log.info("handled", spy=Spy(), person_name=NAME)
        err = capsys.readouterr().err
    finally:
        _unconfigure(level)
    assert rendered == ["repr"]
    (line,) = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert line["event"] == "handled" and line["message_id"] == "m-1"
    assert line["person_name"] == "张**" and line["spy"] == "spy"


_MASK_PIECES = st.sampled_from(
    [*"0123456789Xx-:/@ab张 ", "://", "amqp://u:p@h", "1" * 13, "name=", "姓名", "19491231"]
)
_MASK_TEXT = st.lists(_MASK_PIECES, max_size=40).map("".join)


@settings(max_examples=400)
@given(_MASK_TEXT, st.booleans())
def test_the_quick_pass_over_text_without_digit_runs_changes_nothing(text: str, accounts: bool) -> None:
    """mask_value skips the full patterns when the text has nothing any of them needs; it must
    give exactly what the full patterns give."""
    assert mask_value(text, accounts=accounts) == _mask_all(text, accounts)
