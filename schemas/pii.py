"""Personal data in the contract's values, and how it is masked wherever it is written down.

`mask_pii` walks every field of an event (nested mappings, sequences, pydantic models, dataclasses,
and the keys of mappings too) and masks:

- 公民身份号码 (18 characters: 17 digits and a digit or X) anywhere in any string, also written
  with single spaces or hyphens between its digits ("110105 19491231 002X") when its birth date
  is a date;
- bank account and card numbers: runs of 13 to 30 digits in free text, also in groups of four
  separated by single spaces or hyphens ("6222 0212 3456 7890 123"), and the whole value of
  account-number fields;
- personal names, by field name, and in free text where something says it is a name: after a
  name key (``name='张伟'``, ``"account_name": "张伟"``, ``name=张伟``, as reprs and JSON put it)
  or a Chinese label (姓名, 户名, 参保人, 收款人, 持卡人, 账户名称); a name nothing points at
  cannot be recognised: don't write it;
- secrets (passwords, private keys, tokens) by field name, and the password in URLs.

UUIDs (with or without hyphens), ISO timestamps, fen amounts (integers are never masked outside
sensitive fields), 6-digit agency codes and compact timestamps in timestamp/amount fields stay
readable.

Pure functions (no logging, no I/O), so that the transport's log pipeline (`broker.logging`), the
stores and the command line all mask the same way.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import re
from collections.abc import Mapping, MutableMapping
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any
from uuid import UUID

from pydantic import BaseModel

__all__ = ["mask_name", "mask_pii", "mask_value"]

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
# An ID number with single spaces or hyphens between its characters (at least one of them);
# masked only when its birth date (characters 7 to 14) is a date, so that digit groups which are
# not an ID number (dates, phone numbers) stay as they are.
_SPACED_ID = r"(?<![0-9])(?P<sid>[1-9](?:[ -]?[0-9]){16}[ -]?[0-9Xx])(?![0-9A-Za-z])"
# Card and account numbers written in groups of four (the last group shorter), 13 digits or more.
_SPACED_ACCOUNT = r"(?<![0-9])(?P<sacct>[0-9]{4}(?:[ -][0-9]{4}){2,6}(?:[ -][0-9]{1,4})?)(?![0-9])"
_UUID_RE = re.compile(_UUID)
_SPACED_ID_RE = re.compile(_SPACED_ID)
_SPACED_ACCOUNT_RE = re.compile(_SPACED_ACCOUNT)
_SPACED_START_RE = re.compile(r"(?<![0-9])[0-9]")
# Names in free text: the value after a name key or a Chinese label, Han characters and middle dots.
_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
_NAME_FIELD_NAMES = (
    "name", "person_name", "full_name", "insured_name", "psn_name", "xm", "holder_name",
    "account_name", "payee_name", "payer_name", "contact_name", "applicant_name",
    "beneficiary_name",
)
_NAME_IN_TEXT_RE = re.compile(
    r"(?P<nlabel>(?<![A-Za-z0-9_])(?i:" + "|".join(_NAME_FIELD_NAMES) + r")['\"]?\s*[:=]\s*['\"]?"
    r"|(?:姓名|户名|参保人|收款人|持卡人|账户名称?)\s*[:：]?\s*)"
    f"(?P<nvalue>[{_HAN}][{_HAN}\u00b7]*)"
)
# What every match above needs: an ID number has 17 digits in a row (or digits with a space or
# hyphen between them), an account number at least 13, a URL password "://", a name in text a key
# or label. Text without any of them (nearly every value) is returned as it is.
_SUSPECT_RE = re.compile(
    r"[0-9]{13}|://|[0-9][ -][0-9]|(?i:name|xm)|姓名|户名|参保人|收款人|持卡人|账户名"
)


def _norm(key: str) -> str:
    return key.lower().replace("_", "").replace("-", "")


_NAME_KEYS = frozenset(_norm(k) for k in _NAME_FIELD_NAMES)
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


def _birth_date_plausible(id18: str) -> bool:
    year, month, day = int(id18[6:10]), int(id18[10:12]), int(id18[12:14])
    return 1850 <= year <= 2150 and 1 <= month <= 12 and 1 <= day <= 31


def _mask_spaced(text: str, accounts: bool) -> str:
    """ID and account numbers written with spaces or hyphens. Every place a digit run starts is
    tried in turn (a candidate that is not an ID number, e.g. digits whose "birth date" is not a
    date, consumes nothing, so an ID number right after it is still found); UUIDs are skipped."""
    uuids = [(m.start(), m.end()) for m in _UUID_RE.finditer(text)]
    out: list[str] = []
    done = pos = 0
    while (start := _SPACED_START_RE.search(text, pos)) is not None:
        at = start.start()
        inside = next((end for begin, end in uuids if begin <= at < end), None)
        if inside is not None:
            pos = inside
            continue
        replaced = _spaced_at(text, at, accounts)
        if replaced is None:
            pos = start.end()
            continue
        pos, masked = replaced
        out += [text[done:at], masked]
        done = pos
    out.append(text[done:])
    return "".join(out)


def _spaced_at(text: str, at: int, accounts: bool) -> tuple[int, str] | None:
    match = _SPACED_ID_RE.match(text, at)
    if match is not None:
        compact = re.sub(r"[ -]", "", match.group("sid"))
        if _birth_date_plausible(compact) and compact != match.group("sid"):
            return match.end(), f"{compact[:6]}********{compact[-1]}"
    if accounts:
        match = _SPACED_ACCOUNT_RE.match(text, at)
        if match is not None:
            digits = re.sub(r"[ -]", "", match.group("sacct"))
            if len(digits) >= 13:
                return match.end(), f"{digits[:4]}****{digits[-4:]}"
    return None


def _substitute_name(match: re.Match[str]) -> str:
    return match.group("nlabel") + mask_name(match.group("nvalue"))


def _mask_all(text: str, accounts: bool = True) -> str:
    """Every pattern, in order: spaced numbers, then plain ones and URL passwords, then names."""
    text = _mask_spaced(text, accounts)
    text = (_FULL_RE if accounts else _ID_ONLY_RE).sub(_substitute, text)
    return _NAME_IN_TEXT_RE.sub(_substitute_name, text)


def mask_value(text: str, *, accounts: bool = True) -> str:
    """Mask ID numbers, URL passwords, names said to be names and (unless ``accounts`` is false)
    account numbers in text."""
    if _SUSPECT_RE.search(text) is None:
        return text
    return _mask_all(text, accounts)


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
