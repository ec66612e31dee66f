"""Reading `gemini --output-format stream-json` (0.61) output: usage and answer from its events, a
429 from the result it ends with (no status code there: the API's message and the CLI's quota
advice), the API's delay from "Suggested retry after", and from its retry lines on stderr when it
is stopped while retrying. Fixtures are lines it printed (stdout and stderr together, as the
session log holds them), shortened."""

from __future__ import annotations

import pytest

from gastown.runtimes import output

BANNER = ("Warning: Basic terminal detected (TERM=dumb). Visual rendering will be limited.\n"
          "YOLO mode is enabled. All tool calls will be automatically approved.\n"
          "Ripgrep is not available. Falling back to GrepTool.\n")
INIT = ('{"type":"init","timestamp":"2026-11-30T16:06:48.789Z","session_id":"bb18c587-4ca7-45e1-99e1-a533b3f275bd",'
        '"model":"auto"}\n'
        '{"type":"message","timestamp":"2026-11-30T16:06:48.792Z","role":"user","content":"do the thing"}\n')

OK = BANNER + INIT + (
    '{"type":"message","timestamp":"2026-11-30T16:06:48.900Z","role":"assistant","content":"Writing it.",'
    '"delta":true}\n'
    '{"type":"tool_use","timestamp":"2026-11-30T16:06:48.978Z","tool_name":"write_file",'
    '"tool_id":"write_file__call_e0c0cde8b0","parameters":{"file_path":"hello.txt","content":"hi\\n"}}\n'
    '{"type":"tool_result","timestamp":"2026-11-30T16:06:49.166Z","tool_id":"write_file__call_e0c0cde8b0",'
    '"status":"success"}\n'
    '{"type":"tool_use","timestamp":"2026-11-30T16:06:49.198Z","tool_name":"run_shell_command",'
    '"tool_id":"run_shell_command__call_e0d4df9156","parameters":{"command":"cat log","description":"show"}}\n'
    '{"type":"tool_result","timestamp":"2026-11-30T16:06:49.367Z","tool_id":"run_shell_command__call_e0d4df9156",'
    '"status":"success","output":"error: rate limit exceeded (status 429), retry after 60s"}\n'
    '{"type":"message","timestamp":"2026-11-30T16:06:49.451Z","role":"assistant","content":"All ","delta":true}\n'
    '{"type":"message","timestamp":"2026-11-30T16:06:49.452Z","role":"assistant","content":"done.","delta":true}\n'
    '{"type":"result","timestamp":"2026-11-30T16:06:49.474Z","status":"success","stats":{"total_tokens":5120,'
    '"input_tokens":4800,"output_tokens":320,"cached":0,"input":4800,"duration_ms":685,"tool_calls":2,'
    '"models":{"gemini-3.5-flash-lite":{"total_tokens":1280,"input_tokens":1200,"output_tokens":80,"cached":0,'
    '"input":1200},"gemini-3.8-flash":{"total_tokens":3840,"input_tokens":3600,"output_tokens":240,"cached":0,'
    '"input":3600}}}}\n')

ERROR_REPORT = (
    "Error when talking to Gemini API Full report available at: /tmp/gemini-client-error-Turn.run-"
    "sendMessageStream-2026-11-30T16-19-03-338Z.json RetryableQuotaError: Rate limit exceeded: too many requests."
    "{retry}\n"
    "  cause: {{\n    code: 429,\n    message: 'Rate limit exceeded: too many requests.',\n  }},\n"
    "  status: 429\n}}\n")
RESULT_429 = (
    '{{"type":"result","timestamp":"2026-11-30T16:19:03.743Z","status":"error","error":{{"type":"unknown",'
    '"message":"[API Error: Rate limit exceeded: too many requests.{retry}]\\nPlease wait and try again later. '
    'To increase your limits, request a quota increase through AI Studio, or switch to another /auth method"}},'
    '"stats":{{"total_tokens":0,"input_tokens":0,"output_tokens":0,"cached":0,"input":0,"duration_ms":0,'
    '"tool_calls":0,"models":{{"gemini-2.5-pro":{{"total_tokens":0,"input_tokens":0,"output_tokens":0,'
    '"cached":0,"input":0}}}}}}}}\n')
