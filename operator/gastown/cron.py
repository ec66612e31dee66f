"""Cron schedules, as a Kubernetes CronJob reads them: five fields or a macro, in UTC.

    minute hour day-of-month month day-of-week      e.g. "17 */2 * * 1-5", "0 4 * jan,jul sun"
    @hourly @daily @midnight @weekly @monthly @yearly @annually

Each field is ``*``, a number, a range ``a-b``, either with a step ``/n``, or a comma list of
those; months and weekdays may be named (jan, sun); weekday 7 is Sunday as 0 is. When both
day fields are restricted a day matches either one, as in every cron since Vixie's.
The local daemon fires its Dogs with this; on a cluster the same text goes into CronJobs, so
a schedule that parses here is one Kubernetes accepts.

The schedule arithmetic (what a field means, when it next fires) is cronsim's
(https://github.com/cuu508/cronsim). This module adds what cronsim leaves out: the macros,
exactly five fields, none of cronsim's extensions (``L``, ``W`` and ``#``, which Kubernetes
refuses, and ``?``, refused here as before), and an error that names the field and the
offending value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from cronsim import CronSim, CronSimError

MACROS = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@weekly": "0 0 * * 0",
          "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *"}
MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
# (name, lowest, highest, names counted from the lowest)
FIELDS = [("minute", 0, 59, []), ("hour", 0, 23, []), ("day of month", 1, 31, []),
          ("month", 1, 12, MONTHS), ("day of week", 0, 7, DAYS)]
_SYNTAX = re.compile(r"^(\*|[0-9a-z]+(-[0-9a-z]+)?)(/[0-9a-z]*)?$")


class ScheduleError(ValueError):
    pass


def _explain(text: str, name: str, low: int, high: int, *, names: list[str]) -> str:
    """Why cronsim refused one field, in words that name the field and the offending value."""
    def value(token: str) -> str | None:
        if token.lower() in names:
            return None
        if not token.isdigit():
            return f"{name}: {token!r} is not a number" + (f" or a name ({', '.join(names)})" if names else "")
        if not low <= int(token) <= high:
            return f"{name}: {int(token)} is outside {low}-{high}"
        return None

    for part in text.split(","):
        if not _SYNTAX.match(part.lower()):
            return f"{name}: {part!r} is not a number, a range a-b or *, optionally with a step /n"
        rng, _, step = part.partition("/")
        if "/" in part and (not step.isdigit() or int(step) == 0):
            return f"{name}: step {step!r} must be a positive number"
        bounds = [] if rng == "*" else rng.split("-", 1)
        for token in bounds:
            if problem := value(token):
                return problem
        if len(bounds) == 2:
            first, last = (names.index(t.lower()) + low if t.lower() in names else int(t) for t in bounds)
            if first > last:
                return f"{name}: range {rng} runs backwards"
    return f"{name}: {text!r} is not a valid field"


def _check_field(index: int, text: str) -> None:
    name, low, high, names = FIELDS[index]
    lowered = text.lower()
    # cronsim also takes L, W and # (a Kubernetes CronJob does not) and ?: the syntax check comes first
    if (all(_SYNTAX.match(part) for part in lowered.split(","))
            and all(word in names for word in re.findall(r"[a-z]+", lowered))):
        probe = ["*"] * 5
        probe[index] = lowered
        try:
            CronSim(" ".join(probe), datetime(2000, 1, 1))
            return
        except CronSimError:
            pass
    raise ScheduleError(_explain(text, name, low, high, names=names))


@dataclass(frozen=True)
class Schedule:
    text: str
    expression: str = field(default="", compare=False)  # the five fields (a macro expanded)

    @classmethod
    def parse(cls, text: str) -> Schedule:
        """Check each field (a schedule may parse and still never fire: see ``check``)."""
        expanded = MACROS.get(text.strip().lower(), text) if text.strip().startswith("@") else text
        if expanded.startswith("@"):
            raise ScheduleError(f"unknown macro {text!r} (one of {', '.join(MACROS)})")
        parts = expanded.split()
        if len(parts) != 5:
            raise ScheduleError(f"{text!r} has {len(parts)} fields; a schedule has 5: "
                                "minute hour day-of-month month day-of-week")
        for i, part in enumerate(parts):
            _check_field(i, part)
        return cls(text, " ".join(parts).lower())

    def next_after(self, when: datetime) -> datetime:
        """The first time strictly after ``when`` (to the minute) that the schedule fires."""
        try:
            return next(CronSim(self.expression, when))
        except CronSimError as e:  # each field is valid, so together they name no date (31 Feb)
            raise ScheduleError(f"{self.text!r} never fires (no such date)") from e


def check(text: str) -> Schedule:
    """Parse ``text`` and make sure it fires at all (``30 2 31 feb *`` parses but never does)."""
    schedule = Schedule.parse(text)
    schedule.next_after(datetime(2000, 1, 1))
    return schedule
