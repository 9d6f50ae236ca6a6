"""structlog configuration: JSON events on stderr, with personal data masked everywhere.

`mask_pii` walks every field of an event (nested mappings, sequences, pydantic models, dataclasses,
and the keys of mappings too) and masks:

- 公民身份号码 (18 characters: 17 digits and a digit or X) anywhere in any string;
- bank account and card numbers: runs of 13 to 30 digits in free text, and the whole value of
  account-number fields;
- personal names, by field name (a name in free text cannot be recognised: don't log it);
- secrets (passwords, private keys, tokens) by field name, and the password in URLs.

UUIDs (with or without hyphens), ISO timestamps, fen amounts (integers are never masked outside
sensitive fields), 6-digit agency codes and compact timestamps in timestamp/amount fields stay
readable. Context (``agency``, ``case_id``, ``message_id``) is bound with `bind_message_context`.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import logging
import re
import sys
import threading
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any
from uuid import UUID

import structlog
from pydantic import BaseModel

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
    "stderr_logger_factory",
]

_NON_ALNUM_BEFORE = r"(?<![0-9A-Za-z])"
_NON_ALNUM_AFTER = r"(?![0-9A-Za-z])"
# Tokens that must survive untouched: UUIDs, hyphenated or as 32 hex digits with a letter in them.
_UUID = (
    _NON_ALNUM_BEFORE
    + r"(?:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    + r"|(?=[0-9]*[a-fA-F])[0-9a-fA-F]{32})"
    + _NON_ALNUM_AFTER
)
# An 18-character 公民身份号码; only digits may not touch it, so "ID110101..." is still caught.
_ID = r"(?<![0-9])(?P<id_head>[1-9][0-9]{5})[0-9]{11}(?P<id_tail>[0-9Xx])(?![0-9])"
# Long digit runs in free text are account or card numbers.
# Not the digits of a decimal number ("0.59213420552314 seconds"): no "digit." before, no
# ".digit" after.
_ACCOUNT = (
    r"(?<![0-9])(?<![0-9]\.)(?P<acct_head>[0-9]{4})[0-9]{5,22}(?P<acct_tail>[0-9]{4})"
    r"(?![0-9])(?!\.[0-9])"
)
# user:password@ in URLs (amqp://, postgresql://, http://).
_URL_PASSWORD = r"(?P<url_head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)[^@\s/]+(?P<url_tail>@)"

_FULL_RE = re.compile(f"(?P<uuid>{_UUID})|(?P<url>{_URL_PASSWORD})|(?P<id>{_ID})|(?P<acct>{_ACCOUNT})")
_ID_ONLY_RE = re.compile(f"(?P<uuid>{_UUID})|(?P<url>{_URL_PASSWORD})|(?P<id>{_ID})")
# What every match above needs: an ID number has 17 digits in a row, an account number at least
# 13, a URL password "://". Text without any of them (nearly every value) is returned as it is.
_SUSPECT_RE = re.compile(r"[0-9]{13}|://")


def _norm(key: str) -> str:
    return key.lower().replace("_", "").replace("-", "")


_NAME_KEYS = frozenset(
    _norm(k)
    for k in (
        "name", "person_name", "full_name", "insured_name", "psn_name", "xm", "holder_name",
        "account_name", "payee_name", "payer_name", "contact_name", "applicant_name",
        "beneficiary_name",
    )
)
_ACCOUNT_KEYS = frozenset(
    _norm(k)
    for k in (
        "account_number", "account_no", "bank_account_number", "card_number", "card_no",
        "bank_card", "iban",
    )
)
_ID_KEYS = frozenset(
    _norm(k)
    for k in ("id_number", "idno", "id_no", "citizen_id", "psn_cert_no", "cert_no", "certno")
)
_SECRET_KEYS = frozenset(
    _norm(k)
    for k in ("password", "passwd", "secret", "private_key", "token", "api_key", "amqp_password")
)
# Digits in these fields are times, amounts or counters, never accounts (ID numbers still masked).
_NUMERIC_KEY_SUFFIXES = (
    "timestamp", "_at", "_ts", "time", "_ms", "_ns", "_s", "fen", "amount", "balance", "count",
    "total", "seq", "offset", "delivery_tag", "size", "bytes", "duration", "elapsed",
)


def mask_name(name: str) -> str:
    """Keep the first character of a name and hide the rest: 张三丰 -> 张**."""
    return name[:1] + "*" * max(len(name) - 1, 1) if name else name


def _substitute(match: re.Match[str]) -> str:
    if match.group("uuid"):
        return match.group(0)
    if match.group("url"):
        return f"{match.group('url_head')}****{match.group('url_tail')}"
    if match.group("id"):
        return f"{match.group('id_head')}********{match.group('id_tail')}"
    return f"{match.group('acct_head')}****{match.group('acct_tail')}"


def mask_value(text: str, *, accounts: bool = True) -> str:
    """Mask ID numbers, URL passwords and (unless ``accounts`` is false) long digit runs in text."""
    if _SUSPECT_RE.search(text) is None:
        return text
    return (_FULL_RE if accounts else _ID_ONLY_RE).sub(_substitute, text)


_SECRET, _NAME, _SENSITIVE, _NUMERIC, _TEXT = range(5)


@functools.lru_cache(maxsize=4096)
def _key_kind(key: str) -> int:
    """What a field's name says about its value (cached: events repeat the same few names)."""
    norm = _norm(key)
    if norm in _SECRET_KEYS:
        return _SECRET
    if norm in _NAME_KEYS:
        return _NAME
    if norm in _ACCOUNT_KEYS or norm in _ID_KEYS:
        return _SENSITIVE
    if key.lower().endswith(_NUMERIC_KEY_SUFFIXES):
        return _NUMERIC
    return _TEXT


def _mask_str(key: str | None, value: str) -> str:
    if key is None:
        return mask_value(value)
    kind = _key_kind(key)
    if kind == _SECRET:
        return "****"
    if kind == _NAME:
        return mask_name(mask_value(value))
    if kind == _SENSITIVE:
        masked = mask_value(value)
        # A short or odd-shaped value in a sensitive field: hide all of it but the last 4.
        return masked if masked != value else "****" + value[-4:] if len(value) > 8 else "****"
    return mask_value(value, accounts=kind != _NUMERIC)


_PLAIN = (bool, int, float, Decimal, UUID, datetime, date, time, enum.Enum, type(None))


def _mask(key: str | None, value: Any) -> Any:
    if isinstance(value, str):
        return _mask_str(key, value)
    if isinstance(value, int) and not isinstance(value, bool) and key is not None:
        # Integers are amounts, counts and times, except in a field named for an ID or account.
        if _key_kind(key) in (_SECRET, _SENSITIVE):
            return _mask_str(key, str(value))
        return value
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, Mapping):
        return {
            (mask_value(k) if isinstance(k, str) else k): _mask(
                k if isinstance(k, str) else None, v
            )
            for k, v in value.items()
        }
    if isinstance(value, BaseModel):
        return _mask(key, value.model_dump(mode="json"))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _mask(key, dataclasses.asdict(value))
    if isinstance(value, list | tuple | set | frozenset):
        return [_mask(key, v) for v in value]
    if isinstance(value, bytes | bytearray):
        return mask_value(bytes(value).decode("utf-8", errors="replace"))
    # Exceptions and anything else would be rendered through repr(): mask that text.
    return mask_value(repr(value))


def mask_pii(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask ID numbers, names, account numbers and secrets in every field."""
    for key in list(event_dict):
        event_dict[key] = _mask(key, event_dict[key])
    return event_dict


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
