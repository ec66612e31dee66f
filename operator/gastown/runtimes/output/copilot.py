"""GitHub Copilot CLI with ``--output-format json``: one JSON event per line.

The ``result`` event ends the run (``exitCode``, ``sessionId``). The answer is the last
top-level ``assistant.message`` with text. A rate limit is structured: ``model.call_failure``
with ``statusCode`` 429 before each of the CLI's own retries (it waits as long as the server's
``Retry-After`` says), ``assistant.turn_retry`` with reason ``rate_limit``, and, when it gives
up, ``session.error`` with ``errorType`` ``rate_limit`` and the total time it waited.

Tokens are not in this stream (its ``result`` has premium requests only): the CLI records each
model call as a ``session.usage_record`` event in its session store,
``$COPILOT_HOME/session-state/<sessionId>/events.jsonl`` (``~/.copilot`` by default). A resumed
session appends to the same file, so only the calls after its last ``session.start`` or
``session.resume`` are this run's. The store is found through ``env`` (the session's
environment), else this process's.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from . import Report, from_text, json_lines

_WAITED = re.compile(r"retried (\d+) times? \(total retry wait time: (\d+(?:\.\d+)?) ?s", re.IGNORECASE)


READS_FILES = True  # its token counts are in its session store, found through the session's env


def read(log: str, env: Mapping[str, str] | None = None) -> Report:
    report, plain, result = Report(), [], None
    failed_at: datetime | None = None  # the last 429, to time the wait before the next call
    for data, text in json_lines(log):
        if data is None:
            plain.append(text)
            continue
        kind, body = data.get("type"), data.get("data") or {}
        if kind == "result":
            result = data
        elif kind == "assistant.message" and body.get("content") and not body.get("parentToolCallId"):
            report.answer = body["content"]
        elif kind == "model.call_failure" and _is_429(body):
            report.rate_limited = True
            report.error = report.error or _one_line(body.get("errorMessage") or "429 from the model API")
            failed_at = _time(data)
        elif kind == "assistant.turn_retry" and body.get("reason") == "rate_limit":
            report.rate_limited = True
        elif kind == "model.call_start" and failed_at is not None:
            started = _time(data)
            if started is not None:
                report.retry_after = round((started - failed_at).total_seconds(), 3)
            failed_at = None
        elif kind == "session.error":
            report.error = _one_line(body.get("message") or body.get("errorType") or "error")
            if body.get("errorType") == "rate_limit" or _is_429(body):
                report.rate_limited = True
                waited = _WAITED.search(body.get("message") or "")
                if waited and int(waited.group(1)):
                    report.retry_after = round(float(waited.group(2)) / int(waited.group(1)), 3)
    if result is None or result.get("exitCode") != 0:  # the events so far and the plain lines say
        report = from_text(plain, report)
        report.error = report.error or next((ln[:300] for ln in reversed(plain) if ln), None)
    else:
        report.rate_limited, report.error = False, None  # it retried and got through
    if result is not None:
        _add_usage(report, str(result.get("sessionId") or ""), os.environ if env is None else env)
    return report


def _is_429(body: Mapping) -> bool:
    return body.get("statusCode") == 429 or body.get("errorCode") == "rate_limit_exceeded"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())[:300]


def _time(data: Mapping) -> datetime | None:
    try:
        return datetime.fromisoformat(str(data.get("timestamp")).replace("Z", "+00:00"))
    except ValueError:
        return None


def store(env: Mapping[str, str]) -> Path | None:
    """Where the CLI keeps its sessions for this environment."""
    if env.get("COPILOT_HOME"):
        return Path(env["COPILOT_HOME"]) / "session-state"
    return Path(env["HOME"]) / ".copilot" / "session-state" if env.get("HOME") else None


def _add_usage(report: Report, session_id: str, env: Mapping[str, str]) -> None:
    folder = store(env)
    if not session_id or folder is None or "/" in session_id or session_id.startswith("."):
        return
    try:
        events = (folder / session_id / "events.jsonl").read_text(errors="replace")
    except OSError:
        return
    records: list[dict] = []
    for data, _ in json_lines(events):
        if data is None:
            continue
        if data.get("type") in ("session.start", "session.resume"):
            records = []  # an earlier run of the same session: not this one's
        elif data.get("type") == "session.usage_record":
            records.append((data.get("data") or {}).get("usage") or {})
    report.input_tokens = sum(int(u.get("inputTokens") or 0) for u in records)
    report.output_tokens = sum(int(u.get("outputTokens") or 0) for u in records)
