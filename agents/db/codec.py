"""Value encodings shared by the store adapters."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from schemas.pii import mask_value

__all__ = ["dumps", "loads", "mask_key", "parse_ts", "ts"]


def dumps(value: Mapping[str, Any]) -> str:
    """Compact JSON with sorted keys (orjson; `json` for what orjson will not write)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode("utf-8")
    except TypeError:  # an integer beyond 64 bits, a key that is not a string, ...
        return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def loads(text: str | bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:  # what orjson will not read (an integer beyond 64 bits)
        value = json.loads(text)
    if not isinstance(value, dict):
        raise TypeError("expected a JSON object")
    return value


def ts(moment: datetime) -> str:
    """UTC ISO 8601 with microseconds: sorts as text, round-trips exactly."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def mask_key(person_key: str) -> str:
    masked = mask_value(person_key)
    return masked if masked != person_key else "****"
