"""The light hand-off's own rules (ledger/handoff.py): the cache layout it shares with every
ledger of the machine, and a create and its outcome as marshal data through the spool."""

from __future__ import annotations

import hashlib
import marshal
import os
import pickle
from concurrent.futures import Future
from pathlib import Path

import pytest

from gastown.ledger import handoff
from gastown.ledger.errors import CorruptRecord, InvalidOperation, LedgerError, NotFound
from gastown.ledger.spool import Spool
from gastown.ledger.writer import Pending


def pathlib_key(remote: str) -> str:
    """The cache key as it was computed before the hand-off dropped pathlib and hashlib."""
    url = "://" in remote or (":" in remote and "@" in remote.split(":", 1)[0])
    normal = remote if url else str(Path(remote).expanduser().resolve())
    return hashlib.sha256(normal.encode()).hexdigest()[:20]


def test_a_remotes_cache_is_where_it_always_was(tmp_path, monkeypatch):
    """Caches made before are found: the same key for a relative path, a symlink, a trailing
    slash, a home directory, a URL and an scp-like address."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "real.git").mkdir()
    (tmp_path / "link.git").symlink_to(tmp_path / "real.git")
    for remote in ("real.git", "./real.git/", "link.git", str(tmp_path / "real.git"), "~/some/rig.git",
                   "https://git.example/rig.git", "git@git.example:team/rig.git", "a//b/../c"):
        assert Path(handoff.cache_dir_for(remote, tmp_path)) == tmp_path / "ledgers" / pathlib_key(remote), remote
    assert handoff.cache_dir_for("link.git", tmp_path) == handoff.cache_dir_for(str(tmp_path / "real.git"), tmp_path)


def test_a_create_travels_as_marshal_data():
    create = handoff.Create("ann", "a title", "seed", {"labels": ("x",), "deps": [("gt-a", "blocks")], "parent": None,
                                                         "metadata": {"k": "v"}, "priority": 1})
    data = create.plain()
    assert data[:1] != b"\x80"  # never taken for a pickle (spool.PICKLED)
    back = handoff.read_plain(data)
    assert back is not None
    assert (back.actor, back.title, back.seed, back.fields) == (create.actor, create.title, create.seed, create.fields)


@pytest.mark.parametrize("kind", handoff.CHANGES)
def test_a_change_travels_as_marshal_data(kind):
    back = handoff.read_plain(handoff.Change(kind, "ann", "gt-abc.1", "why; $(rm -rf /)").plain())
    assert isinstance(back, handoff.Change)
    assert (back.kind, back.actor, back.bead_id, back.text) == (kind, "ann", "gt-abc.1", "why; $(rm -rf /)")


def test_a_change_of_no_known_kind_is_refused():
    with pytest.raises(InvalidOperation, match="'delete' is not a change"):
        handoff.Change("delete", "ann", "gt-a", "")


@pytest.mark.parametrize("data", [("gastown 0.0 at /elsewhere", "create", "ann", "t", "s", {}),
                                  (handoff.TAG, "merge", "ann", "gt-a")], ids=["another installation", "unknown"])
def test_what_this_installation_cannot_apply_is_left_to_its_owner(data):
    assert handoff.read_plain(marshal.dumps(data)) is None


@pytest.mark.parametrize(("error", "kind", "message"), [
    (NotFound("no bead gt-x in this ledger"), NotFound, "no bead gt-x in this ledger"),
    (InvalidOperation("a cycle"), InvalidOperation, "a cycle"),
    (CorruptRecord("beads/gt-x.json", "0" * 40, "bad json"), LedgerError,
     str(CorruptRecord("beads/gt-x.json", "0" * 40, "bad json"))),
    (OSError("No space left on device"), LedgerError, "No space left on device"),
], ids=["NotFound", "InvalidOperation", "CorruptRecord", "OSError"])
def test_a_failed_create_is_raised_again_with_its_message(error, kind, message):
    ok, value = marshal.loads(handoff.plain_outcome(False, error))
    assert not ok
    again = handoff.error_named(*value)
    assert type(again) is kind
    assert str(again) == message


def test_a_record_that_cannot_be_handed_back_says_so():
    ok, value = marshal.loads(handoff.plain_outcome(True, {"id": "gt-x", "odd": object()}))
    assert not ok
    assert "was made" in str(handoff.error_named(*value))


def test_the_holder_answers_a_handed_off_create_in_marshal_and_others_in_pickle(tmp_path):
    spool = Spool(tmp_path)
    mine = f"{os.getpid()}"
    done = []
    for n, op in enumerate((handoff.Create("ann", "t", "s"), "an operation of a Ledger")):
        key = f"{n:020d}-{mine}-{n}"
        (spool.dir / f"{key}.op").write_bytes(b"")
        future: Future = Future()
        future.set_result({"id": f"gt-{n}"})
        spool.tell([Pending(op, future, key=key, owned=False)])
        done.append(handoff.take_outcome(spool.dir, key))
    assert marshal.loads(done[0]) == (True, {"id": "gt-0"})
    assert pickle.loads(done[1]) == (True, {"id": "gt-1"})  # noqa: S301 (just made)


def test_a_journal_of_the_last_release_is_settled(tmp_path):
    """A committer of the last release killed after its push left (ok, value) pairs: its waiting
    processes, of that release, read pickles."""
    spool = Spool(tmp_path)
    key = f"{0:020d}-{os.getpid()}-0"
    (spool.dir / f"{key}.op").write_bytes(b"")
    (spool.dir / handoff.JOURNAL).write_bytes(pickle.dumps(("c0ffee", {key: (True, {"id": "gt-a"})})))
    assert spool.settle(lambda commit: commit == "c0ffee")
    assert pickle.loads(handoff.take_outcome(spool.dir, key)) == (True, {"id": "gt-a"})  # noqa: S301
