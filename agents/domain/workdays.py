"""China's working days (工作日): weekends and statutory holidays off, some weekends worked (调休).

Sources, by year, first match wins:

1. the `YearCalendar` objects the calendar is given (an agency's calendar files, read by the
   adapter `agents.calendars`): the State Council publishes next year's schedule around November,
   before any package release has it;
2. the `chinesecalendar` package (2004-2026 in the installed release);
3. otherwise weekdays only (Monday-Friday), reported once per year through ``on_missing_year``
   (the adapter logs a ``workdays.calendar_missing`` WARNING): a deadline a few days wrong is
   better than an agent that stops.

Queries never raise for lack of data. Giving the same year twice does raise (`CalendarError`): that
is a configuration error to fix at start-up, not something to discover at the year's end. A year
marked ``provisional`` (not the official calendar) is used, and reported through ``on_provisional``
when it is added.

This module is pure: it reads no files and logs nothing; `agents.calendars.open_calendar` builds a
`WorkingCalendar` from calendar files and wires the warnings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date, timedelta
from typing import Any, Protocol

import chinese_calendar
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "CalendarError",
    "MissingYearCallback",
    "ProvisionalYearCallback",
    "WorkdayCalendar",
    "WorkingCalendar",
    "YearCalendar",
]

MissingYearCallback = Callable[[int], None]
"""``on_missing_year(year)``: no calendar knows `year`; weekdays stand in (called once per year)."""

ProvisionalYearCallback = Callable[[int, str, str], None]
"""``on_provisional(year, origin, source)``: a provisional year was added (from `origin`)."""


class CalendarError(ValueError):
    """Calendar data that cannot be used (a year given twice)."""


class YearCalendar(BaseModel):
    """One year's holidays and adjusted working days."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    year: int = Field(ge=1949, le=2200)
    holidays: frozenset[date] = frozenset()
    workdays: frozenset[date] = frozenset()
    source: str = ""
    provisional: bool = False
    names: dict[date, str] = Field(default_factory=dict)
    """What each listed day is (from the ``{"date": ..., "name": ...}`` form)."""

    @model_validator(mode="before")
    @classmethod
    def _named_days(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        names: dict[str, str] = dict(data.get("names", {}))
        for key in ("holidays", "workdays"):
            days: list[Any] = []
            for item in data.get(key, ()):
                if isinstance(item, dict):
                    days.append(item.get("date"))
                    if "name" in item:
                        names[str(item.get("date"))] = str(item["name"])
                else:
                    days.append(item)
            data[key] = days
        data["names"] = names
        return data

    @model_validator(mode="after")
    def _consistent(self) -> YearCalendar:
        outside = sorted(d for d in self.holidays | self.workdays if d.year != self.year)
        if outside:
            raise ValueError(f"dates outside {self.year}: {[d.isoformat() for d in outside]}")
        both = sorted(self.holidays & self.workdays)
        if both:
            raise ValueError(f"dates both holiday and workday: {[d.isoformat() for d in both]}")
        weekdays = sorted(d for d in self.workdays if d.weekday() < 5)
        if weekdays:
            raise ValueError(
                "workdays lists adjusted weekend working days only; these are weekdays: "
                f"{[d.isoformat() for d in weekdays]}"
            )
        return self

    def is_working_day(self, day: date) -> bool:
        if day in self.holidays:
            return False
        if day in self.workdays:
            return True
        return day.weekday() < 5


class WorkdayCalendar(Protocol):
    """What deadline arithmetic needs from a calendar."""

    def is_working_day(self, day: date) -> bool: ...

    def add_working_days(self, start: date, n: int) -> date: ...

    def working_days_between(self, a: date, b: date) -> int: ...


class WorkingCalendar:
    """China's working days from given years, then `chinesecalendar`, then weekdays."""

    def __init__(
        self,
        years: Iterable[YearCalendar] = (),
        *,
        use_package: bool = True,
        package_years: Iterable[int] | None = None,
        on_missing_year: MissingYearCallback | None = None,
        on_provisional: ProvisionalYearCallback | None = None,
    ) -> None:
        """`package_years` limits which years `chinesecalendar` is trusted for (default: every
        year it has data for); tests use it to stay meaningful when a newer package adds years.
        `on_missing_year` and `on_provisional` are told what the module docstring says."""
        self._years: dict[int, YearCalendar] = {}
        self._answers: dict[date, bool] = {}
        self._origin: dict[int, str] = {}
        self._use_package = use_package
        self._package_allowed = frozenset(package_years) if package_years is not None else None
        self._package_years: dict[int, bool] = {}
        self._warned: set[int] = set()
        self._on_missing_year = on_missing_year
        self._on_provisional = on_provisional
        for year in years:
            self.add(year, "given")

    def add(self, year: YearCalendar, origin: str = "given") -> None:
        """Use `year` (from `origin`, e.g. a file path); raises `CalendarError` if it is known."""
        if year.year in self._years:
            raise CalendarError(
                f"year {year.year} is defined twice: in {self._origin[year.year]} and in {origin}"
            )
        self._years[year.year] = year
        self._origin[year.year] = origin
        self._answers.clear()
        if year.provisional and self._on_provisional is not None:
            self._on_provisional(year.year, origin, year.source)

    def _package_knows(self, year: int) -> bool:
        if self._package_allowed is not None and year not in self._package_allowed:
            return False
        known = self._package_years.get(year)
        if known is None:
            try:
                chinese_calendar.is_workday(date(year, 1, 1))
                known = True
            except NotImplementedError:
                known = False
            self._package_years[year] = known
        return known

    def source_of(self, year: int) -> str:
        """Where this year's days come from: a file path, ``chinesecalendar`` or ``weekdays``."""
        if year in self._years:
            return self._origin[year]
        if self._use_package and self._package_knows(year):
            return "chinesecalendar"
        return "weekdays"

    def is_working_day(self, day: date) -> bool:
        # Deadlines walk day by day and chinese_calendar validates every call: remember answers.
        known = self._answers.get(day)
        if known is None:
            known = self._answers[day] = self._is_working_day(day)
        return known

    def _is_working_day(self, day: date) -> bool:
        loaded = self._years.get(day.year)
        if loaded is not None:
            return loaded.is_working_day(day)
        if self._use_package and self._package_knows(day.year):
            return bool(chinese_calendar.is_workday(day))
        if day.year not in self._warned:
            self._warned.add(day.year)
            if self._on_missing_year is not None:
                self._on_missing_year(day.year)
        return day.weekday() < 5

    def next_working_day(self, day: date) -> date:
        """`day` itself if it is a working day, else the first working day after it."""
        while not self.is_working_day(day):
            day += timedelta(days=1)
        return day

    def add_working_days(self, start: date, n: int) -> date:
        """The n-th working day after `start` (`start` itself does not count).

        ``n == 0`` returns `start` unchanged; a negative `n` counts back (the n-th working day
        before `start`).
        """
        step = 1 if n >= 0 else -1
        remaining = abs(n)
        day = start
        while remaining:
            day += timedelta(days=step)
            if self.is_working_day(day):
                remaining -= 1
        return day

    def working_days_between(self, a: date, b: date) -> int:
        """Working days in (a, b]: so ``working_days_between(s, add_working_days(s, n)) == n``.

        Negative when `b` is before `a` (minus the working days in (b, a]).
        """
        if b < a:
            return -self.working_days_between(b, a)
        count = 0
        day = a
        while day < b:
            day += timedelta(days=1)
            if self.is_working_day(day):
                count += 1
        return count
