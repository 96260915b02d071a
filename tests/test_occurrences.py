"""Lesson occurrences: weekly dates minus closures, placed right across DST."""

from datetime import UTC, date, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from models.clock import is_dst_change_week, occurrence_start
from models.scheduling import slot_dates

NY = ZoneInfo("America/New_York")


def test_dates_skip_closures_and_include_the_last_day():
    # Mondays of 2026-09-07 .. 2026-10-05; 2026-10-05 is the range's last day and a Monday.
    dates = slot_dates(0, date(2026, 9, 7), date(2026, 10, 5), {date(2026, 9, 14)})
    assert dates == [date(2026, 9, 7), date(2026, 9, 21), date(2026, 9, 28), date(2026, 10, 5)]


def test_range_starting_midweek_finds_the_next_weekday():
    assert slot_dates(4, date(2026, 11, 24), date(2026, 12, 5)) == [date(2026, 11, 27), date(2026, 12, 4)]
    assert slot_dates(1, date(2026, 11, 25), date(2026, 11, 30)) == []


def test_fall_back_keeps_wall_clock_and_changes_offset():
    # DST ends in New York on 2026-11-01: a Monday 16:00 lesson stays at 16:00 local time.
    before = occurrence_start(date(2026, 10, 26), 16 * 60, NY)
    after = occurrence_start(date(2026, 11, 2), 16 * 60, NY)
    assert before.isoformat() == "2026-10-26T16:00:00-04:00"
    assert after.isoformat() == "2026-11-02T16:00:00-05:00"
    assert after.astimezone(UTC) - before.astimezone(UTC) == timedelta(days=7, hours=1)
    assert is_dst_change_week(date(2026, 11, 2), 16 * 60, NY)
    assert not is_dst_change_week(date(2026, 11, 9), 16 * 60, NY)


def test_spring_forward():
    # DST starts 2026-03-08: the Sunday lesson that day is already at -04:00.
    assert occurrence_start(date(2026, 3, 1), 10 * 60, NY).utcoffset() == timedelta(hours=-5)
    assert occurrence_start(date(2026, 3, 8), 10 * 60, NY).utcoffset() == timedelta(hours=-4)
    assert is_dst_change_week(date(2026, 3, 8), 10 * 60, NY)


@given(
    weekday=st.integers(0, 6),
    first=st.dates(date(2020, 1, 1), date(2030, 1, 1)),
    days=st.integers(0, 400),
    closed=st.sets(st.integers(0, 400), max_size=10),
)
def test_dates_property(weekday, first, days, closed):
    last = first + timedelta(days=days)
    closures = {first + timedelta(days=offset) for offset in closed}
    dates = slot_dates(weekday, first, last, closures)
    expected = [
        first + timedelta(days=i)
        for i in range(days + 1)
        if (first + timedelta(days=i)).weekday() == weekday and first + timedelta(days=i) not in closures
    ]
    assert dates == expected
