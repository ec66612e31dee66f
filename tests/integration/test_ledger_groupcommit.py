"""Group commit across the processes of one machine: real `gt` processes sharing a ledger cache,
a real bare remote (with real git hooks to kill a writer at the worst moments), nothing mocked.

Each test holds the cache's writer lock itself while the `gt` processes start, so that all their
writes are waiting at once when it lets go: the one that takes the lock next must push them all.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from gastown.ledger import LEDGER_BRANCH, Ledger
from gastown.ledger import ledger as ledger_module
from gastown.ledger.handoff import Ops
from gastown.ledger.ledger import create_op, default_cache_dir

from conftest import GT


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


class Rig:
    def __init__(self, tmp: Path):
        self.remote = tmp / "rig.git"
        git("init", "--quiet", "--bare", str(self.remote))
        self.env = {**os.environ, "GT_RIG": str(self.remote), "GT_CACHE_DIR": str(tmp / "cache"),
                    "GT_ACTOR": "user tester"}
        self.cache = default_cache_dir(str(self.remote), tmp / "cache")
        self.run("create", "the first: makes the ledger and the cache")

    def run(self, *args: str) -> str:
        proc = subprocess.run([GT, "bead", *args], capture_output=True, text=True, env=self.env)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def start(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([GT, "bead", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=self.env)

    def commits(self) -> int:
        return int(git("rev-list", "--count", LEDGER_BRANCH, cwd=self.remote))

    def titles(self) -> Counter:
        return Counter(b["title"] for b in json.loads(self.run("list", "--all", "--json")))

    @contextlib.contextmanager
    def writer_lock(self):
        """Hold the lock the writers of this cache take turns with, as one of them would."""
        with open(self.cache / "gastown.write.lock", "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def spooled(self) -> int:
        return len(list((self.cache / "spool").glob("*.op")))

    def hook(self, name: str, when: str, script: str) -> None:
        """A remote hook that runs ``script`` once, the first time the shell test ``when`` holds."""
        flag = self.remote / f"{name}.armed"
        path = self.remote / "hooks" / name
        path.write_text(f"#!/bin/sh\n{{ {when}; }} && [ -e {flag} ] || exit 0\nrm -f {flag}\n{script}\n")
        path.chmod(0o755)
        flag.touch()


def wait_for(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def finish(procs: list[subprocess.Popen]) -> list[tuple[int, str, str]]:
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        out.append((p.returncode, stdout.strip(), stderr.strip()))
    return out


@pytest.fixture
def rig(tmp_path) -> Rig:
    return Rig(tmp_path)


def test_concurrent_cli_writers_share_one_push(rig):
    before = rig.commits()
    with rig.writer_lock():
        procs = [rig.start("create", f"together {i}") for i in range(6)]
        wait_for(lambda: rig.spooled() == 6)  # every write is waiting for a turn
    results = finish(procs)
    assert [r[0] for r in results] == [0] * 6, results
    assert len({r[1] for r in results}) == 6  # six beads, six IDs
    assert rig.titles() == Counter(["the first: makes the ledger and the cache",
                                    *(f"together {i}" for i in range(6))])
    # whoever took the lock next committed everyone's write: one commit, one push
    assert rig.commits() - before == 1
    body = git("log", "-1", "--format=%B", LEDGER_BRANCH, cwd=rig.remote)
    assert body.startswith("ledger: 6 changes") and body.count("(user tester)") == 6
    assert rig.spooled() == 0 and not list((rig.cache / "spool").glob("*.done"))


def test_each_writer_hears_its_own_error_never_a_neighbours(rig):
    before = rig.commits()
    with rig.writer_lock():
        procs = [rig.start("create", "fine 1"), rig.start("close", "gt-zzzz", "--reason", "x"),
                 rig.start("create", "fine 2")]
        wait_for(lambda: rig.spooled() == 3)
    (ok1, id1, _), (bad, _, err), (ok2, id2, _) = finish(procs)
    assert (ok1, ok2) == (0, 0) and id1 != id2
    assert bad != 0 and "no bead gt-zzzz" in err and "Traceback" not in err
    assert rig.commits() - before == 1
    assert rig.titles()["fine 1"] == rig.titles()["fine 2"] == 1


@pytest.mark.parametrize("how", ["handed off", "through a Ledger"])
@pytest.mark.parametrize("when", ["after its push landed", "before its push landed"])
def test_a_writer_killed_while_holding_the_lock_loses_and_doubles_nothing(rig, when, how):
    """Handed off, the lock holder killed is the machine's committer (every `gt` lives on, one of
    them starts another committer); through a Ledger, it is one of the `gt` processes."""
    lock = rig.cache / "gastown.write.lock"
    if when == "after its push landed":  # the remote has the commit; the holder never hears of it
        rig.hook("reference-transaction", '[ "$1" = committed ]', f"kill -9 $(head -n1 {lock})")
    else:  # the holder dies with its commit refused: nothing landed
        rig.hook("pre-receive", "true", f"kill -9 $(head -n1 {lock})\nexit 1")
    before = rig.commits()
    with rig.writer_lock():
        procs = [rig.start(*(("--prefix", "gt") if how == "through a Ledger" else ()), "create", f"survives {i}")
                 for i in range(3)]
        wait_for(lambda: rig.spooled() == 3)
    codes = [p.wait(timeout=120) for p in procs]
    assert sorted(codes) == ([-signal.SIGKILL, 0, 0] if how == "through a Ledger" else [0, 0, 0]), codes
    assert all(not (rig.remote / f"{h}.armed").exists() for h in ("pre-receive", "reference-transaction"))
    finish(procs)
    titles = rig.titles()
    # every write once, the killed process's included: it was in the spool, and a survivor
    # either found it landed (the holder's journal) or committed it again on the new tip
    assert [titles[f"survives {i}"] for i in range(3)] == [1, 1, 1], titles
    assert rig.commits() - before == 1  # the holder's commit, or the survivor's: never both
    assert rig.spooled() == 0


def test_a_writer_killed_while_its_write_waits_in_the_spool_loses_nothing(rig):
    with rig.writer_lock():
        doomed = rig.start("create", "from a killed process")
        assert wait_for(lambda: rig.spooled() == 1)
        doomed.send_signal(signal.SIGKILL)
        doomed.wait()
        alive = rig.start("create", "from a live one")
        assert wait_for(lambda: rig.spooled() == 2)
    [(code, bead_id, err)] = finish([alive])
    assert code == 0 and bead_id, err
    assert rig.titles()["from a killed process"] == rig.titles()["from a live one"] == 1
    assert rig.spooled() == 0


WRITER = """
import sys
from concurrent.futures import ThreadPoolExecutor
from gastown.ledger import Ledger

