"""Cron schedules as Kubernetes reads them: parsing, clear errors, and the next firing time."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from gastown.cron import Schedule, ScheduleError, check


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize("expr, after, expected", [
    ("* * * * *", "2026-11-24 10:15:30", "2026-11-24 10:16:00"),
    ("17 * * * *", "2026-11-24 10:17:00", "2026-11-24 11:17:00"),  # strictly after
    ("*/15 * * * *", "2026-11-24 10:16:00", "2026-11-24 10:30:00"),
    ("0 */6 * * *", "2026-11-24 19:00:00", "2026-11-25 00:00:00"),
    ("30 4 * * 0", "2026-11-24 10:00:00", "2026-11-29 04:30:00"),  # the next Sunday
    ("30 4 * * sun", "2026-11-24 10:00:00", "2026-11-29 04:30:00"),
    ("30 4 * * 7", "2026-11-24 10:00:00", "2026-11-29 04:30:00"),  # 7 is Sunday too
    ("0 9 * * mon-fri", "2026-11-27 10:00:00", "2026-11-30 09:00:00"),  # Friday after 9 -> Monday
    ("0 0 1 jan,jul *", "2026-11-24 00:00:00", "2027-01-01 00:00:00"),
    ("0 0 29 2 *", "2026-03-01 00:00:00", "2028-02-29 00:00:00"),  # the next leap day
    ("0 12 13 * 5", "2026-11-24 00:00:00", "2026-11-27 12:00:00"),  # day 13 OR a Friday
    ("5-10/5 1 * * *", "2026-11-24 01:05:00", "2026-11-24 01:10:00"),
    ("@hourly", "2026-11-24 10:59:59", "2026-11-24 11:00:00"),
    ("@weekly", "2026-11-24 10:00:00", "2026-11-29 00:00:00"),
    ("@monthly", "2026-12-31 23:59:00", "2027-01-01 00:00:00"),
])
def test_next_after(expr, after, expected):
    assert Schedule.parse(expr).next_after(at(after)) == at(expected)


@pytest.mark.parametrize("expr, message", [
    ("* * * *", "has 4 fields"),
    ("60 * * * *", "minute: 60 is outside 0-59"),
    ("* 24 * * *", "hour: 24 is outside 0-23"),
    ("* * 0 * *", "day of month: 0 is outside 1-31"),
    ("* * * 13 *", "month: 13 is outside 1-12"),
    ("* * * * 8", "day of week: 8 is outside 0-7"),
    ("*/0 * * * *", "step '0' must be a positive number"),
    ("10-5 * * * *", "range 10-5 runs backwards"),
    ("x * * * *", "'x' is not a number"),
    ("* * * * funday", "or a name (sun, mon"),
    ("@every 5m", "unknown macro"),
])
def test_errors_name_the_field(expr, message):
    with pytest.raises(ScheduleError, match=message.replace("(", r"\(").replace("*", r"\*")):
        check(expr)


def test_a_schedule_that_never_fires_is_refused():
    Schedule.parse("0 0 31 2 *")  # parses: each field is in range
    with pytest.raises(ScheduleError, match="never fires"):
        check("0 0 31 2 *")


def test_timezone_is_kept():
    nxt = Schedule.parse("0 3 * * *").next_after(at("2026-11-24 05:00:00"))
    assert nxt.tzinfo is UTC and nxt == at("2026-11-25 03:00:00")


@pytest.mark.parametrize("expr, message", [
    ("0 0 L * *", "day of month: 'L' is not a number"),  # cronsim's extensions Kubernetes refuses
    ("0 0 * * 5#2", "day of week: '5#2' is not a number, a range"),
    ("0 0 15W * *", "day of month: '15W' is not a number"),
    ("0 0 ? * *", "day of month: '?' is not a number, a range"),
    ("0 0 * * 5L", "day of week: '5L' is not a number or a name"),
    ("0 0 1-2-3 * *", "day of month: '1-2-3' is not a number, a range"),
    ("5/ * * * *", "minute: step '' must be a positive number"),
    ("0 0 * * sat-sun", "day of week: range sat-sun runs backwards"),
    ("0 0 * 1,13 *", "month: 13 is outside 1-12"),
    ("0 0 * * * *", "has 6 fields"),  # cronsim takes a seconds field: a CronJob does not
])
def test_what_kubernetes_refuses_is_refused_with_the_field_named(expr, message):
    with pytest.raises(ScheduleError, match=re.escape(message)):
        Schedule.parse(expr)


@pytest.mark.parametrize("expr, after, expected", [
    ("0 4 * JAN,Jul SUN", "2026-11-24 00:00:00", "2027-01-03 04:00:00"),  # names in any case
    ("@DAILY", "2026-11-24 10:00:00", "2026-11-25 00:00:00"),
    ("0 0 31 2 mon", "2026-11-24 00:00:00", "2027-02-01 00:00:00"),  # 31 Feb OR a Monday: it fires
    ("*/20 9-17/4 * * 1-5", "2026-11-27 17:40:00", "2026-11-30 09:00:00"),
])
def test_next_after_more(expr, after, expected):
    assert check(expr).next_after(at(after)) == at(expected)


def test_every_field_value_in_range_parses():
    for minute in range(60):
        Schedule.parse(f"{minute} * * * *")
    for day in range(8):
        Schedule.parse(f"0 0 * * {day}")
    assert Schedule.parse("17 * * * *") == Schedule.parse("17 * * * *")
