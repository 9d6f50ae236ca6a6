"""Calendar files: reading an agency's holiday schedules into the pure `WorkingCalendar`, with warnings.

`open_calendar` builds the `agents.domain.workdays.WorkingCalendar` a process uses: the years of the
calendar files given (a directory's ``*.json``, sorted by name, then `extra_files`), then the
`chinesecalendar` package, then weekdays. It wires the calendar's callbacks to structlog WARNINGs:
``workdays.calendar_missing`` (once per year that falls back to weekdays) and
``workdays.provisional_calendar`` (a provisional year loaded). Loading a malformed file raises
`CalendarFileError`: a configuration error to fix at start-up.

Calendar file format (JSON, UTF-8). One year::

    {"year": 2027,
     "source": "国务院办公厅关于2027年部分节假日安排的通知 (国办发明电〔2026〕N号)",
     "holidays": ["2027-01-01", ...],      # days off, any weekday
     "workdays": ["2027-02-20", ...]}      # weekend days that are worked (调休)

A day may also be written ``{"date": "2027-01-01", "name": "元旦"}`` to say what it is.
or several years in one file: ``{"years": [{...}, {...}]}`` or a JSON list of such objects.
Optional ``"provisional": true`` marks a calendar that is not the official one (the checked-in
example beside this module, ``SAMPLE_CALENDAR_DIR``): it is used, and a WARNING says so when it is
loaded. Every date must lie in its year; a workday must be a Saturday or Sunday; no date may be
both. A year defined by two loaded files is an error.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import structlog
from pydantic import TypeAdapter

from agents.domain.workdays import CalendarError, WorkingCalendar, YearCalendar

__all__ = [
    "SAMPLE_CALENDAR_DIR",
    "CalendarFileError",
    "load_calendar_file",
    "open_calendar",
    "warn_missing_year",
    "warn_provisional",
]

log = structlog.get_logger(__name__)

SAMPLE_CALENDAR_DIR = Path(__file__).parent
"""Where the checked-in example calendars live (examples: never load them in production)."""


class CalendarFileError(CalendarError):
    """A calendar file that cannot be used, with the file and the reason."""


_MANY = TypeAdapter(list[YearCalendar])


def load_calendar_file(path: str | Path) -> list[YearCalendar]:
    """Read and check one calendar file (one year or several)."""
    path = Path(path)
    try:
        raw: Any = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(raw, dict) and "years" in raw:
            raw = raw["years"]
        if isinstance(raw, dict):
            raw = [raw]
        years = _MANY.validate_python(raw)
    except (OSError, ValueError) as exc:
        raise CalendarFileError(f"calendar file {path}: {exc}") from exc
    seen: set[int] = set()
    for year in years:
        if year.year in seen:
            raise CalendarFileError(f"calendar file {path}: year {year.year} appears twice")
        seen.add(year.year)
    return years


def warn_missing_year(year: int) -> None:
    """`WorkingCalendar`'s ``on_missing_year``: one WARNING per year counted as weekdays only."""
    log.warning(
        "workdays.calendar_missing",
        year=year,
        fallback="weekdays",
        hint="load the State Council's holiday schedule for this year as a calendar file",
    )


def warn_provisional(year: int, origin: str, source: str) -> None:
    """`WorkingCalendar`'s ``on_provisional``: a calendar that is not the official one is in use."""
    log.warning("workdays.provisional_calendar", year=year, origin=origin, source=source)


def open_calendar(
    extra_files: Iterable[str | Path] = (),
    directory: str | Path | None = None,
    *,
    years: Iterable[YearCalendar] = (),
    use_package: bool = True,
    package_years: Iterable[int] | None = None,
) -> WorkingCalendar:
    """The working calendar of `years`, every ``*.json`` in `directory` (sorted by name) and
    `extra_files`, with the WARNINGs above. Raises `CalendarFileError` for a bad file or a year
    defined twice."""
    try:
        calendar = WorkingCalendar(
            years,
            use_package=use_package,
            package_years=package_years,
            on_missing_year=warn_missing_year,
            on_provisional=warn_provisional,
        )
        files: list[str | Path] = sorted(Path(directory).glob("*.json")) if directory is not None else []
        files.extend(extra_files)
        for path in files:
            for year in load_calendar_file(path):
                calendar.add(year, str(path))
    except CalendarFileError:
        raise
    except CalendarError as exc:  # a year defined twice: in two files, or given and in a file
        raise CalendarFileError(str(exc)) from exc
    return calendar
