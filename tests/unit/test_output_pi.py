"""The pi/omp reader, on their real `--mode json` events (trimmed to the fields it reads)."""

from __future__ import annotations

import json

from gastown.runtimes.output import read

USAGE = {"input": 1200, "output": 80, "cacheRead": 100, "cacheWrite": 20, "totalTokens": 1400,
         "cost": {"input": 0.006, "output": 0.002, "cacheRead": 0, "cacheWrite": 0, "total": 0.008}}
NO_USAGE = {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0, "totalTokens": 0,
            "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0, "total": 0}}
PI_429 = '429 {"type":"error","error":{"type":"rate_limit_error","message":"Rate limit exceeded"}}'
OMP_429 = ('429 {"type": "error", "error": {"type": "rate_limit_error", "message": "Rate limit exceeded"}} '
           "retry-after-ms=3000")


def line(event: str, **fields) -> str:
    return json.dumps({"type": event, **fields})


def assistant(content: list, stop: str, usage: dict = USAGE, **extra) -> str:
    return line("message_end", message={"role": "assistant", "content": content, "api": "anthropic-messages",
                                        "provider": "anthropic", "model": "claude-sonnet-4-5",
                                        "usage": usage, "stopReason": stop, **extra})


HEAD = "\n".join([
    line("session", version=3, id="01a2", cwd="/w"),
    line("agent_start"), line("turn_start"),
    line("message_end", message={"role": "user", "content": [{"type": "text", "text": "rate limit me"}]}),
])
TOOL_CALL = assistant([{"type": "toolCall", "id": "t1", "name": "write",
                        "arguments": {"path": "calc.py", "content": "x"}}], "toolUse")
TOOL_RESULT = line("message_end", message={"role": "toolResult", "toolCallId": "t1", "toolName": "write",
                                           "content": [{"type": "text", "text": "Successfully wrote 1 bytes"}]})
DONE = assistant([{"type": "text", "text": "Done: add() returns the sum."}], "stop")


def test_a_finished_run_sums_the_usage_of_every_call_and_gives_the_answer():
    update = line("message_update", assistantMessageEvent={"type": "text_delta", "delta": "Done"},
                  message={"role": "assistant", "content": [], "usage": USAGE})
    log = "\n".join([HEAD, TOOL_CALL, TOOL_RESULT, update, DONE, line("agent_end", messages=[])])
    report = read("pi", log)
    assert not report.rate_limited and report.error is None
    assert report.answer == "Done: add() returns the sum."
    assert (report.input_tokens, report.output_tokens) == (2 * 1320, 2 * 80)
    assert report.cost_usd == 0.016
    assert report.usage() == {"input_tokens": 2640, "output_tokens": 160, "cost_usd": 0.016}


def test_pi_429_is_a_rate_limit_without_a_delay():
    """pi's message is the status and the API's body: the server's Retry-After is not in it."""
    log = "\n".join([HEAD, assistant([], "error", NO_USAGE, errorMessage=PI_429),
                     line("auto_retry_end", success=False, attempt=3, finalError=PI_429)])
    report = read("pi", log)
    assert report.rate_limited and report.retry_after is None
    assert report.error == PI_429 and report.answer is None


def test_omp_429_carries_the_servers_delay():
    log = "\n".join([HEAD, assistant([], "error", NO_USAGE, errorMessage=OMP_429, errorStatus=429)])
    report = read("pi", log)
    assert report.rate_limited and report.retry_after == 3.0


def test_a_retry_that_got_through_is_no_rate_limit():
    log = "\n".join([HEAD, assistant([], "error", NO_USAGE, errorMessage=PI_429),
                     line("auto_retry_start", attempt=1, maxAttempts=3, delayMs=2000, errorMessage=PI_429),
                     TOOL_CALL, TOOL_RESULT, DONE])
    report = read("pi", log)
    assert not report.rate_limited and report.error is None and report.answer.startswith("Done")
    assert report.input_tokens == 2640


def test_another_api_error_is_an_error_not_a_rate_limit():
    message = '500 {"type":"error","error":{"type":"api_error","message":"Internal server error"}}'
    report = read("pi", "\n".join([HEAD, TOOL_CALL, TOOL_RESULT, assistant([], "error", NO_USAGE,
                                                                            errorMessage=message)]))
    assert not report.rate_limited and report.error == message
    assert report.output_tokens == 80  # the call that got through still counts


def test_the_agents_own_words_are_never_a_rate_limit():
    """A tool call writing about rate limits, and a JSON line cut off by the log's tail."""
    talk = assistant([{"type": "toolCall", "id": "t2", "name": "bash",
                       "arguments": {"command": "echo 'HTTP 429: rate limited, retry after 60s'"}}], "toolUse")
    cut = '"content":[{"type":"text","text":"429 Too Many Requests, rate limit"}]}}'
    report = read("pi", "\n".join([cut, HEAD, talk, TOOL_RESULT, DONE]))
    assert not report.rate_limited and report.retry_after is None


def test_without_any_event_the_text_says():
    assert not read("pi", "No API key found for anthropic.\n").rate_limited
    report = read("pi", "Error: 429 Too Many Requests\n")
    assert report.rate_limited and report.answer is None