DELAY = " Please retry in 3s.\nSuggested retry after 3s."
LIMITED = BANNER + INIT + (
    "Attempt 1 failed: Rate limit exceeded: too many requests. Please retry in 3s.\n"
    "Suggested retry after 3s.. Max attempts reached\n" + ERROR_REPORT.format(retry=DELAY)
    + RESULT_429.format(retry=DELAY.replace("\n", "\\n")))
LIMITED_NO_DELAY = BANNER + INIT + (
    "Attempt 1 failed: Rate limit exceeded: too many requests. Max attempts reached\n"
    + ERROR_REPORT.format(retry="") + RESULT_429.format(retry=""))
RETRYING = BANNER + INIT + (  # stopped (deadline, SIGTERM) while it was still retrying
    "Attempt 1 failed: Rate limit exceeded: too many requests. Please retry in 2s.\n"
    "Suggested retry after 2s.. Retrying after 5897ms...\n"
    "Attempt 2 failed: Rate limit exceeded: too many requests. Please retry in 2s.\n"
    "Suggested retry after 2s.. Retrying after 10271ms...\n")
RETRYING_NO_DELAY = BANNER + INIT + (
    'Attempt 9 failed with status 429. Retrying with backoff... _ApiError: {"error":{"code":429,'
    '"message":"Rate limit exceeded: too many requests","status":"RESOURCE_EXHAUSTED"}}\n'
    "  status: 429\n}\n")
UNTRUSTED = ("YOLO mode is enabled. All tool calls will be automatically approved.\n"
             "Approval mode overridden to \"default\" because the current folder is not trusted.\n"
             "Gemini CLI is not running in a trusted directory. To proceed, either use `--skip-trust`, set the "
             "`GEMINI_CLI_TRUST_WORKSPACE=true` environment variable, or trust this directory in interactive mode.\n")


def test_gemini_events_give_answer_and_usage_and_tool_output_is_never_a_rate_limit():
    report = output.read("gemini", OK)
    assert not report.rate_limited and report.error is None and report.retry_after is None
    assert report.answer == "All done."  # what it said after its last tool
    assert report.usage() == {"input_tokens": 4800, "output_tokens": 320}


@pytest.mark.parametrize("log, delay", [(LIMITED, 3.0), (LIMITED_NO_DELAY, None)])
def test_gemini_429_result_is_a_rate_limit_with_the_apis_delay(log, delay):
    report = output.read("gemini", log)
    assert report.rate_limited and report.retry_after == delay
    assert report.error.startswith("[API Error: Rate limit exceeded: too many requests.")
    assert report.answer is None and report.usage() == {}


@pytest.mark.parametrize("log, delay", [(RETRYING, 2.0), (RETRYING_NO_DELAY, None)])
def test_gemini_stopped_while_retrying_a_429_is_a_rate_limit(log, delay):
    report = output.read("gemini", log)
    assert report.rate_limited and report.retry_after == delay


def test_gemini_other_failures_are_not_rate_limits():
    report = output.read("gemini", UNTRUSTED)
    assert not report.rate_limited and report.retry_after is None
    # a 404 (a model that is not there), as it reported it
    report = output.read("gemini", INIT + (
        '{"type":"result","timestamp":"2026-11-30T16:20:56.148Z","status":"error","error":{"type":"unknown",'
        '"message":"[API Error: {\\"error\\":{\\"message\\":\\"models/gemini-9 is not found\\"}}]"},'
        '"stats":{"total_tokens":0,"input_tokens":0,"output_tokens":0,"cached":0,"input":0,"duration_ms":0,'
        '"tool_calls":0}}\n'
        "  code: 404\n}\n"))
    assert not report.rate_limited and report.retry_after is None
    assert report.error == '[API Error: {"error":{"message":"models/gemini-9 is not found"}}]'
