"""pi and omp (its fork) with ``--mode json``: one agent event per line.

Each model call ends in a ``message_end`` event whose assistant message carries its ``usage``
(``input``, ``output``, ``cacheRead``, ``cacheWrite`` tokens and ``cost.total`` in dollars) and
its ``stopReason``. A call that failed ends with ``stopReason: "error"`` and an
``errorMessage`` that starts with the HTTP status (``429 {"type":"error",...}``); omp adds
``errorStatus`` and, when the server sent one, ``retry-after-ms=N`` at the end of the message.
Both CLIs retry on their own (``auto_retry_start`` events) before they give up: what counts is
the last assistant message. Lines that are not JSON (a crash before the first event, a
missing key) are read as text.
"""

from __future__ import annotations

import re

from . import RATE_LIMIT_PATTERNS, Report, from_text, json_lines, retry_after

_STATUS = re.compile(r"^\s*(\d{3})\b")
_RETRY_AFTER_MS = re.compile(r"\bretry-after-ms\s*[:=]\s*(\d+)", re.IGNORECASE)


def read(log: str) -> Report:
    report, plain, last = Report(), [], None
    for data, text in json_lines(log):
        if data is None:
            if text and not text.startswith(("{", '"')):  # a cut-off JSON line is no message
                plain.append(text)
            continue
        message = data.get("message")
        if data.get("type") != "message_end" or not isinstance(message, dict):
            continue
        if message.get("role") != "assistant":
            continue
        last = message
        usage = message.get("usage") or {}
        report.input_tokens += sum(int(usage.get(k) or 0) for k in ("input", "cacheRead", "cacheWrite"))
        report.output_tokens += int(usage.get("output") or 0)
        cost = (usage.get("cost") or {}).get("total")
        if cost:
            report.cost_usd = round((report.cost_usd or 0) + float(cost), 6)
    if last is None:  # it stopped before its first model call ended
        return from_text(plain, report)
    if last.get("stopReason") in ("error", "aborted"):
        message = str(last.get("errorMessage") or f"request {last.get('stopReason')}")
        report.error = message.splitlines()[0][:300]
        status = last.get("errorStatus")
        if status is None and (m := _STATUS.match(message)):
            status = int(m.group(1))
        report.rate_limited = status == 429 or "rate_limit_error" in message or any(
            p.search(message) for p in RATE_LIMIT_PATTERNS)
        if report.rate_limited:
            if m := _RETRY_AFTER_MS.search(message):
                report.retry_after = int(m.group(1)) / 1000
            else:
                report.retry_after = retry_after(message)
        return report
    report.answer = "\n".join(b.get("text", "") for b in last.get("content") or []
                              if isinstance(b, dict) and b.get("type") == "text") or None
    return report
