"""Claude Code with ``--output-format stream-json``: one JSON event per line.

The ``result`` event ends the run: the answer, ``is_error``, ``api_error_status`` (429 is a
rate limit), ``usage`` and ``total_cost_usd``. ``system/api_retry`` events come before each of
the CLI's own retries, with the delay it took from the server's ``Retry-After``.
"""

from __future__ import annotations

from . import Report, from_text, json_lines


def read(log: str) -> Report:
    report, plain, result = Report(), [], None
    for data, text in json_lines(log):
        if data is None:
            plain.append(text)
        elif data.get("type") == "result":
            result = data
        elif data.get("type") == "system" and data.get("subtype") == "api_retry":
            if data.get("error_status") == 429 or data.get("error") == "rate_limit":
                report.rate_limited = True
            if data.get("retry_delay_ms") is not None:
                report.retry_after = float(data["retry_delay_ms"]) / 1000
    if result is None:  # the run ended before its result: only the retries and the plain lines say
        return from_text(plain, report)
    usage = result.get("usage") or {}
    report.input_tokens = sum(int(usage.get(k) or 0) for k in
                              ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"))
    report.output_tokens = int(usage.get("output_tokens") or 0)
    report.cost_usd = result.get("total_cost_usd")
    if result.get("is_error"):
        report.error = str(result.get("result") or result.get("subtype") or "error")[:300]
        status, kind = result.get("api_error_status"), result.get("api_error_type")
        report.rate_limited = status == 429 or kind == "rate_limit_error"
    else:
        report.answer = result.get("result")
        report.rate_limited = False  # it retried and got through
    return report
