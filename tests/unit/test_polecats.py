"""Polecat identities, hooks and the end of sessions: the ledger operations, on a memory snapshot."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gastown.ledger import BeadType, InvalidOperation, Status
from gastown.ledger.ops import Create, Tx
from gastown.polecats import (
    NAME_POOL,
    Done,
    EndSession,
    EnsureAgent,
    Hook,
    StartSession,
    agent_id,
    next_name,
    sessions_to_start,
)

from ledgermem import MemSnapshot

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def tx():
    tx = Tx(MemSnapshot("c0", {}), NOW)
    EnsureAgent("furiosa", "webapp", "op").apply(tx)
    EnsureAgent("nux", "webapp", "op").apply(tx)
    return tx


def new_bead(tx, title="work", **kw):
    return Create(title, "t", seed=title, **kw).apply(tx)


def test_names_come_from_the_pool_in_order():
    assert next_name([]) == NAME_POOL[0]
    assert next_name(NAME_POOL[:3]) == NAME_POOL[3]
    assert next_name(NAME_POOL) == f"{NAME_POOL[0]}-2"


def test_identity_is_stable_and_created_once(tx):
    first = tx.get(agent_id("gt", "furiosa"))
    assert first.type == BeadType.AGENT and first.metadata["state"] == "idle"
    lines = len(tx.lines)
    assert EnsureAgent("furiosa", "webapp", "op").apply(tx) == first
    assert len(tx.lines) == lines
    assert agent_id("gt", "furiosa") != agent_id("gt", "nux")


def test_hook_rules(tx):
    bead = new_bead(tx)
    Hook(bead.id, "furiosa", "t").apply(tx)
    assert tx.get(bead.id).status == Status.HOOKED and tx.get(bead.id).assignee == "furiosa"
    assert tx.get(agent_id("gt", "furiosa")).metadata["hooked"] == bead.id
    Hook(bead.id, "furiosa", "t").apply(tx)  # again: no-op
    with pytest.raises(InvalidOperation, match="only an open bead can be hooked"):
        Hook(bead.id, "nux", "t").apply(tx)
    other = new_bead(tx, "other")
    with pytest.raises(InvalidOperation, match=f"already holds {bead.id}"):
        Hook(other.id, "furiosa", "t").apply(tx)
    with pytest.raises(InvalidOperation, match="no polecat ghost"):
        Hook(other.id, "ghost", "t").apply(tx)


def test_session_start_end_and_attempts(tx):
    bead = new_bead(tx)
    Hook(bead.id, "furiosa", "t").apply(tx)
    assert sessions_to_start({b.id: b for b in tx.changes.values()}, ["furiosa", "nux"], []) == [
        ("furiosa", bead.id)]
    for n in range(1, 4):
        StartSession(bead.id, "furiosa", f"s{n}", "t").apply(tx)
        assert tx.get(bead.id).status == Status.IN_PROGRESS
        assert sessions_to_start(dict(tx.changes), ["furiosa"], []) == []  # in progress
        EndSession(bead_id=bead.id, polecat="furiosa", session=f"s{n}", status="failed", reason="boom", actor="t").apply(tx)
        EndSession(bead_id=bead.id, polecat="furiosa", session=f"s{n}", status="failed", reason="boom", actor="t").apply(tx)  # recorded once
        assert tx.get(bead.id).metadata["attempts"] == n
    assert tx.get(agent_id("gt", "furiosa")).metadata["sessions"] == 3
    assert sessions_to_start(dict(tx.changes), ["furiosa"], []) == []  # three tries: the Witness decides
    assert sessions_to_start(dict(tx.changes), ["furiosa"], ["furiosa"]) == []


def test_sessions_never_exceed_the_limit(tx):
    """A bead handed back to its polecat while the rig is full waits hooked; the most urgent starts first."""
    EnsureAgent("slit", "webapp", "op").apply(tx)
    low, high, mid = new_bead(tx, "low", priority=3), new_bead(tx, "high", priority=0), new_bead(tx, "mid", priority=1)
    for bead, polecat in ((low, "furiosa"), (high, "nux"), (mid, "slit")):
        Hook(bead.id, polecat, "t").apply(tx)
    beads, everyone = dict(tx.changes), ["furiosa", "nux", "slit"]
    assert sessions_to_start(beads, everyone, []) == [("nux", high.id), ("slit", mid.id), ("furiosa", low.id)]
    assert sessions_to_start(beads, everyone, [], limit=2) == [("nux", high.id), ("slit", mid.id)]
    assert sessions_to_start(beads, everyone, ["max"], limit=2) == [("nux", high.id)]
    assert sessions_to_start(beads, everyone, ["max", "toast"], limit=2) == []
    assert sessions_to_start(beads, everyone, ["max", "toast", "ace"], limit=2) == []  # over (limit lowered): none


def done(tx, bead_id, polecat, session, *, status="completed", branch="polecat/furiosa/x", commit="a" * 40, reason=""):
    """`gt done` of ``polecat``'s ``session`` on ``bead_id``, into main."""
    return Done(bead_id=bead_id, polecat=polecat, session=session, status=status, branch=branch, target="main",
                commit=commit, reason=reason, actor="t").apply(tx)


def test_done_records_one_merge_request_per_branch(tx):
    bead = new_bead(tx)
    Hook(bead.id, "furiosa", "t").apply(tx)
    StartSession(bead.id, "furiosa", "s1", "t").apply(tx)
    mr = done(tx, bead.id, "furiosa", "s1")
    assert mr.type == BeadType.MERGE_REQUEST and mr.metadata["commit"] == "a" * 40
    assert done(tx, bead.id, "furiosa", "s1") == mr
    # after a rejection the polecat fixes the branch and is done again: the same MR, a new commit
    tx.changes[bead.id] = tx.get(bead.id).model_copy(update={"status": Status.HOOKED})
    StartSession(bead.id, "furiosa", "s2", "t").apply(tx)
    again = done(tx, bead.id, "furiosa", "s2", commit="b" * 40)
    assert again.id == mr.id and again.metadata["commit"] == "b" * 40
    assert len([b for b in tx.changes.values() if b.type == BeadType.MERGE_REQUEST]) == 1
    assert tx.get(agent_id("gt", "furiosa")).metadata["state"] == "idle"


def test_deferred_and_escalated(tx):
    a, b = new_bead(tx, "a"), new_bead(tx, "b")
    for bead, polecat in ((a, "furiosa"), (b, "nux")):
        Hook(bead.id, polecat, "t").apply(tx)
        StartSession(bead.id, polecat, f"s-{polecat}", "t").apply(tx)
    assert done(tx, a.id, "furiosa", "s-furiosa", status="deferred", branch="x", commit="c", reason="later") is None
    assert tx.get(a.id).status == Status.DEFERRED and tx.get(a.id).assignee is None
    esc = done(tx, b.id, "nux", "s-nux", status="escalated", branch="x", commit="c", reason="spec unclear")
    assert esc.type == BeadType.ESCALATION and esc.metadata["severity"] == "P2"
    assert tx.get(b.id).status == Status.BLOCKED and tx.get(b.id).metadata["escalation"] == esc.id
