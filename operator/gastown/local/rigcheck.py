"""What a town checks before it saves a rig: a rig it cannot drive is refused, not looped on.

`gt rig add`, `gt rig set` and `gt apply -f` run these checks before anything is written: the
name (the pattern a Rig's metadata.name has), the runtime (a preset or a custom runtime; the
`script` runtime needs its command), and the repository: reachable, a commit on the target
branch, and a push to that branch accepted (a non-bare checkout with the branch checked out
refuses it). Each problem is one line that says what to do.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlparse

from ..api import RigSpec
from ..api.common import DNS_LABEL
from ..ledger import Ledger
from ..runtimes.config import ConfigError, resolve
from .town import TownError

LS_REMOTE_TIMEOUT = 30.0


def check_name(name: str, what: str = "rig") -> None:
    """The name a custom resource may have (a DNS-1123 label), so a town's rig is a Rig too."""
    if len(name) > 63 or not re.fullmatch(DNS_LABEL, name):
        raise TownError(f"{name!r} is not a valid {what} name: use at most 63 lowercase letters, digits and '-', "
                        f"starting and ending with a letter or digit")


def check_runtime(spec: RigSpec) -> None:
    runtime = spec.runtime
    try:
        resolve(runtime.preset)
    except ConfigError as e:
        raise TownError(f"{e} (gt config agent list)") from None
    if runtime.preset == "script" and not runtime.args:
        raise TownError("the script runtime needs its command: give it with --agent-arg (repeat for each word), "
                        "e.g. --agent-arg python3 --agent-arg agent.py")


def _git(*args: str, cwd: Path | None = None, timeout: float = LS_REMOTE_TIMEOUT) -> subprocess.CompletedProcess:
    # as the ledger's git runs: no prompt for a password (the user's ssh set-up stays theirs)
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": os.environ.get("GIT_ASKPASS", "true"),
           "LC_ALL": "C"}
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise TownError(f"git {args[0]} did not answer within {timeout:.0f}s") from None


def _last_line(text: str) -> str:
    """git's reason: its first fatal line (the rest is advice), else its last line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    fatal = [ln for ln in lines if ln.startswith(("fatal: ", "error: "))]
    return (fatal or lines or ["no reason given"])[0 if fatal else -1].split(": ", 1)[-1]


def local_path(url: str) -> Path | None:
    """The directory of a file:// URL; None for a remote one."""
    parsed = urlparse(url)
    return Path(unquote(parsed.path)) if parsed.scheme == "file" else None


def check_repository(url: str, branch: str) -> None:
    """The repository is reachable, has a commit on ``branch``, and will accept pushes to it."""
    try:
        proc = _git("ls-remote", "--", url)
    except TownError as e:
        raise TownError(f"cannot reach {url}: {e}") from None
    if proc.returncode != 0:
        raise TownError(f"cannot reach {url}: {_last_line(proc.stderr)}")
    heads = {ref for _sha, _, ref in (ln.partition("\t") for ln in proc.stdout.splitlines())}
    if f"refs/heads/{branch}" not in heads:
        found = sorted(h.removeprefix("refs/heads/") for h in heads if h.startswith("refs/heads/")
                       and not h.startswith("refs/heads/gastown/"))
        if not found:
            raise TownError(f"{url} has no commits: push a first commit to {branch} (work is merged into it), "
                            "then add the rig")
        raise TownError(f"{url} has no branch {branch!r} (branches: {', '.join(found)}): push it, or give the "
                        f"branch work is merged into with --branch")
    path = local_path(url)
    if path is not None:
        _check_push_accepted(path, url, branch)


def _check_push_accepted(path: Path, url: str, branch: str) -> None:
    """A non-bare repository refuses a push to its checked-out branch (receive.denyCurrentBranch)."""
    bare = _git("rev-parse", "--is-bare-repository", cwd=path)
    if bare.returncode != 0 or bare.stdout.strip() == "true":
        return
    head = _git("symbolic-ref", "--quiet", "HEAD", cwd=path).stdout.strip()
    if head != f"refs/heads/{branch}":
        return
    deny = _git("config", "--get", "receive.denyCurrentBranch", cwd=path).stdout.strip().lower()
    if deny in ("updateinstead", "ignore", "warn", "false", "no", "off", "0"):
        return
    raise TownError(f"{url} is a checkout with {branch} checked out: it refuses the merge queue's pushes to "
                    f"{branch}. Use a bare repository (git clone --bare {path} {path}.git, and add that), or "
                    f"let it update its work tree: git -C {path} config receive.denyCurrentBranch updateInstead")


def check_one_rig(name: str, spec: RigSpec, others: Mapping[str, RigSpec]) -> None:
    """One rig per repository in a town: a ledger has one driver."""
    url = spec.git_url.rstrip("/")
    for other, their in sorted(others.items()):
        if other != name and their.git_url.rstrip("/") == url:
            raise TownError(f"{spec.git_url} is the repository of rig {other} already: a rig's ledger has one driver, "
                            f"so a repository has one rig (change that one with gt rig set {other} ...)")


def check_claim(ledger: Ledger, holder: str) -> None:
    """No other town or operator drives the repository's ledger now (a stale claim is taken over)."""
    claim = ledger.claims.current()
    now = datetime.now(UTC)
    if claim is not None and claim.holder != holder and not claim.stale(now):
        raise TownError(f"the ledger of {ledger.remote} is driven by {claim.describe(now)}: one driver per ledger. "
                        "Stop that driver (gt down in that town, or delete that Rig) and add this rig again; a "
                        "driver that died is taken over once its lease runs out")


def check_rig(name: str, spec: RigSpec, repository: bool = True, others: Mapping[str, RigSpec] | None = None) -> None:
    """Everything a town checks before it saves the rig ``name`` (``repository``: the remote too;
    ``others``: the town's other rigs)."""
    check_name(name)
    check_runtime(spec)
    check_one_rig(name, spec, others or {})
    if repository:
        check_repository(spec.git_url, spec.default_branch)
