"""The Dogs on real git: prune merged branches and finished refs (and nothing else), gc the
caches, compact old closed records into the archive without losing them or reusing an ID."""

from __future__ import annotations

import os
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from gastown.api.rig import Dog, Dogs
from gastown.cli.main import cli
from gastown.dogs import Kennel, Timers, loose_objects
from gastown.ledger import BeadType, InvalidOperation, Status
from gastown.ledger.layout import ARCHIVE_DIR, BEADS_DIR, record_path
from gastown.ledger.ops import Create
from gastown.local.driver import LocalPort, RigConfig, RigDriver
from gastown.runtimes.local import LocalBackend, SessionRequest

from conftest import wait_for
from rigs import git, make_rig


@pytest.fixture
def rig(tmp_path):
    return make_rig(tmp_path)


def push_branch(rig, tmp_path, branch, merge=False):
    """A polecat branch with one commit; ``merge``: also merged into main. Its tip."""
    work = tmp_path / "work" / branch.replace("/", "-")
    git("clone", "-q", str(rig.remote), str(work))
    git("checkout", "-q", "-b", branch, cwd=work)
    (work / f"{branch.replace('/', '-')}.txt").write_text("work\n")
    git("add", "-A", cwd=work)
    git("-c", "user.name=p", "-c", "user.email=p@x", "commit", "-q", "-m", f"work on {branch}", cwd=work)
    git("push", "-q", "origin", branch, cwd=work)
    if merge:
        git("checkout", "-q", "main", cwd=work)
        git("-c", "user.name=p", "-c", "user.email=p@x", "merge", "-q", "--no-ff", "-m", "merge", branch, cwd=work)
        git("push", "-q", "origin", "main", cwd=work)
    return git("rev-parse", branch, cwd=work)


def bead_on(lg, title, branch=None, close=True):
    bead = lg.create(title, metadata={"branch": branch} if branch else None)
    if close:
        lg.close_bead(bead.id, "merged")
    return bead.id


def refs(rig, prefix):
    return git("for-each-ref", "--format=%(refname)", prefix, cwd=rig.remote).split()


def test_prune_deletes_merged_branches_of_closed_beads_and_finished_refs_only(rig, tmp_path):
    with rig.ledger() as lg:
        done = bead_on(lg, "Done and merged")
        unmerged = bead_on(lg, "Closed, never merged")
        working = bead_on(lg, "Merged once, hooked again", close=False)
        open_batch = lg.create("Batch verifying", type=BeadType.MERGE_BATCH).id
        closed_batch = lg.create("Batch done", type=BeadType.MERGE_BATCH).id
        lg.close_bead(closed_batch, "merged")
    push_branch(rig, tmp_path, f"polecat/nux/{done}", merge=True)
    push_branch(rig, tmp_path, f"polecat/nux/{unmerged}")
    push_branch(rig, tmp_path, f"polecat/slit/{working}", merge=True)
    push_branch(rig, tmp_path, "feature/not-a-polecat", merge=True)
    for batch in (open_batch, closed_batch):
        git("push", "-q", str(rig.remote), f"main:refs/gastown/verify/{batch}/r1-0", cwd=rig.remote)

    with rig.ledger("dogs") as lg:
        report = Kennel(lg, "main").run("prune")
    assert report.done == [f"deleted merged branch polecat/nux/{done}", "deleted 1 verification refs of finished batches"]
    assert sorted(rig.branches()) == sorted(["main", "gastown/ledger", f"polecat/nux/{unmerged}", f"polecat/slit/{working}",
                                             "feature/not-a-polecat"])
    assert refs(rig, "refs/gastown/verify") == [f"refs/gastown/verify/{open_batch}/r1-0"]
    with rig.ledger("dogs") as lg:
        assert str(Kennel(lg, "main").run("prune")) == "prune: nothing to do"


def test_prune_never_deletes_a_branch_that_moved_since_it_was_listed(rig, tmp_path, monkeypatch):
    with rig.ledger() as lg:
        done = bead_on(lg, "Done")
    branch = f"polecat/nux/{done}"
    push_branch(rig, tmp_path, branch, merge=True)
    with rig.ledger("dogs") as lg:
        kennel = Kennel(lg, "main")
        listed = kennel.branches.remote_refs

        def listing_then_a_push(prefix):  # the branch moves right after the Dog looked at it
            out = listed(prefix)
            if prefix.startswith("refs/heads"):
                work = tmp_path / "work" / branch.replace("/", "-")
                (work / "more.txt").write_text("more\n")
                git("add", "-A", cwd=work)
                git("-c", "user.name=p", "-c", "user.email=p@x", "commit", "-q", "-m", "more", cwd=work)
                git("push", "-q", "origin", f"HEAD:{branch}", cwd=work)
            return out
        monkeypatch.setattr(kennel.branches, "remote_refs", listing_then_a_push)
        assert kennel.prune().done == []
    assert branch in rig.branches()  # the lease on the listed tip refused the delete
    assert git("log", "-1", "--format=%s", branch, cwd=rig.remote) == "more"


