"""aio-pika's and aiormq's lines about a dropped connection are warnings, not errors."""

from __future__ import annotations

import logging

import pytest

from broker.logging import relevel_reconnection_logs


class RobustChannel:
    """Stands in for aio-pika's channel in a callback's repr."""

    def _on_close(self) -> None: ...


class _Callback:
    def __repr__(self) -> str:
        return f"<OneShotCallback: cb={RobustChannel()._on_close!r}>"


@pytest.fixture(autouse=True)
def _relevelled() -> None:
    relevel_reconnection_logs()
    relevel_reconnection_logs()  # idempotent


def _levels(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.name, r.levelname) for r in caplog.records]


def test_the_reconnection_lines_become_warnings(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        logging.getLogger("aiormq.connection").error(
            'Unexpected connection close from remote "%s", Connection.Close(reply_code=%r, '
            "reply_text=%r)", "amqp://x", 320, "CONNECTION_FORCED",
        )
        logging.getLogger("aiormq.connection").error(
            "error when creating transport: %r", ConnectionRefusedError(111)
        )
        logging.getLogger("aio_pika.robust_connection").error(
            "Reconnect attempt failed %s due to %s: %s. Retrying after %r seconds.",
            "amqp://x", "OSError", "refused", 1.0,
        )
        for error in ("RuntimeError", "ChannelInvalidStateError"):
            logging.getLogger("aio_pika.tools").error(
                "Callback %r error: %s: %s", _Callback(), error, "closed"
            )
    assert _levels(caplog) == [
        ("aiormq.connection", "WARNING"),
        ("aiormq.connection", "WARNING"),
        ("aio_pika.robust_connection", "WARNING"),
        ("aio_pika.tools", "WARNING"),
        ("aio_pika.tools", "WARNING"),
    ]


def test_the_repeated_traceback_is_debug_and_dropped_above_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("aiormq.connection")
    with caplog.at_level(logging.WARNING, logger="aiormq.connection"):
        logger.warning("Cancelling cause reader exited abnormally", exc_info=ValueError("x"))
    assert caplog.records == []
    with caplog.at_level(logging.DEBUG, logger="aiormq.connection"):
        logger.warning("Cancelling cause reader exited abnormally", exc_info=ValueError("x"))
    assert _levels(caplog) == [("aiormq.connection", "DEBUG")]


def test_other_errors_of_these_loggers_stay_errors(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        logging.getLogger("aio_pika.tools").error(
            "Callback %r error: %s: %s", "<our own callback>", "KeyError", "boom"
        )
        logging.getLogger("aiormq.connection").error("Unexpected frame %r", "frame")
    assert _levels(caplog) == [("aio_pika.tools", "ERROR"), ("aiormq.connection", "ERROR")]
