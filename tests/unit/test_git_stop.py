"""``stop_git`` (the operator's SIGTERM) ends the git commands under way, real ones, and starts no
more, but a clean stop's last words (``stop_grace``)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from gastown.ledger import gitrun
from gastown.ledger.gitrun import GitStopped, run_git, stop_git, stop_grace


@pytest.fixture
def fresh_stop(monkeypatch):
    monkeypatch.setattr(gitrun, "_stop", threading.Event())  # the process-wide flag, this test's own


def test_a_stop_ends_a_running_git_command_and_refuses_new_ones_but_the_grace(fresh_stop, tmp_path: Path, monkeypatch):
    hook = tmp_path / "slow-pack"
    hook.write_text('#!/bin/sh\nsleep 30\nexec "$@"\n')
    hook.chmod(0o755)
    (tmp_path / "gitconfig").write_text(f"[uploadpack]\n\tpackObjectsHook = {hook}\n")
    remote, seed = tmp_path / "remote.git", tmp_path / "seed"
    run_git(["init", "-q", "--bare", str(remote)])
    run_git(["init", "-q", str(seed)])
    run_git(["-c", "user.name=t", "-c", "user.email=t@x", "commit", "-q", "--allow-empty", "-m", "x"], cwd=seed)
    run_git(["push", "-q", str(remote), "HEAD:refs/heads/main"], cwd=seed)
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "gitconfig"))

    errors: list[Exception] = []

    def clone() -> None:
        try:
            run_git(["clone", "-q", f"file://{remote}", str(tmp_path / "clone")])
        except Exception as e:  # noqa: BLE001 (the test looks at it)
            errors.append(e)

    thread = threading.Thread(target=clone)
    thread.start()
    time.sleep(1)  # the clone waits on its slow pack
    started = time.monotonic()
    stop_git()
    thread.join(10)
    assert not thread.is_alive() and time.monotonic() - started < 5
    assert [type(e) for e in errors] == [GitStopped]
    with pytest.raises(GitStopped):
        run_git(["ls-remote", str(remote)])
    with stop_grace():
        assert "refs/heads/main" in run_git(["ls-remote", str(remote)]).stdout.decode()
