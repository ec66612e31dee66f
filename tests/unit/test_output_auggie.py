"""Reading auggie 0.36 ``--print --quiet`` output: the final message on stdout, its retry lines and
its failure on stderr (as the session log holds them together). A rate limit is said by the
retry line it prints before each wait ("Rate limit reached. Retrying in 3s…", the server's
Retry-After) and, with ``--retry-timeout``, by the failure it ends with; without that flag it
retries until it is killed, and the retry lines alone must say it. Fixtures are lines it
printed, shortened."""

from __future__ import annotations

import pytest

from gastown.runtimes import output

OK = "Done: add() returns the sum and the tests pass.\n\nRequest ID: e001b0b7-5fe2-45fc-b32f-77b4388d2b7a\n"
WARNINGS = ("Warning: Could not fetch tenant MCP server configurations: HTTP error: 429 Too Many Requests\n"
            "Warning: Could not fetch user MCP server configurations: HTTP error: 429 Too Many Requests\n")
RETRIES = "Rate limit reached. Retrying in 3s…\n" * 2
GAVE_UP = "\n❌ Agent execution failed: Request failed after exceeding retry timeout of 2s: Rate limited\n"


def test_a_completed_run_has_its_answer_and_no_usage():
    report = output.read("auggie", OK)
    assert report.answer == "Done: add() returns the sum and the tests pass."
    assert not report.rate_limited and report.error is None
    assert report.usage() == {}  # print mode reports no tokens


def test_a_run_that_gave_up_on_a_rate_limit_is_rate_limited_with_the_servers_delay():
    report = output.read("auggie", WARNINGS + RETRIES + GAVE_UP)
    assert report.rate_limited and report.retry_after == 3
    assert report.error == "Agent execution failed: Request failed after exceeding retry timeout of 2s: Rate limited"


def test_a_run_stopped_while_it_retried_a_rate_limit_is_rate_limited():
    """No --retry-timeout: it was still waiting when the deadline killed it."""
    report = output.read("auggie", WARNINGS + "Rate limit reached. Retrying in 10s…\n")
    assert report.rate_limited and report.retry_after == 10


def test_other_retries_and_failures_are_not_rate_limits():
    log = ("Augment service is temporarily unavailable (HTTP 503). Retrying in 1s…\n"
           "\n❌ API Error: \"unimplemented: HTTP error: 404 Not Found\"\n   ⎿ Request ID: 70b0b6a5\n")
    report = output.read("auggie", log)
    assert not report.rate_limited and report.retry_after is None
    assert report.error == 'API Error: "unimplemented: HTTP error: 404 Not Found"'


@pytest.mark.parametrize("last", ["Augment service request timed out. Retrying in 2s…\n",
                                  "\n❌ Agent execution failed: tool crashed\n"])
def test_the_latest_status_decides(last):
    """A rate limit it got past is not what ended the run."""
    assert not output.read("auggie", RETRIES + last).rate_limited


def test_warnings_of_settings_calls_alone_are_not_a_rate_limit():
    assert not output.read("auggie", WARNINGS + OK).rate_limited