remote, cache, name, threads, per_thread = sys.argv[1:]
with Ledger(remote, cache_dir=cache, actor=f"user {name}") as ledger:
    def work(t):
        for k in range(int(per_thread)):
            bead = ledger.create(f"{name}.{t}.{k}")
            ledger.comment(bead.id, f"note {name}.{t}.{k}")
    with ThreadPoolExecutor(int(threads)) as pool:
        list(pool.map(work, range(int(threads))))
"""


def test_processes_of_threads_and_handed_off_creates_each_write_once(rig):
    """4 processes x 3 threads of in-process writers (a create and a comment each time) and 6 `gt
    bead create` handed to the committer, all at once on one cache: every write on the remote once."""
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(rig.remote), str(rig.cache), f"p{i}", "3", "2"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=rig.env)
             for i in range(4)]
    procs += [rig.start("create", f"cli {i}") for i in range(6)]
    results = finish(procs)
    assert [r[0] for r in results] == [0] * len(procs), results
    beads = json.loads(rig.run("list", "--all", "--json"))
    titles = Counter(b["title"] for b in beads)
    expected = [f"p{i}.{t}.{k}" for i in range(4) for t in range(3) for k in range(2)] + [f"cli {i}" for i in range(6)]
    assert all(titles[t] == 1 for t in expected), titles
    assert len(beads) == len(expected) + 1  # and the first
    notes = Counter(c["text"] for b in beads for c in b.get("comments", []))
    assert notes == Counter(f"note {t}" for t in expected if not t.startswith("cli"))
    assert rig.spooled() == 0


def committers(cache: Path) -> list[int]:
    """The committer processes serving ``cache`` (alive, not zombies)."""
    out = subprocess.run(["pgrep", "-f", "gastown.ledger.committer"], capture_output=True, text=True).stdout
    found = []
    for pid in map(int, out.split()):
        with contextlib.suppress(FileNotFoundError, IndexError):
            if (str(cache) in Path(f"/proc/{pid}/cmdline").read_text()
                    and Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"):
                found.append(pid)
    return found


def test_the_committer_lingers_then_leaves_and_a_later_create_starts_another(rig):
    """The first create started a committer for this cache; it serves the next creates, leaves
    after its linger without a write, and the next create starts a new one."""
    first = committers(rig.cache)
    assert len(first) == 1
    rig.run("create", "served by it")
    assert committers(rig.cache) == first
    assert wait_for(lambda: not committers(rig.cache), timeout=30)
    rig.run("create", "a new committer")
    assert rig.titles()["a new committer"] == 1
    again = committers(rig.cache)
    assert len(again) == 1 and again != first


def test_a_committer_that_cannot_start_is_a_clear_error_not_a_wait(rig, tmp_path):
    """A committer that dies at once every time (here: another `gastown` first on its path, whose
    committer exits) is given up on after a few starts, with the way to see why; nothing written."""
    stub = tmp_path / "stub" / "gastown" / "ledger"
    stub.mkdir(parents=True)
    for name in ("../__init__.py", "__init__.py"):
        (stub / name).write_text("")
    (stub / "committer.py").write_text("raise SystemExit(3)\n")
    operator = Path(__file__).resolve().parents[2] / "operator"
    program = (f"import sys; sys.path.insert(0, {str(operator)!r}); sys.argv[0] = 'gt'\n"
               "from gastown.cli.main import main\nmain()\n")
    env = {**rig.env, "PYTHONPATH": str(tmp_path / "stub")}
    for pid in committers(rig.cache):  # the one the fixture's first create started: not this test's
        os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: not committers(rig.cache))
    before = rig.commits()
    start = time.monotonic()
    res = subprocess.run([sys.executable, "-c", program, "bead", "create", "never"], capture_output=True, text=True,
                         env=env, timeout=120, cwd=tmp_path)
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    assert "committer stopped" in res.stderr and "-m gastown.ledger.committer" in res.stderr
    assert time.monotonic() - start < 30
    assert rig.commits() == before and rig.spooled() == 0


def test_a_held_block_keeps_the_turn_and_a_write_spooled_meanwhile_joins_its_commit(rig, monkeypatch):
    """A dispatch submits its hooks and its sessions' starts inside ``Ledger.held``: one commit. A
    session's wrapper (another process on the cache) that books its result meanwhile joins that
    commit, instead of taking the turn, pushing first and making the dispatch wait for its push."""
    monkeypatch.setattr(ledger_module, "HOLD_TURN_SECONDS", 60.0)  # this block lasts as a loaded machine makes it
    before = rig.commits()
    lock = rig.cache / "gastown.write.lock"
    with Ledger(str(rig.remote), cache_dir=rig.cache, actor="user tester") as ledger:
        lock.write_text("")  # it names this process since the rig's first write: it must name it anew
        with ledger.held():
            first = ledger.submit(create_op("held 1", actor="user tester", seed="held 1"))
            # the writer takes the machine's turn at once, and keeps it until the block ends
            assert wait_for(lambda: lock.read_text().strip() == str(os.getpid())), lock.read_text()
            other = rig.start("create", "from another process")
            assert wait_for(lambda: rig.spooled() == 2)  # its write and ours wait in the spool
            time.sleep(0.5)  # time enough for the other process's committer to push, had it the turn
            second = ledger.submit(create_op("held 2", actor="user tester", seed="held 2"))
        first.result(timeout=60)
        second.result(timeout=60)
    assert finish([other])[0][0] == 0
    assert rig.commits() - before == 1  # the three writes in one commit, one push
    assert rig.titles() == Counter(["the first: makes the ledger and the cache", "held 1", "held 2",
                                    "from another process"])


def test_a_long_held_block_gives_the_turn_back_and_other_writers_go_on(rig):
    """A block that lasts (a first session cloning its rig inside a dispatch) keeps the turn no
    longer than ``HOLD_TURN_SECONDS``: another process's write lands while the block still holds."""
    with Ledger(str(rig.remote), cache_dir=rig.cache, actor="user tester") as ledger:
        with ledger.held():
            mine = ledger.submit(create_op("held long", actor="user tester", seed="held long"))
            other = rig.start("create", "not kept waiting")
            assert finish([other])[0][0] == 0  # within the block
        mine.result(timeout=60)
    assert rig.titles() == Counter(["the first: makes the ledger and the cache", "held long", "not kept waiting"])


