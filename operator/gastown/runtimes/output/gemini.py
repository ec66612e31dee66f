"""Gemini CLI with ``--output-format stream-json``: one JSON event per line on stdout.

Events: ``init`` (session id, model), ``message`` (user and assistant text, the assistant's in
deltas), ``tool_use`` / ``tool_result``, ``error`` (warnings) and ``result``, which ends the run:
``status`` success or error, ``error.message`` and ``stats`` (tokens; no cost). A rate limit has
no status code in the result: the CLI formats a 429 as ``[API Error: <the API's message>]``
followed by its own quota advice, and a Google 429 carries its delay as "Suggested retry
after Ns" (from the ``RetryInfo`` detail) or "Please retry in Ns". While it retries (and when
it is stopped in the middle) only its stderr speaks: "Attempt 2 failed with status 429".
"""

from __future__ import annotations

import re

from . import RATE_LIMIT_PATTERNS, Report, from_text, json_lines, retry_after

# what the CLI appends to a 429, by the way it was authenticated (API key, Vertex, others)
_QUOTA_ADVICE = re.compile(r"request a quota increase|possible quota limitations", re.IGNORECASE)
_QUOTA_ERRORS = {"RetryableQuotaError", "TerminalQuotaError"}


def read(log: str) -> Report:
    report, plain, result = Report(), [], None
    answer: list[str] = []
    for data, text in json_lines(log):
        if data is None:
            plain.append(text)
            continue
        kind = data.get("type")
        if kind == "result":
            result = data
        elif kind in ("tool_use", "tool_result"):
            answer = []  # the answer is what the assistant said after its last tool
        elif kind == "message" and data.get("role") == "assistant":
            answer.append(str(data.get("content") or ""))
    if result is None:  # stopped before its result (a timeout while it retried): stderr says
        return from_text(plain, report)
    stats = result.get("stats") or {}
    report.input_tokens = int(stats.get("input_tokens") or 0)
    report.output_tokens = int(stats.get("output_tokens") or 0)
    if result.get("status") == "success":
        report.answer = "".join(answer).strip() or None
        return report
    error = result.get("error") or {}
    message = str(error.get("message") or error.get("type") or "error")
    report.error = " ".join(message.split())[:300]
    report.rate_limited = (error.get("type") in _QUOTA_ERRORS or bool(_QUOTA_ADVICE.search(message))
                           or any(p.search(message) for p in RATE_LIMIT_PATTERNS))
    if report.rate_limited:
        report.retry_after = retry_after(message)
        if report.retry_after is None:  # the delay the API asked for, as the retries logged it
            report.retry_after = next((d for d in map(retry_after, plain) if d is not None), None)
    return report
