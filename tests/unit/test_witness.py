"""The Witness's verdicts, from its signals alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gastown.ledger import Bead, Status
from gastown.witness import SessionSignal, Thresholds, judge

NOW = datetime(2026, 1, 1, tzinfo=UTC)
T = Thresholds(start_grace=60, hung_after=120)


def bead(status=Status.IN_PROGRESS, **meta):
    return Bead(id="gt-abc", title="t", status=status, assignee="furiosa", metadata=meta, created_by="t",
                created_at=NOW, updated_at=NOW)


@pytest.mark.parametrize(("work", "session", "verdict"), [
    (bead(session="s1"), SessionSignal("s1", True, age=5, heartbeat_age=None), "healthy"),  # slow to start
    (bead(session="s1"), SessionSignal("s1", True, age=59, heartbeat_age=None), "healthy"),
    (bead(session="s1"), SessionSignal("s1", True, age=61, heartbeat_age=None), "hung"),
    (bead(session="s1"), SessionSignal("s1", True, age=900, heartbeat_age=3), "healthy"),  # long but beating
    (bead(session="s1"), SessionSignal("s1", True, age=900, heartbeat_age=121), "hung"),
    (bead(session="s1"), SessionSignal("s1", False, age=900, heartbeat_age=400), "stalled"),
    (bead(session="s1"), None, "stalled"),
    (bead(Status.HOOKED), None, "healthy"),  # waiting for its session: the scheduler's
    # busy finishing: the ledger already has the result, the process is still exiting
    (bead(mr="gt-mr", ended="s1"), SessionSignal("s1", True, age=900, heartbeat_age=1), "healthy"),
    (bead(Status.BLOCKED, escalation="gt-esc"), None, "stuck"),
])
def test_verdicts(work, session, verdict):
    assert judge("furiosa", work, session, T).verdict == verdict


@pytest.mark.parametrize(("session", "verdict", "reason"), [
    # the heartbeat is late, but the session committed a moment ago: it works (its beat is what broke)
    (SessionSignal("s1", True, age=900, heartbeat_age=300, commit_age=30), "healthy", "committed 30s ago"),
    (SessionSignal("s1", True, age=900, heartbeat_age=None, commit_age=30), "healthy", "committed 30s ago"),
    (SessionSignal("s1", True, age=900, heartbeat_age=300, commit_age=200), "hung", "last commit 200s ago"),
    # a commit from before this session (an earlier session's, on the same branch) says nothing of this one
    (SessionSignal("s1", True, age=10, heartbeat_age=None, commit_age=5), "healthy", "starting"),
    (SessionSignal("s1", True, age=100, heartbeat_age=None, commit_age=500), "hung", "no heartbeat 100s after"),
])
def test_a_recent_commit_keeps_a_session_with_a_late_heartbeat_alive(session, verdict, reason):
    j = judge("furiosa", bead(session="s1"), session, Thresholds(start_grace=60, hung_after=120))
    assert j.verdict == verdict and reason in j.reason
    if session.commit_age > session.age:  # not this session's commit: not reported as its own
        assert "last commit" not in j.reason


def test_reasons_say_what_was_seen():
    j = judge("furiosa", bead(session="s1"), SessionSignal("s1", True, age=900, heartbeat_age=300), T)
    assert j.reason == "last heartbeat 300s ago" and j.session == "s1"


def test_a_session_that_lingers_long_after_its_result_is_cleaned_up():
    done = bead(mr="gt-mr", ended="s1")
    running = SessionSignal("s1", True, age=900, heartbeat_age=1)
    assert judge("furiosa", done, running, T, now=NOW + timedelta(seconds=60)).verdict == "healthy"
    late = judge("furiosa", done, running, T, now=NOW + timedelta(seconds=121))
    assert late.verdict == "done-not-cleaned" and "recorded 121s ago" in late.reason


def test_cluster_signals_come_from_the_newest_job_its_pod_and_its_lease():
    from gastown.kube.polecat_handlers import session_signals

    now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    sessions = {("ns", "web", "furiosa"): [
        {"name": "gt-furiosa-gt-abc-1", "active": False, "created": "2026-11-24T11:00:00Z"},
        {"name": "gt-furiosa-gt-abc-2", "active": True, "created": "2026-11-24T11:50:00Z"}],
        ("ns", "web", "nux"): [{"name": "gt-nux-gt-def-1", "active": True, "created": "2026-11-24T11:00:00Z"}],
        # another rig's furiosa (the same ledger name) is none of this rig's business
        ("ns", "api", "furiosa"): [{"name": "gt-api-furiosa-gt-x-9", "active": True, "created": "2026-11-24T11:58:00Z"}]}
    starts = {("ns", "gt-furiosa-gt-abc-2"): ["2026-11-24T11:55:00Z"], ("ns", "gt-nux-gt-def-1"): [None]}
    beats = {("ns", "gt-furiosa-gt-abc-2"): ["2026-11-24T11:59:30.000000Z"]}
    signals = session_signals("ns", "web", ["furiosa", "nux", "capable"], sessions=sessions, starts=starts, heartbeats=beats,
                              now=now)
    assert signals["furiosa"] == SessionSignal("gt-furiosa-gt-abc-2", True, age=300.0, heartbeat_age=30.0)
    # a pod still pulling its image an hour on is starting, not hung (its trouble is a condition)
    assert signals["nux"] == SessionSignal("gt-nux-gt-def-1", True, age=0.0, heartbeat_age=None)
    assert judge("nux", bead(session="gt-nux-gt-def-1"), signals["nux"], Thresholds()).verdict == "healthy"
    assert "capable" not in signals


def test_the_newest_cluster_session_is_the_one_of_the_highest_count_when_two_start_within_a_second():
    """creationTimestamp counts whole seconds: a session restarted within the second it failed has
    the same stamp as the one it replaces (a fast rig loop does that). Its count tells them apart;
    judging the failed one would find the running one "gone without a result"."""
    from gastown.kube.polecat_handlers import session_signals

    now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    second = "2026-11-24T11:59:00Z"
    for jobs in ([{"name": "gt-furiosa-gt-abc-2", "active": True, "created": second, "count": 2},
                  {"name": "gt-furiosa-gt-abc-1", "active": False, "created": second, "count": 1}],
                 [{"name": "gt-furiosa-gt-abc-1", "active": False, "created": second, "count": 1},
                  {"name": "gt-furiosa-gt-abc-2", "active": True, "created": second, "count": 2}]):
        signals = session_signals("ns", "web", ["furiosa"], sessions={("ns", "web", "furiosa"): jobs}, starts={},
                                  heartbeats={}, now=now)
        assert signals["furiosa"].name == "gt-furiosa-gt-abc-2" and signals["furiosa"].running


def test_the_witness_says_when_time_alone_turns_a_healthy_verdict():
    """What the rig loop may not sleep through: a start grace, a heartbeat's age, a linger."""
    from gastown.witness import next_due

    starting = judge("furiosa", bead(session="s1"), SessionSignal("s1", True, age=20, heartbeat_age=None), T)
    beating = judge("furiosa", bead(session="s1"), SessionSignal("s1", True, age=900, heartbeat_age=100), T)
    committed = judge("furiosa", bead(session="s1"),
                      SessionSignal("s1", True, age=900, heartbeat_age=500, commit_age=90), T)
    finishing = judge("furiosa", bead(ended="s1"), SessionSignal("s1", True, age=900, heartbeat_age=1), T,
                      now=NOW + timedelta(seconds=100))
    assert (starting.due, beating.due, committed.due, finishing.due) == (40, 20, 30, 20)
    hung = judge("furiosa", bead(session="s1"), SessionSignal("s1", True, age=900, heartbeat_age=500), T)
    assert hung.verdict == "hung" and hung.due is None  # already acted on
    assert next_due([starting, beating, committed, hung]) == 20 and next_due([hung]) is None
