"""The opencode reader, on output captured from opencode 1.18.33 (`run --format json --print-logs
--log-level ERROR`) against the stand-in; ids and long fields shortened."""

from __future__ import annotations

from pathlib import Path

import pytest

from gastown.runtimes import PRESETS
from gastown.runtimes.output import read

SES = '"sessionID":"ses_dd2b"'

COMPLETED = "\n".join((
    '{"type":"step_start","timestamp":1,' + SES + ',"part":{"id":"prt_1","messageID":"msg_1","type":"step-start"}}',
    '{"type":"tool_use","timestamp":2,' + SES + ',"part":{"type":"tool","tool":"write","callID":"toolu_1",'
    '"state":{"status":"completed","input":{"filePath":"calc.py","content":"def add(a, b):\\n    return a + b\\n"},'
    '"output":"Wrote file successfully."},"messageID":"msg_1"}}',
    '{"type":"step_finish","timestamp":3,' + SES + ',"part":{"id":"prt_2","reason":"tool-calls","messageID":"msg_1",'
    '"type":"step-finish","tokens":{"total":1280,"input":1200,"output":80,"reasoning":0,"cache":{"write":0,"read":0}},'
    '"cost":0.0048}}',
    '{"type":"tool_use","timestamp":4,' + SES + ',"part":{"type":"tool","tool":"bash","callID":"toolu_2",'
    '"state":{"status":"completed","input":{"command":"python3 -m unittest -q"},'
    '"output":"error: 429 Too Many Requests (a test of the project, not the provider)\\n"},"messageID":"msg_2"}}',
    '{"type":"step_finish","timestamp":5,' + SES + ',"part":{"id":"prt_3","reason":"tool-calls","messageID":"msg_2",'
    '"type":"step-finish","tokens":{"total":1600,"input":1000,"output":50,"reasoning":30,"cache":{"write":100,"read":300}},'
    '"cost":0.0048}}',
    '{"type":"text","timestamp":6,' + SES + ',"part":{"id":"prt_4","messageID":"msg_3","type":"text",'
    '"text":"Done: add() returns the sum and the tests pass."}}',
    '{"type":"step_finish","timestamp":7,' + SES + ',"part":{"id":"prt_5","reason":"stop","messageID":"msg_3",'
    '"type":"step-finish","tokens":{"total":1280,"input":1200,"output":80,"reasoning":0,"cache":{"write":0,"read":0}},'
    '"cost":0.0048}}',
))

TITLE_429 = ('timestamp=2026-11-30T16:28:19.003Z level=ERROR run=16c549a8 message="stream error" providerID=anthropic '
             'modelID=claude-haiku-4-5-20251001 session.id=ses_dd2b small=true agent=title mode=primary '
             'error.error="AI_RetryError: Failed after 3 attempts. Last error: Rate limit exceeded: too many requests"')
MAIN_429 = ('timestamp=2026-11-30T16:28:20.545Z level=ERROR run=16c549a8 message="stream error" providerID=anthropic '
            'modelID=claude-sonnet-4-6 session.id=ses_dd2b small=false agent=build mode=primary '
            'error.error="AI_APICallError: Rate limit exceeded: too many requests"')
RATE_LIMITED = "\n".join((
    TITLE_429, MAIN_429, MAIN_429,
    '{"type":"error","timestamp":1796056107122,' + SES + ',"error":{"name":"APIError","data":{'
    '"message":"Rate limit exceeded: too many requests","statusCode":429,"isRetryable":true,"responseHeaders":{'
    '"content-type":"application/json","date":"Mon, 30 Nov 2026 16:28:27 GMT","retry-after":"1"},'
    '"responseBody":"{\\"type\\": \\"error\\", \\"error\\": {\\"type\\": \\"rate_limit_error\\", \\"message\\": '
    '\\"Rate limit exceeded: too many requests\\"}}","metadata":{"url":"http://127.0.0.1:37511/v1/messages"}}}}',
))

