"""Reading GitHub Copilot CLI's `--output-format json` events (copilot 1.0.102, captured against
the contract suite's stand-in and cut down to the fields that matter)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gastown.runtimes import output
from gastown.runtimes.output import copilot


def lines(*events: dict) -> str:
    return "\n".join(json.dumps(e) for e in events) + "\n"


SID = "88d865de-b10e-4e3b-9b19-285adbc410ba"
FAILURE = {"type": "model.call_failure", "ephemeral": True, "timestamp": "2026-11-30T16:22:40.175Z",
           "data": {"model": "gpt-4.1", "statusCode": 429, "retryAttempt": 0, "failureKind": "api",
                    "errorMessage": '{"message":"Rate limit exceeded: too many requests","type":"requests",'
                                    '"param":null,"code":"rate_limit_exceeded"}',
                    "errorCode": "rate_limit_exceeded", "errorType": "requests"}}
RETRY = [{"type": "assistant.turn_retry", "ephemeral": True, "timestamp": "2026-11-30T16:22:41.594Z",
          "data": {"turnId": "0", "model": "gpt-4.1", "reason": "rate_limit"}},
         {"type": "model.call_start", "ephemeral": True, "timestamp": "2026-11-30T16:22:41.605Z",
          "data": {"turnId": "0", "model": "gpt-4.1"}}]
GAVE_UP = {"type": "session.error", "timestamp": "2026-11-30T16:22:46.067Z",
           "data": {"errorType": "rate_limit", "statusCode": 429,
                    "message": "Failed to get response from the AI model; retried 5 times (total retry wait "
                               "time: 5.41 seconds) Last error: 429 Rate limit exceeded: too many requests"}}
OK = lines(
    {"type": "user.message", "data": {"content": "fix add: rate limit exceeded is a phrase in the prompt"}},
    {"type": "assistant.message", "data": {"content": "", "toolRequests": [
        {"toolCallId": "call_1", "name": "edit", "arguments": {"path": "calc.py"}}]}},
    {"type": "tool.execution_complete", "data": {"toolCallId": "call_1", "success": True,
                                                  "result": {"content": "HTTP 429 in a test's output"}}},
    {"type": "assistant.message", "data": {"content": "a subagent's words", "parentToolCallId": "call_2"}},
    {"type": "assistant.message", "data": {"content": "Done: add() returns the sum.", "toolRequests": []}},
    {"type": "result", "sessionId": SID, "exitCode": 0,
     "usage": {"premiumRequests": 0, "totalApiDurationMs": 639, "sessionDurationMs": 7175}})
LIMITED = lines({"type": "user.message", "data": {"content": "fix add"}}, FAILURE, *RETRY, FAILURE, GAVE_UP,
                {"type": "result", "sessionId": SID, "exitCode": 1, "usage": {"premiumRequests": 0}})
RECOVERED = lines(FAILURE, *RETRY) + OK


def store(tmp_path, *events: dict) -> dict[str, str]:
    folder = tmp_path / "session-state" / SID
    folder.mkdir(parents=True)
    (folder / "events.jsonl").write_text(lines(*events))
    return {"COPILOT_HOME": str(tmp_path)}


def usage(tokens_in: int, tokens_out: int) -> dict:
    return {"type": "session.usage_record", "data": {"usage": {
        "model": "gpt-4.1", "inputTokens": tokens_in, "outputTokens": tokens_out, "cacheReadTokens": 0,
        "cacheWriteTokens": 0, "cost": 0.0, "isByok": True}}}


def test_answer_is_the_last_top_level_message_and_words_in_tool_output_are_no_rate_limit(tmp_path):
    report = copilot.read(OK, {"HOME": str(tmp_path)})  # no session store there: no tokens
    assert report.answer == "Done: add() returns the sum."
    assert not report.rate_limited and report.error is None
    assert report.usage() == {}


def test_tokens_are_this_runs_usage_records_in_the_cli_session_store(tmp_path):
    env = store(tmp_path, {"type": "session.start", "data": {"sessionId": SID}}, usage(1200, 80),
                {"type": "session.shutdown", "data": {}},
                {"type": "session.resume", "data": {}}, usage(1200, 80), usage(1300, 90),
                {"type": "session.shutdown", "data": {}})
    report = copilot.read(OK, env)
    # the resumed run's two calls, not the first run's too
    assert report.usage() == {"input_tokens": 2500, "output_tokens": 170}


def test_the_store_is_under_home_unless_copilot_home_says():
    assert copilot.store({"HOME": "/h"}) == Path("/h/.copilot/session-state")
    assert copilot.store({"HOME": "/h", "COPILOT_HOME": "/s/copilot"}) == Path("/s/copilot/session-state")


def test_giving_up_on_429s_is_a_rate_limit_with_the_delay_it_waited_each_time():
    report = output.read("copilot", LIMITED)
    assert report.rate_limited
    assert report.retry_after == pytest.approx(5.41 / 5)
    assert "429" in report.error and "retried 5 times" in report.error


def test_stopped_while_retrying_is_a_rate_limit_timed_by_its_events():
    report = copilot.read(lines(FAILURE, *RETRY, FAILURE))  # the deadline came before the CLI gave up
    assert report.rate_limited
    assert report.retry_after == pytest.approx(1.43)  # the 429 at 40.175, the next call at 41.605


def test_a_429_it_got_past_is_not_a_rate_limit(tmp_path):
    report = copilot.read(RECOVERED, {"HOME": str(tmp_path)})
    assert not report.rate_limited and report.answer == "Done: add() returns the sum."


def test_plain_errors_before_any_event_are_the_error():
    report = copilot.read("BYOK providers require an explicit model. Run `copilot help providers` for "
                          "configuration details.\n")
    assert not report.rate_limited and report.error.startswith("BYOK providers require an explicit model")
