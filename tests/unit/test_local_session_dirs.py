"""The session dirs of a local town, read per polecat: a start (which ends what an earlier session
of its polecat left running) and a Dog removing a worktree read only that polecat's own dirs."""

from __future__ import annotations

import json
import os
from dataclasses import asdict

import pytest

from gastown.runtimes.local import LocalBackend, SessionRequest


def session_dir(backend: LocalBackend, name: str, rig: str, polecat: str, started: float) -> None:
    sdir = backend.town / "sessions" / name
    sdir.mkdir(parents=True)
    req = SessionRequest(rig=rig, remote=f"/rigs/{rig}.git", bead="gt-abc", polecat=polecat)
    (sdir / "request.json").write_text(json.dumps({"request": asdict(req), "argv": [], "started": started}))
    (sdir / "pid").write_text(str(os.getpid()))


def test_the_sessions_of_one_polecat_are_its_own_and_no_one_elses(tmp_path):
    backend = LocalBackend(tmp_path / "town")
    session_dir(backend, "nux-gt-abc-20261201100000-aaaa", "webapp", "nux", 2.0)
    session_dir(backend, "nux-gt-abc-20261201090000-bbbb", "webapp", "nux", 1.0)
    session_dir(backend, "nux-2-gt-abc-20261201100000-cccc", "webapp", "nux-2", 3.0)  # a name that nux begins
    session_dir(backend, "nux-gt-abc-20261201100000-dddd", "api", "nux", 4.0)  # the same name in another rig
    session_dir(backend, "furiosa-gt-abc-20261201100000-eeee", "webapp", "furiosa", 5.0)
    assert [s.name for s in backend.sessions("webapp", "nux")] == ["nux-gt-abc-20261201090000-bbbb",
                                                                   "nux-gt-abc-20261201100000-aaaa"]
    assert [s.name for s in backend.sessions("webapp", "nux-2")] == ["nux-2-gt-abc-20261201100000-cccc"]
    assert [s.name for s in backend.sessions("api", "nux")] == ["nux-gt-abc-20261201100000-dddd"]
    assert len(backend.sessions()) == 5  # and the town's history, whole, newest last
    assert [s.started for s in backend.sessions()] == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_the_sessions_still_under_way_leave_the_ended_unread(tmp_path):
    """What `gt status` counts and a restarted daemon adopts: a session whose wrapper wrote its
    result is not even read (here its request is unreadable, and nothing fails)."""
    backend = LocalBackend(tmp_path / "town")
    session_dir(backend, "nux-gt-abc-20261201100000-aaaa", "webapp", "nux", 1.0)
    session_dir(backend, "furiosa-gt-abc-20261201100000-bbbb", "webapp", "furiosa", 2.0)
    ended = backend.town / "sessions" / "nux-gt-abc-20261201100000-aaaa"
    (ended / "result.json").write_text("{}")
    (ended / "request.json").write_text("{not json")
    assert [s.name for s in backend.sessions(ended=False)] == ["furiosa-gt-abc-20261201100000-bbbb"]
    assert [s.name for s in backend.sessions("webapp", "furiosa", ended=False)] == ["furiosa-gt-abc-20261201100000-bbbb"]


def test_a_reader_that_lists_the_sessions_again_reads_only_the_new_dirs(tmp_path):
    """The TUI lists every session at each refresh: a session dir says nothing new after its start
    (its request, its wrapper's pid), so each is parsed once (here an old one's request turns
    unreadable after the first listing, and nothing fails); a new one is listed, and another
    backend, which never read the dirs, reads them all."""
    backend = LocalBackend(tmp_path / "town")
    session_dir(backend, "nux-gt-abc-20261201100000-aaaa", "webapp", "nux", 1.0)
    assert [s.name for s in backend.sessions()] == ["nux-gt-abc-20261201100000-aaaa"]
    (backend.town / "sessions" / "nux-gt-abc-20261201100000-aaaa" / "request.json").write_text("{not json")
    session_dir(backend, "furiosa-gt-abc-20261201100000-bbbb", "webapp", "furiosa", 2.0)
    assert [(s.name, s.request.polecat, s.started) for s in backend.sessions()] == [
        ("nux-gt-abc-20261201100000-aaaa", "nux", 1.0), ("furiosa-gt-abc-20261201100000-bbbb", "furiosa", 2.0)]
    assert [s.name for s in backend.sessions("webapp", "furiosa")] == ["furiosa-gt-abc-20261201100000-bbbb"]
    with pytest.raises(ValueError):  # the unreadable request: a fresh reader parses every dir
        LocalBackend(backend.town).sessions()
