"""Reading what a session printed: rate limits from structured output first, text only as a
fallback, ANSI colours stripped; usage and cost from the CLI's own result."""

from __future__ import annotations

import json

import pytest

from gastown.runtimes import output


def lines(*events: dict) -> str:
    return "\n".join(json.dumps(e) for e in events) + "\n"


CLAUDE_OK = lines(
    {"type": "system", "subtype": "init", "session_id": "s1"},
    {"type": "user", "message": {"content": [{"type": "tool_result",
                                              "content": "Error: rate limit exceeded in the test fixture"}]}},
    {"type": "result", "subtype": "success", "is_error": False, "duration_ms": 429, "duration_api_ms": 429,
     "result": "All done.", "total_cost_usd": 0.0192,
     "usage": {"input_tokens": 3000, "cache_read_input_tokens": 600, "output_tokens": 240}})
CLAUDE_429 = lines(
    {"type": "system", "subtype": "api_retry", "attempt": 1, "retry_delay_ms": 8126, "error_status": 429,
     "error": "rate_limit"},
    {"type": "result", "subtype": "success", "is_error": True, "api_error_status": 429,
     "api_error_type": "rate_limit_error", "result": "API Error: Request rejected (429)", "total_cost_usd": 0,
     "usage": {"input_tokens": 0, "output_tokens": 0}})


def test_claude_result_gives_answer_tokens_and_cost_and_ignores_a_429_that_is_a_duration():
    report = output.read("claude", CLAUDE_OK)
    assert not report.rate_limited  # duration_ms 429 and a tool's output saying "rate limit" are not one
    assert report.answer == "All done."
    assert (report.input_tokens, report.output_tokens, report.cost_usd) == (3600, 240, 0.0192)
    assert report.usage() == {"input_tokens": 3600, "output_tokens": 240, "cost_usd": 0.0192}


def test_claude_rate_limit_comes_from_the_api_error_status_with_the_delay_it_was_given():
    report = output.read("claude", CLAUDE_429)
    assert report.rate_limited and report.retry_after == pytest.approx(8.126)
    assert "429" in report.error


def test_claude_killed_mid_retry_is_still_a_rate_limit():
    assert output.read("claude", CLAUDE_429.splitlines()[0]).rate_limited


@pytest.mark.parametrize(("text", "limited"), [
    ("\x1b[91m\x1b[1mError: \x1b[0mRate limit exceeded\x1b[0m", True),  # colours between the words
    ("\x1b[31mAPI error (status 429): Too Many Requests\x1b[0m", True),
    ("RESOURCE_EXHAUSTED: Quota exceeded for quota metric", True),
    ("stream error: You've hit your usage limit.", True),
    ("error: tests failed (3 of 429 passed)", False),
    ('{"type":"tool_result","content":"rate limit"}', False),  # a JSON line is tool output, not the CLI
    ("error: the tests failed", False),
])
def test_text_fallback(text, limited):
    assert output.read("text", text).rate_limited is limited


@pytest.mark.parametrize(("text", "seconds"), [
    ("429 Too Many Requests; Retry-After: 17", 17.0),
    ("rate limited, please try again in 2 minutes", 120.0),
    ("Rate limit: retry in 1500ms", 1.5),
])
def test_retry_after_from_text(text, seconds):
    assert output.read("text", text).retry_after == pytest.approx(seconds)


def test_unknown_reader_falls_back_to_text():
    assert output.read("no-such-cli", "429 Too Many Requests").rate_limited
