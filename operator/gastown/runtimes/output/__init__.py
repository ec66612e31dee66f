"""What a session's output says: rate limited or not (and for how long), tokens, cost, answer.

Each agent CLI has a reader, named by its preset's ``output`` (a module of this package with a
``read(log) -> Report``). Structured output comes first: JSON events and results, where a rate
limit is an HTTP status or an error type, never a number that happens to be 429. Text patterns
are the fallback, and only on what is not structured: ANSI colour codes stripped, JSON lines
(the agent's tool calls and their output) left out.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")

# What agent CLIs and model APIs print when a quota or rate limit stops them (on plain text only).
RATE_LIMIT_PATTERNS = tuple(re.compile(p, re.IGNORECASE) for p in (
    r"\brate[ _-]?limit(ed|s)?\b", r"too many requests", r"quota (exceeded|exhausted)", r"usage limit",
    r"resource[_ ]exhausted", r"overloaded_error",
    r"(status|error|http|code|api)[^0-9\n]{0,20}\b429\b", r"\b429\b[^0-9\n]{0,5}(too many|rate)",
))
_RETRY_AFTER = (
    re.compile(r"retry[- ]after\W{0,3}(\d+(?:\.\d+)?)\s*(ms|s|sec|seconds)?", re.IGNORECASE),
    re.compile(r"(?:try again|retry) in (\d+(?:\.\d+)?)\s*(ms|s|sec|seconds|m|min|minutes)\b", re.IGNORECASE),
)


@dataclass
class Report:
    rate_limited: bool = False
    retry_after: float | None = None  # seconds, when the provider said
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    answer: str | None = None  # the agent's final answer, where the output carries one
    error: str | None = None  # the error the CLI reported, one line

    def usage(self) -> dict[str, Any]:
        """The figures worth recording (the session record in the ledger, the metrics)."""
        return {k: v for k, v in asdict(self).items()
                if k in ("input_tokens", "output_tokens", "cost_usd") and v}


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def json_lines(log: str) -> Iterator[tuple[dict | None, str]]:
    """Each line of ``log``, ANSI-stripped: (the JSON object it holds, or None; the text)."""
    for line in strip_ansi(log).splitlines():
        stripped = line.strip()
        data = None
        if stripped.startswith("{"):
            try:
                value = json.loads(stripped)
                data = value if isinstance(value, dict) else None
            except ValueError:
                pass
        yield data, stripped


def from_text(lines: list[str], report: Report | None = None) -> Report:
    """The fallback: rate-limit words and a retry delay in plain lines."""
    report = report or Report()
    for line in lines:
        if not report.rate_limited and any(p.search(line) for p in RATE_LIMIT_PATTERNS):
            report.rate_limited = True
            report.error = report.error or line[:300]
        if report.retry_after is None:
            report.retry_after = retry_after(line)
    return report


def retry_after(text: str) -> float | None:
    for pattern in _RETRY_AFTER:
        m = pattern.search(text)
        if m:
            value, unit = float(m.group(1)), (m.group(2) or "s").lower()
            return value / 1000 if unit == "ms" else value * 60 if unit.startswith("m") else value
    return None


def read(output: str, log: str, env: Mapping[str, str] | None = None) -> Report:
    """Read ``log`` with the reader ``output`` (a preset's); unknown readers read text. A reader
    that keeps its figures in the CLI's own files (copilot's usage) sets ``READS_FILES`` and is
    given the session's environment, to find them."""
    try:
        module = importlib.import_module(f".{output}", __name__)
    except ImportError:
        module = importlib.import_module(".text", __name__)
    if getattr(module, "READS_FILES", False):
        return module.read(log, env)
    return module.read(log)
