"""Cron schedules, as a Kubernetes CronJob reads them: five fields or a macro, in UTC.

    minute hour day-of-month month day-of-week      e.g. "17 */2 * * 1-5", "0 4 * jan,jul sun"
    @hourly @daily @midnight @weekly @monthly @yearly @annually

Each field is ``*``, a number, a range ``a-b``, either with a step ``/n``, or a comma list of
those; months and weekdays may be named (jan, sun); weekday 7 is Sunday as 0 is. When both
day fields are restricted a day matches either one, as in every cron since Vixie's.
The local daemon fires its Dogs with this; on a cluster the same text goes into CronJobs, so
a schedule that parses here is one Kubernetes accepts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

MACROS = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@weekly": "0 0 * * 0",
          "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *"}
MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
# (name, lowest, highest, names counted from the lowest)
FIELDS = [("minute", 0, 59, []), ("hour", 0, 23, []), ("day of month", 1, 31, []),
          ("month", 1, 12, MONTHS), ("day of week", 0, 7, DAYS)]
SEARCH_DAYS = 366 * 5  # a valid schedule fires within four years (29 February)


class ScheduleError(ValueError):
    pass


def _value(text: str, name: str, low: int, high: int, names: list[str]) -> int:
    if text.lower() in names:
        return names.index(text.lower()) + low
    if not text.isdigit():
        raise ScheduleError(f"{name}: {text!r} is not a number" + (f" or a name ({', '.join(names)})" if names else ""))
    n = int(text)
    if not low <= n <= high:
        raise ScheduleError(f"{name}: {n} is outside {low}-{high}")
    return n


def _field(text: str, name: str, low: int, high: int, names: list[str]) -> frozenset[int]:
    out: set[int] = set()
    for part in text.split(","):
        rng, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ScheduleError(f"{name}: step {step_text!r} must be a positive number")
            step = int(step_text)
        if rng == "*":
            first, last = low, high
        elif "-" in rng:
            a, b = rng.split("-", 1)
            first, last = _value(a, name, low, high, names), _value(b, name, low, high, names)
            if first > last:
                raise ScheduleError(f"{name}: range {rng} runs backwards")
        else:
            first = _value(rng, name, low, high, names)
            last = high if step_text else first
        out.update(range(first, last + 1, step))
    return frozenset(out)


@dataclass(frozen=True)
class Schedule:
    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool  # day of month is "*"
    any_weekday: bool  # day of week is "*"

    @classmethod
    def parse(cls, text: str) -> Schedule:
        expanded = MACROS.get(text.strip().lower(), text) if text.strip().startswith("@") else text
        if expanded.startswith("@"):
            raise ScheduleError(f"unknown macro {text!r} (one of {', '.join(MACROS)})")
        parts = expanded.split()
        if len(parts) != 5:
            raise ScheduleError(f"{text!r} has {len(parts)} fields; a schedule has 5: "
                                "minute hour day-of-month month day-of-week")
        sets = [_field(p, *spec) for p, spec in zip(parts, FIELDS, strict=True)]
        weekdays = frozenset(d % 7 for d in sets[4])
        return cls(text, sets[0], sets[1], sets[2], sets[3], weekdays, parts[2] == "*", parts[4] == "*")

    def _day_matches(self, when: datetime) -> bool:
        in_month = when.day in self.days
        in_week = (when.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return in_month and in_week
        return in_month or in_week

    def next_after(self, when: datetime) -> datetime:
        """The first time strictly after ``when`` (to the minute) that the schedule fires."""
        t = when.replace(second=0, microsecond=0) + timedelta(minutes=1)
        end = t + timedelta(days=SEARCH_DAYS)
        while t < end:
            if t.month not in self.months:
                t = (t.replace(day=1, hour=0, minute=0) + timedelta(days=32)).replace(day=1)
            elif not self._day_matches(t):
                t = t.replace(hour=0, minute=0) + timedelta(days=1)
            elif t.hour not in self.hours:
                t = t.replace(minute=0) + timedelta(hours=1)
            elif t.minute not in self.minutes:
                t += timedelta(minutes=1)
            else:
                return t
        raise ScheduleError(f"{self.text!r} never fires (no such date)")


def check(text: str) -> Schedule:
    """Parse ``text`` and make sure it fires at all (``30 2 31 feb *`` parses but never does)."""
    schedule = Schedule.parse(text)
    schedule.next_after(datetime(2000, 1, 1))
    return schedule
