"""OpenAI Codex with ``codex exec --json``: one JSON event per line on stdout.

``turn.completed`` carries the turn's ``usage`` (``input_tokens`` with ``cached_input_tokens``
among them, ``output_tokens``); ``item.completed`` items of type ``agent_message`` are what the
agent said, the last one its answer; ``turn.failed`` ends a failed run with the error, and
``error`` events come before each of the CLI's own retries ("Reconnecting... 2/5 (exceeded
retry limit, last status: 429 Too Many Requests)"). Items of type ``error`` are notices (a
fallback from WebSockets to HTTPS, unknown model metadata), never a failure; tool output
(``command_execution``) is never read for rate limits.

The JSON events do not say how long the CLI waited before a retry: its log does, on stderr,
with ``RUST_LOG=...,codex_core::responses_retry=warn`` (the preset sets it): "retrying
sampling request (5/5 in 998.59ms)", where the delay is the server's Retry-After.
"""

from __future__ import annotations

import re

from . import RATE_LIMIT_PATTERNS, Report, from_text, json_lines, retry_after

_RETRY_DELAY = re.compile(r"retrying sampling request \(\d+/\d+ in (\d+(?:\.\d+)?)\s*(ns|µs|us|ms|s|m)\)")
_UNIT = {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def _limited(message: str) -> bool:
    return any(p.search(message) for p in RATE_LIMIT_PATTERNS)


def read(log: str) -> Report:
    report, plain = Report(), []
    failed: str | None = None
    completed = False
    delay: float | None = None
    for data, text in json_lines(log):
        if data is None:
            m = _RETRY_DELAY.search(text)
            if m:
                delay = float(m.group(1)) * _UNIT[m.group(2)]
                if _limited(text):
                    report.rate_limited = True
            else:
                plain.append(text)
            continue
        kind = data.get("type")
        if kind == "turn.completed":
            completed = True
            usage = data.get("usage") or {}
            report.input_tokens += int(usage.get("input_tokens") or 0)
            report.output_tokens += int(usage.get("output_tokens") or 0)
        elif kind == "item.completed":
            item = data.get("item") or {}
            if item.get("type") == "agent_message" and item.get("text"):
                report.answer = item["text"]
        elif kind == "turn.failed":
            failed = str((data.get("error") or {}).get("message") or "the turn failed")
        elif kind == "error":  # before a retry, or the failure itself
            message = str(data.get("message") or "")
            if _limited(message):
                report.rate_limited = True
                report.error = message[:300]
    if failed is not None:
        report.error = failed[:300]
        report.rate_limited = report.rate_limited or _limited(failed)
    elif completed:
        report.rate_limited = False  # it retried and got through
        return report
    if report.rate_limited:  # the delay it waited, else one its error names ("try again in 20 minutes")
        report.retry_after = delay if delay is not None else retry_after(report.error or "")
    return from_text(plain, report)  # the CLI's own lines (stderr), e.g. a usage limit's "try again in"