UNAUTHORIZED = "\n".join((
    TITLE_429,  # the title request was rate limited, the run failed for another reason
    '{"type":"error","timestamp":1796056123392,' + SES + ',"error":{"name":"APIError","data":{'
    '"message":"invalid x-api-key","statusCode":401,"isRetryable":false,"responseHeaders":{'
    '"content-type":"application/json","date":"Mon, 30 Nov 2026 16:28:43 GMT"},'
    '"responseBody":"{\\"type\\": \\"error\\", \\"error\\": {\\"type\\": \\"authentication_error\\", '
    '\\"message\\": \\"invalid x-api-key\\"}}"}}}',
))


def test_a_finished_run_gives_its_usage_cost_and_answer():
    report = read("opencode", COMPLETED)
    assert not report.rate_limited and report.error is None
    # input without the cache, then the cache read and written; output, then reasoning: all counted
    assert (report.input_tokens, report.output_tokens) == (1200 + 1000 + 300 + 100 + 1200, 80 + 50 + 30 + 80)
    assert report.cost_usd == pytest.approx(0.0144)
    assert report.answer == "Done: add() returns the sum and the tests pass."
    # a 429 in a tool's output is the project's, never the provider's
    assert report.usage() == {"input_tokens": 3800, "output_tokens": 240, "cost_usd": pytest.approx(0.0144)}


def test_a_429_error_event_is_a_rate_limit_with_the_servers_delay():
    report = read("opencode", RATE_LIMITED)
    assert report.rate_limited and report.retry_after == 1
    assert report.error == "Rate limit exceeded: too many requests"


def test_the_delay_in_milliseconds_or_as_a_date():
    ms = RATE_LIMITED.replace('"retry-after":"1"', '"retry-after-ms":"2500"')
    assert read("opencode", ms).retry_after == 2.5
    date = RATE_LIMITED.replace('"retry-after":"1"', '"retry-after":"Mon, 30 Nov 2026 16:29:27 GMT"')
    assert read("opencode", date).retry_after == 60


def test_another_error_is_not_a_rate_limit_even_after_a_rate_limited_title():
    report = read("opencode", UNAUTHORIZED)
    assert not report.rate_limited and report.error == "invalid x-api-key"


def test_a_run_stopped_while_it_retries_is_known_by_its_log_lines():
    """The deadline stopped it during its own retries: no error event, only its ERROR lines."""
    stopped = "\n".join(COMPLETED.splitlines()[:3] + [MAIN_429, MAIN_429])
    report = read("opencode", stopped)
    assert report.rate_limited and report.input_tokens == 1200
    # a rate-limited title request alone stops nothing
    assert not read("opencode", "\n".join(COMPLETED.splitlines()[:3] + [TITLE_429])).rate_limited


def test_the_plain_format_is_read_once_its_colours_are_stripped():
    """What `opencode run` prints without --format json (its real 429 line, ANSI-coloured)."""
    plain = "\x1b[0m\n> build \u00b7 claude-sonnet-4-6\n\x1b[0m\n\x1b[91m\x1b[1mError: \x1b[0mRate limit exceeded: too many requests\n"
    report = read("opencode", plain)
    assert report.rate_limited and "Rate limit exceeded" in (report.error or "")


def test_the_key_goes_into_the_variable_of_the_models_provider():
    rt = PRESETS["opencode"]
    assert rt.key_env("anthropic/claude-sonnet-4-5") == "ANTHROPIC_API_KEY"
    assert rt.key_env("openai/gpt-5") == "OPENAI_API_KEY"
    assert rt.key_env("google/gemini-2.5-pro") == "GEMINI_API_KEY"
    assert rt.key_env(None) == rt.key_env("opus") == "ANTHROPIC_API_KEY"


def test_the_prompt_goes_on_stdin_and_options_after_run():
    rt = PRESETS["opencode"]
    argv = rt.argv(prompt='say "hi" now', prompt_file=Path("/s/prompt.md"), session_dir=Path("/s"), model="openai/gpt-5", resume=True)
    assert argv[:5] == ["opencode", "run", "--continue", "--model", "openai/gpt-5"]
    assert 'say "hi" now' not in argv and rt.stdin('say "hi" now') == b'say "hi" now'
