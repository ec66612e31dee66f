"""Git work on a polecat's checkout: its branch, its commits, its push. Git CLI, argv only."""

from __future__ import annotations

import random
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .errors import Unavailable
from .gitrun import git_env, git_says, git_timeout

# git's words when another git process holds a lock this one needs: the polecats' checkouts are
# worktrees of one clone, so their fetches update the same remote-tracking refs at once
_LOCKED = ("cannot lock ref", "could not lock config file", ".lock': File exists", "Unable to create")
_LOCK_TRIES = 8


def git(workdir: Path, *args: str, check: bool = True, timeout: float | None = None) -> str:
    timeout = git_timeout() if timeout is None else timeout
    for attempt in range(_LOCK_TRIES):
        try:
            proc = subprocess.run(["git", *args], cwd=workdir, capture_output=True, text=True,
                                  timeout=timeout, env=git_env())
        except subprocess.TimeoutExpired:
            raise Unavailable(f"git {args[0]} timed out after {timeout:.0f}s") from None
        if proc.returncode == 0 or not any(w in proc.stderr for w in _LOCKED):
            break
        time.sleep(random.uniform(0.02, 0.05) * 2 ** attempt)  # the other git lets go in milliseconds
    if check and proc.returncode != 0:
        said = proc.stderr or proc.stdout
        raise Unavailable(f"git {args[0]} failed in {workdir}: {git_says(said) if said.strip() else proc.returncode}")
    return proc.stdout.strip()


def remote_branch_exists(workdir: Path, branch: str, remote: str = "origin") -> bool:
    return bool(git(workdir, "ls-remote", "--heads", remote, f"refs/heads/{branch}"))


def identity_env(author: str) -> dict[str, str]:
    """The polecat's git identity, for the environment of what commits in its checkout.

    Not `git config`: the checkouts of one town are worktrees of one clone sharing one config
    file, so one polecat's name would sign another's commits (and two sessions starting at once
    would race for the config's lock)."""
    email = f"{author.replace(' ', '-')}@gastown.local"
    return {"GIT_AUTHOR_NAME": author, "GIT_AUTHOR_EMAIL": email,
            "GIT_COMMITTER_NAME": author, "GIT_COMMITTER_EMAIL": email}


RESCUE_REFS = "refs/gastown/rescue"


def rescue_prefix(polecat: str, bead_id: str) -> str:
    return f"{RESCUE_REFS}/{polecat}/{bead_id}"


def _unpushed_tips(workdir: Path, branch: str) -> list[tuple[str, str]]:
    """(commit, where) of what prepare_branch would move away from, HEAD and the local ``branch``
    (that `checkout -B` resets; the clone's branches are shared by its worktrees), whose history
    no remote-tracking ref and no rescue ref holds. Two gits when nothing is unpushed (the rule)."""
    tips: dict[str, str] = {}  # commit -> its ref, HEAD first
    for line in git(workdir, "show-ref", "--head", f"refs/heads/{branch}", check=False).splitlines():
        commit, _, ref = line.partition(" ")
        if ref in ("HEAD", f"refs/heads/{branch}"):
            tips.setdefault(commit, ref)
    if not tips or not _unpushed(workdir, *tips):
        return []
    return [(commit, current_branch(workdir) if ref == "HEAD" else branch) for commit, ref in tips.items()
            if _unpushed(workdir, commit)]


def _unpushed(workdir: Path, *commits: str) -> bool:
    """Some of ``commits`` have history that no remote-tracking ref and no rescue ref holds."""
    return bool(git(workdir, "rev-list", "-1", *commits, "--not", "--remotes", f"--glob={RESCUE_REFS}/*"))


def rescue_unpushed(workdir: Path, branch: str, prefix: str, remote: str = "origin") -> list[tuple[str, str, str]]:
    """Push every commit of the checkout that the remote lacks (on HEAD, or on the local ``branch``)
    to a rescue ref under ``prefix``, before anything resets it away: [(ref, commit, where it was)].
    The ref is kept in the clone too, so that prepare_branch knows the commits are safe."""
    tips = _unpushed_tips(workdir, branch)
    if tips:  # the remote-tracking refs may be behind what was pushed: look again, up to date
        git(workdir, "fetch", "--quiet", remote)
        tips = [(c, w) for c, w in tips if _unpushed(workdir, c)]
    out = []
    for commit, where in tips:
        ref = f"{prefix}/{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{commit[:10]}"
        git(workdir, "push", "--quiet", remote, f"{commit}:{ref}")
        git(workdir, "update-ref", ref, commit)
        out.append((ref, commit, where))
    return out