def test_compact_archives_old_closed_ephemeral_records_and_keeps_them_readable(rig):
    with rig.ledger() as lg:
        old_msg = lg.create("Old note", type=BeadType.MESSAGE).id
        lg.close_bead(old_msg, "read")
        batch = lg.create("Old batch", type=BeadType.MERGE_BATCH).id
        lg.close_bead(batch, "merged")
        open_msg = lg.create("Unread note", type=BeadType.MESSAGE).id
        task = lg.create("A closed task").id
        lg.close_bead(task, "done")
        before = len(lg.beads())
    later = datetime.now(UTC) + timedelta(days=15)
    with rig.ledger("dogs") as lg:
        assert Kennel(lg, "main", retain_days=30).compact(now=later).done == []  # not old enough for 30
        report = Kennel(lg, "main", retain_days=14).compact(now=later)
        assert report.done == [f"archived 2 closed records ({', '.join(sorted([old_msg, batch]))})"]
        live = lg.beads()
        assert len(live) == before - 2 and old_msg not in live and batch not in live
        assert open_msg in live and task in live
        archived = lg.get(old_msg)  # still readable by ID, as it was
        assert archived.title == "Old note" and archived.status == Status.CLOSED
        assert [h.change.split(":")[0] for h in lg.history(old_msg)][-1] == "archived"
        with pytest.raises(InvalidOperation, match="already exists"):  # an archived ID is never reused
            lg.apply(Create(title="again", actor="t", seed="s", bead_id=old_msg))
        with pytest.raises(InvalidOperation, match="is archived .* it can be read, not changed"):
            lg.comment(old_msg, "too late")
        assert Kennel(lg, "main").compact(now=later).done == []
    tree = git("ls-tree", "--name-only", "-r", "gastown/ledger", cwd=rig.remote).split()
    assert record_path(ARCHIVE_DIR, old_msg) in tree and record_path(BEADS_DIR, old_msg) not in tree


def test_gc_packs_the_ledger_cache_and_drops_cached_refs_of_deleted_branches(rig, tmp_path):
    with rig.ledger() as lg:
        for i in range(5):
            lg.create(f"bead {i}")
        done = bead_on(lg, "Done")
    branch = f"polecat/nux/{done}"
    push_branch(rig, tmp_path, branch, merge=True)
    with rig.ledger("dogs") as lg:
        kennel = Kennel(lg, "main")
        kennel.branches.fetch(branch)  # the cache now holds a ref of it, as after a merge
        git("push", "-q", str(rig.remote), f":refs/heads/{branch}", cwd=rig.remote)  # deleted on the remote
        before = loose_objects(rig.cache)
        report = kennel.run("gc")
        assert report.done[0] == "dropped 1 cached refs of deleted branches"
        after = loose_objects(rig.cache)  # what stays loose is unreachable and recent: git keeps it 2 weeks
        assert after < before and report.done[1] == f"ledger-cache: loose objects {before} -> {after} (the rest packed)"
        assert int(git("count-objects", "-v", cwd=rig.cache).split("in-pack: ")[1].split()[0]) > 0
        assert not git("for-each-ref", "refs/gastown/heads", cwd=rig.cache)
        assert len(lg.beads()) == 6 and lg.create("after gc").id  # the ledger works on after gc


def test_a_stale_worktree_goes_only_when_nothing_in_it_is_unpushed(rig, tmp_path):
    backend = LocalBackend(tmp_path / "town")
    for polecat in ("clean", "dirty", "ahead"):
        backend.worktree(rig.name, str(rig.remote), polecat)
    town = backend.town / "rigs" / rig.name / "polecats"
    (town / "dirty" / "notes.txt").write_text("not committed\n")
    git("-c", "user.name=p", "-c", "user.email=p@x", "commit", "-q", "--allow-empty", "-m", "local only",
        cwd=town / "ahead")
    config = RigConfig(rig.name, str(rig.remote))
    with rig.ledger("dogs") as lg:
        port = LocalPort(config, backend, lg)
        report = port.run_dog("prune")  # none of the three polecats is in the ledger: all are stale
    assert report.done == ["removed the stale worktree of clean"]
    assert backend.worktrees(rig.name) == ["ahead", "dirty"]
    assert "clean" not in git("worktree", "list", cwd=backend.town / "rigs" / rig.name / "repo")


