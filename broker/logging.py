"""structlog configuration: JSON events on stderr, with personal data masked everywhere."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

__all__ = ["configure_logging", "mask_pii", "mask_value"]

# An 18-character 公民身份号码 (17 digits and a digit or X) anywhere in a string.
_ID_RE = re.compile(r"(?<![0-9])([1-9][0-9]{5})[0-9]{8}([0-9]{3}[0-9Xx])(?![0-9])")
# Long digit runs are account numbers or card numbers.
_ACCOUNT_LONG_RE = re.compile(r"(?<![0-9])([0-9]{4})[0-9]{5,22}([0-9]{4})(?![0-9])")

_NAME_KEYS = frozenset({"name", "person_name", "account_name", "full_name"})
_ACCOUNT_KEYS = frozenset({"account_number", "account_no", "bank_account_number"})
_ID_KEYS = frozenset({"id_number", "idno", "citizen_id", "psn_cert_no"})


def mask_name(name: str) -> str:
    """Keep the first character of a name and hide the rest: 张三丰 -> 张**."""
    return name[:1] + "*" * max(len(name) - 1, 1) if name else name


def mask_value(text: str) -> str:
    """Mask ID numbers and long account numbers inside free text."""
    text = _ID_RE.sub(lambda m: f"{m.group(1)}********{m.group(2)[-1]}", text)
    return _ACCOUNT_LONG_RE.sub(lambda m: f"{m.group(1)}****{m.group(2)}", text)


def _mask(key: str | None, value: Any) -> Any:
    if isinstance(value, str):
        if key in _NAME_KEYS:
            return mask_name(value)
        if key in _ACCOUNT_KEYS or key in _ID_KEYS:
            return mask_value(value) if value != mask_value(value) else "****"
        return mask_value(value)
    if isinstance(value, Mapping):
        return {k: _mask(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask(key, v) for v in value]
    if isinstance(value, BaseException):
        return mask_value(repr(value))
    return value


def mask_pii(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask ID numbers, names and account numbers in every field."""
    for key in list(event_dict):
        event_dict[key] = _mask(key, event_dict[key])
    return event_dict


def configure_logging(level: str = "INFO", json: bool = True) -> None:
    """Configure structlog for a jiexu process; logs go to stderr so stdout stays for results."""
    renderer: Any = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            mask_pii,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
