"""The Deacon heals what fell between the cracks, on real git: each orphan kind, and nothing else."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gastown import convoy as convoys
from gastown.deacon import ORPHAN_GRACE, Deacon
from gastown.ledger import BeadType, Status
from gastown.ledger.ops import Close
from gastown.ledger.worktree import DONE_REFS, done_ref, push_branch
from gastown.names import branch_for
from gastown.polecats import Done, EnsureAgent, Hook, StartSession
from gastown.runtimes.session import finish

from rigs import git, make_rig


@pytest.fixture
def rig(tmp_path):
    return make_rig(tmp_path)


def finished_branch(rig, tmp_path, bead: str, polecat: str = "furiosa", marker: bool = True) -> str:
    """What `gt done` pushes before it records anything: the branch and, atomically, the done ref."""
    work = tmp_path / f"work-{bead}"
    git("clone", "-q", str(rig.remote), str(work))
    git("checkout", "-q", "-b", branch_for(polecat, bead), cwd=work)
    (work / "FEATURE.md").write_text("finished\n")
    git("add", "-A", cwd=work)
    git("-c", "user.name=p", "-c", "user.email=p@x", "commit", "-qm", "the work", cwd=work)
    return push_branch(work, branch_for(polecat, bead), marker=done_ref(bead) if marker else None)


def done_refs(rig) -> str:
    return git("for-each-ref", DONE_REFS, cwd=rig.remote)


def test_a_finished_branch_whose_done_was_never_recorded_gets_its_merge_request(rig, tmp_path):
    bead = rig.hooked_bead("Add the feature")
    with rig.ledger() as lg:
        lg.apply(StartSession(bead, "furiosa", "s-1", "polecat furiosa"))
    commit = finished_branch(rig, tmp_path, bead)  # ... and the session died right here
    assert done_refs(rig)

    with rig.ledger("deacon") as lg:
        # not while a session of the polecat runs: it may still record it itself
        assert Deacon(lg).patrol(None, {"furiosa"}, "main") == []
        heals = Deacon(lg).patrol(None, set(), "main")
        beads = lg.beads()
    assert [h.kind for h in heals] == ["RecordedDone"]
    mr = beads[beads[bead].metadata["mr"]]
    assert mr.type == BeadType.MERGE_REQUEST and mr.metadata["commit"] == commit and mr.status == Status.OPEN
    assert not done_refs(rig)
    with rig.ledger("deacon") as lg:
        assert Deacon(lg).patrol(None, set(), "main") == []  # healed once


def test_a_done_ref_left_after_the_record_is_just_removed(rig, tmp_path):
    bead = rig.hooked_bead("Add the feature")
    commit = finished_branch(rig, tmp_path, bead)
    with rig.ledger() as lg:
        lg.apply(StartSession(bead, "furiosa", "s-1", "polecat furiosa"))
        lg.apply(Done(bead_id=bead, polecat="furiosa", session="s-1", status="completed",
                      branch=branch_for("furiosa", bead), target="main", commit=commit, reason="",
                      actor="polecat furiosa"))
    with rig.ledger("deacon") as lg:
        assert Deacon(lg).patrol(None, set(), "main") == []
    assert not done_refs(rig)


def test_a_bead_held_by_a_polecat_that_no_longer_exists_is_reopened(rig):
    kept = rig.hooked_bead("Kept", polecat="furiosa")
    lost = rig.hooked_bead("Lost", polecat="ghost")
    with rig.ledger("deacon") as lg:
        # hooked a moment ago: ghost may be a polecat just created that the cluster's view lacks yet
        assert Deacon(lg).patrol(["furiosa"], set(), "main") == []
        later = datetime.now(UTC) + ORPHAN_GRACE + timedelta(seconds=1)
        heals = Deacon(lg).patrol(["furiosa"], set(), "main", now=later)  # ghost's Polecat was deleted
        beads = lg.beads()
    assert [(h.kind, h.subject) for h in heals] == [("Reopened", lost)]
    assert beads[lost].status == Status.OPEN and beads[lost].assignee is None
    assert "polecat ghost no longer exists" in beads[lost].comments[-1].text
    assert beads[kept].status == Status.HOOKED and beads[kept].assignee == "furiosa"


def test_locally_a_polecat_exists_while_its_identity_does(rig):
    bead = rig.hooked_bead("Mine", polecat="nux")
    with rig.ledger("deacon") as lg:
        assert Deacon(lg).patrol(None, set(), "main") == []
        assert lg.get(bead).status == Status.HOOKED


def test_a_convoy_whose_beads_are_all_closed_is_closed(rig):
    info = convoys.ConvoyInfo(key="docs", name="docs", rig=rig.name, source="beads")
    with rig.ledger() as lg:
        lg.apply(convoys.OpenConvoy(info, "user tester"))
        planned = lg.apply(convoys.PlanConvoy("docs", (convoys.PlannedBead("a", "A"), convoys.PlannedBead("b", "B")),
                                              "user tester"))
        for bead_id in planned.metadata["keys"].values():
            lg.apply(Close(bead_id, "user tester", "done by hand"))
    with rig.ledger("deacon") as lg:
        heals = Deacon(lg).patrol(None, set(), "main")
        convoy = lg.get(convoys.convoy_id(lg.prefix, "docs"))
    assert [h.kind for h in heals] == ["ConvoyClosed"]
    assert convoy.status == Status.CLOSED and "closed by the Deacon" in convoy.close_reason


def test_a_normal_done_leaves_no_done_ref(rig, tmp_path):
    bead = rig.hooked_bead("Finish properly")
    work = tmp_path / "work"
    git("clone", "-q", str(rig.remote), str(work))
    git("checkout", "-q", "-b", branch_for("furiosa", bead), cwd=work)
    (work / "X.md").write_text("x\n")
    with rig.ledger() as lg:
        lg.apply(EnsureAgent("furiosa", rig.name, "user tester", "script"))
        lg.apply(Hook(bead, "furiosa", "user tester"))
    marker = finish(str(rig.remote), bead, polecat="furiosa", session="s-1", status="completed", reason="", workdir=work,
                    target="main", session_dir=None, cache_root=tmp_path / "c")
    assert marker["result"] and not done_refs(rig)