def test_named_operations_come_back_to_the_ledger_that_submitted_them_whoever_commits_them(rig, monkeypatch):
    """A session that prepares itself (a pod) books its result as named operations (``handoff.Ops``,
    as a local wrapper hands them off) through a Ledger of its own, which spools them for the
    machine's other writers. When another writer carries them (here a second Ledger, whose held
    block has the turn), their owner reads the outcome all the same: the bead, as JSON data."""
    monkeypatch.setattr(ledger_module, "HOLD_TURN_SECONDS", 60.0)
    assert wait_for(lambda: not committers(rig.cache), timeout=30)  # the rig's first create's: its last turn done
    lock = rig.cache / "gastown.write.lock"
    with Ledger(str(rig.remote), cache_dir=rig.cache, actor="gastown daemon") as holder, \
            Ledger(str(rig.remote), cache_dir=rig.cache, actor="polecat furiosa") as owner:
        bead = holder.create("to comment on").id
        lock.write_text("")
        with holder.held():
            holder.submit(create_op("held", actor="gastown daemon", seed="held"))
            assert wait_for(lambda: lock.read_text().strip() == str(os.getpid())), lock.read_text()
            booked = owner.submit(Ops("polecat furiosa", [("gastown.ledger.ops:AddComment", {
                "bead_id": bead, "actor": "polecat furiosa", "text": "session ended"})]))
            assert wait_for(lambda: rig.spooled() == 2)
        result = booked.result(timeout=60)
    assert result["id"] == bead and result["comments"][-1]["text"] == "session ended"


def test_the_ledger_names_its_bare_cache_where_git_must_be_told_which_repository(rig):
    """GitHub Copilot's shell runs its commands with safe.bareRepository=explicit (GIT_CONFIG_*):
    there git refuses a bare repository found from its working directory. A `gt` run there (an
    agent's `gt done`, a create) reads the ledger, and starts the machine's committer with that
    environment; the committer then serves every writer of the machine for its linger (a session's
    wrapper booking its result). The ledger names its cache to git, so each of them works."""
    assert wait_for(lambda: not committers(rig.cache), timeout=30)  # the next create starts one
    clean = dict(rig.env)
    rig.env.update(GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="safe.bareRepository", GIT_CONFIG_VALUE_0="explicit")
    rig.run("create", "from a shell of copilot's")
    assert rig.titles()["from a shell of copilot's"] == 1  # a list reads the ledger in its own process
    rig.env = clean
    rig.run("create", "from elsewhere, by the same committer")
    assert rig.titles()["from elsewhere, by the same committer"] == 1