def test_timers_fire_each_enabled_dog_on_its_schedule_once():
    spec = Dogs(prune=Dog(schedule="*/10 * * * *"), gc=Dog(schedule="0 3 * * *", enabled=False))
    start = datetime(2026, 11, 24, 10, 1, tzinfo=UTC)
    timers = Timers(spec, start)
    assert set(timers.next) == {"prune", "compact"}
    assert timers.due(start + timedelta(minutes=8)) == []
    assert timers.due(start + timedelta(minutes=9)) == ["prune"]
    assert timers.due(start + timedelta(minutes=9, seconds=30)) == []  # not twice for one firing
    assert timers.due(start + timedelta(minutes=45)) == ["prune"]  # missed firings collapse into one


def test_the_daemon_walks_the_dogs_on_their_schedules(rig, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    with rig.ledger() as lg:
        done = bead_on(lg, "Done")
    branch = f"polecat/nux/{done}"
    push_branch(rig, tmp_path, branch, merge=True)
    t0 = datetime.now(UTC)
    clock_start = time.monotonic()

    def fast_clock():  # ten minutes a second: a "*/5" schedule fires twice a second
        return t0 + timedelta(seconds=(time.monotonic() - clock_start) * 600)

    config = RigConfig(rig.name, str(rig.remote), dogs=Dogs(prune=Dog(schedule="*/5 * * * *")))
    ledger = rig.ledger("gastown daemon")
    driver = RigDriver(config, LocalBackend(tmp_path / "town"), ledger)
    stop = threading.Event()
    thread = threading.Thread(target=driver.run, args=(stop,), kwargs={"poll": 0.05, "clock": fast_clock},
                              daemon=True)
    thread.start()
    try:
        wait_for(lambda: branch not in rig.branches(), timeout=30, what="the prune Dog deleting the merged branch")
    finally:
        stop.set()
        thread.join(10)
        ledger.close()


def test_gt_dog_list_and_run(rig, tmp_path):
    runner = CliRunner()
    town = tmp_path / "town"
    out = runner.invoke(cli, ["rig", "add", "webapp", str(rig.remote), "--town", str(town)])
    assert out.exit_code == 0, out.output
    out = runner.invoke(cli, ["dog", "list", "--rig", "webapp", "--town", str(town)])
    assert out.exit_code == 0, out.output
    assert out.output.splitlines()[0].split()[:2] == ["prune", "17"]
    assert "compact keeps closed records for 14 days" in out.output
    with rig.ledger() as lg:
        done = bead_on(lg, "Done")
    push_branch(rig, tmp_path, f"polecat/nux/{done}", merge=True)
    out = runner.invoke(cli, ["dog", "run", "prune", "--rig", "webapp", "--town", str(town), "--json"])
    assert out.exit_code == 0, out.output
    assert f"deleted merged branch polecat/nux/{done}" in out.output
    # as a CronJob runs it: the rig by URL, no town rig, a town directory that does not exist yet
    with rig.ledger() as lg:
        again = bead_on(lg, "Done again")
    push_branch(rig, tmp_path, f"polecat/nux/{again}", merge=True)
    out = runner.invoke(cli, ["dog", "run", "prune", "--rig", f"file://{rig.remote}", "--target", "main",
                              "--retain-days", "30"], env={"GT_TOWN": str(tmp_path / "pod-cache" / "town")})
    assert out.exit_code == 0, out.output
    assert out.output.strip() == f"prune: deleted merged branch polecat/nux/{again}"
    out = runner.invoke(cli, ["dog", "run", "fetch", "--rig", "webapp", "--town", str(town)])
    assert out.exit_code == 2 and "'fetch' is not one of 'prune', 'gc', 'compact'" in out.output


def test_a_worktree_whose_session_runs_is_never_removed(rig, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    agent = str(Path(__file__).resolve().parent.parent / "agent_script.py")
    bead = rig.hooked_bead("Think hard", polecat="nux")
    backend = LocalBackend(tmp_path / "town", cache_root=tmp_path / "town-cache", heartbeat_interval=0.3)
    session = backend.start(SessionRequest(rig=rig.name, remote=str(rig.remote), bead=bead, polecat="nux",
                                           runtime="script", args=(sys.executable, agent, "hang")))
    workdir = backend.town / "rigs" / rig.name / "polecats" / "nux"
    wait_for(lambda: (workdir / "PARTIAL.md").exists(), what="the agent at work")
    assert backend.remove_worktree(rig.name, "nux") is False  # the ledger may call it stale: its session runs
    backend.stop(session)  # the wrapper commits and pushes what it had on SIGTERM
    assert backend.remove_worktree(rig.name, "nux") is True
    assert backend.worktrees(rig.name) == []
    assert "PARTIAL.md" in git("ls-tree", "--name-only", "-r", f"polecat/nux/{bead}", cwd=rig.remote).split()
