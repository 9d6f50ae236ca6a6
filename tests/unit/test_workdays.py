"""China's working-day calendar: package data, agency calendar files, and the weekday fallback."""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import chinese_calendar
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from agents.calendars import SAMPLE_CALENDAR_DIR, CalendarFileError, load_calendar_file, open_calendar
from agents.domain.workdays import CalendarError, WorkingCalendar

SAMPLE_2027 = SAMPLE_CALENDAR_DIR / "2027.json"
# The installed chinesecalendar knows 2004-2026. Pinning that keeps these tests meaningful when a
# newer release learns 2027; `test_a_year_the_package_refuses_is_a_fallback` covers the real raise.
PACKAGE_YEARS = range(2004, 2027)


@pytest.fixture
def calendar_2027() -> WorkingCalendar:
    return open_calendar(extra_files=[SAMPLE_2027])


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _warnings(
    logs: list[MutableMapping[str, Any]], event: str
) -> list[MutableMapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == event]


def test_spring_festival_2026_matches_the_package_and_the_state_council() -> None:
    calendar = open_calendar()
    # 2026: Feb 15-23 off; Saturday Feb 14 and Saturday Feb 28 are adjusted working days.
    assert calendar.is_working_day(date(2026, 2, 14))
    assert not any(calendar.is_working_day(d) for d in _days(date(2026, 2, 15), date(2026, 2, 23)))
    assert calendar.is_working_day(date(2026, 2, 24))
    assert calendar.is_working_day(date(2026, 2, 28))
    for day in _days(date(2026, 1, 1), date(2026, 12, 31)):
        assert calendar.is_working_day(day) == chinese_calendar.is_workday(day), day


def test_adjusted_saturday_counts_and_the_holiday_is_skipped() -> None:
    calendar = open_calendar()
    assert calendar.add_working_days(date(2026, 2, 13), 1) == date(2026, 2, 14)
    assert calendar.add_working_days(date(2026, 2, 14), 1) == date(2026, 2, 24)


def test_national_day_2026_is_skipped_and_its_adjusted_saturday_counts() -> None:
    calendar = open_calendar()
    assert calendar.add_working_days(date(2026, 9, 30), 1) == date(2026, 10, 8)
    assert calendar.add_working_days(date(2026, 10, 9), 1) == date(2026, 10, 10)
    assert calendar.add_working_days(date(2026, 10, 10), 1) == date(2026, 10, 12)


def test_zero_days_is_the_start_and_negative_counts_back() -> None:
    calendar = open_calendar()
    assert calendar.add_working_days(date(2026, 2, 15), 0) == date(2026, 2, 15)
    assert calendar.add_working_days(date(2026, 2, 24), -1) == date(2026, 2, 14)
    assert calendar.next_working_day(date(2026, 2, 15)) == date(2026, 2, 24)


def test_working_days_between_counts_the_half_open_interval() -> None:
    calendar = open_calendar()
    assert calendar.working_days_between(date(2026, 2, 13), date(2026, 2, 24)) == 2
    assert calendar.working_days_between(date(2026, 2, 24), date(2026, 2, 13)) == -2
    assert calendar.working_days_between(date(2026, 3, 2), date(2026, 3, 2)) == 0


@settings(max_examples=200, deadline=None)
@given(
    start=st.dates(min_value=date(2025, 10, 1), max_value=date(2027, 11, 30)),
    n=st.integers(min_value=0, max_value=60),
)
def test_between_inverts_add_across_package_and_file_years(start: date, n: int) -> None:
    calendar = open_calendar(extra_files=[SAMPLE_2027])
    end = calendar.add_working_days(start, n)
    assert calendar.working_days_between(start, end) == n
    assert n == 0 or calendar.is_working_day(end)


def test_2027_without_a_calendar_falls_back_to_weekdays_and_warns_once() -> None:
    calendar = open_calendar(package_years=PACKAGE_YEARS)
    with capture_logs() as logs:
        assert calendar.is_working_day(date(2027, 1, 1))  # a Friday: a holiday in reality
        assert not calendar.is_working_day(date(2027, 1, 2))
        assert calendar.add_working_days(date(2026, 12, 31), 1) == date(2027, 1, 1)
        calendar.working_days_between(date(2027, 1, 1), date(2027, 12, 31))
    missing = _warnings(logs, "workdays.calendar_missing")
    assert len(missing) == 1
    assert missing[0]["year"] == 2027
    assert missing[0]["log_level"] == "warning"
    assert calendar.source_of(2027) == "weekdays"


def test_years_before_the_package_fall_back_too() -> None:
    calendar = open_calendar()
    with capture_logs() as logs:
        assert calendar.is_working_day(date(2003, 1, 6))
    assert [entry["year"] for entry in _warnings(logs, "workdays.calendar_missing")] == [2003]


def test_the_sample_2027_file_is_used_and_flagged_provisional() -> None:
    with capture_logs() as logs:
        calendar = open_calendar(extra_files=[SAMPLE_2027])
    assert _warnings(logs, "workdays.provisional_calendar")
    with capture_logs() as logs:
        assert not calendar.is_working_day(date(2027, 1, 1))
        assert not calendar.is_working_day(date(2027, 2, 5))
        assert calendar.is_working_day(date(2027, 2, 20))  # adjusted Saturday
        assert calendar.add_working_days(date(2026, 12, 31), 1) == date(2027, 1, 4)
    assert not _warnings(logs, "workdays.calendar_missing")
    assert calendar.source_of(2027) == str(SAMPLE_2027)
    assert calendar.source_of(2026) == "chinesecalendar"


