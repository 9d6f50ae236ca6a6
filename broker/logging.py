"""structlog configuration: JSON events on stderr, with personal data masked everywhere.

The masking itself (`mask_pii`, `mask_value`, `mask_name`) lives in `schemas.pii`, where the
stores and the command line use it too; this module puts it into the structlog pipeline. Context
(``agency``, ``case_id``, ``message_id``) is bound with `bind_message_context`.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import structlog

from schemas.pii import mask_name, mask_pii, mask_value

__all__ = [
    "StderrHandler",
    "StderrLogger",
    "bind_message_context",
    "clear_message_context",
    "configure_logging",
    "mask_name",
    "mask_pii",
    "mask_value",
    "message_context",
    "relevel_reconnection_logs",
    "stderr_logger_factory",
]

# -- context --------------------------------------------------------------------------------


def _context(
    agency: str | None, case_id: object, message_id: object, extra: Mapping[str, object]
) -> dict[str, object]:
    values: dict[str, object] = {
        "agency": agency,
        "case_id": None if case_id is None else str(case_id),
        "message_id": None if message_id is None else str(message_id),
        **extra,
    }
    return {k: v for k, v in values.items() if v is not None}


def bind_message_context(
    agency: str | None = None,
    case_id: object = None,
    message_id: object = None,
    **extra: object,
) -> None:
    """Bind ``agency``, ``case_id``, ``message_id`` (and extras) to every later event in this task.

    asyncio tasks copy the context when created, so a binding made inside a message handler's task
    stays there. None values are skipped (an existing binding for them is kept).
    """
    structlog.contextvars.bind_contextvars(**_context(agency, case_id, message_id, extra))


def clear_message_context() -> None:
    structlog.contextvars.unbind_contextvars("agency", "case_id", "message_id")


@contextmanager
def message_context(
    agency: str | None = None,
    case_id: object = None,
    message_id: object = None,
    **extra: object,
) -> Iterator[None]:
    """`bind_message_context` for the duration of a ``with`` block, restoring what was before."""
    with structlog.contextvars.bound_contextvars(**_context(agency, case_id, message_id, extra)):
        yield


# -- configuration --------------------------------------------------------------------------


class StderrLogger:
    """A structlog logger writing each rendered event to ``sys.stderr`` *as it is at that moment*.

    `structlog.PrintLoggerFactory(sys.stderr)` keeps the stream it was given: after an in-process
    CLI run (typer's `CliRunner` swaps ``sys.stderr`` for a buffer and closes it) every later event
    would fail on a closed file. Looking the stream up at each write follows such swaps.
    """

    _lock = threading.Lock()

    def msg(self, message: str) -> None:
        with self._lock:
            stream = sys.stderr
            try:
                stream.write(message + "\n")
                stream.flush()
            except ValueError:  # a closed stream left in place: fall back to the process's own
                if sys.__stderr__ is not None and stream is not sys.__stderr__:
                    sys.__stderr__.write(message + "\n")
                    sys.__stderr__.flush()

    log = debug = info = warn = warning = err = error = critical = exception = fatal = msg
    failure = msg


_STDERR_LOGGER = StderrLogger()


def stderr_logger_factory(*_args: Any) -> StderrLogger:
    """structlog ``logger_factory``: one `StderrLogger` for every bound logger."""
    return _STDERR_LOGGER


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stdlib handler writing to ``sys.stderr`` as it is at each record (see `StderrLogger`)."""

    def __init__(self, level: int = logging.NOTSET) -> None:
        logging.Handler.__init__(self, level)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        """Ignored: the stream is always the current ``sys.stderr``."""


# -- the client library's lines about a dropped connection -----------------------------------------

_RECONNECTION_LINES: tuple[tuple[str, str, int], ...] = (
    # (logger, how its format string starts, the level it is logged at instead)
    ("aiormq.connection", "Unexpected connection close from remote", logging.WARNING),
    # The traceback of the close just logged: the same news again.
    ("aiormq.connection", "Cancelling cause reader exited abnormally", logging.DEBUG),
    ("aiormq.connection", "error when creating transport", logging.WARNING),
    ("aio_pika.robust_connection", "Reconnect attempt failed", logging.WARNING),
    # A robust channel's close callback finding its connection closed (see `_is_channel_noise`).
    ("aio_pika.tools", "Callback %r error", logging.WARNING),
)


_CHANNEL_CLOSE_ERRORS = frozenset({"RuntimeError", "ChannelInvalidStateError"})
"""What a robust channel's close callback raises when its connection or transport is already gone
("... closed", "No active transport in channel"): aio-pika restores the channel on reconnection."""


def _is_channel_noise(record: logging.LogRecord) -> bool:
    args = record.args if isinstance(record.args, tuple) else ()
    return (
        len(args) >= 2
        and "RobustChannel._on_close" in repr(args[0])
        and args[1] in _CHANNEL_CLOSE_ERRORS
    )


class _ReconnectionLevels(logging.Filter):
    """Re-levels aio-pika's and aiormq's lines about a connection the broker dropped.

    The robust connection reconnects on its own (jiexu logs ``amqp_connection_lost`` and
    ``amqp_connection_restored``, and ``jiexu_broker_connection_up`` shows the outage), so these are
    warnings, not errors: an operator's error alerts stay for what needs a person. Lines are matched
    by their logger and format string; any other line of these loggers passes unchanged.
    """

    _jiexu = True

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.msg if isinstance(record.msg, str) else ""
        for name, prefix, level in _RECONNECTION_LINES:
            if record.name != name or not message.startswith(prefix):
                continue
            if name == "aio_pika.tools" and not _is_channel_noise(record):
                return True
            if level < record.levelno:
                record.levelno = level
                record.levelname = logging.getLevelName(level)
                return logging.getLogger(name).isEnabledFor(level)
            return True
        return True


def relevel_reconnection_logs() -> None:
    """Install `_ReconnectionLevels` on the client library's loggers (idempotent).

    `configure_logging` calls it; a process that configures logging its own way may call it too.
    """
    for name in sorted({line[0] for line in _RECONNECTION_LINES}):
        logger = logging.getLogger(name)
        if not any(getattr(f, "_jiexu", False) for f in logger.filters):
            logger.addFilter(_ReconnectionLevels())


def configure_logging(level: str = "INFO", json: bool = True) -> None:
    """Configure structlog for a jiexu process; logs go to stderr so stdout stays for results.

    The standard library's loggers (aio-pika, aiormq, httpx) go through the same masking and
    rendering, so nothing reaches the log unmasked by another route.

    Events below ``level`` cost a no-op call: `structlog.make_filtering_bound_logger` filters when
    the method is called, before any processor (context merging, masking, rendering) runs. So
    per-message events on the hot path are logged at DEBUG and cost nothing in production.
    Output goes to ``sys.stderr`` as it is at each write, not as it was when this was called.
    """
    numeric_level = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    renderer: Any = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, mask_pii, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=stderr_logger_factory,
        cache_logger_on_first_use=False,
    )
    handler = StderrHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                mask_pii,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_jiexu", False)]:
        root.removeHandler(old)
    handler._jiexu = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    # Libraries are chatty at INFO (aiormq logs every frame at DEBUG): keep them at WARNING+.
    root.setLevel(max(numeric_level, logging.WARNING))
    relevel_reconnection_logs()
