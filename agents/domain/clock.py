"""Time as a port: the agent asks a `Clock`, tests move a `ManualClock` by hand.

Deadlines are counted in China's working days, so "today" is always the date in Asia/Shanghai,
whatever the host's time zone is.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Protocol, runtime_checkable
from zoneinfo import ZoneInfo

__all__ = ["CHINA_TZ", "Clock", "ManualClock", "SystemClock"]

CHINA_TZ = ZoneInfo("Asia/Shanghai")


@runtime_checkable
class Clock(Protocol):
    """Where the agent gets the time from."""

    def now(self) -> datetime:
        """The current instant, timezone-aware."""
        ...

    def today(self) -> date:
        """The current date in Asia/Shanghai (the date deadlines are counted on)."""
        ...


class SystemClock:
    """The host's clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def today(self) -> date:
        return datetime.now(CHINA_TZ).date()


class ManualClock:
    """A clock that only moves when told to: for tests and simulations.

    >>> clock = ManualClock(datetime(2026, 2, 13, 9, 0, tzinfo=CHINA_TZ))
    >>> clock.advance(days=1).today()
    datetime.date(2026, 2, 14)
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start if start is not None else datetime(2026, 1, 5, 9, 0, tzinfo=CHINA_TZ)
        _require_aware(self._now)

    def now(self) -> datetime:
        return self._now

    def today(self) -> date:
        return self._now.astimezone(CHINA_TZ).date()

    def set(self, moment: datetime) -> ManualClock:
        """Jump to `moment` (timezone-aware; may go backwards)."""
        _require_aware(moment)
        self._now = moment
        return self

    def set_date(self, day: date, hour: int = 9) -> ManualClock:
        """Jump to `hour` o'clock on `day` in Asia/Shanghai."""
        self._now = datetime(day.year, day.month, day.day, hour, tzinfo=CHINA_TZ)
        return self

    def advance(
        self, *, days: float = 0, hours: float = 0, minutes: float = 0, seconds: float = 0
    ) -> ManualClock:
        """Move forward (or back, with negative values) by the given amount."""
        self._now += timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
        return self


def _require_aware(moment: datetime) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("a Clock works with timezone-aware datetimes only")