def test_the_sample_file_says_it_must_be_replaced() -> None:
    raw = json.loads(SAMPLE_2027.read_text(encoding="utf-8"))
    assert raw["provisional"] is True
    assert "State Council" in raw["source"]
    assert "PLACEHOLDER" in raw["source"]
    (year,) = load_calendar_file(SAMPLE_2027)
    assert year.names[date(2027, 2, 5)].startswith("PLACEHOLDER")


def test_one_file_may_hold_several_years_in_either_form(tmp_path: Path) -> None:
    as_list = tmp_path / "list.json"
    as_list.write_text(
        json.dumps(
            [
                {"year": 2028, "holidays": ["2028-01-03"], "workdays": ["2028-01-08"]},
                {"year": 2029, "holidays": ["2029-01-01"]},
            ]
        )
    )
    as_years = tmp_path / "years.json"
    as_years.write_text(json.dumps({"years": [{"year": 2030, "holidays": ["2030-01-01"]}]}))
    calendar = open_calendar(extra_files=[as_list, as_years])
    with capture_logs() as logs:
        assert not calendar.is_working_day(date(2028, 1, 3))  # a Monday off
        assert calendar.is_working_day(date(2028, 1, 8))  # a Saturday worked
        assert not calendar.is_working_day(date(2029, 1, 1))
        assert not calendar.is_working_day(date(2030, 1, 1))
    assert not _warnings(logs, "workdays.calendar_missing")


def test_an_agency_file_overrides_the_package_for_its_year(tmp_path: Path) -> None:
    correction = tmp_path / "2026.json"
    correction.write_text(json.dumps({"year": 2026, "holidays": ["2026-03-02"]}))
    calendar = open_calendar(extra_files=[correction])
    assert not calendar.is_working_day(date(2026, 3, 2))
    assert not calendar.is_working_day(date(2026, 2, 14))  # the file knows no 调休


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ({"year": 2028, "workdays": ["2028-01-04"]}, "weekdays"),
        ({"year": 2028, "holidays": ["2029-01-01"]}, "outside"),
        ({"year": 2028, "holidays": ["2028-01-08"], "workdays": ["2028-01-08"]}, "both"),
        ({"year": 2028, "holidays": ["not a date"]}, "holidays"),
        ([{"year": 2028}, {"year": 2028}], "twice"),
    ],
)
def test_a_bad_calendar_file_is_refused_at_load(
    tmp_path: Path, content: object, reason: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content))
    with pytest.raises(CalendarFileError, match=reason):
        open_calendar(extra_files=[path])


def test_the_same_year_in_two_files_is_refused(tmp_path: Path) -> None:
    a = tmp_path / "a.json"
    b = tmp_path / "b.json"
    for path in (a, b):
        path.write_text(json.dumps({"year": 2028}))
    with pytest.raises(CalendarFileError, match="defined twice"):
        open_calendar(extra_files=[a, b])


def test_a_directory_of_calendars_loads_every_file(tmp_path: Path) -> None:
    (tmp_path / "2028.json").write_text(json.dumps({"year": 2028, "holidays": ["2028-01-03"]}))
    (tmp_path / "2029.json").write_text(json.dumps({"year": 2029, "holidays": ["2029-01-01"]}))
    calendar = open_calendar(directory=tmp_path)
    assert calendar.source_of(2028).endswith("2028.json")
    assert calendar.source_of(2029).endswith("2029.json")


def test_a_year_the_package_refuses_is_a_fallback() -> None:
    year = 2026
    while True:  # the first year the installed package has no data for
        try:
            chinese_calendar.is_workday(date(year, 1, 4))
        except NotImplementedError:
            break
        year += 1
    calendar = open_calendar()
    with capture_logs() as logs:
        first_monday = calendar.next_working_day(date(year, 1, 4))
    assert first_monday.year == year
    assert [entry["year"] for entry in _warnings(logs, "workdays.calendar_missing")] == [year]
    assert calendar.source_of(year) == "weekdays"


def test_queries_never_raise_far_outside_every_calendar() -> None:
    calendar = open_calendar()
    with capture_logs():
        assert calendar.add_working_days(date(2099, 12, 30), 3) == date(2100, 1, 4)
        assert calendar.working_days_between(date(1990, 1, 1), date(1990, 1, 8)) == 5


def test_the_pure_calendar_reports_through_its_callbacks_and_logs_nothing() -> None:
    missing: list[int] = []
    provisional: list[tuple[int, str, str]] = []
    (sample,) = load_calendar_file(SAMPLE_2027)
    with capture_logs() as logs:
        calendar = WorkingCalendar(
            [sample],
            package_years=PACKAGE_YEARS,
            on_missing_year=missing.append,
            on_provisional=lambda year, origin, source: provisional.append((year, origin, source)),
        )
        assert not calendar.is_working_day(date(2027, 1, 1))  # from the given year
        assert calendar.is_working_day(date(2028, 1, 3))  # a Monday: weekdays stand in
        calendar.add_working_days(date(2028, 1, 3), 30)
    assert logs == []
    assert missing == [2028]
    assert provisional == [(2027, "given", sample.source)]
    assert calendar.source_of(2027) == "given"


def test_the_pure_calendar_refuses_a_year_given_twice() -> None:
    year = load_calendar_file(SAMPLE_2027)[0]
    with pytest.raises(CalendarError, match="defined twice"):
        WorkingCalendar([year, year])
