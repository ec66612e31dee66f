"""Sourcegraph Amp in execute mode (``--execute``), with ``AMP_DEBUG=1``.

stdout holds the agent's last message. When a request to the Amp server fails, the CLI prints
only "Error: Unexpected error inside Amp CLI." unless ``AMP_DEBUG=1``; with it, the error
follows under "Debug details:", with the server's HTTP status and, for thread creation, the
response body whole::

    ThreadClientConnectionError: Failed to create thread-actors thread: 429 {"error": ..., "retryAfterSeconds": 3}
    Error: API request for getUserInfo failed: 429

A 429 there is a rate limit; the delay is the body's ``retryAfterSeconds`` (how Amp's server
states it in its 429 bodies) when it is there.
"""

from __future__ import annotations

import json
import re

from . import Report, from_text, json_lines

_FAILED = re.compile(r"(?:Failed to create thread-actors thread|API request for \w+ failed): (\d{3})\b ?(.*)")
_NOISE = ("Error:", "Debug details:", "at ", "Use 'feedback", "AmpError:", "ThreadClientConnectionError:")


def read(log: str) -> Report:
    report, plain, answer, status = Report(), [], [], None
    for _data, text in json_lines(log):
        plain.append(text)
        failed = _FAILED.search(text)
        if failed:
            status = int(failed.group(1))
            report.error = report.error or text[:300]
            if status == 429:
                report.rate_limited = True
                report.retry_after = _delay(failed.group(2)) if report.retry_after is None else report.retry_after
        elif text and not text.startswith(_NOISE):
            answer.append(text)
    if status is None:
        report = from_text([t for t in plain if not t.startswith("at ")], report)
    if report.error is None and report.rate_limited is False:
        report.answer = "\n".join(answer).strip() or None
    return report


def _delay(body: str) -> float | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    value = data.get("retryAfterSeconds") if isinstance(data, dict) else None
    return float(value) if isinstance(value, (int, float)) and value > 0 else None
