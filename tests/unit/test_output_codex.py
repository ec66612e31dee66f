"""Reading `codex exec --json` (0.171) output: usage and answer from its events, a 429 from the
error it ends with, the server's delay from its retry log line. Fixtures are lines it printed
(stdout and stderr together, as the session log holds them), shortened."""

from __future__ import annotations

import pytest

from gastown.runtimes import output

WARN = ("2026-11-30T16:15:50.523523Z  WARN codex_core::responses_retry: stream disconnected - retrying sampling "
        "request ({n}/5 in {delay})... turn_id=01a2 retries={n} max_retries=5 sampling_error=exceeded retry "
        "limit, last status: 429 Too Many Requests\n")
WS = "2026-11-30T16:15:50.400197Z ERROR codex_api::endpoint::responses_websocket: failed to connect to Responses " \
     "WebSocket stage=Unknown\n"

OK = (
    'WARNING: proceeding, even though we could not create PATH aliases: Refusing to create helper binaries\n'
    '{"type":"thread.started","thread_id":"01a22d34-e29a-7fc1-9005-bdb87e73e6f0"}\n' + WS +
    '{"type":"turn.started"}\n'
    '{"type":"item.completed","item":{"id":"item_0","type":"error","message":"Model metadata for `x` not found. '
    'Defaulting to fallback metadata; this can degrade performance and cause issues."}}\n'
    '{"type":"item.started","item":{"id":"item_1","type":"command_execution","command":"/bin/bash -lc '
    '\'cat log\'","aggregated_output":"","exit_code":null,"status":"in_progress"}}\n'
    '{"type":"item.completed","item":{"id":"item_1","type":"command_execution","command":"/bin/bash -lc '
    '\'cat log\'","aggregated_output":"error: rate limit exceeded (status 429)\\n","exit_code":0,'
    '"status":"completed"}}\n'
    '{"type":"item.completed","item":{"id":"item_2","type":"agent_message","text":"All done."}}\n'
    '{"type":"turn.completed","usage":{"input_tokens":3600,"cached_input_tokens":600,'
    '"cache_write_input_tokens":0,"output_tokens":240,"reasoning_output_tokens":0}}\n')

LIMITED = (
    '{"type":"thread.started","thread_id":"01a22d3d-bbfa-7950-a7e3-386d0c35e9bf"}\n' + WS +
    '{"type":"turn.started"}\n' + WARN.format(n=1, delay="999.877247ms") +
    '{"type":"error","message":"Reconnecting... 2/5 (exceeded retry limit, last status: 429 Too Many Requests)"}\n'
    '{"type":"item.completed","item":{"id":"item_0","type":"error","message":"Falling back from WebSockets to '
    'HTTPS transport. exceeded retry limit, last status: 429 Too Many Requests"}}\n' +
    WARN.format(n=5, delay="2.993486550s") +
    '{"type":"error","message":"Reconnecting... 5/5 (exceeded retry limit, last status: 429 Too Many Requests)"}\n'
    '{"type":"error","message":"exceeded retry limit, last status: 429 Too Many Requests"}\n'
    '{"type":"turn.failed","error":{"message":"exceeded retry limit, last status: 429 Too Many Requests"}}\n')


def test_codex_events_give_answer_and_usage_and_tool_output_is_never_a_rate_limit():
    report = output.read("codex", OK)
    assert not report.rate_limited and report.error is None
    assert report.answer == "All done."
    assert report.usage() == {"input_tokens": 3600, "output_tokens": 240}


def test_codex_429_after_its_retries_is_a_rate_limit_with_the_delay_it_waited():
    report = output.read("codex", LIMITED)
    assert report.rate_limited
    assert report.retry_after == pytest.approx(2.99348655)  # the last retry's delay: the server's Retry-After
    assert report.error == "exceeded retry limit, last status: 429 Too Many Requests"


def test_codex_stopped_while_retrying_a_429_is_a_rate_limit():
    cut = "".join(LIMITED.splitlines(keepends=True)[:5])  # killed at the deadline, mid-retry
    report = output.read("codex", cut)
    assert report.rate_limited and report.retry_after == pytest.approx(0.999877247)


def test_codex_retried_429_that_got_through_is_no_rate_limit():
    report = output.read("codex", "".join(LIMITED.splitlines(keepends=True)[:6]) + OK)
    assert not report.rate_limited and report.answer == "All done."


def test_codex_failure_that_is_not_a_rate_limit():
    log = ('{"type":"turn.started"}\n'
           '{"type":"error","message":"unexpected status 401 Unauthorized: Missing bearer authentication"}\n'
           '{"type":"turn.failed","error":{"message":"unexpected status 401 Unauthorized: Missing bearer '
           'authentication"}}\n')
    report = output.read("codex", log)
    assert not report.rate_limited and "401" in report.error


def test_codex_usage_limit_in_plain_text_with_its_delay():
    log = '{"type":"turn.started"}\nERROR: You\'ve hit your usage limit. Try again in 20 minutes.\n'
    report = output.read("codex", log)
    assert report.rate_limited and report.retry_after == 1200


def test_codex_usage_limit_as_its_failure_with_the_delay_it_names():
    log = ('{"type":"turn.failed","error":{"message":"You\'ve hit your usage limit. Upgrade to Pro or try again '
           'in 5 minutes."}}\n')
    report = output.read("codex", log)
    assert report.rate_limited and report.retry_after == 300