def prepare_branch(workdir: Path, branch: str, target: str, remote: str = "origin", *, rescued: bool = False) -> None:
    """Check out ``branch``: the pushed one when it exists (earlier work kept), else from ``target``.
    It never resets away a commit that is neither pushed nor rescued: ``rescued`` when the caller
    has just run rescue_unpushed on this checkout, else it looks again (and refuses)."""
    for commit, where in [] if rescued else _unpushed_tips(workdir, branch):
        raise Unavailable(f"{workdir} holds commits on {where} that are neither pushed nor rescued "
                          f"({commit[:10]}): not resetting them away")
    # the target is fetched while the remote is asked for the branch (a new bead's has none)
    fetched: list[BaseException] = []
    fetch = threading.Thread(target=_catching, args=(fetched, git, workdir, "fetch", "--quiet", remote,
                                                     f"+refs/heads/{target}:refs/remotes/{remote}/{target}"))
    fetch.start()
    try:
        pushed = remote_branch_exists(workdir, branch, remote)
    finally:
        fetch.join()
    if pushed:
        git(workdir, "fetch", "--quiet", remote, f"+refs/heads/{branch}:refs/remotes/{remote}/{branch}")
    elif fetched:
        raise fetched[0]
    start = f"{remote}/{branch if pushed else target}"
    git(workdir, "checkout", "--quiet", "--no-track", "-B", branch, start)  # no upstream: the config is shared


def _catching(errors: list[BaseException], fn: Callable[..., object], *args: object) -> None:
    """``fn(*args)`` in a thread, its error kept for the caller."""
    try:
        fn(*args)
    except Exception as e:  # noqa: BLE001 (handed to the caller, who raises it)
        errors.append(e)


def commit_leftovers(workdir: Path, message: str, author: str) -> bool:
    """Commit whatever the agent left uncommitted; True when there was something."""
    if not git(workdir, "status", "--porcelain"):
        return False
    ident = identity_env(author)
    git(workdir, "add", "--all")
    git(workdir, "-c", f"user.name={ident['GIT_AUTHOR_NAME']}", "-c", f"user.email={ident['GIT_AUTHOR_EMAIL']}",
        "commit", "--quiet", "--no-verify", "-m", message)
    return True


DONE_REFS = "refs/gastown/done"


def done_ref(bead_id: str) -> str:
    """Pushed with a finished branch, deleted once `gt done` is recorded: the intent, in git (the
    Deacon records what a session pushed but could not record)."""
    return f"{DONE_REFS}/{bead_id}"


def push_branch(workdir: Path, branch: str, remote: str = "origin", marker: str | None = None) -> str:
    """Push HEAD to ``branch`` on the remote (and to the ref ``marker``, in the same atomic push);
    return the commit pushed."""
    # the branch is the polecat's own; an agent that rebased it may replace it, nobody else may
    refs = [f"HEAD:refs/heads/{branch}", *([f"+HEAD:{marker}"] if marker else [])]
    git(workdir, "push", "--quiet", "--atomic", f"--force-with-lease=refs/heads/{branch}", remote, *refs)
    return git(workdir, "rev-parse", "HEAD")


def delete_ref(workdir: Path, ref: str, remote: str = "origin") -> None:
    """Best effort."""
    git(workdir, "push", "--quiet", remote, f":{ref}", check=False)


def current_branch(workdir: Path) -> str:
    return git(workdir, "rev-parse", "--abbrev-ref", "HEAD")


REFLOG_TAIL = 64 * 1024  # the end of a HEAD reflog: plenty for the last commit, whatever its age


def last_commit_age(workdir: Path, now: float | None = None) -> float | None:
    """Seconds since the last commit made in the checkout ``workdir`` (a clone or a worktree),
    None when it has made none. Read from its HEAD reflog, the file git appends to on every
    commit ("OLD NEW IDENTITY TIMESTAMP TZ<TAB>commit...: subject"), so that a watchdog can ask
    often without starting a process."""
    dotgit = workdir / ".git"
    try:
        if dotgit.is_file():  # a worktree: "gitdir: PATH", PATH absolute or relative to the checkout
            gitdir = workdir / dotgit.read_text().partition(":")[2].strip()
        else:
            gitdir = dotgit
        with (gitdir / "logs" / "HEAD").open("rb") as f:
            f.seek(max(0, f.seek(0, 2) - REFLOG_TAIL))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        entry, _, message = line.partition("\t")
        if message.startswith("commit"):  # commit, commit (amend), commit (merge), commit (initial)
            try:
                return max(0.0, (time.time() if now is None else now) - int(entry.split()[-2]))
            except (IndexError, ValueError):
                return None
    return None
