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


def test_reasons_say_what_was_seen():
    j = judge("furiosa", bead(session="s1"), SessionSignal("s1", True, 900, 300), T)
    assert j.reason == "last heartbeat 300s ago" and j.session == "s1"


def test_a_session_that_lingers_long_after_its_result_is_cleaned_up():
    done = bead(mr="gt-mr", ended="s1")
    running = SessionSignal("s1", True, age=900, heartbeat_age=1)
    assert judge("furiosa", done, running, T, NOW + timedelta(seconds=60)).verdict == "healthy"
    late = judge("furiosa", done, running, T, NOW + timedelta(seconds=121))
    assert late.verdict == "done-not-cleaned" and "recorded 121s ago" in late.reason
