"""Reading amp's ``--execute`` output with ``AMP_DEBUG=1`` (0.0.1790142911): the last message on
stdout; a failed request to the Amp server under "Debug details:", with its HTTP status and, for
thread creation, the body whole (where Amp's server puts ``retryAfterSeconds``). Fixtures are
lines it printed, shortened."""

from __future__ import annotations

from gastown.runtimes import output

HEAD = ("Error: Unexpected error inside Amp CLI. Run with AMP_DEBUG=1 to see detailed logs.\n"
        "Use 'feedback: report bug' from the command palette to send this to Amp.\n\nDebug details:\n")
STACK = ("    at ueH (/$bunfs/root/amp-linux-x64:137:77325)\n"
         "    at processTicksAndRejections (native:7:39)\n")
THREAD_429 = HEAD + ('ThreadClientConnectionError: Failed to create thread-actors thread: 429 '
                     '{"error": "Rate limit exceeded: too many requests", "retryAfterSeconds": 3}\n') + STACK
USER_429 = ("Error: API request for getUserInfo failed: 429\n\nDebug details:\n"
            "AmpError: API request for getUserInfo failed: 429\n"
            "    at Aq (/$bunfs/root/amp-linux-x64:2575:8538)\n")
THREAD_501 = HEAD + ('ThreadClientConnectionError: Failed to create thread-actors thread: 501 '
                     '{"error": "the stand-in does not play it", "code": "NOT_PLAYED"}\n') + STACK


def test_a_429_on_thread_creation_is_a_rate_limit_with_the_bodys_delay():
    report = output.read("amp", THREAD_429)
    assert report.rate_limited and report.retry_after == 3
    assert report.error.startswith("ThreadClientConnectionError: Failed to create thread-actors thread: 429")
    assert report.answer is None


def test_a_429_without_a_body_is_a_rate_limit_of_unknown_delay():
    report = output.read("amp", USER_429)
    assert report.rate_limited and report.retry_after is None


def test_other_statuses_are_failures_not_rate_limits():
    report = output.read("amp", THREAD_501)
    assert not report.rate_limited and "501" in report.error


def test_without_amp_debug_nothing_says_a_rate_limit():
    """What the preset's AMP_DEBUG=1 is for: this is all it prints otherwise."""
    report = output.read("amp", "Error: Unexpected error inside Amp CLI.\nUse 'feedback: report bug' from the command "
                                "palette to send this to Amp.\n")
    assert not report.rate_limited


def test_a_completed_run_has_its_last_message_as_the_answer():
    report = output.read("amp", "Done: add() returns the sum.\n")
    assert report.answer == "Done: add() returns the sum." and not report.rate_limited
