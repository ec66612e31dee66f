"""trouble.py: backoff per problem, a warning per backoff step, one escalation per problem."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from gastown.ledger import LedgerError
from gastown.settings import Settings, SettingsError
from gastown.trouble import (
    MERGE,
    REMOTE,
    Backoff,
    Trouble,
    Troubles,
    merge_problem,
    session_problem,
)

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_the_wait_doubles_to_the_cap_and_a_success_resets_it():
    b = Backoff(base=1.2, cap=300, escalate_after=5)
    assert [b.delay(n) for n in range(1, 11)] == [1.2, 2.4, 4.8, 9.6, 19.2, 38.4, 76.8, 153.6, 300, 300]
    assert b.delay(10_000) == 300  # no overflow however long it lasts
    troubles = Troubles("webapp", b)
    troubles.failed(REMOTE, "cannot reach", at(0))
    assert not troubles.due(REMOTE, at(1)) and troubles.due(REMOTE, at(1.2))
    assert troubles.wait(REMOTE, at(1)) == pytest.approx(0.2)
    troubles.failed(REMOTE, "cannot reach", at(1.2))
    assert not troubles.due(REMOTE, at(3.5)) and troubles.due(REMOTE, at(3.6))
    assert troubles.due(MERGE, at(0))  # each problem has its own
    cleared = troubles.cleared(REMOTE)
    assert cleared is not None and cleared.attempts == 2
    assert troubles.due(REMOTE, at(3)) and troubles.current() == []
    troubles.failed(REMOTE, "cannot reach", at(4))
    assert troubles.current()[0].attempts == 1 and troubles.current()[0].since == at(4)  # a new problem


def test_one_warning_per_attempt_made_never_one_per_poll(caplog):
    """A caller polls ten times a second; only the attempts the backoff lets through are made and said."""
    troubles = Troubles("webapp", Backoff(base=1.2, cap=300))
    caplog.set_level(logging.INFO, "gastown.rig")
    for tick in range(600):  # a minute of polls every 0.1 s
        now = at(tick / 10)
        if troubles.due(REMOTE, now):
            troubles.failed(REMOTE, "cannot reach the rig repository", now)
    said = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(said) == 6  # at 0, 1.2, 3.6, 8.4, 18, 37.2 s
    assert "blocked: cannot reach the rig repository (attempt 6; next in 38.4s)" in said[-1].getMessage()
    troubles.cleared(REMOTE)
    assert "no longer blocked (after 6 attempts)" in caplog.records[-1].getMessage()
    assert caplog.records[-1].levelno == logging.INFO


def test_escalated_once_after_n_attempts_and_handed_back_when_it_clears():
    troubles = Troubles("webapp", Backoff(base=1, cap=4, escalate_after=3))
    for n in range(2):
        troubles.failed(MERGE, "push refused", at(n))
    assert troubles.to_escalate() == []
    troubles.failed(MERGE, "push refused", at(3))
    [due] = troubles.to_escalate()
    assert due.key == MERGE and due.attempts == 3
    troubles.escalated(MERGE, "gt-abc")
    troubles.failed(MERGE, "push refused", at(7))
    assert troubles.to_escalate() == []  # once per problem, not once per attempt
    assert troubles.current()[0].escalation == "gt-abc"  # kept across attempts
    assert "escalated gt-abc" in troubles.current()[0].line(at(8))
    troubles.cleared(MERGE)
    assert [t.escalation for t in troubles.take_cleared()] == ["gt-abc"]
    assert troubles.take_cleared() == []


def test_trying_records_a_failure_and_clears_on_success():
    troubles = Troubles("webapp", Backoff(base=2, cap=8))
    with troubles.trying(MERGE, at(0), merge_problem("main"), (LedgerError,)):
        raise LedgerError("cannot push main to file:///x: [remote rejected] (branch is currently checked out)")
    [t] = troubles.current()
    assert t.problem.startswith("push refused: cannot push main") and "git clone --bare" in t.problem
    with pytest.raises(KeyError):  # what it was not told to catch goes on up
        with troubles.trying(MERGE, at(2), merge_problem("main"), (LedgerError,)):
            raise KeyError("a bug")
    with troubles.trying(MERGE, at(2), merge_problem("main"), (LedgerError,)):
        pass
    assert troubles.current() == []


def test_the_problems_say_the_fix():
    assert "push a first commit to main" in session_problem("furiosa", "gt-1", "main")(
        "git worktree failed in /t: fatal: invalid reference: HEAD")
    assert merge_problem("main")("branch x is not on /r").startswith("cannot merge: ")
    assert "permissions" in merge_problem("main")("cannot push main to /r: pre-receive hook declined")


def test_a_trouble_round_trips_and_says_when_it_is_tried_next():
    t = Trouble(key=REMOTE, problem="cannot reach", since=at(0), attempts=3, next_try=at(10), escalation="")
    assert Trouble.from_dict(t.to_dict()) == t
    line = t.line(at(4))
    assert line.startswith("blocked: cannot reach (3 attempts since 12:00:00, next in 6s; escalated)")


def test_the_settings_knobs():
    s = Settings.from_env({"GT_RETRY_BASE_SECONDS": "0.5"}, {"retryMaxSeconds": 4, "escalateAfterAttempts": 3})
    assert s.backoff() == Backoff(0.5, 4.0, 3)
    for env, said in [({"GT_ESCALATE_AFTER_ATTEMPTS": "2.5"}, "whole number"),
                      ({"GT_ESCALATE_AFTER_ATTEMPTS": "0"}, "1 or more"),
                      ({"GT_RETRY_BASE_SECONDS": "10", "GT_RETRY_MAX_SECONDS": "5"}, "at least")]:
        with pytest.raises(SettingsError, match=said):
            Settings.from_env(env)


def test_next_try_is_the_first_problem_due_but_those_left_out():
    troubles = Troubles("webapp", Backoff(base=1, cap=60))
    assert troubles.next_try() is None
    troubles.failed(REMOTE, "cannot reach", at(0))
    troubles.failed(MERGE, "push refused", at(5))
    assert troubles.next_try() == at(1) and troubles.next_try(besides=(REMOTE,)) == at(6)
