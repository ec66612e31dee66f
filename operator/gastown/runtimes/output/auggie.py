"""Augment's auggie in ``--print --quiet`` text mode.

stdout holds the final assistant message, then ``Request ID: <id>``. stderr holds its status
lines: before each retry of a model request it prints why and how long it waits, and a rate
limit (HTTP 429) is ``Rate limit reached. Retrying in 3s…`` — the delay is the server's
``Retry-After`` (10 s when the server gave none). A run that gives up prints ``❌ ...``; with
``--retry-timeout N`` a rate limit that outlasts N seconds ends it with ``❌ Agent execution
failed: Request failed after exceeding retry timeout of Ns: Rate limited``. Without that flag
it retries a 429 until it is killed, so the retry lines alone must say it. (Its JSON output
mode prints nothing until the end, and nothing at all when the run fails.) It reports no token
usage in print mode.
"""

from __future__ import annotations

import re

from . import Report, from_text, json_lines

_RETRY = re.compile(r"^(?P<why>.*?)\s*Retrying in (?P<secs>\d+(?:\.\d+)?)s\b")
_RATE = re.compile(r"rate limit(ed)?\b|\b429\b", re.IGNORECASE)
_NOISE = ("Warning:", "Request ID:", "❌", "⎿")


def read(log: str) -> Report:
    report, answer, last = Report(), [], None  # last: (is it a rate limit, the line) of the latest status
    lines = [text for data, text in json_lines(log) if data is None]
    for line in lines:
        retry = _RETRY.match(line)
        if retry:
            limited = bool(_RATE.search(retry.group("why")))
            last = (limited, line)
            if limited:
                report.retry_after = float(retry.group("secs"))
        elif line.startswith("❌"):
            last = (bool(_RATE.search(line)), line)
            report.error = line.lstrip("❌ ").strip()[:300]
        elif line and not line.startswith(_NOISE):
            answer.append(line)
    if last is not None:
        # the latest status decides: still (or finally) held back by a rate limit, or not
        report.rate_limited = last[0]
        if report.rate_limited and report.error is None:
            report.error = last[1][:300]
    elif report.error is None:
        report = from_text([line for line in lines if not line.startswith("Warning:")], report)
    report.answer = "\n".join(answer).strip() or None
    return report
