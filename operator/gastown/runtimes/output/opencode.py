"""OpenCode with ``run --format json``: one JSON event per line, on stdout.

``step_finish`` events close each model turn with its ``tokens`` (input without the cached part,
output without reasoning, both reported apart) and its ``cost``; ``text`` events carry what the
model said; an ``error`` event ends a run that failed: an ``APIError`` has the HTTP
``statusCode`` (429 is a rate limit) and the response headers (``retry-after``). OpenCode retries
a rate limit itself (six tries, each after the server's delay) before it gives up.

With ``--print-logs --log-level ERROR`` its own log lines come on stderr: a ``stream error`` line
for each failed try. They are the fallback, for a run stopped while it was still retrying (no
``error`` event then); the title request (``small=true``) is left out, its failure ends nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from . import Report, from_text, json_lines, retry_after


def read(log: str) -> Report:
    report, plain = Report(), []
    error: dict[str, Any] | None = None
    answer: list[str] = []
    answer_message: str | None = None
    finished = False  # the last event closed a turn that called no tool: the run's end
    for data, text in json_lines(log):
        if data is None:
            if "small=true" not in text:
                plain.append(text)
            continue
        kind, part = data.get("type"), data.get("part") or {}
        finished = kind == "step_finish" and part.get("reason") not in ("tool-calls", None)
        if kind == "step_finish":
            tokens = part.get("tokens") or {}
            cache = tokens.get("cache") or {}
            report.input_tokens += _int(tokens.get("input")) + _int(cache.get("read")) + _int(cache.get("write"))
            report.output_tokens += _int(tokens.get("output")) + _int(tokens.get("reasoning"))
            if isinstance(part.get("cost"), int | float):
                report.cost_usd = (report.cost_usd or 0.0) + float(part["cost"])
        elif kind == "text" and part.get("text"):
            if part.get("messageID") != answer_message:  # the answer is the last message's text
                answer_message, answer = part.get("messageID"), []
            answer.append(part["text"])
        elif kind == "error":
            error = data.get("error") or {}
    if answer:
        report.answer = "\n".join(answer)
    if error is None:  # finished, or stopped in the middle: then only its log lines say why
        return report if finished else from_text(plain, report)
    info = error.get("data") or {}
    report.error = str(info.get("message") or error.get("name") or "error").splitlines()[0][:300]
    body = str(info.get("responseBody") or "")
    report.rate_limited = info.get("statusCode") == 429 or "rate_limit_error" in body
    if report.rate_limited:
        report.retry_after = _retry_after(info.get("responseHeaders") or {}) or retry_after(report.error)
    return report


def _retry_after(headers: dict[str, Any]) -> float | None:
    """The server's delay from its headers: ``retry-after-ms``, or ``retry-after`` in seconds or
    as an HTTP date (counted from the response's ``date``)."""
    headers = {str(k).lower(): str(v) for k, v in headers.items()}
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        try:
            return float(headers[name]) * scale
        except (KeyError, ValueError):
            continue
    try:
        when = parsedate_to_datetime(headers["retry-after"])
        now = parsedate_to_datetime(headers["date"]) if "date" in headers else datetime.now(UTC)
        return max(0.0, (when - now).total_seconds())
    except (KeyError, TypeError, ValueError):
        return None


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) else 0
